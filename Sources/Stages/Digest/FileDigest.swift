import COpenSSL
import Foundation
import SystemSupport

#if canImport(Glibc)
import Glibc
#endif

/// The digests the pipeline computes: SHA-256 for artifacts (sources are identified by
/// `SparseDigest`, built on SHA-256), SHA-1 and SHA-512 because OVA manifests (older VMware
/// tools, VirtualBox) use them.
public enum DigestAlgorithm: String, Sendable, Codable, CaseIterable {
    case sha256, sha1, sha512

    /// Length of the lowercase hex digest.
    public var hexLength: Int {
        switch self {
        case .sha256: 64
        case .sha1: 40
        case .sha512: 128
        }
    }

    fileprivate var evpMessageDigest: OpaquePointer? {
        switch self {
        case .sha256: EVP_sha256()
        case .sha1: EVP_sha1()
        case .sha512: EVP_sha512()
        }
    }
}

/// An incremental digest over OpenSSL EVP. Owns its `EVP_MD_CTX` and frees it in `deinit`.
///
/// Not `Sendable`: one context is fed by one task at a time.
public final class DigestContext {
    public let algorithm: DigestAlgorithm
    private let context: OpaquePointer
    private var finished = false

    public init(_ algorithm: DigestAlgorithm) throws {
        guard let context = EVP_MD_CTX_new() else {
            throw StageError(.ioFailed, "\(algorithm.rawValue): EVP_MD_CTX_new failed (out of memory)")
        }
        guard EVP_DigestInit_ex(context, algorithm.evpMessageDigest, nil) == 1 else {
            EVP_MD_CTX_free(context)
            throw StageError(.ioFailed, "\(algorithm.rawValue): EVP_DigestInit_ex failed")
        }
        self.algorithm = algorithm
        self.context = context
    }

    deinit {
        EVP_MD_CTX_free(context)
    }

    public func update(_ bytes: UnsafeRawBufferPointer) {
        precondition(!finished, "DigestContext.update after finalize")
        guard let base = bytes.baseAddress, bytes.count > 0 else { return }
        // EVP_DigestUpdate only fails on a misused context, which the precondition rules out.
        _ = EVP_DigestUpdate(context, base, bytes.count)
    }

    public func update(_ data: Data) {
        data.withUnsafeBytes { update($0) }
    }

    /// The digest as lowercase hex. The context cannot be used afterwards.
    public func finalize() -> String {
        precondition(!finished, "DigestContext.finalize called twice")
        finished = true
        var digest = [UInt8](repeating: 0, count: Int(EVP_MAX_MD_SIZE))
        var length: UInt32 = 0
        _ = digest.withUnsafeMutableBufferPointer { EVP_DigestFinal_ex(context, $0.baseAddress, &length) }
        return FileDigest.hex(digest.prefix(Int(length)))
    }
}

/// Incremental SHA-256, for callers that see the bytes go by (a copy, a download).
public final class SHA256Context {
    private let context: DigestContext

    public init() throws {
        context = try DigestContext(.sha256)
    }

    public func update(_ bytes: UnsafeRawBufferPointer) { context.update(bytes) }
    public func update(_ data: Data) { context.update(data) }
    /// Lowercase hex; the context cannot be used afterwards.
    public func finalize() -> String { context.finalize() }
}

/// Streaming file digests (SHA-256, SHA-1) through OpenSSL, reading with `pread` while the
/// disk is asked to read ahead.
///
/// Calls block the calling thread for as long as the read takes (seconds per GiB): call
/// from a stage's own task, not from latency-sensitive code.
public enum FileDigest {
    /// 256 KiB: the copy out of the page cache stays in L2 for the hash to read (8 MiB
    /// buffers went through memory and cost twice the system time; measured in
    /// BENCHMARKS.md), and 4,096 reads per GiB are nothing next to the hashing.
    public static let bufferSize = 256 << 10
    /// How far ahead of the hash the disk is asked to read (see `hash`).
    static let prefetchBytes: UInt64 = 8 << 20

