import Foundation
import SystemSupport

/// Reads an AMI export: a tar (read in place) or a gzip-compressed tar (decompressed as a
/// stream into the job's scratch directory, bounded by the free space and a size limit,
/// then read in place), whose disk payload is the largest member that is a disk image.
///
/// What `.ami` means here (README, "Input formats"): AWS itself never writes a file called
/// `.ami`. `aws ec2 export-image` writes one disk image object, `export-ami-<id>.vmdk`
/// (streamOptimized), `.vhd` (dynamic) or `.raw`, converted under its own extension, and
/// `aws ec2 create-instance-export-task` with `ContainerFormat=ova` writes an OVA. A `.ami` is
/// what people and scripts make of such exports, and what the Python tool accepted: a tar or
/// tar.gz holding the disk image (beside metadata such as a JSON description). So:
/// - a tar or tar.gz: the largest disk member is the VM's disk; other disk members are named
///   in the facts, not converted;
/// - one that holds an `.ovf` (an instance export packed as OVA, then renamed) is read as that
///   OVA, with the VM's settings from its descriptor;
/// - a bare VMDK, VHD, VHDX or qcow2 named `.ami` is taken as that image (`InputProbe`).
public enum AMIReader {
    /// Name of the decompressed archive inside the scratch directory.
    static let decompressedName = "ami-payload.tar"

    /// Bounds on decompressing a gzip'd AMI, whose compressed size says nothing of what it expands to.
    public struct DecompressionLimits: Sendable {
        /// Logical bytes decompressed at most, whatever is free: time is bounded too
        /// (zeros cost no space, see ``BoundedGunzip``). 4 TiB: EC2 volumes are at most
        /// 16 TiB, but an export that large would not arrive as one gzip'd tar.
        public var maximumBytes: UInt64
        /// Left free on the scratch filesystem (the convert stage and the journal follow).
        public var reserveBytes: UInt64

        public init(maximumBytes: UInt64 = 4 << 40, reserveBytes: UInt64 = SpaceCheck.reserveBytes) {
            self.maximumBytes = maximumBytes
            self.reserveBytes = reserveBytes
        }
    }

    public static func read(_ ami: URL, scratchDirectory: URL,
                            limits: DecompressionLimits = DecompressionLimits()) async throws -> SourceReading {
        let path = ami.path
        let head = try ByteRangeReader(path: path).read(at: 0, count: 2)
        var facts: [String] = []
        var archive = ami
        if head.hasPrefix([0x1f, 0x8b]) {
            archive = try await decompress(ami, into: scratchDirectory, limits: limits)
            facts.append("AMI is gzip-compressed: decompressed to \(archive.lastPathComponent) in the job directory")
        }

        let members = try TarArchiveReader(url: archive).members().filter { $0.kind == .regularFile && $0.size > 0 }
        if members.contains(where: { $0.name.lowercased().hasSuffix(".ovf") }) {
            var reading = try OVAReader.read(archive)
            reading.facts.insert("the AMI archive holds an OVF descriptor (an EC2 instance export packed as OVA): read as an OVA", at: 0)
            reading.facts.insert(contentsOf: facts, at: 0)
            return reading
        }
        var images: [(member: TarMember, format: String)] = []
        for member in members {
            let reader = try ByteRangeReader(path: archive.path, offset: member.dataOffset, length: member.size)
            guard let format = try payloadFormat(reader, name: member.name) else { continue }
            images.append((member, format))
        }
        // The largest; the first in the archive among equals.
        guard let payload = images.enumerated().max(by: { ($0.element.member.size, $1.offset) < ($1.element.member.size, $0.offset) })?.element else {
            throw StageError(.badInput, file: path,
                             "AMI archive holds no disk image (no raw, qcow2, vmdk, vhd or vhdx member among \(members.count) files)")
        }
        facts.append("AMI disk payload: member \(payload.member.name) (\(payload.format), \(payload.member.size) bytes)")
        let others = images.filter { $0.member.name != payload.member.name }
        if !others.isEmpty {
            facts.append("other disk images in the AMI archive, not converted (only the largest is the VM's disk): "
                             + others.prefix(8).map { "\($0.member.name) (\($0.member.size) bytes)" }.joined(separator: ", ")
                             + (others.count > 8 ? " and \(others.count - 8) more" : ""))
        }
        let locator = DiskLocator(path: archive.path, format: payload.format,
                                  offset: payload.member.dataOffset, length: payload.member.size)
        let name = ami.deletingPathExtension().lastPathComponent
        let disk = SourceDisk(id: "disk0", locator: locator, bootOrderHint: 0)
        return SourceReading(description: VMDescription(name: name, disks: [disk], origin: "ami"), facts: facts)
    }

