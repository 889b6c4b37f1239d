import COpenSSL
import Foundation
import Synchronization
import SystemSupport

#if canImport(Glibc)
import Glibc
#endif

/// Linux's `lseek` whences (`<unistd.h>` declares them only under `_GNU_SOURCE`, which
/// Swift's Glibc module does not set).
let seekData: Int32 = 3
let seekHole: Int32 = 4

/// A content digest of a file that costs what its data costs, not its size: a 1 TiB sparse
/// raw (`truncate -s 1T`) is hashed in the time its allocated bytes take to read.
///
/// Definition, `sparse-sha256` version 1 (`scripts/sparse-digest` computes it from a plain
/// read of the whole file, with nothing but Python's standard library):
///
///     SHA-256( for each 4096-byte block i of the file (the last one may be short),
///              in increasing i, whose bytes are not all zero:
///                  i as 8 bytes big-endian ‖ the block's bytes
///              then: the file's size in bytes as 8 bytes big-endian )
///
/// It depends on the content only: a hole and written zeros give the same digest, so the
/// same disk copied with `cp --sparse=never` or `rsync -S` is the same; any byte changed,
/// in data or in a hole, changes a block's presence or bytes; the size closes the stream,
/// so trailing zeros count. Holes are found with `lseek(SEEK_DATA/SEEK_HOLE)` and never
/// read; all-zero blocks inside allocated extents are read and skipped.
public enum SparseDigest {
    public static let blockSize = 4096

    /// The digest of `url` as lowercase hex.
    ///
    /// - Parameter isCancelled: polled between reads (a blocking thread cannot see its
    ///   task's cancellation); see ``SourceDigest/compute(_:label:checkpointing:)``.
    /// - Throws: `StageError(.ioFailed)` naming the file when it cannot be read,
    ///   `.sourceChanged` when it shrinks while read, `CancellationError` when cancelled.
    public static func sha256(of url: URL, isCancelled: @Sendable () -> Bool = { false }) throws -> String {
        try sha256(of: url, isCancelled: isCancelled, checkpointing: nil).hex
    }

    /// As above, saving the state each time the read passes a multiple of the segment size
    /// and going on from a saved state of the same file, unchanged; with the byte it
    /// resumed at (nil: from the first).
    static func sha256(of url: URL, isCancelled: @Sendable () -> Bool,
                       checkpointing: HashCheckpointing?) throws -> (hex: String, resumedAt: UInt64?) {
        let path = url.path
        let file = try OpenFile(path: path)
        defer { file.close() }
        let size = file.size
        let identity = try HashCheckpoint.identity(of: file.descriptor, path: path)
        var context = SHA256_CTX()
        var doneUpTo: UInt64 = 0   // every block below this was hashed or is a hole
        var resumedAt: UInt64?
        if let checkpointing, let restored = restore(checkpointing, identity: identity, size: size) {
            context = restored.context
            doneUpTo = restored.offset
            resumedAt = restored.offset
        } else {
            SHA256_Init(&context)
        }
        let segmentBytes = checkpointing?.segmentBytes ?? .max
        func boundary(after position: UInt64) -> UInt64 {
            let (next, overflow) = (position / segmentBytes &+ 1).multipliedReportingOverflow(by: segmentBytes)
            return overflow ? .max : next
        }
        var nextSave = boundary(after: doneUpTo)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: FileDigest.bufferSize, alignment: blockSize)
        defer { buffer.deallocate() }
        let zeros = UnsafeMutableRawBufferPointer.allocate(byteCount: blockSize, alignment: blockSize)
        defer { zeros.deallocate() }
        zeros.initializeMemory(as: UInt8.self, repeating: 0)
        let indexBytes = UnsafeMutableRawBufferPointer.allocate(byteCount: 8, alignment: 8)
        defer { indexBytes.deallocate() }
        guard let base = buffer.baseAddress, let zeroBase = zeros.baseAddress, let indexBase = indexBytes.baseAddress else {
            throw StageError(.ioFailed, file: path, "cannot allocate the hashing buffers")
        }

