import Foundation
import TestSupport
@testable import Stages

extension TestImageFactory {
    /// An OVA built like ovftool's: `.ovf`, `.mf`, then streamOptimized disks, in a ustar.
    struct BuiltOVA {
        var url: URL
        /// The raw image each disk was converted from, in disk order (for `qemu-img compare`).
        var sourceRaws: [URL]
        /// Disk member names in disk order.
        var diskNames: [String]
    }

    enum OVAStyle { case vmware, virtualBox }

    /// Builds `<name>.ova` in `directory`. `manifest`: "SHA256", "SHA1" or nil for none;
    /// `tamper` writes a wrong digest for the first disk.
    static func makeOVA(named name: String = "web01", in directory: URL, style: OVAStyle = .vmware, diskCount: Int = 2,
                        manifest: String? = "SHA256", tamper: Bool = false, sizeMiB: Int = 16) async throws -> BuiltOVA {
        let staging = directory.appendingPathComponent("\(name)-ova-build")
        try FileManager.default.createDirectory(at: staging, withIntermediateDirectories: true)
        let count = style == .virtualBox ? 1 : diskCount
        var raws: [URL] = []
        var disks: [OVFFixtures.DiskFile] = []
        for index in 1...count {
            let raw = directory.appendingPathComponent("\(name)-disk\(index).raw")
            try await makeRaw(at: raw, sizeMiB: sizeMiB, randomMiB: 1 + index)
            let diskName = "\(name)-disk\(index).vmdk"
            let vmdk = staging.appendingPathComponent(diskName)
            try await convert(raw, to: .vmdkStreamOptimized, at: vmdk)
            raws.append(raw)
            disks.append(.init(href: diskName, size: try fileSize(vmdk), capacityMiB: sizeMiB))
        }
        let ovfName = "\(name).ovf"
        let ovfText = style == .vmware ? OVFFixtures.vmware(name: name, disks: disks)
                                       : OVFFixtures.virtualBox(name: name, disk: disks[0])
        try ovfText.write(to: staging.appendingPathComponent(ovfName), atomically: true, encoding: .utf8)
        var members = [ovfName]
        if let manifest {
            var text = try await self.manifest(for: [ovfName] + disks.map(\.href), in: staging, algorithm: manifest)
            if tamper {
                let wrong = String(repeating: "0", count: manifest == "SHA1" ? 40 : 64)
                let lines = text.split(separator: "\n").map { line in
                    line.hasPrefix("\(manifest)(\(disks[0].href))") ? "\(manifest)(\(disks[0].href))= \(wrong)" : String(line)
                }
                text = lines.joined(separator: "\n") + "\n"
            }
            try text.write(to: staging.appendingPathComponent("\(name).mf"), atomically: true, encoding: .utf8)
            members.append("\(name).mf")
        }
        members += disks.map(\.href)
        let ova = directory.appendingPathComponent("\(name).ova")
        try await makeTar(at: ova, from: staging, members: members)
        try FileManager.default.removeItem(at: staging)
        return BuiltOVA(url: ova, sourceRaws: raws, diskNames: disks.map(\.href))
    }

    static func fileSize(_ url: URL) throws -> UInt64 {
        let attributes = try FileManager.default.attributesOfItem(atPath: url.path)
        return (attributes[.size] as? NSNumber)?.uint64Value ?? 0
    }

    /// Fails unless `qemu-img compare` finds the disk at `locator` equal to `raw`.
    static func expectSameContent(_ locator: String, format: String, as raw: URL) async throws {
        try await run("qemu-img", ["compare", "-f", format, "-F", "raw", locator, raw.path])
    }

    /// The same for a disk as the product reads it: pinned, through its closed option tree
    /// (the image stays open until qemu-img has finished).
    static func expectSameContent(_ locator: DiskLocator, as raw: URL) async throws {
        let pinned = try PinnedImage.open(locator)
        try await run("qemu-img", ["compare", "-f", locator.format, "-F", "raw", pinned.spec, raw.path])
        withExtendedLifetime(pinned) {}
    }
}
