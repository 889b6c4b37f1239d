import SystemSupport

extension StageError {
    /// A failed system call on an output: "rename -> /out/web01 failed: File exists", naming
    /// the file; `.noSpace` when the filesystem is full.
    init(_ error: SystemError) {
        let target = error.destination.map { " -> \($0)" } ?? ""
        self.init(error.isOutOfSpace ? .noSpace : .ioFailed, file: error.path,
                  "\(error.operation)\(target) failed: \(error.reason)")
    }
}

extension ReadableFile {
    /// Opens `path` for reading (`for`: what the file is opened for, said in the error), with
    /// failures as `StageError(.ioFailed)`: "cannot open for hashing: …", "cannot stat: …".
    static func opened(_ path: String, for purpose: String? = nil) throws(StageError) -> ReadableFile {
        do {
            return try ReadableFile(path)
        } catch {
            let message = error.operation == "open"
                ? "cannot open\(purpose.map { " for \($0)" } ?? ""): \(error.reason)"
                : "cannot stat: \(error.reason)"
            throw StageError(.ioFailed, file: path, message)
        }
    }
}
