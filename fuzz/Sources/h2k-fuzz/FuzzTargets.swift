import CFuzzerDriver
import Foundation
@testable import GuestFix
@testable import Stages

/// One libFuzzer entry point for every parser of untrusted bytes; `H2K_FUZZ_TARGET` picks
/// which one a run exercises (one binary links once instead of once per parser).
///
/// A target passes when the parser returns or throws; a trap (overflow, bad index, failed
/// precondition) or a sanitizer report is the finding.
enum FuzzTarget: String, CaseIterable {
    case vmdkDescriptor = "vmdk-descriptor"
    case vmdkSparse = "vmdk-sparse"
    case inputProbe = "input-probe"
    case tar = "tar"
    case ova = "ova"
    case ovf = "ovf"
    case ovfManifest = "ovf-manifest"
    case artifactJSON = "artifact-json"
    case artifactYAML = "artifact-yaml"
    case iso9660 = "iso9660"
    case pinnedImage = "pinned-image"
    case vmx = "vmx"
    case vhdx = "vhdx"

    /// Parsers that take a path read the bytes from here: a private directory in /dev/shm
    /// (or $TMPDIR), rewritten for every input.
    static let workDirectory: URL = {
        let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        let url = URL(fileURLWithPath: base).appendingPathComponent("h2k-fuzz-\(getpid())")
        try? FileManager.default.createDirectory(at: url, withIntermediateDirectories: true)
        // libFuzzer leaves through exit(); fork mode starts a process per job, so each removes its own.
        atexit { try? FileManager.default.removeItem(at: FuzzTarget.workDirectory) }
        // An extent the fuzzed descriptors may name, so the flat-extent size arithmetic runs.
        try? Data(count: 4096).write(to: url.appendingPathComponent("x-flat.vmdk"))
        return url
    }()

    static func write(_ data: Data, as name: String) -> URL {
        let url = workDirectory.appendingPathComponent(name)
        do { try data.write(to: url) } catch { fatalError("fuzz harness cannot write \(url.path): \(error)") }
        return url
    }

