import COpenSSL
import Foundation
import SystemSupport

/// SHA-256 of a large file whose state is journaled every `segmentBytes`, so a hash that a
/// crash interrupts goes on from its last checkpoint instead of from the first byte.
///
/// A restored state is trusted only for the same file, unchanged: device, inode, size and
/// mtime (ns) as when the state was saved, all read from the open descriptor that is hashed.
/// Blocking: call from a ``BlockingWork`` thread.
struct ResumableSHA256 {
    let checkpointing: HashCheckpointing

    init(checkpoints: any StageCheckpoints, name: String, segmentBytes: UInt64) {
        checkpointing = HashCheckpointing(checkpoints: checkpoints, name: name, segmentBytes: segmentBytes)
    }

    /// The digest, and the byte it resumed at (nil when it started at the beginning).
    func digest(of url: URL, isCancelled: () -> Bool = { false }) throws -> (hex: String, resumedAt: UInt64?) {
        let path = url.path
        let file = try ReadableFile.opened(path, for: "hashing")
        let fd = file.descriptor
        defer { close(fd) }
        let identity = try HashCheckpoint.identity(of: fd, path: path)
        let size = file.size
        let segmentBytes = checkpointing.segmentBytes
        var context = SHA256_CTX()
        var position: UInt64 = 0
        var resumedAt: UInt64?
        if let restored = restore(identity: identity, size: size) {
            context = restored.context
            position = restored.offset
            resumedAt = restored.offset
        } else {
            SHA256_Init(&context)
        }
        _ = posix_fadvise(fd, off_t(position), 0, Int32(POSIX_FADV_SEQUENTIAL))
        let bufferSize = FileDigest.bufferSize
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferSize, alignment: 4096)
        defer { buffer.deallocate() }
        while position < size {
            if isCancelled() { throw CancellationError() }
            // Reads never cross a segment boundary, so a checkpoint falls exactly on one.
            let toBoundary = segmentBytes - position % segmentBytes
            let wanted = Int(min(UInt64(bufferSize), size - position, toBoundary))
            let count = SystemCall.retryingOnInterrupt { pread(fd, buffer.baseAddress, wanted, off_t(position)) }
            if count < 0 {
                throw StageError(.ioFailed, file: path, "read failed at byte \(position): \(String(cString: strerror(errno)))")
            }
            if count == 0 {
                throw StageError(.sourceChanged, file: path, "file ended at byte \(position) while hashing (it shrank while being read)")
            }
            SHA256_Update(&context, buffer.baseAddress, count)
            position += UInt64(count)
            if position % segmentBytes == 0 && position < size {
                try checkpointing.save(HashCheckpoint(file: identity, offset: position, context: context))
            }
        }
        var digest = [UInt8](repeating: 0, count: Int(SHA256_DIGEST_LENGTH))
        SHA256_Final(&digest, &context)
        return (FileDigest.hex(digest), resumedAt)
    }

    private func restore(identity: String, size: UInt64) -> (context: SHA256_CTX, offset: UInt64)? {
        guard let saved = checkpointing.load(identity: identity), saved.offset <= size,
              saved.offset % checkpointing.segmentBytes == 0, let context = saved.context,
              // The state must be the one of `offset` bytes.
              HashCheckpoint.bitsHashed(context) == saved.offset &* 8 else { return nil }
        return (context, saved.offset)
    }
}
