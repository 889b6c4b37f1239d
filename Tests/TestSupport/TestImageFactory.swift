import Foundation

/// Builds real disk images and archives with the real tools (qemu-img, tar, python3).
public enum TestImageFactory {
    /// qemu-img `convert -O` targets with their creation options, as the inputs the pipeline accepts.
    public enum ImageVariant: String, CaseIterable, Sendable {
        case raw, qcow2, vhd, vhdx
        case vmdkMonolithicSparse, vmdkStreamOptimized, vmdkMonolithicFlat, vmdkTwoGbMaxExtentSparse

        public var qemuFormat: String {
            switch self {
            case .raw: "raw"
            case .qcow2: "qcow2"
            case .vhd: "vpc"
            case .vhdx: "vhdx"
            case .vmdkMonolithicSparse, .vmdkStreamOptimized, .vmdkMonolithicFlat, .vmdkTwoGbMaxExtentSparse: "vmdk"
            }
        }

        public var fileExtension: String {
            switch self {
            case .raw: "raw"
            case .qcow2: "qcow2"
            case .vhd: "vhd"
            case .vhdx: "vhdx"
            default: "vmdk"
            }
        }

        public var createOptions: [String] {
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

    /// Runs a tool to completion; throws `TestToolFailure` with its stderr unless it exits 0.
    /// Returns stdout.
    @discardableResult
    public static func run(_ executable: String, _ arguments: [String], in directory: URL? = nil) async throws -> String {
        try await sh([executable] + arguments, in: directory).out
    }

    /// A raw image of `sizeMiB` whose first `randomMiB` are random and the rest a hole.
    public static func makeRaw(at url: URL, sizeMiB: Int = 32, randomMiB: Int = 4) async throws {
        try await run("dd", ["if=/dev/urandom", "of=\(url.path)", "bs=1M", "count=\(randomMiB)", "status=none"])
        try await run("truncate", ["-s", "\(sizeMiB)M", url.path])
    }

    /// Converts `raw` into `variant` at `url` with qemu-img.
    public static func convert(_ raw: URL, to variant: ImageVariant, at url: URL) async throws {
        try await run("qemu-img", ["convert", "-f", "raw", "-O", variant.qemuFormat] + variant.createOptions + [raw.path, url.path])
    }

    /// A raw source plus its conversion to `variant`, named `<stem>.<ext>` in `directory`.
    public static func makeImage(_ variant: ImageVariant, named stem: String = "disk", in directory: URL,
                          sizeMiB: Int = 32, randomMiB: Int = 4) async throws -> URL {
        let raw = directory.appendingPathComponent("\(stem)-source.bin")
        try await makeRaw(at: raw, sizeMiB: sizeMiB, randomMiB: randomMiB)
        let image = directory.appendingPathComponent("\(stem).\(variant.fileExtension)")
        if variant == .raw {
            try FileManager.default.moveItem(at: raw, to: image)
        } else {
            try await convert(raw, to: variant, at: image)
            try FileManager.default.removeItem(at: raw)
        }
        return image
    }

    /// `sha256sum` / `sha1sum` of a file, as the reference for our own digests.
    public static func referenceDigest(_ tool: String = "sha256sum", of url: URL) async throws -> String {
        let line = try await run(tool, [url.path])
        return String(line.prefix { $0 != " " })
    }

    /// Random bytes of a given size.
    public static func writeRandom(at url: URL, bytes: Int) throws {
        let source = try FileHandle(forReadingFrom: URL(fileURLWithPath: "/dev/urandom"))
        defer { try? source.close() }
        let data = try source.read(upToCount: bytes) ?? Data()
        try data.write(to: url)
    }

    /// Writes an OVA (ustar, as VMware's ovftool does) holding `members` in order, with GNU tar.
    public static func makeTar(at url: URL, from directory: URL, members: [String], gzip: Bool = false) async throws {
        try await run("tar", ["--format=ustar", gzip ? "-czf" : "-cf", url.path, "-C", directory.path] + members)
    }

    /// An OVF manifest (`.mf`) over `members` of `directory`.
    public static func manifest(for members: [String], in directory: URL, algorithm: String = "SHA256") async throws -> String {
        let tool = algorithm == "SHA1" ? "sha1sum" : "sha256sum"
        var lines = ""
        for name in members {
            lines += "\(algorithm)(\(name))= \(try await referenceDigest(tool, of: directory.appendingPathComponent(name)))\n"
        }
        return lines
    }

    /// Runs a python3 snippet (used to craft hostile tar archives).
    public static func python(_ script: String) async throws {
        try await run("python3", ["-c", script])
    }
}
