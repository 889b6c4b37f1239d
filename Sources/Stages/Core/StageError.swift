/// A failure of one stage, phrased for the operator: which file, and what is wrong with it.
public struct StageError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Code: String, Sendable, Codable {
        /// The input is not something we can convert (bad magic, truncated, hostile archive…).
        case badInput = "bad-input"
        /// An external tool (qemu-img, libguestfs…) failed.
        case toolFailed = "tool-failed"
        /// Reading or writing a file failed.
        case ioFailed = "io-failed"
        /// The filesystem holding an output is full (ENOSPC).
        case noSpace = "no-space"
        /// The source changed while the job was reading it.
        case sourceChanged = "source-changed"
        /// The guest cannot be handled (no OS found, unsupported layout…).
        case unsupportedGuest = "unsupported-guest"
        /// The target already holds something this job may not replace (a libvirt domain
        /// of the same name that another job or a person defined). Only the operator can
        /// settle it, so it is never retried.
        case conflict = "conflict"
    }

    public var code: Code
    /// The file the problem is about, when there is one.
    public var file: String?
    public var message: String
    /// With `.noSpace` from a check made before writing: what the step needs, so a wait
    /// for space lasts until that much is free. Nil when a write simply hit ENOSPC.
    public var spaceNeed: SpaceNeed?

    public init(_ code: Code, file: String? = nil, _ message: String) {
        self.code = code
        self.file = file
        self.message = message
    }

    /// What the guest fixer says when a tool of the guest's own (update-initramfs, grub)
    /// fails inside it: the preflight reads it as the guest's verdict, not as its own failure.
    public static let guestToolFailed = "failed inside the guest"

    public var description: String {
        guard let file else { return message }
        return "\(file): \(message)"
    }
}
