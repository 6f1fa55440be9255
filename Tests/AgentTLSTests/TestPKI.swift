import Foundation

/// A throwaway CA and leaf certificates made with the openssl command line in a temporary directory (nothing secret
/// is committed). EC P-256 keys: quick to generate.
struct TestPKI {
    let directory: URL
    let caCert: String
    let caKey: String
    private var serial = 0

    init(name: String = "test") throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("agent-tls-tests-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        caKey = directory.appendingPathComponent("\(name)-ca.key").path
        caCert = directory.appendingPathComponent("\(name)-ca.pem").path
        try Self.key(caKey)
        try Self.openssl(["req", "-x509", "-new", "-key", caKey, "-subj", "/CN=\(name) test CA", "-days", "2",
                          "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                          "-out", caCert])
    }

    /// A leaf certificate for `name`: (certificate path, key path).
    mutating func issue(_ name: String) throws -> (cert: String, key: String) {
        serial += 1
        let stem = directory.appendingPathComponent("\(name)-\(serial)").path
        let (key, csr, cert, ext) = (stem + ".key", stem + ".csr", stem + ".pem", stem + ".ext")
        try Self.key(key)
        try Self.openssl(["req", "-new", "-key", key, "-subj", "/CN=\(name)", "-out", csr])
        try "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n"
            .write(toFile: ext, atomically: true, encoding: .utf8)
        try Self.openssl(["x509", "-req", "-in", csr, "-CA", caCert, "-CAkey", caKey, "-set_serial", "\(1000 + serial)",
                          "-days", "2", "-extfile", ext, "-out", cert])
        return (cert, key)
    }

    func path(_ name: String) -> String { directory.appendingPathComponent(name).path }

    func remove() { try? FileManager.default.removeItem(at: directory) }

    static func key(_ path: String) throws {
        try openssl(["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", path])
    }

    struct OpenSSLFailed: Error, CustomStringConvertible {
        let description: String
    }

    static func openssl(_ arguments: [String]) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["openssl"] + arguments
        let errors = Pipe()
        process.standardError = errors
        process.standardOutput = FileHandle.nullDevice
        try process.run()
        let stderr = errors.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw OpenSSLFailed(description: "openssl \(arguments.joined(separator: " ")): \(String(decoding: stderr, as: UTF8.self))")
        }
    }
}
