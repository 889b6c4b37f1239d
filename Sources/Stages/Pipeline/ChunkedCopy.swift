import Foundation
import SystemSupport

/// The windows of guest address space a disk is copied in: `chunkBytes` each, the last one
/// shorter. Pure.
struct ChunkWindows: Equatable, Sendable {
    var virtualSize: UInt64
    var chunkBytes: UInt64

    /// At most this many windows per disk: each costs a qemu-img start and an fsync
    /// (about 0.1-0.2 s here), so a 1 TiB thin disk in 1 GiB windows spent minutes on
    /// empty windows where one whole-image copy took seconds.
    static let maximumCount: UInt64 = 128

    /// The window size for a disk: the configured one, grown (to whole MiB) so that the disk
    /// has at most `maximumCount` windows.
    static func chunkBytes(configured: UInt64, virtualSize: UInt64) -> UInt64 {
        let needed = virtualSize / maximumCount + (virtualSize % maximumCount == 0 ? 0 : 1)
        guard needed > configured else { return configured }
        let mebibyte: UInt64 = 1 << 20
        let rounded = (needed / mebibyte + (needed % mebibyte == 0 ? 0 : 1)).multipliedReportingOverflow(by: mebibyte)
        return rounded.overflow ? needed : rounded.partialValue
    }

    var count: Int {
        guard chunkBytes > 0 else { return 0 }
        return Int(clamping: virtualSize / chunkBytes + (virtualSize % chunkBytes == 0 ? 0 : 1))
    }

    /// Offset and length of window `index` (0 ≤ index < count).
    func window(_ index: Int) -> (offset: UInt64, length: UInt64) {
        let offset = UInt64(index).multipliedReportingOverflow(by: chunkBytes)
        guard !offset.overflow, offset.partialValue < virtualSize else { return (virtualSize, 0) }
        return (offset.partialValue, min(chunkBytes, virtualSize - offset.partialValue))
    }

    /// The windows that intersect any of `ranges` (guest bytes that may read as non-zero).
    func windows(holding ranges: [Range<UInt64>]) -> Set<Int> {
        var holding = Set<Int>()
        guard chunkBytes > 0, count > 0 else { return holding }
        for range in ranges where !range.isEmpty && range.lowerBound < virtualSize {
            let first = Int(clamping: range.lowerBound / chunkBytes)
            let last = min(count - 1, Int(clamping: (range.upperBound - 1) / chunkBytes))
            for index in first...max(first, last) { holding.insert(index) }
        }
        return holding
    }

    /// Guest bytes in the first `chunks` windows.
    func bytes(inFirst chunks: Int) -> UInt64 {
        chunks <= 0 ? 0 : (chunks >= count ? virtualSize : window(chunks).offset)
    }
}

/// What a chunked copy of one disk has made durable, as journaled after every chunk. It
/// applies to a later run only if that run copies the same thing the same way into the
/// same file (``ChunkedCopy/resumePoint``).
struct CopyCheckpoint: Codable, Equatable, Sendable {
    /// The source's files as `path dev:inode size mtime_ns`, the chunk plan and the output kind.
    var source: [String]
    var virtualSize: UInt64
    var chunkBytes: UInt64
    var format: String
    var compress: Bool
    /// The target file (device and inode), so a file replaced meanwhile is never trusted.
    var targetDevice: UInt64
    var targetInode: UInt64
    var chunksDone: Int
    /// What resuming did (leaked clusters freed, chunks copied again), oldest first.
    var events: [String]
    /// For `status`'s rate and ETA: when this run of the copy started (Unix seconds), how
    /// many chunks were done then, and when this checkpoint was saved.
    var runStartedAt: Double = 0
    var runStartChunks: Int = 0
    var savedAt: Double = 0

    func sameCopy(as other: CopyCheckpoint) -> Bool {
        source == other.source && virtualSize == other.virtualSize && chunkBytes == other.chunkBytes
            && format == other.format && compress == other.compress
    }
}

/// One disk's copy in windows of guest address space, each journaled once its bytes and the
/// image metadata they need are durable (the target fsynced after qemu-img closed it). After
/// a kill the copy goes on at the first window not journaled: that window is the only one a
/// dead qemu-img can have touched, so it alone is copied again (emptied first when
/// compressed, since qemu cannot rewrite a compressed cluster in place), after
/// `qemu-img check -r leaks` has freed the clusters the dead writer allocated but never
/// linked. The journal's checkpoint says which of these happened.
struct ChunkedCopy: Sendable {
    let qemuImg: QemuImg
    let checkpoints: any StageCheckpoints
    /// The checkpoint's name: one per disk output.
    let name: String
    /// The source as a qemu node (its format driver at the top) and its files' identities.
    let source: QemuNode
    let sourceFormat: String
    let sourceIdentity: [String]
    let target: URL
    let format: String
    let compress: Bool
    let windows: ChunkWindows
    /// `hyper2kvm` for `internal supervise` (see ``QemuImg/copyWindow``), nil when not found.
    var supervisor: String? = try? IsolatedSourceReader.ownExecutable(for: "supervises qemu-img",
                                                                       environment: ProcessInfo.processInfo.environment)