    /// A member is a payload when its magic says disk image, or when it is named like a raw
    /// disk and sized in whole sectors (raw has no magic).
    private static func payloadFormat(_ reader: ByteRangeReader, name: String) throws -> String? {
        switch try InputProbe.signature(of: reader) {
        case .sparseVMDK: return "vmdk"
        case .qcow2: return "qcow2"
        case .vhdx: return "vhdx"
        case .vhd: return "vpc"
        case .unknown:
            let lowered = name.lowercased()
            let rawNamed = [".raw", ".img", ".bin", ".disk"].contains { lowered.hasSuffix($0) }
            return rawNamed && reader.size % 512 == 0 ? "raw" : nil
        default: return nil
        }
    }

    /// Decompresses into `<scratch>/ami-payload.tar` (through a `.partial` name, so a crash
    /// never leaves a half archive under the final name), bounded by `limits` and the free
    /// space: see ``BoundedGunzip``.
    private static func decompress(_ ami: URL, into scratchDirectory: URL, limits: DecompressionLimits) async throws -> URL {
        try FileManager.default.createDirectory(at: scratchDirectory, withIntermediateDirectories: true)
        let target = scratchDirectory.appendingPathComponent(decompressedName)
        let partial = scratchDirectory.appendingPathComponent(decompressedName + ".partial")
        try? FileManager.default.removeItem(at: partial)
        try? FileManager.default.removeItem(at: target)
        let what = "decompressing the AMI archive"

        // The gzip trailer's ISIZE (size mod 2^32, written by whoever made the file) gives
        // an early, cheap figure to plan for; the byte counters below never rely on it.
        let declared = try declaredSize(of: ami)
        guard let space = FileSystemSpace.of(scratchDirectory.path) else {
            throw StageError(.ioFailed, file: scratchDirectory.path, "cannot read the free space (statvfs): \(String(cString: strerror(errno)))")
        }
        // What conversions running meanwhile are about to write is not free for us.
        let held = SpaceReservations.shared.heldBytes(at: scratchDirectory.path)
        try SpaceCheck.require(SpaceNeed(bytes: declared.saturatingAdd(limits.reserveBytes), directory: scratchDirectory.path),
                               on: space, held: held, for: what + " (its gzip trailer declares \(ByteCount(declared)))", file: ami.path)
        let kept = limits.reserveBytes.saturatingAdd(held)
        let spaceCap = space.available > kept ? space.available - kept : 0
        let outcome = try await BoundedGunzip(source: ami, maximumBytes: limits.maximumBytes, allocationCap: spaceCap).run(into: partial)
        switch outcome {
        case .complete, .archiveEnded:
            break
        case .tooLarge(let written):
            try? FileManager.default.removeItem(at: partial)
            throw StageError(.badInput, file: ami.path,
                             "the gzip-compressed AMI decompresses to more than \(ByteCount(limits.maximumBytes)), the limit for "
                                 + "a decompressed AMI (stopped after \(ByteCount(written)); nothing was kept)")
        case .outOfSpace(let allocated):
            try? FileManager.default.removeItem(at: partial)
            // At least this much is needed; more may be once it is there (the true size is
            // only known at the end of the stream).
            let atLeast = max(allocated.saturatingAdd(UInt64(BoundedGunzip.blockSize)), declared)
            let need = SpaceNeed(bytes: atLeast.saturatingAdd(limits.reserveBytes), directory: scratchDirectory.path)
            try SpaceCheck.require(need, for: what + " (more than \(ByteCount(allocated)) of data)", file: ami.path)
            var error = StageError(.noSpace, file: ami.path, "\(what) needs more than \(ByteCount(allocated)) in \(scratchDirectory.path)")
            error.spaceNeed = need
            throw error
        case .failed(let status, let reason):
            try? FileManager.default.removeItem(at: partial)
            throw StageError(.badInput, file: ami.path, "cannot decompress the AMI archive: \(reason.isEmpty ? "gzip exit \(status)" : reason)")
        }
        try FileManager.default.moveItem(at: partial, to: target)
        return target
    }