    public static func sha256(of url: URL) throws -> String {
        try hash(.sha256, of: url)
    }

    /// Hashes `length` bytes of `url` starting at `offset` (to end of file when `length` is nil).
    ///
    /// - Throws: `StageError(.ioFailed)` naming the file when it cannot be opened or read,
    ///   or when it ends before `offset + length` (a truncated archive member, for instance).
    /// `bufferSize` is for benchmarks comparing read sizes; callers leave the default.
    /// `isCancelled` is polled per buffer: on a thread of ``BlockingWork`` there is no task,
    /// so `Task.isCancelled` is always false there; pass a ``CancellationFlag``'s reading.
    public static func hash(_ algorithm: DigestAlgorithm, of url: URL, offset: UInt64 = 0,
                            length: UInt64? = nil, bufferSize: Int = FileDigest.bufferSize,
                            isCancelled: () -> Bool = { Task.isCancelled }) throws -> String {
        let path = url.path
        let file = try ReadableFile.opened(path, for: "hashing")
        let fd = file.descriptor
        defer { close(fd) }
        let fileSize = file.size
        guard offset <= fileSize else {
            throw StageError(.ioFailed, file: path, "range starts at byte \(offset), past the end of the file (\(fileSize) bytes)")
        }
        let wanted = length ?? (fileSize - offset)
        guard wanted <= fileSize - offset else {
            throw StageError(.ioFailed, file: path,
                             "range \(offset)+\(wanted) runs past the end of the file (\(fileSize) bytes)")
        }
        // The kernel doubles its read-ahead window for sequential access.
        _ = posix_fadvise(fd, off_t(offset), off_t(wanted), Int32(POSIX_FADV_SEQUENTIAL))

        let context = try DigestContext(algorithm)
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: bufferSize, alignment: 4096)
        defer { buffer.deallocate() }
        var position = offset
        var remaining = wanted
        let end = offset + wanted
        var prefetchedTo = offset
        while remaining > 0 {
            // Hashing hundreds of gigabytes must not hold up a shutdown (checked per buffer).
            if isCancelled() { throw CancellationError() }
            let chunk = Int(min(UInt64(bufferSize), remaining))
            let count = SystemCall.retryingOnInterrupt { pread(fd, buffer.baseAddress, chunk, off_t(position)) }
            if count < 0 {
                throw StageError(.ioFailed, file: path, "read failed at byte \(position): \(String(cString: strerror(errno)))")
            }
            if count == 0 {
                throw StageError(.sourceChanged, file: path,
                                 "file ended at byte \(position) while hashing (it shrank while being read)")
            }
            position += UInt64(count)
            remaining -= UInt64(count)
            // Ask the disk for the next megabytes while this buffer is hashed, whatever
            // read-ahead the device is set to (each byte is asked for once): measured from a
            // cold cache, the hash then never waits on a read.
            let wantedTo = min(end, position + Self.prefetchBytes)
            if wantedTo > prefetchedTo {
                let from = max(prefetchedTo, position)
                _ = posix_fadvise(fd, off_t(from), off_t(wantedTo - from), Int32(POSIX_FADV_WILLNEED))
                prefetchedTo = wantedTo
            }
            context.update(UnsafeRawBufferPointer(rebasing: buffer[0..<count]))
        }
        return context.finalize()
    }

    /// Lowercase hex of `bytes`.
    public static func hex<Bytes: Sequence>(_ bytes: Bytes) -> String where Bytes.Element == UInt8 {
        let digits: [UInt8] = Array("0123456789abcdef".utf8)
        var out: [UInt8] = []
        out.reserveCapacity(bytes.underestimatedCount * 2)
        for byte in bytes {
            out.append(digits[Int(byte >> 4)])
            out.append(digits[Int(byte & 0x0f)])
        }
        return String(decoding: out, as: UTF8.self)
    }
}
