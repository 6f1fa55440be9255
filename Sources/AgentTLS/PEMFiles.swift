import Foundation
import NIOSSL

/// Reads PEM certificates and private keys, turning every failure into a `TLSFileProblem` that names the key.
public enum PEMFiles {
    /// The certificates in `path` (a leaf first, then its chain; or CA certificates).
    public static func certificates(_ path: String, key: String) throws(TLSFileProblem) -> [NIOSSLCertificate] {
        let bytes = try read(path, key: key)
        let certificates: [NIOSSLCertificate]
        do {
            certificates = try NIOSSLCertificate.fromPEMBytes(bytes)
        } catch {
            throw TLSFileProblem(key: key, message: "\(path) is not a PEM certificate file (\(error))")
        }
        guard !certificates.isEmpty else {
            throw TLSFileProblem(key: key, message: "\(path) is not a PEM certificate file (no -----BEGIN CERTIFICATE-----)")
        }
        return certificates
    }

    /// The unencrypted PEM private key in `path`.
    public static func privateKey(_ path: String, key: String) throws(TLSFileProblem) -> NIOSSLPrivateKey {
        let bytes = try read(path, key: key)
        do {
            return try NIOSSLPrivateKey(bytes: bytes, format: .pem)
        } catch {
            throw TLSFileProblem(key: key, message: "\(path) is not an unencrypted PEM private key (\(error))")
        }
    }

    static func read(_ path: String, key: String) throws(TLSFileProblem) -> [UInt8] {
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            let reason = FileManager.default.fileExists(atPath: path) ? "cannot be read" : "does not exist"
            throw TLSFileProblem(key: key, message: "\(path) \(reason)")
        }
        return Array(data)
    }

    /// Builds a context from a configuration holding `chain` and `privateKey`; BoringSSL refuses a key that does not
    /// belong to the leaf certificate, which is reported against `keyKey`.
    public static func context(_ configuration: TLSConfiguration, keyKey: String, keyPath: String,
                               certKey: String, certPath: String) throws(TLSFileProblem) -> NIOSSLContext {
        do {
            return try NIOSSLContext(configuration: configuration)
        } catch NIOSSLError.failedToLoadPrivateKey {
            throw TLSFileProblem(key: keyKey, message: "\(keyPath) does not match the certificate in \(certKey) (\(certPath))")
        } catch {
            throw TLSFileProblem(key: certKey, message: "\(certPath) with \(keyKey) \(keyPath) cannot be used for TLS (\(error))")
        }
    }
}