        for extent in try DataExtents(file: file, from: doneUpTo) {
            // Extents are block-aligned on every Linux filesystem; rounding keeps it right anyway.
            var position = max(doneUpTo, extent.lowerBound / UInt64(blockSize) * UInt64(blockSize))
            let end = min(size, roundUp(extent.upperBound))
            if end > position {
                _ = posix_fadvise(file.descriptor, off_t(position), off_t(end - position), Int32(POSIX_FADV_SEQUENTIAL))
            }
            var prefetchedTo = position
            while position < end {
                if isCancelled() { throw CancellationError() }
                let wanted = Int(min(UInt64(buffer.count), end - position))
                // As FileDigest: the disk reads the next megabytes while this buffer is hashed.
                let prefetchTo = min(end, position + FileDigest.prefetchBytes)
                if prefetchTo > prefetchedTo {
                    let from = max(prefetchedTo, position)
                    _ = posix_fadvise(file.descriptor, off_t(from), off_t(prefetchTo - from), Int32(POSIX_FADV_WILLNEED))
                    prefetchedTo = prefetchTo
                }
                let count = try file.read(into: buffer, count: wanted, at: position)
                // Plain pointer arithmetic: this loop runs 262,144 times per GiB.
                var offset = 0
                var index = position / UInt64(blockSize)
                while offset < count {
                    let length = min(blockSize, count - offset)
                    if memcmp(base + offset, zeroBase, length) != 0 {
                        indexBase.storeBytes(of: index.bigEndian, as: UInt64.self)
                        SHA256_Update(&context, indexBase, 8)
                        SHA256_Update(&context, base + offset, length)
                    }
                    offset += length
                    index += 1
                }
                position += UInt64(count)
                // Every read but the file's last is whole blocks, so `position` is a block
                // boundary and the state is that of every block below it.
                if let checkpointing, position >= nextSave, position < size {
                    try checkpointing.save(HashCheckpoint(file: identity, offset: position, context: context))
                    nextSave = boundary(after: position)
                }
            }
            doneUpTo = max(doneUpTo, end)
        }
        var total = size.bigEndian
        withUnsafeBytes(of: &total) { _ = SHA256_Update(&context, $0.baseAddress, 8) }
        var digest = [UInt8](repeating: 0, count: Int(SHA256_DIGEST_LENGTH))
        SHA256_Final(&digest, &context)
        return (FileDigest.hex(digest), resumedAt)
    }

    /// A saved state trusted for this file: a block boundary inside it, and a state that has
    /// taken in whole blocks with their indexes (8 + 4096 bytes each), no more of them than
    /// lie below the offset.
    private static func restore(_ checkpointing: HashCheckpointing, identity: String,
                                size: UInt64) -> (context: SHA256_CTX, offset: UInt64)? {
        guard let saved = checkpointing.load(identity: identity), saved.offset <= size,
              saved.offset % UInt64(blockSize) == 0, let context = saved.context else { return nil }
        let bitsPerBlock = UInt64(8 + blockSize) * 8
        let bits = HashCheckpoint.bitsHashed(context)
        guard bits % bitsPerBlock == 0, bits / bitsPerBlock <= saved.offset / UInt64(blockSize) else { return nil }
        return (context, saved.offset)
    }

    private static func roundUp(_ value: UInt64) -> UInt64 {
        let block = UInt64(blockSize)
        let (sum, overflow) = value.addingReportingOverflow(block - 1)
        return overflow ? value : sum / block * block
    }

    /// Whether the file has holes (SEEK_HOLE finds one before the end).
    public static func hasHoles(_ url: URL) throws -> Bool {
        let file = try OpenFile(path: url.path)
        defer { file.close() }
        guard file.size > 0 else { return false }
        let hole = lseek(file.descriptor, 0, seekHole)
        // No SEEK_HOLE support (EINVAL): the filesystem reports the whole file as data.
        return hole >= 0 && UInt64(hole) < file.size
    }
}

/// How a source's content is identified (metadata.json's `source.sparse_sha256`, and the
/// journal's key for finding duplicates): the sparse digest, for every source.
///
/// Why one digest for all, and this one: an identity must not depend on how the file is
/// allocated. A `cp`, an `rsync -S` or a download turns holes into written zeros or back,
/// and a plain SHA-256 for dense files with the sparse digest for the others gave the same
/// disk, copied, two identities (deduplication missed it: measured with the daemon test of
/// a copied vmdk). The sparse digest costs the same as SHA-256 on a dense file (every
/// block is read and hashed, plus 8 bytes each, and a zero check that stops at the first
/// non-zero byte) and only what the data costs on a sparse one. The price: `source.sha256`
/// is no longer written (`sha256sum` cannot check the new key; `scripts/sparse-digest` can).
public struct SourceDigest: Sendable, Equatable {
    /// Lowercase hex of ``SparseDigest``.
    public var sparseSHA256: String

    public init(sparseSHA256: String) {
        self.sparseSHA256 = sparseSHA256
    }

    /// What the journal keeps to find duplicates (its column takes 64 hex digits): the
    /// SHA-256 of the text `sparse-sha256:<hex>`, so it never equals the plain SHA-256
    /// earlier versions recorded (that would take a file whose bytes are that 78-byte
    /// text, and duplicates are only looked for among sources of the same size).
    public var identityKey: String {
        get throws { try Self.identityKey(sparseSHA256: sparseSHA256) }
    }

