import Foundation
import Testing
import TestSupport
@testable import Stages

/// Probe and extract run our parsers of untrusted bytes in a child `hyper2kvm internal
/// read-source`: its answers are the in-process answers, and a trap in it is one failed
/// job. These run the real executable, which `swift build --build-tests` puts beside the
/// test bundle (`IsolatedSourceReader.locate` finds it there).
@Suite("IsolatedSourceReader", .serialized)
struct IsolatedSourceReaderTests {
    private func reader(trapOn name: String? = nil) throws -> IsolatedSourceReader {
        var reader = try IsolatedSourceReader.locate()
        if let name { reader.extraEnvironment = ["HYPER2KVM_READER_TRAP_FOR_TESTS": name] }
        return reader
    }

    @Test("the child finds the hyper2kvm executable beside the test bundle")
    func locatesTheProduct() throws {
        let reader = try IsolatedSourceReader.locate(environment: [:])
        #expect(URL(fileURLWithPath: reader.executable).lastPathComponent == "hyper2kvm")
        #expect(try IsolatedSourceReader.locate(environment: ["HYPER2KVM_EXECUTABLE": "/opt/h2k"]).executable == "/opt/h2k")
    }

    @Test("a disk and an OVA read in the child equal the same read in this process")
    func childAnswersAsInProcess() async throws {
        let dir = try Scratch()
        let scratch = try dir.subdirectory("scratch")
        let image = try await TestImageFactory.makeImage(.vmdkMonolithicSparse, named: "db-server", in: dir.url, sizeMiB: 16, randomMiB: 1)
        let ova = try await TestImageFactory.makeOVA(in: dir.url, manifest: "SHA256").url
        let reader = try reader()
        for source in [image, ova] {
            let kind = try await reader.identify(source)
            #expect(kind == (try InputProbe.identify(source)))
            let isolated = try await reader.read(source: source, kind: kind, scratchDirectory: scratch)
            let local = try await SourceReader.read(source: source, kind: kind, scratchDirectory: scratch)
            #expect(isolated == local)
        }
    }

    @Test("a stage error in the child is the same stage error here")
    func childStageErrorsArriveIntact() async throws {
        let dir = try Scratch()
        let garbage = dir.file("garbage.vmdk")
        try TestImageFactory.writeRandom(at: garbage, bytes: 64 * 1024)
        let isolated = await #expect(throws: StageError.self) { try await reader().identify(garbage) }
        let local = #expect(throws: StageError.self) { try InputProbe.identify(garbage) }
        #expect(isolated == local)
        #expect(isolated?.code == .badInput)
    }

    @Test("a reader that traps is a bad-input failure of this source that quotes the trap")
    func aTrapIsOneFailedRead() async throws {
        let dir = try Scratch()
        let image = try await TestImageFactory.makeImage(.vmdkMonolithicSparse, named: "boom", in: dir.url, sizeMiB: 16, randomMiB: 1)
        let error = await #expect(throws: StageError.self) { try await reader(trapOn: image.lastPathComponent).identify(image) }
        #expect(error?.code == .badInput)
        #expect(error?.file == image.path)
        let message = error?.message ?? ""
        #expect(message.hasPrefix("reading the source crashed the reader (signal "), "\(message)")
        #expect(message.contains("Fatal error: HYPER2KVM_READER_TRAP_FOR_TESTS asked the reader to trap on boom.vmdk"), "\(message)")
        #expect(message.hasSuffix("; the daemon is unaffected"), "\(message)")
        // Armed for another file, the trap does not fire.
        #expect(try await reader(trapOn: "other.vmdk").identify(image) == .vmdk)
    }

    @Test("the probe stage reads through the child")
    func probeStageUsesTheChild() async throws {
        let dir = try Scratch()
        let image = try await TestImageFactory.makeImage(.vmdkMonolithicSparse, named: "boom", in: dir.url, sizeMiB: 16, randomMiB: 1)
        let work = try dir.subdirectory("work")
        let context = StageContext(jobID: 1, source: image, kind: .vmdk, workDirectory: work, options: ConversionOptions(),
                                   recorded: [:], outputRoot: try dir.subdirectory("out"))
        let error = await #expect(throws: StageError.self) {
            try await ProbeStage(reader: reader(trapOn: "boom.vmdk")).run(in: context)
        }
        #expect(error?.message.contains("crashed the reader") == true, "\(String(describing: error))")
        let outputs = try await ProbeStage(reader: reader()).run(in: context)
        #expect(outputs.files[StageFiles.vm] != nil)
    }

    @Test("the child's limits: 2 GiB of address space, CPU and wall clock grow with the source")
    func limitsGrowWithTheSource() {
        let small = IsolatedSourceReader.limits(sourceBytes: 0)
        #expect(small.addressSpaceBytes == 2 << 30)
        #expect(small.cpuSeconds == 60)
        #expect(small.wallClock?.duration == .seconds(600))
        #expect(small.wallClock?.blame == .badInput)
        let large = IsolatedSourceReader.limits(sourceBytes: 100 << 30)
        #expect(large.cpuSeconds == 60 + 2048)
        #expect(large.wallClock?.duration == .seconds(600 + 5120))
        // A gzip AMI is decompressed by a gzip that inherits the CPU limit; its output is unstated.
        let ami = IsolatedSourceReader.limits(sourceBytes: 1 << 30, reading: .ami)
        #expect(ami.cpuSeconds == nil)
        #expect(ami.wallClock?.duration == .seconds(600 + 64 * 1024 / 20))
        #expect(IsolatedSourceReader.limits(sourceBytes: .max, reading: .ami).wallClock != nil)
    }
}
