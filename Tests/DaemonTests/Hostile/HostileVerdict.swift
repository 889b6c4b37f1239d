import Foundation
#if canImport(Glibc)
import Glibc
import TestSupport
#endif

/// What one run of a hostile case showed, and every rule it broke.
struct HostileVerdict {
    let hostileCase: HostileCase
    let outcome: BoundedProductRun.Outcome
    let seconds: TimeInterval
    let peakOutputBytes: UInt64
    /// The product's error line, for a run that exited non-zero.
    var error: String?
    var failures: [String] = []

    /// Output (work and state included) a refused input may leave or pass through.
    static let fillBound: UInt64 = 64 << 20
    /// What a refused fill case may write on its own small filesystem (the journal, a header).
    static let refusedFillBound: UInt64 = 8 << 20

    var got: String {
        switch outcome {
        case .exited(0): "converted"
        case .exited(let status): "refused(\(status))"
        case .signalled(let signal): "signal \(signal)"
        case .hung: "hung"
        }
    }
}

/// Judges a finished run: exit, crash, hang, fill, the error text, and the secret's marker
/// anywhere the run could have put it (stdout, stderr, every file under the output
/// directory, and the guest-visible content of every disk image there).
struct HostileJudge {
    let marker: Data
    let workingDirectory: String
    let sourcePath: String

    func judge(_ hostileCase: HostileCase, run: BoundedProductRun) -> HostileVerdict {
        let outcome = run.finished ?? .hung
        var verdict = HostileVerdict(hostileCase: hostileCase, outcome: outcome, seconds: run.elapsed,
                                     peakOutputBytes: run.peakOutputBytes)
        let stderr = (try? Data(contentsOf: URL(fileURLWithPath: run.stderrPath))) ?? Data()
        let stderrText = String(decoding: stderr, as: UTF8.self)

        switch outcome {
        case .hung:
            verdict.failures.append("hang: still running after \(Int(run.elapsed)) s, killed")
        case .signalled(let signal):
            verdict.failures.append("crash: killed by signal \(signal)")
        case .exited(let status):
            if stderrText.contains("Fatal error") { verdict.failures.append("crash: Swift runtime trap (Fatal error)") }
            switch (hostileCase.expect, status) {
            case (.refused, 0): verdict.failures.append("accepted: converted what must be refused")
            case (.converted, let status) where status != 0:
                verdict.failures.append("refused a valid input (\(status)): \(Self.firstLine(stderrText))")
            default: break
            }
            if status != 0 { verdict.error = Self.firstLine(stderrText) }
            if status == 0 { verdict.failures += invalidDomains(under: run.outputDirectory) }
            if status != 0 && !namesTheFile(stderrText) {
                verdict.failures.append("unclear error: stderr does not name the file: \(Self.firstLine(stderrText))")
            }
        }
        // A fill case runs on a filesystem smaller than what it expands to: it must be refused
        // before its bytes are written, so it may use little more than the journal.
        let bound = hostileCase.class == "fill" ? HostileVerdict.refusedFillBound : HostileVerdict.fillBound
        if hostileCase.class != "good", run.peakOutputBytes > bound {
            verdict.failures.append("fill: output/work grew to \(run.peakOutputBytes >> 20) MiB (bound \(bound >> 20) MiB)")
        }
        if hostileCase.class == "minor", stderr.contains(0x1b) {
            verdict.failures.append("raw escape character (ESC) from the file name written to stderr")
        }
        verdict.failures += leaks(run: run, stderr: stderr)
        return verdict
    }

    /// A published domain.xml libvirt's schema refuses (vCPUs or memory from absurd input numbers).
    private func invalidDomains(under root: String) -> [String] {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/virt-xml-validate"),
              let enumerator = FileManager.default.enumerator(atPath: root) else { return [] }
        var problems: [String] = []
        for case let relative as String in enumerator where relative.hasSuffix("domain.xml") {
            guard let result = try? bounded(["virt-xml-validate", root + "/" + relative, "domain"]), result.status != 0 else { continue }
            problems.append("published \(relative) does not validate against libvirt's schema: \(Self.firstLine(result.err))")
        }
        return problems
    }