    /// The gzip trailer's ISIZE: the uncompressed size of the last member, mod 2^32.
    private static func declaredSize(of gzip: URL) throws -> UInt64 {
        let reader = try ByteRangeReader(path: gzip.path)
        guard reader.size >= 18 else {
            throw StageError(.badInput, file: gzip.path, "gzip file of \(reader.size) bytes is shorter than a gzip header and trailer")
        }
        let trailer = try reader.read(at: reader.size - 4, count: 4)
        return trailer.reversed().reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
    }
}

/// `gzip -dc` streamed through this process into a file, with two counters.
///
/// Chosen over parsing the tar as it streams: the archive is then read in place by the one
/// tar reader already hardened against hostile archives, and the counters bound what any
/// stream can cost. All-zero 64 KiB blocks become holes (a raw disk is mostly zeros, and a
/// bomb of zeros then costs no space); `allocationCap` bounds the bytes really written,
/// `maximumBytes` the logical size (the time spent). Past either, the pipe is closed, gzip
/// dies of SIGPIPE on its next write, and nothing beyond the cap was written.
struct BoundedGunzip: Sendable {
    enum Outcome: Sendable, Equatable {
        case complete(logical: UInt64, allocated: UInt64)
        /// The tar's end-of-archive marker was written: what follows it is never read (gzip is
        /// stopped), so trailing members of zeros cannot make the stream run for hours.
        case archiveEnded(logical: UInt64, allocated: UInt64)
        /// The stream went past `maximumBytes` (logical bytes decompressed so far).
        case tooLarge(logical: UInt64)
        /// Writing the next block would pass `allocationCap` (bytes written so far).
        case outOfSpace(allocated: UInt64)
        /// gzip failed on its own (corrupt or truncated stream).
        case failed(status: Int32, stderr: String)
    }

    let source: URL
    let maximumBytes: UInt64
    let allocationCap: UInt64
    static let blockSize = 64 << 10
    static let bufferSize = 1 << 20

