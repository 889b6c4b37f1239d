import Foundation
import Stages
import SystemSupport

/// Names of the files the daemon writes beside a queue file.
enum QueueFileName {
    /// The name of a file that accompanies `name` (`<name><suffix>`, e.g. its `.error.json`),
    /// or, when that exceeds NAME_MAX, the longest prefix of `name` that fits with
    /// `~<16 hex digits of the name's SHA-256>` before the suffix: still sorted beside the
    /// file, and unique per name.
    static func companionName(of name: String, suffix: String) -> String {
        let maximumNameBytes = 255
        guard name.utf8.count + suffix.utf8.count > maximumNameBytes else { return name + suffix }
        let digest = String(sha256Hex(name).prefix(16))
        let budget = maximumNameBytes - suffix.utf8.count - 1 - digest.utf8.count
        return PathText.prefix(of: name, fittingBytes: budget) + "~" + digest + suffix
    }

    static func sha256Hex(_ text: String) -> String {
        guard let context = try? SHA256Context() else {
            // OpenSSL unavailable: FNV-1a still tells names apart.
            var hash: UInt64 = 0xcbf2_9ce4_8422_2325
            for byte in text.utf8 { hash = (hash ^ UInt64(byte)) &* 0x100_0000_01b3 }
            let digits = String(hash, radix: 16)
            return String(repeating: "0", count: 16 - digits.count) + digits
        }
        context.update(Data(text.utf8))
        return context.finalize()
    }
}
