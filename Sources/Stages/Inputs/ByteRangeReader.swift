import Foundation
import SystemSupport

#if canImport(Glibc)
import Glibc
#endif

/// Reads bytes of one file, or of one byte range of it (a member inside an archive),
/// with `pread`, refusing to read outside the range.
///
/// Every reader of untrusted layouts (magic bytes, VMDK grain tables, tar headers) goes
/// through this so that a lying header cannot make us read past what it may see.
final class ByteRangeReader {
    /// The file's name in errors (a pinned file is opened as /proc/self/fd/N but named as found).
    var path: String
    /// Where the range starts in the file.
    let base: UInt64
    /// Bytes visible through this reader.
    let size: UInt64
    private let fd: Int32

    /// Opens `path` read-only. `length` nil means "to the end of the file".
    init(path: String, offset: UInt64 = 0, length: UInt64? = nil) throws {
        let file = try ReadableFile.opened(path)
        let fd = file.descriptor
        let fileSize = file.size
        let visible = length ?? (fileSize >= offset ? fileSize - offset : 0)
        guard offset <= fileSize, visible <= fileSize - offset else {
            close(fd)
            throw StageError(.badInput, file: path,
                             "byte range \(offset)+\(visible) runs past the end of the file (\(fileSize) bytes): truncated")
        }
        self.path = path
        self.base = offset
        self.size = visible
        self.fd = fd
    }

    deinit {
        close(fd)
    }

    /// Up to `count` bytes at `offset` (relative to the range); fewer only at the range's end.
    func read(at offset: UInt64, count: Int) throws -> Data {
        guard offset < size, count > 0 else { return Data() }
        let wanted = Int(min(UInt64(count), size - offset))
        var data = Data(count: wanted)
        var done = 0
        try data.withUnsafeMutableBytes { buffer in
            guard let start = buffer.baseAddress else { return }
            while done < wanted {
                let got = SystemCall.retryingOnInterrupt { pread(fd, start + done, wanted - done, off_t(base + offset + UInt64(done))) }
                if got < 0 {
                    throw StageError(.ioFailed, file: path,
                                     "read failed at byte \(base + offset + UInt64(done)): \(String(cString: strerror(errno)))")
                }
                if got == 0 { break }
                done += got
            }
        }
        return done == wanted ? data : data.prefix(done)
    }

    /// Exactly `count` bytes at `offset`, or a `.badInput` error saying the data is cut short.
    func readExactly(at offset: UInt64, count: Int, what: String) throws -> Data {
        let data = try read(at: offset, count: count)
        guard data.count == count else {
            throw StageError(.badInput, file: path,
                             "\(what) at byte \(offset) needs \(count) bytes but the data ends at byte \(size): truncated")
        }
        return data
    }
}

extension Data {
    /// Little-endian unsigned integer at `offset`; the caller guarantees the bytes exist.
    func littleEndian<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        var value: T = 0
        for index in 0..<MemoryLayout<T>.size {
            value |= T(self[self.startIndex + offset + index]) << (8 * index)
        }
        return value
    }

    /// Big-endian unsigned integer at `offset`; the caller guarantees the bytes exist.
    func bigEndian<T: FixedWidthInteger>(_: T.Type, at offset: Int) -> T {
        var value: T = 0
        for index in 0..<MemoryLayout<T>.size {
            value = (value << 8) | T(self[self.startIndex + offset + index])
        }
        return value
    }

    func hasPrefix(_ bytes: [UInt8], at offset: Int = 0) -> Bool {
        guard count >= offset + bytes.count else { return false }
        return self[(startIndex + offset)..<(startIndex + offset + bytes.count)].elementsEqual(bytes)
    }
}
