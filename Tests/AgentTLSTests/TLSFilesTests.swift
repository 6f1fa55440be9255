import AgentApp
import AgentCore
import AgentTLS
import Foundation
import Logging
import NIOSSL
import ServiceLifecycle
import Testing

/// The certificate, key and CA files of the configuration: every unusable file is a problem naming its key (exit
/// code 2 at start), and a rotated pair is picked up for new connections while a broken one is refused.
@Suite struct TLSFilesTests {
    func configuration(_ env: [String: String]) throws -> AgentConfiguration {
        var env = env
        env["DbPath"] = env["DbPath"] ?? "none"
        return try AgentConfiguration.resolve(options: [:], environment: env, file: [:], hostname: "host-1").get()
    }

    func problems(_ env: [String: String]) throws -> [TLSFileProblem] {
        AgentTLSSetup.problems(try configuration(env))
    }

    @Test func aGoodPairBuildsAndEveryBadFileIsNamedByItsKey() throws {
        var pki = try TestPKI()
        defer { pki.remove() }
        let good = try pki.issue("agent")
        let other = try pki.issue("other")
        try "not a certificate\n".write(toFile: pki.path("junk.pem"), atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: pki.path("a-directory"), withIntermediateDirectories: true)

        let setup = try AgentTLSSetup.build(configuration(["TlsCertFile": good.cert, "TlsKeyFile": good.key])).get()
        #expect(setup.server != nil && setup.meshServer == nil && setup.upstream == nil)

        let cases: [([String: String], String, String)] = [
            (["TlsCertFile": pki.path("missing.pem"), "TlsKeyFile": good.key], "TlsCertFile", "does not exist"),
            (["TlsCertFile": good.cert, "TlsKeyFile": pki.path("a-directory")], "TlsKeyFile", "cannot be read"),
            (["TlsCertFile": good.cert, "TlsKeyFile": other.key], "TlsKeyFile", "does not match the certificate in TlsCertFile"),
            (["TlsCertFile": pki.path("junk.pem"), "TlsKeyFile": good.key], "TlsCertFile", "is not a PEM certificate file"),
            (["TlsCertFile": good.cert, "TlsKeyFile": good.cert], "TlsKeyFile", "is not an unencrypted PEM private key"),
            (["UpstreamCaFile": pki.path("missing-ca.pem")], "UpstreamCaFile", "does not exist"),
            (["UpstreamCaFile": pki.path("junk.pem")], "UpstreamCaFile", "is not a PEM certificate file"),
        ]
        for (env, key, reason) in cases {
            let found = try problems(env)
            #expect(found.count == 1 && found.first?.key == key && found.first?.message.contains(reason) == true,
                    "\(env): \(found)")
        }
    }

    @Test func meshFilesAreCheckedOnceEach() throws {
        var pki = try TestPKI()
        defer { pki.remove() }
        let node = try pki.issue("n1")
        let other = try pki.issue("n2")
        try "junk\n".write(toFile: pki.path("junk.pem"), atomically: true, encoding: .utf8)
        let mesh = ["NodeId": "n1", "ClusterAddress": "127.0.0.1:7101", "Peers": "n2@127.0.0.1:7102",
                    "ClusterSecret": "a-long-secret", "DbPath": pki.path("n1.db"),
                    "ClusterTlsCertFile": node.cert, "ClusterTlsKeyFile": node.key, "ClusterTlsCaFile": pki.caCert]
        let setup = try AgentTLSSetup.build(configuration(mesh)).get()
        #expect(setup.meshServer != nil && setup.meshClient != nil && setup.server == nil)
        #expect(setup.reloading.count == 2)

        var badCA = mesh
        badCA["ClusterTlsCaFile"] = pki.path("junk.pem")
        #expect(try problems(badCA).map(\.key) == ["ClusterTlsCaFile"])
        var badKey = mesh
        badKey["ClusterTlsKeyFile"] = other.key
        #expect(try problems(badKey).map(\.key) == ["ClusterTlsKeyFile"])
    }

    @Test func aRotatedPairIsTakenAndABrokenOneLeavesTheCurrentContext() throws {
        var pki = try TestPKI()
        defer { pki.remove() }
        let first = try pki.issue("first")
        let second = try pki.issue("second")
        let cert = pki.path("live.crt")
        let key = pki.path("live.key")
        func install(_ source: String, as target: String) throws {
            let staging = target + ".new"
            try? FileManager.default.removeItem(atPath: staging)
            try FileManager.default.copyItem(atPath: source, toPath: staging)
            // rename(2): what an atomic rotation does; a new inode, so the change is seen even within one second.
            #expect(rename(staging, target) == 0)
        }
        try install(first.cert, as: cert)
        try install(first.key, as: key)
        let context = try AgentTLSContexts.server(certFile: cert, keyFile: key)
        let initial = context.current
        guard case .unchanged = context.reloadIfChanged() else {
            Issue.record("reloaded without a change")
            return
        }
        #expect(context.current === initial)

        // Half a rotation: the new certificate without its key. Refused; connections keep getting the first pair.
        try install(second.cert, as: cert)
        guard case .rejected(let problem) = context.reloadIfChanged() else {
            Issue.record("a certificate without its key was taken")
            return
        }
        #expect(problem.key == "TlsKeyFile")
        #expect(context.current === initial)
        guard case .unchanged = context.reloadIfChanged() else {
            Issue.record("the same rejected files were tried again")
            return
        }

        // The key arrives: the second pair is taken.
        try install(second.key, as: key)
        guard case .reloaded = context.reloadIfChanged() else {
            Issue.record("the completed rotation was not taken")
            return
        }
        #expect(context.current !== initial)
    }
}

/// The watcher stops as soon as a graceful shutdown starts: services stop one after another (the last started first),
/// so a watcher that slept out its interval held up those after it, a mesh leader's handover among them (the fault
/// suite with mutual TLS measured a 1.9 s handover against 7-50 ms without TLS).
@Suite struct TLSFileWatcherShutdownTests {
    @Test func aGracefulShutdownEndsTheWatcherWithoutWaitingOutItsInterval() async throws {
        var pki = try TestPKI()
        defer { pki.remove() }
        let leaf = try pki.issue("agent")
        let context = try AgentTLSContexts.server(certFile: leaf.cert, keyFile: leaf.key)
        let logger = Logger(label: "test")
        let watcher = TLSFileWatcher(contexts: [context], interval: .seconds(20), logger: logger)
        let group = ServiceGroup(configuration: .init(services: [watcher], logger: logger))
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { tasks in
            tasks.addTask { try await group.run() }
            try await Task.sleep(for: .milliseconds(200))
            await group.triggerGracefulShutdown()
            try await tasks.waitForAll()
        }
        #expect(ContinuousClock.now - start < .seconds(10), "stopped long before its 20 s interval was out")
    }
}
