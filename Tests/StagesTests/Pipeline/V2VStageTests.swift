import Foundation
import FoundationXML
import Synchronization
import Testing
import TestSupport
@testable import Stages

/// The parts of `use_v2v: true` that need no appliance: what virt-v2v is given, how its
/// output is read, and when the stage (or `fix`) applies. The conversion itself runs in
/// RealGuestV2VTests (DaemonTests), on a real guest through the daemon.
@Suite struct V2VStageTests {
    func vm(firmware: Firmware = .unknown, disks: Int = 2) -> VMDescription {
        VMDescription(name: "web01'<&>", vcpus: 3, memoryMiB: 4096, firmware: firmware,
                      disks: (0..<disks).map { SourceDisk(id: "disk\($0)", locator: DiskLocator(path: "/q/d\($0).vmdk", format: "vmdk")) },
                      origin: "ovf")
    }

    @Test func theInputDomainListsTheOverlaysInOrderUnderTheJobsNameNeverTheSources() throws {
        let overlays = [URL(fileURLWithPath: "/w/7/overlay-disk0.qcow2.partial"), URL(fileURLWithPath: "/w/7/it's&<one>.partial")]
        let xml = V2VInputDomain.render(jobID: 7, vm: vm(), overlays: overlays)
        let document = try XMLDocument(xmlString: xml)
        #expect(try document.nodes(forXPath: "/domain/name").first?.stringValue == "hyper2kvm-job-7")
        #expect(!xml.contains("web01"), "the source's VM name never reaches virt-v2v")
        let sources = try document.nodes(forXPath: "/domain/devices/disk/source/@file").compactMap(\.stringValue)
        #expect(sources == overlays.map(\.path))
        let targets = try document.nodes(forXPath: "/domain/devices/disk/target/@dev").compactMap(\.stringValue)
        #expect(targets == ["sda", "sdb"])
        #expect(try document.nodes(forXPath: "/domain/devices/disk/driver/@type").compactMap(\.stringValue) == ["qcow2", "qcow2"])
        #expect(try document.nodes(forXPath: "/domain/memory").first?.stringValue == "4096")
        #expect(try document.nodes(forXPath: "/domain/os/@firmware").isEmpty)
        let uefi = try XMLDocument(xmlString: V2VInputDomain.render(jobID: 7, vm: vm(firmware: .uefi), overlays: overlays))
        #expect(try uefi.nodes(forXPath: "/domain/os/@firmware").first?.stringValue == "efi")
    }

    @Test func phaseLinesBecomeProgressAndOtherLinesDoNot() {
        #expect(PhaseProgress.fraction(of: "[  48.7] Inspecting the source") == 0.35)
        #expect(PhaseProgress.fraction(of: "[ 129.1] Converting 12.5 to run on KVM") == 0.6)
        #expect(PhaseProgress.fraction(of: "virt-v2v-in-place: warning: mount: …") == nil)
        #expect(PhaseProgress.fraction(of: "Inspecting the source") == nil)
        let seen = Mutex<[Double]>([])
        let progress = PhaseProgress { fraction in seen.withLock { $0.append(fraction) } }
        progress.consume(Data("[   0.0] Setting up the source: -i libvirtxml x\n[   1.0] Open".utf8))
        progress.consume(Data("ing the source\n[  48".utf8))
        #expect(seen.withLock { $0 } == [0.02, 0.05], "a line split across reads counts once, when complete")
    }

    @Test func virtV2VsOwnErrorLinesAreQuotedVerbatim() {
        let transcript = VirtV2VInPlace.Transcript(
            stdout: "[   0.0] Setting up the source\nvirt-v2v-in-place: warning: mount: mount_stub: /dev/sdc1: No such file\n",
            stderr: "virt-v2v-in-place: error: failed to find grub2-mkconfig binary (but Grub2 was detected on guest)\n\n"
                + "If reporting bugs, run virt-v2v-in-place with debugging enabled and include the complete output:\n\n"
                + "  virt-v2v-in-place -v -x [...]\n")
        #expect(transcript.errorText == "virt-v2v-in-place: error: failed to find grub2-mkconfig binary (but Grub2 was detected on guest)")
        #expect(transcript.warnings == ["virt-v2v-in-place: warning: mount: mount_stub: /dev/sdc1: No such file"])
        let silent = VirtV2VInPlace.Transcript(stdout: "", stderr: "")
        #expect(silent.errorText == "(it printed nothing on stderr)")
    }

    @Test func aHostWithoutVirtV2VIsToldWhatToInstall() throws {
        let empty = try Scratch("no-v2v")
        guard case .failure(let missing) = VirtV2VInPlace.locate(environment: ["PATH": empty.path]) else {
            Issue.record("found virt-v2v in an empty directory")
            return
        }
        #expect(missing.programs == ["virt-v2v-in-place", "nbdkit", "qemu-nbd"])
        #expect(missing.description.contains("apt-get install virt-v2v nbdkit libnbd-bin"))
    }

    @Test func eitherFixOrV2VRunsNeverBoth() throws {
        let scratch = try Scratch("v2v-skip")
        func context(_ configure: (inout ConversionOptions) -> Void) -> StageContext {
            var options = ConversionOptions()
            configure(&options)
            return StageContext(jobID: 1, source: scratch.file("vm.vmdk"), kind: .vmdk, workDirectory: scratch.url,
                                options: options, recorded: [:], outputRoot: scratch.url)
        }
        let ours = context { _ in }
        #expect(FixStage().skipReason(in: ours) == nil)
        #expect(V2VStage().skipReason(in: ours)?.contains("use_v2v: false") == true)
        let v2v = context { $0.useV2V = true }
        #expect(FixStage().skipReason(in: v2v)?.contains("use_v2v: true") == true)
        #expect(V2VStage().skipReason(in: v2v) == nil)
        let copyOnly = context { $0.useV2V = true; $0.fixGuest = false }
        #expect(FixStage().skipReason(in: copyOnly) == "fix_guest: false")
        #expect(V2VStage().skipReason(in: copyOnly) == "fix_guest: false")
    }
}
