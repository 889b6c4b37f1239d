import Foundation
import Testing
import TestSupport

/// Every input format through the real binary, journal and stages (guest fixes off):
/// the published disk equals the source, SHA256SUMS verifies, domain.xml validates.
@Suite(.serialized, .tags(.slow), .notInQuickRun) struct PipelineEndToEndTests {
    struct Published {
        let directory: String
        let disk: String
    }

    func convert(_ source: String, scratch: Scratch, extra: [String] = []) async throws -> Published {
        let out = scratch.path("out")
        let run = try await sh([ProductBinary.path, "convert", source, "--output-dir", out, "--no-fix"] + extra, allowFailure: true)
        #expect(run.status == 0, "convert failed: \(run.err)")
        let name = URL(fileURLWithPath: source).deletingPathExtension().lastPathComponent
        let directory = out + "/" + name
        return Published(directory: directory, disk: directory + "/\(name).qcow2")
    }

    func expectPublishedIntact(_ published: Published, equalTo raw: String) async throws {
        let compare = try await sh(["qemu-img", "compare", "-f", "raw", "-F", "qcow2", raw, published.disk], allowFailure: true)
        #expect(compare.status == 0, "content differs: \(compare.out) \(compare.err)")
        let sums = try await sh(["sh", "-c", "cd '\(published.directory)' && sha256sum -c SHA256SUMS"], allowFailure: true)
        #expect(sums.status == 0, "SHA256SUMS: \(sums.out) \(sums.err)")
        #expect(sums.out.contains("domain.xml: OK") && sums.out.contains("metadata.json: OK"))
        let validate = try await sh(["virt-xml-validate", published.directory + "/domain.xml", "domain"], allowFailure: true)
        #expect(validate.status == 0, "domain.xml invalid: \(validate.err)")
        let define = try await sh(["virsh", "-q", "-c", "test:///default", "define", published.directory + "/domain.xml"], allowFailure: true)
        #expect(define.status == 0, "virsh define: \(define.err)")
        let metadata = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: published.directory + "/metadata.json")))
        let outputs = (metadata as? [String: Any])?["outputs"] as? [[String: Any]]
        let uuid = ((metadata as? [String: Any])?["domain"] as? [String: Any])?["uuid"] as? String
        let xml = try String(contentsOfFile: published.directory + "/domain.xml", encoding: .utf8)
        #expect(uuid != nil && xml.contains("<uuid>\(uuid ?? "-")</uuid>"), "metadata.json and domain.xml must name the same domain")
        #expect(outputs?.first?["sha256"] as? String == (try await TestDisks.sha256(published.disk)))
    }

    @Test(arguments: TestDisks.variants.map(\.name))
    func everyDiskFormatConverts(variant: String) async throws {
        let scratch = try Scratch("e2e-\(variant)")
        let raw = scratch.path("base.raw")
        try await TestDisks.makeRaw(at: raw)
        guard let spec = TestDisks.variants.first(where: { $0.name == variant }) else { return }
        let source = scratch.path("vm-\(variant).\(spec.ext)")
        try await TestDisks.convert(raw: raw, to: source, format: spec.format, options: spec.options)
        let before = try await TestDisks.sha256(source)
        let published = try await convert(source, scratch: scratch)
        try await expectPublishedIntact(published, equalTo: raw)
        #expect(try await TestDisks.sha256(source) == before, "the source was modified")
    }

    @Test func ovaConvertsWithItsVMSettings() async throws {
        let scratch = try Scratch("e2e-ova")
        let raw = scratch.path("base.raw")
        try await TestDisks.makeRaw(at: raw)
        let ova = try await OVABuilder.make(name: "web01", raw: raw, in: scratch.url.path)
        let before = try await TestDisks.sha256(ova)
        let published = try await convert(ova, scratch: scratch)
        try await expectPublishedIntact(published, equalTo: raw)
        let xml = try String(contentsOfFile: published.directory + "/domain.xml", encoding: .utf8)
        #expect(xml.contains("00:50:56:aa:bb:cc"))
        #expect(xml.contains("<vcpu") && xml.contains(">2</vcpu>"))
        #expect(xml.contains("1024"))
        #expect(try await TestDisks.sha256(ova) == before)
    }

    @Test func compressedOutputHasTheSameContent() async throws {
        let scratch = try Scratch("e2e-zstd")
        let (raw, source) = try await TestDisks.makeSource(in: scratch, named: "small.vmdk")
        let published = try await convert(source, scratch: scratch, extra: ["--compress"])
        try await expectPublishedIntact(published, equalTo: raw)
        let info = try await sh(["qemu-img", "info", published.disk]).out
        #expect(info.contains("compression type: zstd"))
    }

    @Test func secondJobWithTheSameVMNameGetsItsOwnDirectory() async throws {
        let scratch = try Scratch("e2e-names")
        let raw = scratch.path("base.raw")
        try await TestDisks.makeRaw(at: raw)
        try FileManager.default.createDirectory(atPath: scratch.path("a"), withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: scratch.path("b"), withIntermediateDirectories: true)
        try await TestDisks.convert(raw: raw, to: scratch.path("a/vm.vmdk"), format: "vmdk", options: [])
        try await TestDisks.convert(raw: raw, to: scratch.path("b/vm.vmdk"), format: "vmdk", options: [])
        let out = scratch.path("out")
        for source in ["a/vm.vmdk", "b/vm.vmdk"] {
            try await sh([ProductBinary.path, "convert", scratch.path(source), "--output-dir", out, "--no-fix",
                    "--state-dir", scratch.path("state")])
        }
        #expect(FileManager.default.fileExists(atPath: out + "/vm/vm.qcow2"))
        #expect(FileManager.default.fileExists(atPath: out + "/vm-2/vm.qcow2"))
        let xml = try String(contentsOfFile: out + "/vm-2/domain.xml", encoding: .utf8)
        #expect(xml.contains(out + "/vm-2/vm.qcow2"))
    }

    @Test func badInputsFailClearlyAndLeaveTheSourceAlone() async throws {
        let scratch = try Scratch("e2e-bad")
        try Data().write(to: URL(fileURLWithPath: scratch.path("empty.vmdk")))
        try await sh(["dd", "if=/dev/urandom", "of=\(scratch.path("garbage.vmdk"))", "bs=64k", "count=4", "status=none"])
        for (name, expected) in [("empty.vmdk", "empty"), ("garbage.vmdk", "not a VMDK")] {
            let source = scratch.path(name)
            let before = try await TestDisks.sha256(source)
            let run = try await sh([ProductBinary.path, "convert", source, "--output-dir", scratch.path("out")], allowFailure: true)
            #expect(run.status != 0)
            #expect(run.err.contains(source), "error does not name the file: \(run.err)")
            #expect(run.err.lowercased().contains(expected.lowercased()), "error does not say what is wrong: \(run.err)")
            #expect(!run.err.contains("Fatal error"))
            #expect(try await TestDisks.sha256(source) == before)
        }
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: scratch.path("out"))
        #expect(leftovers == [".hyper2kvm"], "something was published: \(leftovers)")
    }
}
