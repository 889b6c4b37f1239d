import Foundation
import Glibc
import Logging
import SystemSupport

/// Watches the top level of one directory with inotify and delivers what changed as an
/// `AsyncStream<WatchEvent>`.
///
/// The reader runs on a dedicated thread (not the cooperative pool) that blocks in `poll(2)`
/// on the inotify descriptor and on a wake-up pipe, so an idle queue costs no CPU wakeups at
/// all; `stop()` writes one byte to the pipe to end the thread.
///
/// Usage: create, iterate `events`, call `start()`; on `.overflow` rescan the directory; the
/// stream finishes after `stop()` or after `.directoryGone`. Start the watcher *before* the
/// initial scan of the directory so that nothing dropped in between is missed.
///
/// - Important: The stream buffers without limit, so the consumer should only record events
///   (cheap) and do slow work elsewhere. The kernel queue itself is bounded
///   (`/proc/sys/fs/inotify/max_queued_events`); losing events there yields `.overflow`.
public final class InotifyWatcher: @unchecked Sendable {
    // @unchecked Sendable: the mutable `phase` is only read or written under `lock`; the
    // descriptors are immutable after init and are closed exactly once, by the reader thread
    // when it ends (or by deinit when the thread was never started).

    /// The events inotify is asked for. `IN_Q_OVERFLOW` and the self events always come.
    public static let eventMask: UInt32 =
        UInt32(IN_CLOSE_WRITE) | UInt32(IN_MOVED_TO) | UInt32(IN_CREATE) | UInt32(IN_MODIFY)
        | UInt32(IN_DELETE) | UInt32(IN_MOVED_FROM) | UInt32(IN_DELETE_SELF) | UInt32(IN_MOVE_SELF)
        | UInt32(IN_ONLYDIR)

    public let directory: String
    public let events: AsyncStream<WatchEvent>

    private enum Phase { case created, running, stopped }

    private let continuation: AsyncStream<WatchEvent>.Continuation
    private let inotifyDescriptor: Int32
    private let wakeReadEnd: Int32
    private let wakeWriteEnd: Int32
    private let logger: Logger?
    private let lock = NSLock()
    private var phase = Phase.created
    /// Whether the reader thread was started, and so owns (and closes) the read descriptors.
    private var readerStarted = false

    /// Opens inotify on `directory` and adds the watch; events are queued by the kernel from
    /// here on, and delivered once `start()` runs.
    /// - Throws: `SystemError` naming the directory (missing, not a directory, no permission,
    ///   inotify limits reached).
    public init(directory: String, logger: Logger? = nil) throws {
        self.directory = directory
        self.logger = logger
        let inotify = inotify_init1(Int32(IN_NONBLOCK) | Int32(IN_CLOEXEC))
        guard inotify >= 0 else {
            throw SystemError(operation: "inotify_init1", path: directory, errno: errno)
        }
        guard inotify_add_watch(inotify, directory, Self.eventMask) >= 0 else {
            let code = errno
            close(inotify)
            throw SystemError(operation: "inotify_add_watch", path: directory, errno: code)
        }
        var ends: [Int32] = [-1, -1]
        guard pipe(&ends) == 0 else {
            let code = errno
            close(inotify)
            throw SystemError(operation: "pipe", path: directory, errno: code)
        }
        for end in ends {
            _ = fcntl(end, F_SETFD, FD_CLOEXEC)
            _ = fcntl(end, F_SETFL, fcntl(end, F_GETFL) | O_NONBLOCK)
        }
        inotifyDescriptor = inotify
        wakeReadEnd = ends[0]
        wakeWriteEnd = ends[1]
        (events, continuation) = AsyncStream.makeStream(of: WatchEvent.self, bufferingPolicy: .unbounded)
        continuation.onTermination = { [weak self] _ in self?.stop() }
    }

    deinit {
        // Only reached when the reader thread never ran or has ended: the thread holds `self`.
        if !readerStarted {
            close(inotifyDescriptor)
            close(wakeReadEnd)
        }
        close(wakeWriteEnd)
        continuation.finish()
    }

    /// Starts the reader thread. Calling it again, or after `stop()`, does nothing.
    public func start() {
        let shouldStart = lock.withLock {
            guard phase == .created else { return false }
            phase = .running
            readerStarted = true
            return true
        }
        guard shouldStart else { return }
        let thread = Thread { [self] in
            // Named from the thread itself: only then does the kernel (top -H, /proc) see it.
            Thread.current.name = "h2k-inotify"
            readUntilStopped()
        }
        thread.start()
    }

    /// Ends the reader thread and finishes `events`. Safe to call more than once, from any thread.
    public func stop() {
        // The byte is written under the lock: the reader closes the pipe's read end only after
        // marking itself stopped under the same lock, so we never write into a closed pipe
        // (which would raise SIGPIPE).
        let wasRunning = lock.withLock {
            defer { phase = .stopped }
            guard phase == .running else { return false }
            var byte: UInt8 = 1
            _ = SystemCall.retryingOnInterrupt { write(wakeWriteEnd, &byte, 1) }
            return true
        }
        if !wasRunning { continuation.finish() }
    }

