#if FUZZING
import AgentCore

/// A data set from outside: the body of `POST /api/public/proxy/bootstrap` and the offline `DataFile` (both
/// `DataSetParser.parseBootstrap`), applied to a store, evaluated and backed up.
enum DataSetFuzz {
    static func run(_ input: UnsafeRawBufferPointer) {
        guard let json = JSONReader.parse(input), let environments = try? accept(json) else { return }
        checkApplied(.replace(environments))
    }

    /// What the bootstrap API and `DataFile` do with a JSON body before applying it (AgentRoutes.applyBootstrap,
    /// DataFileSource.load): parse and validate every item (`ItemValidator`), refusing the whole data set for any.
    static func accept(_ json: JSONValue) throws -> [EnvironmentData] {
        try DataSetParser.parseBootstrap(json)
    }

    /// Nothing the validator refuses is ever stored (so none reaches an SDK).
    static func checkValid(_ snapshot: DataSnapshot) {
        for environment in snapshot.environments.values {
            for flag in environment.sortedFlags {
                fuzzCheck(ItemValidator.problems(.flag, flag.json).isEmpty, "an invalid flag was stored")
            }
            for segment in environment.sortedSegments {
                fuzzCheck(ItemValidator.problems(.segment, segment.json).isEmpty, "an invalid segment was stored")
            }
        }
    }

    static let users: [EndUser] = [
        EndUser(keyId: "u1", name: "Ann", properties: [("country", "fr"), ("age", "17"), ("email", "ann@example.com")]),
        EndUser(keyId: "3db19c81-e149-4b97-8a0d-79d34531fe59"),
    ].compactMap { $0 }

    /// Applies `change` to an empty store, evaluates every flag, and checks that its backup, bootstrapped into another
    /// store, backs up to the same bytes (what `GET /backup` writes, `POST /bootstrap` and `DataFile` read back).
    static func checkApplied(_ change: Change) {
        let store = DataStore()
        _ = store.apply(change)
        let snapshot = store.snapshot
        checkValid(snapshot)
        for environment in snapshot.environments.values {
            for flag in environment.sortedFlags {
                guard let model = flag.flagModel else { continue }
                for user in users {
                    _ = Evaluator.evaluate(flag: model, user: user, segments: { environment.segmentModels[$0] })
                }
            }
        }
        let backup = snapshot.backupJSON()
        let restored: [EnvironmentData]
        do {
            restored = try DataSetParser.parseBootstrap(try JSONValue.parse(backup))
        } catch {
            fuzzCheck(false, "the backup of an applied data set is not a valid bootstrap body: \(error)")
            return
        }
        let again = DataStore()
        _ = again.apply(.replace(restored))
        fuzzCheck(again.snapshot.backupJSON() == backup, "a backup bootstrapped again backs up differently")
    }
}

/// A `featbit.db` row as the cold start reads it (Persistence, FeatBitDatabase+Open): a flag through the skimming
/// `DataItem(storedFlag:)`, a segment through the full parse. The first input byte picks the kind.
enum DatabaseRowFuzz {
    static func run(_ input: UnsafeRawBufferPointer) {
        guard let kindByte = input.first else { return }
        let row = Array(input.dropFirst())
        if kindByte & 1 == 0 {
            let skimmed = try? DataItem(storedFlag: row)
            let parsed = (try? JSONValue.parse(row)).flatMap { try? DataItem(kind: .flag, json: $0) }
            // The skim must take exactly the rows the full parse takes, with the same indexed fields.
            fuzzCheck((skimmed == nil) == (parsed == nil), "storedFlag and the full parse disagree on a flag row")
            if let skimmed, let parsed {
                fuzzCheck(skimmed.id == parsed.id && skimmed.envId == parsed.envId && skimmed.updatedAt == parsed.updatedAt
                          && skimmed.key == parsed.key, "storedFlag and the full parse read different fields")
                _ = skimmed.flagModel
            }
        } else if let json = try? JSONValue.parse(row), let item = try? DataItem(kind: .segment, json: json) {
            _ = item.segmentModel
        }
    }
}
#endif
