import Foundation

/// What the register stage defined: written as `libvirt.json` into the published directory
/// and recorded in the journal.
public struct LibvirtRegistration: Codable, Sendable, Equatable {
    public static let fileName = "libvirt.json"

    public struct Volume: Codable, Sendable, Equatable {
        public var pool: String
        public var name: String
        public var path: String
        /// The published disk file it was imported from.
        public var importedFrom: String
    }

    public var uri: String
    public var domain: String
    public var uuid: String
    public var autostart: Bool
    public var network: String?
    public var bridge: String?
    /// Empty when the domain uses the published disk files directly.
    public var volumes: [Volume]
}

/// The UUID a job's domain is defined with. It is derived, not random, from facts the
/// journal keeps for the job (its id, its published directory and when publish started),
/// so a rerun after a crash between `virsh define` and the journal commit computes the
/// same UUID and recognises the domain as its own; a later conversion of the same VM
/// publishes at another time and gets another UUID.
public enum DomainIdentity {
    public static func uuid(jobID: Int64, publishedDirectory: String, publishStartedAt: String?) throws -> String {
        let hasher = try SHA256Context()
        hasher.update(Data("hyper2kvm libvirt domain\0\(jobID)\0\(publishedDirectory)\0\(publishStartedAt ?? "")".utf8))
        var bytes = Array(hexBytes(hasher.finalize()).prefix(16))
        // RFC 9562 version 8 (application-defined), variant 10.
        bytes[6] = (bytes[6] & 0x0F) | 0x80
        bytes[8] = (bytes[8] & 0x3F) | 0x80
        let hex = FileDigest.hex(bytes)
        let parts = [0..<8, 8..<12, 12..<16, 16..<20, 20..<32].map { range in
            String(hex[hex.index(hex.startIndex, offsetBy: range.lowerBound)..<hex.index(hex.startIndex, offsetBy: range.upperBound)])
        }
        return parts.joined(separator: "-")
    }

    private static func hexBytes(_ hex: String) -> [UInt8] {
        var bytes: [UInt8] = []
        var index = hex.startIndex
        while let next = hex.index(index, offsetBy: 2, limitedBy: hex.endIndex) {
            bytes.append(UInt8(hex[index..<next], radix: 16) ?? 0)
            if next == hex.endIndex { break }
            index = next
        }
        return bytes
    }
}

/// Names of the pool volumes a job imports. The UUID prefix makes them this job's by
/// construction: a volume of that name left by an interrupted attempt can be replaced
/// without asking, and a volume of another VM is never touched.
public enum VolumeNaming {
    public static func name(forPublishedFile fileName: String, uuid: String) -> String {
        let url = URL(fileURLWithPath: fileName)
        let stem = sanitized(url.deletingPathExtension().lastPathComponent)
        let suffix = url.pathExtension.isEmpty ? "" : "." + sanitized(url.pathExtension)
        return "\(stem)-\(uuid.prefix(8))\(suffix)"
    }

    /// Letters, digits, `.`, `_`, `+` and `-`: safe in every pool type and in `vol-list` output.
    static func sanitized(_ text: String) -> String {
        let kept = String(String.UnicodeScalarView(text.unicodeScalars.map { scalar in
            (scalar.isASCII && (CharacterSet.alphanumerics.contains(scalar) || "._+-".unicodeScalars.contains(scalar))) ? scalar : "_"
        }))
        return kept.isEmpty ? "disk" : kept
    }
}

extension ConversionOptions {
    /// Why the NIC settings contradict each other, or nil: a bridge replaces the network,
    /// so a bridge together with a network other than the default is a mistake.
    public var libvirtNetworkConflict: String? {
        guard let bridge = libvirtBridge, libvirtNetwork != "default" else { return nil }
        return "libvirt_bridge '\(bridge)' and libvirt_network '\(libvirtNetwork)' are mutually exclusive: "
            + "the NICs join either a host bridge or a libvirt network"
    }
}
