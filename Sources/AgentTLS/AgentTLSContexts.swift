import NIOSSL

/// The agent's TLS contexts, built from the PEM files of its configuration. Every problem names the key whose file
/// is at fault.
public enum AgentTLSContexts {
    /// The SDK/API port (`TlsCertFile`, `TlsKeyFile`): HTTPS and WSS, TLS 1.2 or newer, no client certificate.
    public static func server(certFile: String, keyFile: String) throws(TLSFileProblem) -> ReloadingTLSContext {
        try ReloadingTLSContext(name: "TlsCertFile", files: [certFile, keyFile]) { () throws(TLSFileProblem) in
            let chain = try PEMFiles.certificates(certFile, key: "TlsCertFile")
            let key = try PEMFiles.privateKey(keyFile, key: "TlsKeyFile")
            var configuration = TLSConfiguration.makeServerConfiguration(
                certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
            configuration.minimumTLSVersion = .tlsv12
            // The application traffic secrets of each TLS 1.3 handshake, kept in memory until the connection leaves
            // NIOSSL for TLS13RecordLayer (TLSIdlePages.swift); never written anywhere.
            configuration.keyLogCallback = TLS13SecretLog.shared.callback
            return try PEMFiles.context(configuration, keyKey: "TlsKeyFile", keyPath: keyFile,
                                        certKey: "TlsCertFile", certPath: certFile)
        }
    }

    /// The files of mutual TLS between mesh peers (`ClusterTlsCertFile`, `ClusterTlsKeyFile`, `ClusterTlsCaFile`).
    public struct MeshFiles: Sendable, Equatable {
        public var certFile: String
        public var keyFile: String
        public var caFile: String

        public init(certFile: String, keyFile: String, caFile: String) {
            self.certFile = certFile
            self.keyFile = keyFile
            self.caFile = caFile
        }
    }

    /// Both ends of a peer link present this node's certificate and require the other's, signed by the cluster CA.
    /// Peers are dialled by address, so the certificate's names are not checked: the CA decides who may join, and
    /// the `ClusterSecret` handshake then proves the node id.
    public static func mesh(_ files: MeshFiles, side: MeshSide) throws(TLSFileProblem) -> ReloadingTLSContext {
        try ReloadingTLSContext(name: "ClusterTlsCertFile (\(side))", files: [files.certFile, files.keyFile, files.caFile]) {
            () throws(TLSFileProblem) in
            let chain = try PEMFiles.certificates(files.certFile, key: "ClusterTlsCertFile")
            let key = try PEMFiles.privateKey(files.keyFile, key: "ClusterTlsKeyFile")
            let ca = try PEMFiles.certificates(files.caFile, key: "ClusterTlsCaFile")
            var configuration: TLSConfiguration
            switch side {
            case .server:
                configuration = .makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
            case .client:
                configuration = .makeClientConfiguration()
                configuration.certificateChain = chain.map { .certificate($0) }
                configuration.privateKey = .privateKey(key)
            }
            configuration.trustRoots = .certificates(ca)
            configuration.certificateVerification = .noHostnameVerification
            configuration.minimumTLSVersion = .tlsv12
            return try PEMFiles.context(configuration, keyKey: "ClusterTlsKeyFile", keyPath: files.keyFile,
                                        certKey: "ClusterTlsCertFile", certPath: files.certFile)
        }
    }

    public enum MeshSide: String, Sendable {
        /// Accepts peer connections.
        case server
        /// Dials peers.
        case client
    }

    /// The client configuration for `wss://`/`https://` to the FeatBit server: the system's trust store plus the
    /// certificates of `UpstreamCaFile`, when set.
    public static func upstream(caFile: String?) throws(TLSFileProblem) -> TLSConfiguration {
        var configuration = TLSConfiguration.makeClientConfiguration()
        if let caFile {
            let ca = try PEMFiles.certificates(caFile, key: "UpstreamCaFile")
            configuration.additionalTrustRoots = [.certificates(ca)]
        }
        return configuration
    }
}