    /// The path, the file name, or (for names with control characters) the part of the
    /// name before the first one: an error may escape what follows.
    private func namesTheFile(_ text: String) -> Bool {
        let name = URL(fileURLWithPath: sourcePath).lastPathComponent
        let clean = String(name.unicodeScalars.prefix { $0.value >= 0x20 && $0.value != 0x7f && $0 != "\u{202e}" }
                            .map(Character.init))
        return text.contains(sourcePath) || text.contains(name) || (clean.count >= 2 && text.contains(clean))
    }

    private func leaks(run: BoundedProductRun, stderr: Data) -> [String] {
        var found: [String] = []
        if stderr.range(of: marker) != nil { found.append("leak: secret in stderr") }
        if MarkerSearch.file(run.stdoutPath, contains: marker) { found.append("leak: secret in stdout") }
        let root = run.outputDirectory
        guard let enumerator = FileManager.default.enumerator(atPath: root) else { return found }
        for case let relative as String in enumerator {
            let path = root + "/" + relative
            var status = stat()
            guard lstat(path, &status) == 0, status.st_mode & S_IFMT == S_IFREG else { continue }
            if MarkerSearch.file(path, contains: marker) {
                found.append("leak: secret in output file \(relative)")
                continue
            }
            if let problem = decodedLeak(path, relative: relative) { found.append(problem) }
        }
        return found
    }

    /// Decodes `path` when qemu sees an image format in it (with this run's working
    /// directory, so relative references resolve as they would for a user) and searches
    /// the guest-visible bytes.
    private func decodedLeak(_ path: String, relative: String) -> String? {
        guard let info = try? bounded(["qemu-img", "info", "--output=json", path]), info.status == 0,
              let json = try? JSONSerialization.jsonObject(with: Data(info.out.utf8)) as? [String: Any],
              let format = json["format"] as? String, format != "raw" else { return nil }
        if json["backing-filename"] != nil || json["full-backing-filename"] != nil {
            return "leak: output image \(relative) references a backing file (\(json["backing-filename"] ?? ""))"
        }
        let specific = (json["format-specific"] as? [String: Any])?["data"] as? [String: Any]
        if let dataFile = specific?["data-file"] {
            return "leak: output image \(relative) references an external data file (\(dataFile))"
        }
        let decoded = path + ".hostile-decoded.raw"
        defer { unlink(decoded) }
        let virtualSize = (json["virtual-size"] as? NSNumber)?.uint64Value ?? 0
        // A raw copy of a multi-terabyte image does not fit every file system (ext4 stops at
        // 16 TiB): those are read extent by extent, where qemu-img map says there is data.
        // nil: decode the whole image at once.
        let pieces: [(offset: UInt64, length: UInt64)?]
        if virtualSize > Self.wholeDecodeLimit {
            guard let map = try? bounded(["qemu-img", "map", "--output=json", "-f", format, path]), map.status == 0,
                  let entries = try? JSONSerialization.jsonObject(with: Data(map.out.utf8)) as? [[String: Any]] else {
                return "output image \(relative) (\(format), \(virtualSize) bytes) could not be mapped"
            }
            pieces = entries.filter { $0["data"] as? Bool == true }.compactMap { entry in
                guard let start = (entry["start"] as? NSNumber)?.uint64Value,
                      let length = (entry["length"] as? NSNumber)?.uint64Value else { return nil }
                return (start, length)
            }
        } else {
            pieces = [nil]
        }
        for piece in pieces {
            let arguments = piece.map { piece in
                ["qemu-img", "dd", "-f", format, "-O", "raw", "bs=512", "skip=\(piece.offset / 512)",
                 "count=\(min(piece.length, 256 << 20) / 512)", "if=\(path)", "of=\(decoded)"]
            } ?? ["qemu-img", "convert", "-f", format, "-O", "raw", path, decoded]
            guard let convert = try? bounded(arguments) else { return "output image \(relative) could not be decoded" }
            guard convert.status == 0 else {
                return "output image \(relative) (\(format)) could not be decoded: \(Self.firstLine(convert.err))"
            }
            if MarkerSearch.file(decoded, contains: marker) { return "leak: secret in the content of output image \(relative)" }
            unlink(decoded)
        }
        return nil
    }