    func run(into target: URL) async throws -> Outcome {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        // Default signal handling, so gzip dies of SIGPIPE when the pipe is closed (see ExternalCommand).
        process.arguments = ["--default-signal", "gzip", "-dc", "--", source.path]
        let outPipe = Pipe(), errPipe = Pipe()
        process.standardOutput = outPipe
        process.standardError = errPipe
        process.standardInput = FileHandle.nullDevice
        let outReader = outPipe.fileHandleForReading, errReader = errPipe.fileHandleForReading
        // The copier opens and closes the output itself: no descriptor outlives its thread.
        let copier = Copier(maximumBytes: maximumBytes, allocationCap: allocationCap, path: target.path)
        async let copied = BlockingWork.run("h2k-gunzip") { try copier.copy(from: outReader) }
        async let stderr = BlockingWork.run("h2k-gunzip-err") { Copier.readText(errReader, limit: 4096) }
        defer {
            process.standardOutput = nil
            process.standardError = nil
            process.standardInput = nil
            process.terminationHandler = nil
        }
        let status = try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Int32, Error>) in
                process.terminationHandler = { continuation.resume(returning: $0.terminationStatus) }
                do {
                    try process.run()
                } catch {
                    process.terminationHandler = nil
                    try? outPipe.fileHandleForWriting.close()
                    try? errPipe.fileHandleForWriting.close()
                    continuation.resume(throwing: StageError(.toolFailed, file: source.path, "cannot start gzip: \(error)"))
                }
            }
        } onCancel: {
            if process.isRunning { process.terminate() }
        }
        let outcome = try await copied
        let reason = await (try? stderr) ?? ""
        if Task.isCancelled { throw CancellationError() }
        // Stopped at the archive's end on purpose: gzip's SIGPIPE is ours, not a failure.
        if case .archiveEnded = outcome { return outcome }
        guard case .complete = outcome else { return outcome }
        return status == 0 ? outcome : .failed(status: status, stderr: reason.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// The copy loop, on a thread of its own.
    struct Copier: Sendable {
        let maximumBytes: UInt64
        let allocationCap: UInt64
        let path: String

        func copy(from pipe: FileHandle) throws -> Outcome {
            // Closing the pipe is what stops gzip (SIGPIPE), on every way out.
            defer { try? pipe.close() }
            // Read back too: the tar headers are followed in what was written (TarStreamEnd).
            let output = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
            guard output >= 0 else {
                throw StageError(.ioFailed, file: path, "cannot create: \(String(cString: strerror(errno)))")
            }
            defer { close(output) }
            let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: BoundedGunzip.bufferSize, alignment: 4096)
            defer { buffer.deallocate() }
            let zeros = UnsafeMutableRawBufferPointer.allocate(byteCount: BoundedGunzip.blockSize, alignment: 4096)
            defer { zeros.deallocate() }
            zeros.initializeMemory(as: UInt8.self, repeating: 0)
            var logical: UInt64 = 0
            var allocated: UInt64 = 0
            var archiveEnd = TarStreamEnd()
            while true {
                if let end = archiveEnd.follow(output, written: logical) {
                    guard ftruncate(output, off_t(end)) == 0 else {
                        throw StageError(.ioFailed, file: path, "cannot set the length to \(end): \(String(cString: strerror(errno)))")
                    }
                    return .archiveEnded(logical: end, allocated: allocated)
                }
                let filled = try fill(buffer, from: pipe.fileDescriptor)
                if filled == 0 { break }
                var start = 0
                while start < filled {
                    let end = min(start + BoundedGunzip.blockSize, filled)
                    let block = UnsafeRawBufferPointer(rebasing: buffer[start..<end])
                    let length = UInt64(block.count)
                    guard logical.saturatingAdd(length) <= maximumBytes else { return .tooLarge(logical: logical) }
                    if !ZeroBlock.isZero(block, zeros: UnsafeRawBufferPointer(zeros)) {
                        guard allocated.saturatingAdd(length) <= allocationCap else { return .outOfSpace(allocated: allocated) }
                        try write(block, at: logical, to: output)
                        allocated += length
                    }
                    logical += length
                    start = end
                }
            }
            // A trailing run of zeros was skipped: the file still has its full length.
            guard ftruncate(output, off_t(logical)) == 0 else {
                throw StageError(.ioFailed, file: path, "cannot set the length to \(logical): \(String(cString: strerror(errno)))")
            }
            return .complete(logical: logical, allocated: allocated)
        }

        /// Reads until the buffer is full or the stream ends; returns the byte count.
        private func fill(_ buffer: UnsafeMutableRawBufferPointer, from fd: Int32) throws -> Int {
            var filled = 0
            while filled < buffer.count {
                let count = SystemCall.retryingOnInterrupt {
                    read(fd, buffer.baseAddress.map { $0 + filled }, buffer.count - filled)
                }
                if count < 0 {
                    throw StageError(.ioFailed, file: path, "reading gzip's output failed: \(String(cString: strerror(errno)))")
                }
                if count == 0 { break }
                filled += count
            }
            return filled
        }

        private func write(_ block: UnsafeRawBufferPointer, at offset: UInt64, to output: Int32) throws {
            var done = 0
            while done < block.count {
                let count = SystemCall.retryingOnInterrupt {
                    pwrite(output, block.baseAddress.map { $0 + done }, block.count - done, off_t(offset) + off_t(done))
                }
                if count < 0 {
                    let error = errno
                    let code: StageError.Code = (error == ENOSPC || error == EDQUOT) ? .noSpace : .ioFailed
                    throw StageError(code, file: path, "write failed at byte \(offset + UInt64(done)): \(String(cString: strerror(error)))")
                }
                done += count
            }
        }

        static func readText(_ pipe: FileHandle, limit: Int) -> String {
            defer { try? pipe.close() }
            var kept = Data()
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = SystemCall.retryingOnInterrupt {
                    buffer.withUnsafeMutableBytes { read(pipe.fileDescriptor, $0.baseAddress, $0.count) }
                }
                guard count > 0 else { break }
                // Read to the end (gzip must not block on a full pipe), keep the start.
                if kept.count < limit { kept.append(contentsOf: buffer[0..<min(count, limit - kept.count)]) }
            }
            return String(decoding: kept, as: UTF8.self)
        }
    }
}