    static func identityKey(sparseSHA256: String) throws -> String {
        let context = try DigestContext(.sha256)
        context.update(Data("sparse-sha256:\(sparseSHA256)".utf8))
        return context.finalize()
    }

    /// The byte an interrupted digest went on from (nil: from the first); not part of the value.
    public var resumedAt: UInt64?

    public static func == (lhs: SourceDigest, rhs: SourceDigest) -> Bool { lhs.sparseSHA256 == rhs.sparseSHA256 }

    public static func of(_ url: URL, isCancelled: @escaping @Sendable () -> Bool = { false },
                          checkpointing: HashCheckpointing? = nil) throws -> SourceDigest {
        let result = try SparseDigest.sha256(of: url, isCancelled: isCancelled, checkpointing: checkpointing)
        var digest = SourceDigest(sparseSHA256: result.hex)
        digest.resumedAt = result.resumedAt
        return digest
    }

    /// As ``of(_:isCancelled:checkpointing:)`` on a thread of its own; cancelling the task
    /// stops the read at the next buffer (a task's cancellation is not visible from that thread).
    public static func compute(_ url: URL, label: String, checkpointing: HashCheckpointing? = nil) async throws -> SourceDigest {
        let flag = CancellationFlag()
        return try await withTaskCancellationHandler {
            try await BlockingWork.run(label) { try SourceDigest.of(url, isCancelled: { flag.isSet }, checkpointing: checkpointing) }
        } onCancel: {
            flag.set()
        }
    }
}

/// Set from a task's cancellation handler, read by blocking work on another thread.
public final class CancellationFlag: Sendable {
    private let value = Atomic<Bool>(false)
    public init() {}
    public var isSet: Bool { value.load(ordering: .relaxed) }
    public func set() { value.store(true, ordering: .relaxed) }
}

/// memcmp against a zeroed buffer: libc's vectorised compare, whatever the build mode.
enum ZeroBlock {
    static func isZero(_ block: UnsafeRawBufferPointer, zeros: UnsafeRawBufferPointer) -> Bool {
        guard let base = block.baseAddress, let zeroBase = zeros.baseAddress, block.count > 0 else { return true }
        precondition(block.count <= zeros.count, "zero buffer shorter than the block")
        return memcmp(base, zeroBase, block.count) == 0
    }
}

/// The byte ranges of a file that hold data, by `lseek(SEEK_DATA/SEEK_HOLE)`; the whole
/// file when the filesystem cannot tell.
struct DataExtents: Sequence, IteratorProtocol {
    private let file: OpenFile
    private var position: UInt64 = 0

    /// Extents at or past `start` (one that holds `start` begins before it).
    init(file: OpenFile, from start: UInt64 = 0) throws {
        self.file = file
        position = start
    }

    mutating func next() -> Range<UInt64>? {
        guard position < file.size else { return nil }
        let data = lseek(file.descriptor, off_t(position), seekData)
        if data < 0 {
            // ENXIO: only a hole up to the end. Anything else (EINVAL: no support): read all.
            if errno == ENXIO { return nil }
            defer { position = file.size }
            return position..<file.size
        }
        let start = UInt64(data)
        guard start < file.size else { return nil }
        let hole = lseek(file.descriptor, data, seekHole)
        let end = hole < 0 ? file.size : Swift.min(file.size, Swift.max(start, UInt64(hole)))
        position = end
        return start < end ? start..<end : nil
    }
}

/// A file open for reading, with its size at opening.
struct OpenFile {
    let path: String
    let descriptor: Int32
    let size: UInt64

    init(path: String) throws {
        let file = try ReadableFile.opened(path, for: "hashing")
        self.path = path
        descriptor = file.descriptor
        size = file.size
    }

    func close() { Glibc.close(descriptor) }

    /// Reads exactly `count` bytes at `offset` (fewer only at a shrunken end, which throws).
    func read(into buffer: UnsafeMutableRawBufferPointer, count: Int, at offset: UInt64) throws -> Int {
        var done = 0
        while done < count {
            let got = SystemCall.retryingOnInterrupt {
                pread(descriptor, buffer.baseAddress.map { $0 + done }, count - done, off_t(offset) + off_t(done))
            }
            if got < 0 {
                throw StageError(.ioFailed, file: path, "read failed at byte \(offset + UInt64(done)): \(String(cString: strerror(errno)))")
            }
            if got == 0 {
                throw StageError(.sourceChanged, file: path,
                                 "file ended at byte \(offset + UInt64(done)) while hashing (it shrank while being read)")
            }
            done += got
        }
        return done
    }
}
