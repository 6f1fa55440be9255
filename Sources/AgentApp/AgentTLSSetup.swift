import AgentCore
import AgentTLS
import NIOSSL

/// The TLS contexts a configuration asks for, built from its files: the SDK port's (`TlsCertFile`), the mesh's both
/// sides (`ClusterTls*`) and the upstream client's trust (`UpstreamCaFile`). Building them is also the check that
/// every file exists, is PEM, and that each key matches its certificate (exit code 2 otherwise).
public struct AgentTLSSetup: Sendable {
    public let server: ReloadingTLSContext?
    public let meshServer: ReloadingTLSContext?
    public let meshClient: ReloadingTLSContext?
    /// `nil` without `UpstreamCaFile`: the clients' defaults (the system trust store).
    public let upstream: TLSConfiguration?

    /// Every context whose files are watched for rotation.
    public var reloading: [ReloadingTLSContext] { [server, meshServer, meshClient].compactMap { $0 } }

    /// Every file problem found, in key order.
    public struct Problems: Error, Sendable {
        public let list: [TLSFileProblem]
    }

    public static func build(_ configuration: AgentConfiguration) -> Result<AgentTLSSetup, Problems> {
        var problems: [TLSFileProblem] = []
        func attempt<T>(_ make: () throws(TLSFileProblem) -> T) -> T? {
            do throws(TLSFileProblem) { return try make() } catch {
                problems.append(error)
                return nil
            }
        }
        let server = configuration.tls.flatMap { files in
            attempt { () throws(TLSFileProblem) in try AgentTLSContexts.server(certFile: files.certFile, keyFile: files.keyFile) }
        }
        let meshFiles = configuration.cluster?.tls.map {
            AgentTLSContexts.MeshFiles(certFile: $0.certFile, keyFile: $0.keyFile, caFile: $0.caFile)
        }
        let meshServer = meshFiles.flatMap { files in
            attempt { () throws(TLSFileProblem) in try AgentTLSContexts.mesh(files, side: .server) }
        }
        // The client side reads the same files: only built once the server side did, so a problem is named once.
        let meshClient = meshServer == nil ? nil : meshFiles.flatMap { files in
            attempt { () throws(TLSFileProblem) in try AgentTLSContexts.mesh(files, side: .client) }
        }
        let upstream = configuration.upstreamCaFile.flatMap { path in
            attempt { () throws(TLSFileProblem) in try AgentTLSContexts.upstream(caFile: path) }
        }
        guard problems.isEmpty else { return .failure(Problems(list: problems)) }
        return .success(AgentTLSSetup(server: server, meshServer: meshServer, meshClient: meshClient, upstream: upstream))
    }

    /// The problems `build` finds; empty when every configured file can be used.
    public static func problems(_ configuration: AgentConfiguration) -> [TLSFileProblem] {
        if case .failure(let problems) = build(configuration) { return problems.list }
        return []
    }
}
