import AgentCore
import AgentTLS
import ArgumentParser
import FeatBitSimulatorCore
import Foundation
import Hummingbird
import Logging
import NIOSSL

/// `featbit-sim`: a FeatBit evaluation server simulator, the upstream of the agent's end-to-end tests, demo and
/// benchmarks. Prints `featbit-sim listening on port N` once it accepts connections.
@main
struct FeatBitSimulatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "featbit-sim",
        abstract: "Simulates a FeatBit evaluation server: /streaming (relay-proxy, server, client), agent registration, "
            + "insight tracking, plus a /control/ API to change data and inject failures."
    )

    /// The relay-proxy key used when none is given (FeatBit's own test key, spec §1.2).
    static let defaultApiKey = "rp-MDcwNTEzNDExNzQ3MQtXO7IPcN6U-z5fAktj18CQ"

    @Option(help: "Address to listen on.")
    var host = "127.0.0.1"

    @Option(help: "Port to listen on; 0 picks a free port (printed at start).")
    var port = 0

    @Option(help: ArgumentHelp("Initial data set, bootstrap/backup format {\"eventType\":\"rp_full\",\"items\":[…]}. "
        + "Default: the agent's embedded demo data set."))
    var dataFile: String?

    @Option(name: .customLong("api-key"), help: "Accepted relay-proxy key; repeat for several. Default: \(defaultApiKey)")
    var apiKeys: [String] = []

    @Option(help: "Window for server/client SDK streaming tokens, in seconds.")
    var tokenExpirySeconds = 30

    @Option(help: "PEM certificate chain: serve HTTPS and WSS only (with --tls-key-file).")
    var tlsCertFile: String?

    @Option(help: "PEM private key of --tls-cert-file.")
    var tlsKeyFile: String?

    @Option(help: "Log level for stderr (trace, debug, info, notice, warning, error, critical).")
    var logLevel = "info"

    func validate() throws {
        // The agent's own bound (milliseconds must not overflow; a negative window would trap on a handshake).
        guard (1...AgentConfiguration.maxTokenExpirySeconds).contains(tokenExpirySeconds) else {
            throw ValidationError("--token-expiry-seconds must be from 1 to \(AgentConfiguration.maxTokenExpirySeconds)")
        }
        guard (tlsCertFile == nil) == (tlsKeyFile == nil) else {
            throw ValidationError("--tls-cert-file and --tls-key-file go together")
        }
    }

    func run() async throws {
        let data: SimulatorData
        do {
            let bytes = try dataFile.map { try Data(contentsOf: URL(fileURLWithPath: $0)) } ?? Data(DemoDataSet.json.utf8)
            data = try SimulatorData(bootstrap: JSONValue.parse(bytes))
        } catch {
            FileHandle.standardError.write(Data("featbit-sim: cannot load the data set: \(error)\n".utf8))
            throw ExitCode(2)
        }
        var settings = Simulator.Settings(apiKeys: apiKeys.isEmpty ? [Self.defaultApiKey] : apiKeys)
        settings.tokenExpiryMillis = Int64(tokenExpirySeconds) * 1000
        let simulator = Simulator(data: data, settings: settings)

        let level = Logger.Level(rawValue: logLevel) ?? .info
        LoggingSystem.bootstrap { label in
            var handler = StreamLogHandler.standardError(label: label)
            handler.logLevel = level
            return handler
        }
        let logger = Logger(label: "featbit-sim")
        let announce: @Sendable (Int) async -> Void = { port in
            FileHandle.standardOutput.write(Data("featbit-sim listening on port \(port)\n".utf8))
        }
        let app: any ApplicationProtocol
        if let tlsCertFile, let tlsKeyFile {
            let tls: TLSConfiguration
            do {
                let chain = try PEMFiles.certificates(tlsCertFile, key: "--tls-cert-file")
                let key = try PEMFiles.privateKey(tlsKeyFile, key: "--tls-key-file")
                tls = .makeServerConfiguration(certificateChain: chain.map { .certificate($0) }, privateKey: .privateKey(key))
            } catch {
                FileHandle.standardError.write(Data("featbit-sim: \(error)\n".utf8))
                throw ExitCode(2)
            }
            app = try SimulatorServer.makeApplication(simulator: simulator, host: host, port: port, tls: tls, logger: logger,
                                                      onServerRunning: announce)
        } else {
            app = SimulatorServer.makeApplication(simulator: simulator, host: host, port: port, logger: logger,
                                                  onServerRunning: announce)
        }
        // Like the evaluation server (spec §2.6, §8.22), a stop aborts the sockets: SIGTERM/SIGINT end the process at
        // once, so peers see the TCP connection drop without a WebSocket close frame (1006), never a 1000.
        let signals = [SIGTERM, SIGINT].map { signalNumber in
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .main)
            source.setEventHandler {
                logger.info("featbit-sim stopping", metadata: ["signal": "\(signalNumber)"])
                Foundation.exit(0)
            }
            source.resume()
            return source
        }
        defer { signals.forEach { $0.cancel() } }
        try await app.runService(gracefulShutdownSignals: [])
    }
}
