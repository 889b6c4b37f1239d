import COpenSSL
import Foundation
import SystemSupport

/// A SHA-256 state kept in the journal between runs of a stage, so a hash that a crash
/// interrupts goes on from there: the state after `offset` bytes of one file, and which
/// file that was.
///
/// A state is trusted only for the same file, unchanged: device, inode, size and mtime (ns)
/// read from the descriptor being hashed must equal those saved with it. Each hash also
/// checks the state against the bytes it claims to cover (``context``'s caller).
struct HashCheckpoint: Codable, Equatable {
    /// `dev:inode size mtime_ns` of the file hashed.
    var file: String
    /// Bytes of the file covered so far.
    var offset: UInt64
    /// The `SHA256_CTX` after `offset` bytes, base64.
    var state: String

    init(file: String, offset: UInt64, context: SHA256_CTX) {
        self.file = file
        self.offset = offset
        state = withUnsafeBytes(of: context) { Data($0) }.base64EncodedString()
    }

    /// The saved state, or nil when it is not one.
    var context: SHA256_CTX? {
        guard let data = Data(base64Encoded: state), data.count == MemoryLayout<SHA256_CTX>.size else { return nil }
        var context = SHA256_CTX()
        withUnsafeMutableBytes(of: &context) { $0.copyBytes(from: data) }
        return context
    }

    /// The bits a state has taken in (SHA-256 counts them).
    static func bitsHashed(_ context: SHA256_CTX) -> UInt64 {
        UInt64(context.Nh) << 32 | UInt64(context.Nl)
    }

    /// The identity line of the open file `descriptor` (``file``).
    static func identity(of descriptor: Int32, path: String) throws -> String {
        var info = stat()
        guard fstat(descriptor, &info) == 0 else {
            throw StageError(.ioFailed, file: path, "cannot stat: \(String(cString: strerror(errno)))")
        }
        return "\(info.st_dev):\(info.st_ino) \(info.st_size) \(info.st_mtim.tv_sec).\(info.st_mtim.tv_nsec)"
    }
}

/// Where and how often a hash saves its ``HashCheckpoint``: under `name` in `checkpoints`,
/// each time it passes a multiple of `segmentBytes`.
public struct HashCheckpointing: Sendable {
    let checkpoints: any StageCheckpoints
    let name: String
    let segmentBytes: UInt64

    public init(checkpoints: any StageCheckpoints, name: String, segmentBytes: UInt64) {
        self.checkpoints = checkpoints
        self.name = name
        self.segmentBytes = max(1, segmentBytes)
    }

    /// The saved checkpoint for the file `identity`, if there is one for it.
    func load(identity: String) -> HashCheckpoint? {
        guard let text = try? checkpoints.load(name),
              let saved = try? JSONDecoder().decode(HashCheckpoint.self, from: Data(text.utf8)),
              saved.file == identity else { return nil }
        return saved
    }

    func save(_ checkpoint: HashCheckpoint) throws {
        let data = try JSONEncoder().encode(checkpoint)
        try checkpoints.save(name, String(decoding: data, as: UTF8.self))
    }
}