    private func readUntilStopped() {
        let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 64 * 1024, alignment: 8)
        defer {
            buffer.deallocate()
            lock.withLock { phase = .stopped }
            close(inotifyDescriptor)
            close(wakeReadEnd)
            continuation.finish()
        }
        var descriptors = [
            pollfd(fd: inotifyDescriptor, events: Int16(POLLIN), revents: 0),
            pollfd(fd: wakeReadEnd, events: Int16(POLLIN), revents: 0),
        ]
        while true {
            descriptors[0].revents = 0
            descriptors[1].revents = 0
            // Blocks without timeout: the thread wakes only for an event or for stop().
            let ready = SystemCall.retryingOnInterrupt { poll(&descriptors, 2, -1) }
            if ready < 0 {
                logger?.error("inotify poll on \(directory) failed: \(String(cString: strerror(errno)))")
                return
            }
            if descriptors[1].revents != 0 { return }
            let inotifyReady = descriptors[0].revents
            if inotifyReady & Int16(POLLIN) != 0 {
                if drainEvents(into: buffer) == .directoryGone { return }
            } else if inotifyReady != 0 {
                logger?.error("inotify descriptor for \(directory) reported an error; watching stopped")
                return
            }
        }
    }

    private enum DrainOutcome { case keepWatching, directoryGone }

    /// Reads every queued inotify record (the descriptor is non-blocking) and yields them.
    private func drainEvents(into buffer: UnsafeMutableRawBufferPointer) -> DrainOutcome {
        var decoder = InotifyRecordDecoder()
        while true {
            let count = SystemCall.retryingOnInterrupt { read(inotifyDescriptor, buffer.baseAddress, buffer.count) }
            if count < 0 {
                if errno == EAGAIN || errno == EWOULDBLOCK { return .keepWatching }
                logger?.error("reading inotify events for \(directory) failed: \(String(cString: strerror(errno)))")
                return .directoryGone
            }
            if count == 0 { return .keepWatching }
            for event in decoder.decode(UnsafeRawBufferPointer(rebasing: buffer[0..<count])) {
                continuation.yield(event)
                if event.kind == .directoryGone { return .directoryGone }
            }
            for name in decoder.undecodableNames {
                logger?.warning("ignoring \(directory)/\(name): its name is not valid UTF-8")
            }
            decoder.undecodableNames.removeAll()
        }
    }
}

/// Turns the raw `struct inotify_event` records of one `read(2)` into `WatchEvent`s.
///
/// Separate from the watcher so the byte layout can be tested without a kernel.
struct InotifyRecordDecoder {
    /// `wd`, `mask`, `cookie`, `len`, each 4 bytes, then `len` bytes of NUL-padded name.
    static let headerSize = 16

    /// Names seen as modified since the last other event for them: during a long copy every
    /// `write(2)` raises `IN_MODIFY`, and one per read batch says all there is to say.
    private var modifiedAlready: Set<String> = []
    var undecodableNames: [String] = []

    mutating func decode(_ bytes: UnsafeRawBufferPointer) -> [WatchEvent] {
        var events: [WatchEvent] = []
        var offset = 0
        modifiedAlready.removeAll(keepingCapacity: true)
        while offset + Self.headerSize <= bytes.count {
            let mask = bytes.loadUnaligned(fromByteOffset: offset + 4, as: UInt32.self)
            let nameLength = Int(bytes.loadUnaligned(fromByteOffset: offset + 12, as: UInt32.self))
            let nameStart = offset + Self.headerSize
            offset = nameStart + nameLength
            guard offset <= bytes.count else { break }
            let nameBytes = bytes[nameStart..<offset].prefix { $0 != 0 }
            guard let name = String(validating: nameBytes, as: UTF8.self) else {
                undecodableNames.append(String(decoding: nameBytes, as: UTF8.self))
                continue
            }
            events.append(contentsOf: self.events(mask: mask, name: name))
        }
        return events
    }

    private mutating func events(mask: UInt32, name: String) -> [WatchEvent] {
        if mask & UInt32(IN_Q_OVERFLOW) != 0 {
            return [WatchEvent(name: "", kind: .overflow)]
        }
        let selfGone = UInt32(IN_DELETE_SELF) | UInt32(IN_MOVE_SELF) | UInt32(IN_UNMOUNT) | UInt32(IN_IGNORED)
        if mask & selfGone != 0 {
            return [WatchEvent(name: "", kind: .directoryGone)]
        }
        let isDirectory = mask & UInt32(IN_ISDIR) != 0
        let kinds: [(UInt32, WatchEvent.Kind)] = [
            (UInt32(IN_CREATE), .created), (UInt32(IN_MODIFY), .modified),
            (UInt32(IN_CLOSE_WRITE), .closedAfterWrite), (UInt32(IN_MOVED_TO), .movedIn),
            (UInt32(IN_MOVED_FROM), .movedOut), (UInt32(IN_DELETE), .deleted),
        ]
        var result: [WatchEvent] = []
        for (bit, kind) in kinds where mask & bit != 0 {
            if kind == .modified {
                guard modifiedAlready.insert(name).inserted else { continue }
            } else {
                modifiedAlready.remove(name)
            }
            result.append(WatchEvent(name: name, kind: kind, isDirectory: isDirectory))
        }
        return result
    }
}
