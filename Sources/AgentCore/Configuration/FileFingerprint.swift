import Foundation

/// What changes when a watched file's content may have (the `DataFile`, TLS certificates and keys): the file the path
/// resolves to (Kubernetes ConfigMap and Secret volumes update by swapping a symlink, leaving the link itself
/// untouched), its inode, size and modification time. `nil` while the path does not resolve.
public enum FileFingerprint {
    public static func of(_ path: String) -> String? {
        guard let resolved = realpath(path, nil) else { return nil }
        defer { free(resolved) }
        let target = String(cString: resolved)
        guard let attributes = try? FileManager.default.attributesOfItem(atPath: target) else { return nil }
        let modified = (attributes[.modificationDate] as? Date)?.timeIntervalSince1970 ?? 0
        let size = (attributes[.size] as? NSNumber)?.int64Value ?? -1
        let inode = (attributes[.systemFileNumber] as? NSNumber)?.int64Value ?? -1
        return "\(target)/\(modified)/\(size)/\(inode)"
    }
}
