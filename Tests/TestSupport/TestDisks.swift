import Foundation

/// Small real disk images: an ext4 filesystem holding random data, in every input format.
public enum TestDisks {
    /// A 48 MiB raw disk: ext4 made from a directory with 8 MiB of random bytes.
    public static func makeRaw(at path: String) async throws {
        let content = path + ".content"
        try FileManager.default.createDirectory(atPath: content + "/etc", withIntermediateDirectories: true)
        try "hello from hyper2kvm tests\n".write(toFile: content + "/etc/motd", atomically: true, encoding: .utf8)
        try await sh(["dd", "if=/dev/urandom", "of=\(content)/random.bin", "bs=1M", "count=8", "status=none"])
        try await sh(["truncate", "-s", "48M", path])
        try await sh(["mkfs.ext4", "-q", "-F", "-d", content, path])
        try FileManager.default.removeItem(atPath: content)
    }

    /// qemu-img options for each variant: (extension, qemu format, extra options).
    public static let variants: [(name: String, ext: String, format: String, options: [String])] = [
        ("vmdk-sparse", "vmdk", "vmdk", []),
        ("vmdk-stream", "vmdk", "vmdk", ["-o", "subformat=streamOptimized"]),
        ("vhd", "vhd", "vpc", []),
        ("vhdx", "vhdx", "vhdx", []),
        ("raw", "raw", "raw", []),
        ("img", "img", "raw", []),
        ("qcow2", "qcow2", "qcow2", []),
    ]

    public static func convert(raw: String, to path: String, format: String, options: [String]) async throws {
        try await sh(["qemu-img", "convert", "-f", "raw", "-O", format] + options + [raw, path])
    }

    /// A fresh raw disk in `scratch` and a copy of it as a VMDK named `name`: (raw, source).
    public static func makeSource(in scratch: Scratch, named name: String = "vm.vmdk", options: [String] = []) async throws -> (raw: String, source: String) {
        let raw = scratch.path("base.raw")
        try await makeRaw(at: raw)
        let source = scratch.path(name)
        try await convert(raw: raw, to: source, format: "vmdk", options: options)
        return (raw, source)
    }

    public static func sha256(_ path: String) async throws -> String {
        String(try await sh(["sha256sum", path]).out.prefix(64))
    }
}