    func run(_ data: Data) {
        let file = "fuzz-input"
        switch self {
        case .vmdkDescriptor:
            _ = QemuVMDKDescriptorScan.extents(in: Array(data))
            _ = QemuVMDKDescriptorScan.parentFileNameHint(in: Array(data))
            _ = try? VMDKDescriptor.parse(String(decoding: data, as: UTF8.self), file: file)
            let url = Self.write(data, as: "d.vmdk")
            _ = try? VMDKDescriptor.validateChain(startingAt: url)
            _ = VMDKDescriptor.extentOwnership(in: Self.workDirectory, listing: ["d.vmdk", "x-flat.vmdk"])
        case .vmdkSparse:
            let url = Self.write(data, as: "s.vmdk")
            if let reader = try? ByteRangeReader(path: url.path), let layout = try? SparseVMDKLayout(reading: reader) {
                _ = layout.grainTableCount
                _ = try? layout.verifyComplete(in: reader)
                if let text = try? layout.embeddedDescriptor(in: reader) {
                    _ = try? VMDKDescriptor.parse(text, file: file)
                }
            }
            _ = try? VMDKDescriptor.validateChain(startingAt: url)
        case .inputProbe:
            // The same bytes under every extension identify() treats differently.
            let url = Self.write(data, as: "p.bin")
            if let reader = try? ByteRangeReader(path: url.path) {
                _ = try? InputProbe.signature(of: reader)
                _ = try? QcowTail.endsInShortL1Table(reader, imageEnd: reader.size)
            }
            for name in ["p.vhd", "p.vhdx", "p.vmdk", "p.img", "p.ova", "p.ovf", "p.json", "p.bin"] {
                let link = Self.workDirectory.appendingPathComponent(name)
                if name != "p.bin", !FileManager.default.fileExists(atPath: link.path) {
                    try? FileManager.default.createSymbolicLink(atPath: link.path, withDestinationPath: "p.bin")
                }
                _ = try? InputProbe.identify(link)
            }
        case .pinnedImage:
            // What the product reads itself before qemu sees an image: the qcow2 header (data
            // file, backing name, extensions), the chain and descriptor-copy building, and the
            // tar end tracker that stops an AMI's decompression.
            let qcow2 = Self.write(data, as: "q.qcow2")
            if let reader = try? ByteRangeReader(path: qcow2.path) { _ = try? QcowHeader(reading: reader) }
            _ = try? PinnedImage.open(DiskLocator(path: qcow2.path, format: "qcow2"))
            let vmdk = Self.write(data, as: "v.vmdk")
            _ = try? PinnedImage.open(DiskLocator(path: vmdk.path, format: "vmdk"))
            let archive = Self.write(data, as: "a.tar")
            let descriptor = open(archive.path, O_RDONLY | O_CLOEXEC)
            if descriptor >= 0 {
                var end = TarStreamEnd()
                _ = end.follow(descriptor, written: UInt64(data.count))
                close(descriptor)
            }
        case .vmx:
            // The parser on the bytes, the settings on what it accepts, and the reader on the file
            // (its disks resolved beside it: x-flat.vmdk exists, anything else is missing).
            if let vmx = try? VMXFile.parse(Array(data), file: file) {
                _ = try? VMXSettings(vmx, file: file)
            }
            let url = Self.write(data, as: "m.vmx")
            _ = try? VMXDirectoryReader.read(url)
            _ = try? VMXDirectoryReader.diskFileNames(of: url)
        case .vhdx:
            // A checkpoint file (headers, region table, metadata, parent locator, the whole BAT),
            // its chain resolved inside the work directory (its parent may be itself, or the
            // seed base beside it), and the partition-table firmware check on the same bytes.
            let url = Self.write(data, as: "c.avhdx")
            _ = Self.write(data, as: "base.vhdx")  // the parent the seeds' relative_path names
            if let reader = try? ByteRangeReader(path: url.path), let layout = try? VHDXLayout(reading: reader) {
                let table = VHDXBlockTable(layout: layout, reader: reader)
                _ = try? table.validateAll()
                if !layout.hasParent { _ = try? table.leadingBytes(1 << 20) }
            }
            _ = try? VHDXChain.resolve(top: url.path, root: Self.workDirectory.path)
            _ = PartitionTableFirmware.firmware(leadingBytes: data, sectorSize: 512)
            _ = PartitionTableFirmware.firmware(leadingBytes: data, sectorSize: 4096)
        case .tar:
            let url = Self.write(data, as: "t.tar")
            _ = try? TarArchiveReader(url: url).members()
        case .ova:
            let url = Self.write(data, as: "o.ova")
            _ = try? OVAReader.read(url)
        case .ovf:
            // Every input, including those that crash FoundationXML's parser: OVFDescriptor.parse
            // refuses them (XMLParserHazards) before the parser sees them.
            _ = try? OVFDescriptor.parse(data, file: file)
        case .ovfManifest:
            _ = try? OVFManifest.parse(String(decoding: data, as: UTF8.self), file: file)
        case .artifactJSON:
            if let manifest = try? ArtifactManifest.parse(data, syntax: .json, file: file) {
                _ = try? manifest.validate(file: file)
                _ = manifest.advisoryFacts
                _ = manifest.directiveFacts
            }
        case .artifactYAML:
            if let manifest = try? ArtifactManifest.parse(data, syntax: .yaml, file: file) {
                _ = try? manifest.validate(file: file)
                _ = manifest.advisoryFacts
                _ = manifest.directiveFacts
            }
        case .iso9660:
            let url = Self.write(data, as: "i.iso")
            if let image = try? ISO9660Image(url: url) {
                for entry in image.files.prefix(64) { _ = try? image.read(entry) }
            }
        }
    }
}

nonisolated(unsafe) var selectedTarget: FuzzTarget?

@_cdecl("LLVMFuzzerInitialize")
public func fuzzerInitialize(_ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>) -> Int32 {
    let name = ProcessInfo.processInfo.environment["H2K_FUZZ_TARGET"] ?? ""
    guard let target = FuzzTarget(rawValue: name) else {
        let names = FuzzTarget.allCases.map(\.rawValue).joined(separator: " ")
        FileHandle.standardError.write(Data("set H2K_FUZZ_TARGET to one of: \(names)\n".utf8))
        exit(2)
    }
    selectedTarget = target
    return 0
}

/// The entry point: SwiftPM links an executable with `main` aliased to `<module>_main`.
@_cdecl("h2k_fuzz_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    var count = argc
    var arguments = argv
    return LLVMFuzzerRunDriver(&count, &arguments, fuzzerTestOneInput)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ start: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    let data = start.map { Data(bytes: $0, count: count) } ?? Data()
    selectedTarget?.run(data)
    return 0
}
