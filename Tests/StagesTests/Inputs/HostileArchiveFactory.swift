import Foundation
import TestSupport

/// Crafts tar archives with hostile members through python3's tarfile module (GNU tar
/// refuses to write some of them).
enum HostileArchiveFactory {
    enum Member {
        case file(String, String)
        case symlink(String, target: String)
        case hardlink(String, target: String)
        case fifo(String)
        case characterDevice(String)
    }

    /// Writes `members` in order; `format` is USTAR, PAX or GNU.
    static func write(_ members: [Member], to url: URL, format: String = "USTAR") async throws {
        var lines = ["import tarfile, io", "t = tarfile.open(\(pythonString(url.path)), 'w', format=tarfile.\(format)_FORMAT)"]
        for member in members {
            switch member {
            case let .file(name, content):
                lines.append("d = \(pythonString(content)).encode()")
                lines.append("i = tarfile.TarInfo(\(pythonString(name))); i.size = len(d); t.addfile(i, io.BytesIO(d))")
            case let .symlink(name, target):
                lines.append("i = tarfile.TarInfo(\(pythonString(name))); i.type = tarfile.SYMTYPE; i.linkname = \(pythonString(target)); t.addfile(i)")
            case let .hardlink(name, target):
                lines.append("i = tarfile.TarInfo(\(pythonString(name))); i.type = tarfile.LNKTYPE; i.linkname = \(pythonString(target)); t.addfile(i)")
            case let .fifo(name):
                lines.append("i = tarfile.TarInfo(\(pythonString(name))); i.type = tarfile.FIFOTYPE; t.addfile(i)")
            case let .characterDevice(name):
                lines.append("i = tarfile.TarInfo(\(pythonString(name))); i.type = tarfile.CHRTYPE; i.devmajor = 1; i.devminor = 3; t.addfile(i)")
            }
        }
        lines.append("t.close()")
        try await TestImageFactory.python(lines.joined(separator: "\n"))
    }

    private static func pythonString(_ text: String) -> String {
        let escaped = text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "'", with: "\\'")
            .replacingOccurrences(of: "\n", with: "\\n")
        return "'\(escaped)'"
    }
}
