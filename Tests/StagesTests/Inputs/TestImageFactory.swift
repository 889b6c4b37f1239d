import Foundation

/// A directory under the system temp dir owned by one test, removed when the value dies.
///
/// Shared with other suites (Outputs): keep the API stable.
final class TestDirectory: Sendable {
    let url: URL

    init(_ label: String = #function) throws {
        let safe = label.filter { $0.isLetter || $0.isNumber }
        url = FileManager.default.temporaryDirectory
            .appendingPathComponent("h2k-\(safe.prefix(40))-\(UUID().uuidString.prefix(8))")
        try FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
    }

    deinit {
        try? FileManager.default.removeItem(at: url)
    }

    func file(_ name: String) -> URL { url.appendingPathComponent(name) }

    /// Creates (if needed) and returns a subdirectory.
    func subdirectory(_ name: String) throws -> URL {
        let sub = url.appendingPathComponent(name)
        try FileManager.default.createDirectory(at: sub, withIntermediateDirectories: true)
        return sub
    }

    /// Every path below the directory, relative, sorted (to prove nothing else was written).
    func listing() -> [String] {
        let base = url.resolvingSymlinksInPath().path
        guard let walker = FileManager.default.enumerator(atPath: base) else { return [] }
        return walker.compactMap { $0 as? String }.sorted()
    }
}

/// Failure of a helper tool a test ran; the test fails with the tool's stderr.
struct TestToolFailure: Error, CustomStringConvertible {
    var command: [String]
    var status: Int32
    var stderr: String
    var description: String { "\(command.joined(separator: " ")) exited \(status): \(stderr)" }
}

/// Builds real disk images and archives with the real tools (qemu-img, tar, python3).
///
/// Shared with other suites (Outputs): keep the API stable.
enum TestImageFactory {
    /// qemu-img `convert -O` targets with their creation options, as the inputs the pipeline accepts.
    enum ImageVariant: String, CaseIterable, Sendable {
        case raw, qcow2, vhd, vhdx
        case vmdkMonolithicSparse, vmdkStreamOptimized, vmdkMonolithicFlat, vmdkTwoGbMaxExtentSparse

        var qemuFormat: String {
            switch self {
            case .raw: "raw"
            case .qcow2: "qcow2"
            case .vhd: "vpc"
            case .vhdx: "vhdx"
            case .vmdkMonolithicSparse, .vmdkStreamOptimized, .vmdkMonolithicFlat, .vmdkTwoGbMaxExtentSparse: "vmdk"
            }
        }

        var fileExtension: String {
            switch self {
            case .raw: "raw"
            case .qcow2: "qcow2"
            case .vhd: "vhd"
            case .vhdx: "vhdx"
            default: "vmdk"
            }
        }

        var createOptions: [String] {
            switch self {
            case .vmdkMonolithicSparse: ["-o", "subformat=monolithicSparse"]
            case .vmdkStreamOptimized: ["-o", "subformat=streamOptimized"]
            case .vmdkMonolithicFlat: ["-o", "subformat=monolithicFlat"]
            case .vmdkTwoGbMaxExtentSparse: ["-o", "subformat=twoGbMaxExtentSparse"]
            case .vhd: ["-o", "subformat=dynamic"]
            default: []
            }
        }
    }

    /// Runs a tool to completion; throws with its stderr unless it exits 0. Returns stdout.
    @discardableResult
    static func run(_ executable: String, _ arguments: [String], in directory: URL? = nil) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [executable] + arguments
        if let directory { process.currentDirectoryURL = directory }
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        // Read before waiting so a chatty tool cannot block on a full pipe.
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        let errData = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        guard process.terminationStatus == 0 else {
            throw TestToolFailure(command: [executable] + arguments, status: process.terminationStatus,
                                  stderr: String(decoding: errData, as: UTF8.self))
        }
        return String(decoding: outData, as: UTF8.self)
    }

    /// A raw image of `sizeMiB` whose first `randomMiB` are random and the rest a hole.
    static func makeRaw(at url: URL, sizeMiB: Int = 32, randomMiB: Int = 4) throws {
        try run("dd", ["if=/dev/urandom", "of=\(url.path)", "bs=1M", "count=\(randomMiB)", "status=none"])
        try run("truncate", ["-s", "\(sizeMiB)M", url.path])
    }

    /// Converts `raw` into `variant` at `url` with qemu-img.
    static func convert(_ raw: URL, to variant: ImageVariant, at url: URL) throws {
        try run("qemu-img", ["convert", "-f", "raw", "-O", variant.qemuFormat] + variant.createOptions + [raw.path, url.path])
    }

    /// A raw source plus its conversion to `variant`, named `<stem>.<ext>` in `directory`.
    static func makeImage(_ variant: ImageVariant, named stem: String = "disk", in directory: URL,
                          sizeMiB: Int = 32, randomMiB: Int = 4) throws -> URL {
        let raw = directory.appendingPathComponent("\(stem)-source.bin")
        try makeRaw(at: raw, sizeMiB: sizeMiB, randomMiB: randomMiB)
        let image = directory.appendingPathComponent("\(stem).\(variant.fileExtension)")
        if variant == .raw {
            try FileManager.default.moveItem(at: raw, to: image)
        } else {
            try convert(raw, to: variant, at: image)
            try FileManager.default.removeItem(at: raw)
        }
        return image
    }

    /// `sha256sum` / `sha1sum` of a file, as the reference for our own digests.
    static func referenceDigest(_ tool: String = "sha256sum", of url: URL) throws -> String {
        let line = try run(tool, [url.path])
        return String(line.prefix { $0 != " " })
    }

    /// Random bytes of a given size.
    static func writeRandom(at url: URL, bytes: Int) throws {
        let source = try FileHandle(forReadingFrom: URL(fileURLWithPath: "/dev/urandom"))
        defer { try? source.close() }
        let data = try source.read(upToCount: bytes) ?? Data()
        try data.write(to: url)
    }

    /// Writes an OVA (ustar, as VMware's ovftool does) holding `members` in order, with GNU tar.
    static func makeTar(at url: URL, from directory: URL, members: [String], gzip: Bool = false) throws {
        try run("tar", ["--format=ustar", gzip ? "-czf" : "-cf", url.path, "-C", directory.path] + members)
    }

    /// An OVF manifest (`.mf`) over `members` of `directory`.
    static func manifest(for members: [String], in directory: URL, algorithm: String = "SHA256") throws -> String {
        let tool = algorithm == "SHA1" ? "sha1sum" : "sha256sum"
        return try members.map { name in
            "\(algorithm)(\(name))= \(try referenceDigest(tool, of: directory.appendingPathComponent(name)))\n"
        }.joined()
    }

    /// Runs a python3 snippet (used to craft hostile tar archives).
    static func python(_ script: String) throws {
        try run("python3", ["-c", script])
    }
}
