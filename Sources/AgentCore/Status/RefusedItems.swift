import Synchronization

/// Items refused from the sources that apply their messages item by item (the FeatBit server, the mesh leader) and
/// still not replaced by a valid version: shown in the status' problems (`invalidItems`) until one arrives, or until
/// a replacing message from the same source no longer sends the item. Each distinct refusal is reported to the caller
/// once, so a full resync that sends the same broken flag every few minutes logs it once, not every time.
public final class RefusedItems: Sendable {
    /// The status problem's area.
    public static let problemArea = "invalidItems"
    /// `featbit_agent_items_refused_total{source}`: invalid flags, segments and secrets not applied (counted by the
    /// sources, which own their metrics).
    public static let metric = "featbit_agent_items_refused_total"
    /// Refusals remembered at most (a hostile or broken source cannot grow the agent's memory without bound); more
    /// are still reported and counted, not remembered.
    public static let capacity = 1_000

    private struct Key: Hashable {
        let envId: String
        let kind: ItemKind?
        /// The item's id, or for a secret or an item without a readable id (`RefusedItem.id` nil) the error text (all
        /// it can be told by).
        let identity: String
    }

    private struct Entry {
        let source: String
        let item: RefusedItem
    }

    private let entries = Mutex<[Key: Entry]>([:])
    private let status: AgentStatusBoard?
    /// Where each new refusal is logged (`item-refused`), within `logBudget`: a full sync of 100,000 broken flags
    /// logs 20 lines and says how many it left out.
    private let logger: Logger?
    private let logBudget = LogBudget()

    public init(status: AgentStatusBoard?, logger: Logger? = nil) {
        self.status = status
        self.logger = logger
    }

    /// How many refused items are outstanding.
    public var count: Int { entries.withLock { $0.count } }

    /// Records what one message from `source` refused and applied. `replacesAll`: the message replaces everything
    /// that source sent (`rp_full`, a mesh snapshot), so its earlier refusals it does not repeat are gone.
    /// Logs and returns the refusals not already outstanding; `message` names the kind of message in the log line.
    @discardableResult
    public func record(source: String, _ parsed: DataSetParser.Parsed, replacesAll: Bool,
                       message: String = "") -> [RefusedItem] {
        let fresh: [RefusedItem]? = entries.withLock { entries in
            // The usual message: nothing refused now or before, nothing to clear, nothing to show.
            if parsed.refused.isEmpty && entries.isEmpty { return nil }
            let previous = entries
            if replacesAll { entries = entries.filter { $0.value.source != source } }
            for environment in parsed.environments {
                for item in environment.flags { entries[Key(envId: item.envId, kind: .flag, identity: item.id)] = nil }
                for item in environment.segments {
                    entries[Key(envId: item.envId, kind: .segment, identity: item.id)] = nil
                }
            }
            var fresh: [RefusedItem] = []
            for refused in parsed.refused {
                let key = Key(envId: refused.envId, kind: refused.kind, identity: refused.id ?? refused.error.description)
                if previous[key]?.item.error != refused.error { fresh.append(refused) }
                if entries[key] != nil || entries.count < Self.capacity {
                    entries[key] = Entry(source: source, item: refused)
                }
            }
            return fresh
        }
        guard let fresh else { return [] }
        publish()
        if let logger { log(fresh, source: source, message: message, logger: logger) }
        return fresh
    }

    private func log(_ fresh: [RefusedItem], source: String, message: String, logger: Logger) {
        for item in fresh {
            guard let notLogged = logBudget.take() else { continue }
            var metadata: Logger.Metadata = [
                "event": "item-refused", "source": "\(source)", "message": "\(message)", "envId": "\(item.envId)",
                "kind": "\(item.kind?.rawValue ?? "secret")", "id": "\(item.id ?? "")",
                "problems": "\(item.error.problems.map(\.description).joined(separator: "; "))",
            ]
            if notLogged > 0 { metadata["notLogged"] = "\(notLogged)" }
            logger.error("refused an invalid item; the version held, if any, keeps serving", metadata: metadata)
        }
    }

    private func publish() {
        guard let status else { return }
        let outstanding = entries.withLock { $0.values.map { ($0.source, $0.item) } }
        let text: String?
        if outstanding.isEmpty {
            text = nil
        } else {
            let sources = Set(outstanding.map(\.0)).sorted().joined(separator: ", ")
            let shown = outstanding.map(\.1.description).sorted().prefix(3).joined(separator: "; ")
            let more = outstanding.count > 3 ? "; and \(outstanding.count - 3) more" : ""
            text = "\(outstanding.count) invalid item(s) from \(sources) refused and not served (the versions held, "
                + "if any, still are): \(shown)\(more)"
        }
        status.update { $0.problems[Self.problemArea] = text }
    }
}

import Logging