    /// Copies every window not yet journaled; returns what resuming did (empty for a copy
    /// that ran start to end in this call).
    func run(progress: @escaping @Sendable (Double) -> Void) async throws -> [String] {
        var checkpoint = try await resumePoint()
        checkpoint.runStartedAt = Date().timeIntervalSince1970
        checkpoint.runStartChunks = checkpoint.chunksDone
        let total = Double(max(windows.virtualSize, 1))
        // The first window after a resume may hold a dead writer's bytes; every later one is untouched.
        var firstAfterResume = checkpoint.chunksDone > 0 || !checkpoint.events.isEmpty
        // Windows the source has no data in stay holes of the fresh target: journaled without
        // a qemu-img start each (a 64 TiB thin disk is 128 windows, nearly all empty). A copy
        // the journal already has whole needs no map.
        let holding = checkpoint.chunksDone < windows.count ? try await sourceWindowsHoldingData() : nil
        var unsaved = false
        while checkpoint.chunksDone < windows.count {
            let index = checkpoint.chunksDone
            let (offset, length) = windows.window(index)
            if let holding, !holding.contains(index), !firstAfterResume {
                checkpoint.chunksDone = index + 1
                unsaved = true
                continue
            }
            // Journaled before the copy: a window a dead writer touched is always the first one not journaled.
            if unsaved {
                try save(checkpoint)
                unsaved = false
            }
            let doneBefore = Double(windows.bytes(inFirst: index))
            if firstAfterResume && compress {
                try await qemuImg.discard(target.path, offset: offset, length: length)
            }
            try await qemuImg.copyWindow(source: sourceWindow(offset, length), target: targetWindow(offset, length),
                                         about: target.path, length: length, targetIsZero: !firstAfterResume,
                                         supervisor: supervisor) { fraction in
                progress((doneBefore + fraction * Double(length)) / total)
            }
            firstAfterResume = false
            do {
                try FileSync.file(target.path)
            } catch {
                throw StageError(error)
            }
            checkpoint.chunksDone = index + 1
            try save(checkpoint)
        }
        if unsaved { try save(checkpoint) }
        progress(1)
        return checkpoint.events
    }

    /// The windows the source may hold data in; nil when that is not known (every window is copied).
    private func sourceWindowsHoldingData() async throws -> Set<Int>? {
        let whole = sourceWindow(0, windows.virtualSize)
        guard let ranges = try await qemuImg.dataRanges(of: whole, about: target.path) else { return nil }
        return windows.windows(holding: ranges)
    }

    /// The journaled state to go on from, after making the target fit to go on; or a new,
    /// empty target and checkpoint when there is nothing to go on from.
    func resumePoint() async throws -> CopyCheckpoint {
        let fresh = CopyCheckpoint(source: sourceIdentity, virtualSize: windows.virtualSize, chunkBytes: windows.chunkBytes,
                                   format: format, compress: compress, targetDevice: 0, targetInode: 0, chunksDone: 0, events: [])
        if let text = try checkpoints.load(name),
           var saved = try? JSONDecoder().decode(CopyCheckpoint.self, from: Data(text.utf8)),
           saved.sameCopy(as: fresh), saved.chunksDone <= windows.count,
           let identity = Self.identity(of: target), identity == (saved.targetDevice, saved.targetInode) {
            if saved.chunksDone == windows.count { return saved }
            // A writer of the dead run may still be finishing its window: wait for its lock to go.
            try await ImageLock.waitUntilReleased(target)
            var events: [String] = []
            if format == "qcow2" {
                do {
                    let freed = try await qemuImg.repairLeaks(target.path)
                    events.append(freed > 0 ? "freed \(freed) leaked cluster(s) of the interrupted chunk" : "no leaked clusters")
                } catch {
                    // Not repairable as it is: the journaled chunks cannot be trusted either.
                    saved.events.append("target failed its check after the interruption (\(error)); copied again from the start")
                    return try await startOver(fresh, events: saved.events)
                }
            }
            let (offset, length) = windows.window(saved.chunksDone)
            events.append("resumed at chunk \(saved.chunksDone + 1) of \(windows.count) (guest bytes \(offset)+\(length) copied again"
                          + (compress ? ", emptied first" : "") + ")")
            saved.events += events
            try save(saved)
            return saved
        }
        return try await startOver(fresh, events: [])
    }