/// Follows a tar archive's headers in the bytes decompressed so far, to find where the archive
/// ends (two zero blocks where a header is due). Everything after that is not part of the
/// archive, so decompression can stop there: a gzip stream may go on with members that
/// expand to terabytes of zeros after a small valid tar. Sizes come from the ustar field
/// (octal or base-256) or a pax `size` record; a header it cannot read stops the tracking,
/// and the stream is then read to its end as before.
struct TarStreamEnd {
    private var nextHeader: UInt64 = 0
    private var paxSize: UInt64?
    private var lost = false
    /// pax extended headers larger than this are not followed (the tar reader refuses them too).
    private static let maximumPaxBytes: UInt64 = 1 << 20

    /// The archive's end offset once both end blocks are in `written` bytes of `file`; nil until then.
    mutating func follow(_ file: Int32, written: UInt64) -> UInt64? {
        while !lost, nextHeader.saturatingAdd(1024) <= written {
            guard let header = read(file, at: nextHeader, count: 512) else { lost = true; return nil }
            if header.allSatisfy({ $0 == 0 }) {
                guard let second = read(file, at: nextHeader + 512, count: 512) else { lost = true; return nil }
                if second.allSatisfy({ $0 == 0 }) { return nextHeader + 1024 }
                lost = true  // a lone zero block: not an archive this tracker understands
                return nil
            }
            guard let stored = Self.size(header) else { lost = true; return nil }
            let type = header[156]
            let dataStart = nextHeader + 512
            var size = stored
            if type == UInt8(ascii: "x") {
                // The record applies to the next member; read it once it is all there.
                guard stored <= Self.maximumPaxBytes else { lost = true; return nil }
                guard dataStart.saturatingAdd(stored) <= written else { return nil }
                guard let records = read(file, at: dataStart, count: Int(stored)) else { lost = true; return nil }
                paxSize = Self.paxSize(records)
            } else if type != UInt8(ascii: "g") && type != UInt8(ascii: "L") && type != UInt8(ascii: "K") {
                size = paxSize ?? stored
                paxSize = nil
            }
            let (rounded, overflow) = size.addingReportingOverflow(511)
            guard !overflow else { lost = true; return nil }
            let (next, past) = dataStart.addingReportingOverflow(rounded / 512 * 512)
            guard !past else { lost = true; return nil }
            nextHeader = next
        }
        return nil
    }

    /// Bytes the caller knows were written; past the file's current end they are zeros the
    /// copier skipped (it sets the length only when it finishes), so a short read is zeros.
    private func read(_ file: Int32, at offset: UInt64, count: Int) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            let got = SystemCall.retryingOnInterrupt {
                bytes.withUnsafeMutableBytes { pread(file, $0.baseAddress.map { $0 + done }, count - done, off_t(offset) + off_t(done)) }
            }
            guard got >= 0 else { return nil }
            if got == 0 { break }
            done += got
        }
        return bytes
    }

    /// The ustar size field: octal digits, or base-256 when its first byte has the high bit set.
    static func size(_ header: [UInt8]) -> UInt64? {
        let field = header[124..<136]
        if let first = field.first, first & 0x80 != 0 {
            guard first == 0x80 else { return nil }  // negative, or too large to follow
            var value: UInt64 = 0
            for byte in field.dropFirst() {
                let (shifted, overflow) = value.multipliedReportingOverflow(by: 256)
                guard !overflow else { return nil }
                value = shifted | UInt64(byte)
            }
            return value
        }
        let digits = field.drop { $0 == 0x20 }.prefix { $0 >= 0x30 && $0 <= 0x37 }
        guard !digits.isEmpty else { return field.allSatisfy { $0 == 0 || $0 == 0x20 } ? 0 : nil }
        var value: UInt64 = 0
        for digit in digits {
            let (shifted, overflow) = value.multipliedReportingOverflow(by: 8)
            guard !overflow else { return nil }
            value = shifted | UInt64(digit - 0x30)
        }
        return value
    }

    /// The `size=` record of a pax extended header, if any.
    static func paxSize(_ records: [UInt8]) -> UInt64? {
        let text = String(decoding: records, as: UTF8.self)
        for line in text.split(separator: "\n") {
            guard let space = line.firstIndex(of: " ") else { continue }
            let record = line[line.index(after: space)...]
            if record.hasPrefix("size=") { return UInt64(record.dropFirst(5)) }
        }
        return nil
    }
}