    static let wholeDecodeLimit: UInt64 = 64 << 30

    /// A host tool under `timeout -s KILL 60`, in the run's working directory. Blocking:
    /// `judge` runs on a thread of its own.
    private func bounded(_ arguments: [String]) throws -> ShellResult {
        try shBlocking(["timeout", "-s", "KILL", "60"] + arguments, in: URL(fileURLWithPath: workingDirectory), allowFailure: true)
    }

    /// The error line of a run's stderr (`Error: …`), or its last line: logs come first.
    static func firstLine(_ text: String) -> String {
        let lines = text.split(separator: "\n").filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
        let line = lines.last { $0.hasPrefix("Error:") } ?? lines.last
        return String(line?.prefix(240) ?? "(empty)")
    }
}

enum MarkerSearch {
    /// Whether `marker` occurs in the file, reading only its data extents (SEEK_DATA), so a
    /// sparse terabyte costs nothing.
    static func file(_ path: String, contains marker: Data) -> Bool {
        let descriptor = open(path, O_RDONLY | O_NONBLOCK)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var status = stat()
        guard fstat(descriptor, &status) == 0, status.st_mode & S_IFMT == S_IFREG else { return false }
        let size = off_t(status.st_size)
        let chunk = 4 << 20
        let overlap = marker.count - 1
        var buffer = [UInt8](repeating: 0, count: chunk + overlap)
        var position: off_t = 0
        while position < size {
            let dataStart = lseek(descriptor, position, 3 /* SEEK_DATA */)
            guard dataStart >= 0 else { break }
            let holeStart = lseek(descriptor, dataStart, 4 /* SEEK_HOLE */)
            let end = holeStart > dataStart ? holeStart : size
            var offset = dataStart
            var carried = 0
            while offset < end {
                let want = Int(min(off_t(chunk), end - offset))
                let got = buffer.withUnsafeMutableBytes { pread(descriptor, $0.baseAddress.map { $0 + carried }, want, offset) }
                guard got > 0 else { break }
                let filled = carried + got
                let hit = buffer.withUnsafeBytes { bytes in
                    marker.withUnsafeBytes { needle in contains(bytes.prefix(filled), needle) }
                }
                if hit { return true }
                carried = min(overlap, filled)
                buffer.withUnsafeMutableBytes { bytes in
                    guard let base = bytes.baseAddress else { return }
                    memmove(base, base + (filled - carried), carried)
                }
                offset += off_t(got)
            }
            position = end
        }
        return false
    }

    /// memchr for the first byte, memcmp for the rest (glibc's memmem is not exported to Swift).
    private static func contains(_ haystack: UnsafeRawBufferPointer.SubSequence, _ needle: UnsafeRawBufferPointer) -> Bool {
        guard let first = needle.first, let needleBase = needle.baseAddress, let base = haystack.base.baseAddress,
              haystack.count >= needle.count else { return false }
        var start = haystack.startIndex
        let last = haystack.endIndex - needle.count
        while start <= last {
            guard let found = memchr(base + start, Int32(first), last - start + 1) else { return false }
            let index = base.distance(to: UnsafeRawPointer(found))
            if memcmp(base + index, needleBase, needle.count) == 0 { return true }
            start = index + 1
        }
        return false
    }
}