    private func startOver(_ fresh: CopyCheckpoint, events: [String]) async throws -> CopyCheckpoint {
        try? FileManager.default.removeItem(at: target)
        try await qemuImg.createCopyTarget(target, format: format, virtualSize: windows.virtualSize, compress: compress)
        do {
            try FileSync.file(target.path)
            try FileSync.directory(target.deletingLastPathComponent().path)
        } catch {
            throw StageError(error)
        }
        guard let identity = Self.identity(of: target) else {
            throw StageError(.ioFailed, file: target.path, "the copy's target vanished right after it was created")
        }
        var checkpoint = fresh
        checkpoint.targetDevice = identity.device
        checkpoint.targetInode = identity.inode
        checkpoint.events = events
        try save(checkpoint)
        return checkpoint
    }

    private func save(_ checkpoint: CopyCheckpoint) throws {
        var checkpoint = checkpoint
        checkpoint.savedAt = Date().timeIntervalSince1970
        let data = try JSONEncoder().encode(checkpoint)
        try checkpoints.save(name, String(decoding: data, as: UTF8.self))
    }

    func sourceWindow(_ offset: UInt64, _ length: UInt64) -> String {
        // The tree of a pinned image has its format driver at the top, except a raw file,
        // which the window's own raw driver reads directly.
        let node: [String: Any]
        switch source {
        case .image: node = source.jsonObject
        case .file, .fileRange: node = sourceFormat == "raw" ? source.jsonObject : ["driver": sourceFormat, "file": source.jsonObject]
        }
        return Self.windowSpec(over: node, offset: offset, length: length)
    }

    /// The target through a `raw` window; compressed, through qemu's `compress` filter,
    /// which turns every write into a compressed one (qemu-img's `-c` needs the format
    /// driver at the top, and the window's raw driver has no compressed writes).
    func targetWindow(_ offset: UInt64, _ length: UInt64) -> String {
        let file: [String: Any] = ["driver": "file", "filename": target.path]
        var node: [String: Any] = format == "raw" ? file : ["driver": format, "file": file]
        if compress { node = ["driver": "compress", "file": node] }
        return Self.windowSpec(over: node, offset: offset, length: length)
    }

    static func windowSpec(over node: [String: Any], offset: UInt64, length: UInt64) -> String {
        let window: [String: Any] = ["driver": "raw", "offset": offset, "size": length, "file": node]
        // Dictionaries of strings and numbers always serialise.
        let data = (try? JSONSerialization.data(withJSONObject: window, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
        return "json:" + String(decoding: data, as: UTF8.self)
    }

    static func identity(of url: URL) -> (device: UInt64, inode: UInt64)? {
        var info = stat()
        guard lstat(url.path, &info) == 0, (info.st_mode & S_IFMT) == S_IFREG else { return nil }
        return (UInt64(info.st_dev), UInt64(info.st_ino))
    }

    /// `path dev:inode size mtime_ns` of each file, the identity a checkpoint is bound to.
    static func identityLine(of path: String) -> String {
        var info = stat()
        guard stat(path, &info) == 0 else { return "\(path) missing" }
        let mtime = Int64(info.st_mtim.tv_sec) &* 1_000_000_000 &+ Int64(info.st_mtim.tv_nsec)
        return "\(path) \(info.st_dev):\(info.st_ino) \(info.st_size) \(mtime)"
    }
}

/// qemu's image locks (OFD byte-range locks at bytes 100-299 of the file, one byte per
/// permission): held while any qemu process has the image open.
enum ImageLock {
    static let waitLimit: Duration = .seconds(600)

    static func isHeld(_ url: URL) -> Bool {
        let fd = open(url.path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var lock = flock()
        lock.l_type = Int16(F_WRLCK)
        lock.l_whence = Int16(SEEK_SET)
        lock.l_start = 100
        lock.l_len = 200
        // F_OFD_GETLK (36; glibc names it only under _GNU_SOURCE): the lock another open file would block us with.
        guard fcntl(fd, 36, &lock) == 0 else { return false }
        return lock.l_type != Int16(F_UNLCK)
    }

    static func waitUntilReleased(_ url: URL) async throws {
        let deadline = ContinuousClock.now + waitLimit
        while isHeld(url) {
            guard ContinuousClock.now < deadline else {
                throw StageError(.toolFailed, file: url.path,
                                 "another process has held this copy target open for \(waitLimit) after the copy was interrupted")
            }
            try await Task.sleep(for: .milliseconds(200))
        }
    }
}
