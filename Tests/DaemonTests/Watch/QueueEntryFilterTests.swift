import Stages
import Testing
@testable import Daemon

@Suite("QueueEntryFilter")
struct QueueEntryFilterTests {
    static let table: [(String, QueueEntry)] = [
        ("disk.vmdk", .candidate(.vmdk)), ("DISK.VMDK", .candidate(.vmdk)),
        ("vm.ova", .candidate(.ova)), ("vm.ovf", .candidate(.ovf)),
        ("hv.vhd", .candidate(.vhd)), ("hv.vhdx", .candidate(.vhdx)),
        ("disk.raw", .candidate(.raw)), ("disk.img", .candidate(.raw)),
        ("aws.ami", .candidate(.ami)), ("kvm.qcow2", .candidate(.qcow2)),
        ("artifact-manifest.json", .candidate(.manifest)), ("job.yaml", .candidate(.manifest)),
        ("job.yml", .candidate(.manifest)), ("my.vm.v2.vmdk", .candidate(.vmdk)),
        ("disk-flat.vmdk", .extent(ofDescriptor: "disk.vmdk")),
        ("disk-s001.vmdk", .extent(ofDescriptor: "disk.vmdk")),
        ("disk-f012.vmdk", .extent(ofDescriptor: "disk.vmdk")),
        ("disk-s1000.vmdk", .extent(ofDescriptor: "disk.vmdk")),
        ("web-01-000001-delta.vmdk", .extent(ofDescriptor: "web-01-000001.vmdk")),
        ("Disk-FLAT.VMDK", .extent(ofDescriptor: "Disk.VMDK")),
        ("my-server.vmdk", .candidate(.vmdk)), ("db-s01.vmdk", .candidate(.vmdk)),
        ("-flat.vmdk", .candidate(.vmdk)), ("disk-sx01.vmdk", .candidate(.vmdk)),
        (".hidden.vmdk", .ignored(.hidden)), (".processed", .ignored(.hidden)),
        (".errors", .ignored(.hidden)), (".~lock.disk.vmdk#", .ignored(.hidden)),
        (".disk.vmdk.Xy12Ab", .ignored(.hidden)),
        ("disk.vmdk.part", .ignored(.temporary)), ("disk.vmdk.tmp", .ignored(.temporary)),
        ("disk.vmdk.partial", .ignored(.temporary)), ("disk.ova.crdownload", .ignored(.temporary)),
        ("disk.vmdk~", .ignored(.temporary)), ("disk.PART", .ignored(.temporary)),
        ("notes.txt", .ignored(.unsupportedExtension)), ("vm.mf", .ignored(.unsupportedExtension)),
        ("README", .ignored(.unsupportedExtension)), ("disk.", .ignored(.unsupportedExtension)),
    ]

    @Test(arguments: table)
    func classifies(name: String, expected: QueueEntry) {
        #expect(QueueEntryFilter.classify(name) == expected)
    }

    @Test func directoriesAreIgnored() {
        #expect(QueueEntryFilter.classify("folder.vmdk", isDirectory: true) == .ignored(.directory))
        #expect(QueueEntryFilter.classify(".processed", isDirectory: true) == .ignored(.hidden))
    }

    @Test func inputKindOnlyForCandidates() {
        #expect(QueueEntryFilter.inputKind(of: "a.img") == .raw)
        #expect(QueueEntryFilter.inputKind(of: "a-flat.vmdk") == nil)
        #expect(QueueEntryFilter.inputKind(of: "a.vmdk.part") == nil)
    }
}

@Suite("QueueEntryFilter.groupJobs")
struct QueueJobGroupingTests {
    struct Unreadable: Error, CustomStringConvertible { var description: String { "truncated XML" } }

    @Test func descriptorTakesItsExtents() {
        let grouping = QueueEntryFilter.groupJobs(
            names: ["web.vmdk", "web-s002.vmdk", "web-s001.vmdk", "db.vmdk", "db-flat.vmdk", "lone-flat.vmdk", "x.raw"],
            referencedNames: { _, _ in [] })
        #expect(grouping.jobs == [
            QueueJobCandidate(primary: "db.vmdk", kind: .vmdk, members: ["db.vmdk", "db-flat.vmdk"]),
            QueueJobCandidate(primary: "web.vmdk", kind: .vmdk, members: ["web.vmdk", "web-s001.vmdk", "web-s002.vmdk"]),
            QueueJobCandidate(primary: "x.raw", kind: .raw, members: ["x.raw"]),
        ])
        #expect(grouping.orphanExtents == ["lone-flat.vmdk"])
        #expect(grouping.job(containing: "web-s002.vmdk")?.primary == "web.vmdk")
    }

    @Test func ovfWithItsDisksIsOneJob() {
        let names = ["app.ovf", "app.mf", "app-disk1.vmdk", "app-disk2.vmdk", "app-disk2-flat.vmdk",
                     "other.vmdk", "notes.txt"]
        let grouping = QueueEntryFilter.groupJobs(names: names) { name, kind in
            #expect(name == "app.ovf" && kind == .ovf)
            return ["app-disk1.vmdk", "app-disk2.vmdk", "app.nvram"]
        }
        #expect(grouping.jobs == [
            QueueJobCandidate(primary: "app.ovf", kind: .ovf,
                              members: ["app.ovf", "app-disk1.vmdk", "app-disk2-flat.vmdk", "app-disk2.vmdk", "app.mf"],
                              missing: ["app.nvram"]),
            QueueJobCandidate(primary: "other.vmdk", kind: .vmdk, members: ["other.vmdk"]),
        ])
        #expect(grouping.orphanExtents.isEmpty)
    }

    @Test func ovfReferencesWithPathsAreMissingNotMatched() {
        let grouping = QueueEntryFilter.groupJobs(names: ["a.ovf", "d.vmdk"]) { _, _ in ["../d.vmdk", "sub/d.vmdk"] }
        #expect(grouping.job(containing: "a.ovf")?.missing == ["../d.vmdk", "sub/d.vmdk"])
        #expect(grouping.job(containing: "d.vmdk")?.primary == "d.vmdk")
    }

    @Test func unreadableOVFIsReportedAndStaysAlone() {
        let grouping = QueueEntryFilter.groupJobs(names: ["a.ovf", "a-disk1.vmdk"]) { _, _ in throw Unreadable() }
        #expect(grouping.unreadableDescriptors == ["a.ovf": "truncated XML"])
        #expect(grouping.jobs.map(\.primary) == ["a-disk1.vmdk", "a.ovf"])
    }

    @Test func manifestClaimsTheQueueFilesItNames() {
        let grouping = QueueEntryFilter.groupJobs(names: ["vm.json", "boot.qcow2", "data.vmdk", "data-flat.vmdk"]) { name, kind in
            kind == .manifest ? ["boot.qcow2", "data.vmdk"] : []
        }
        #expect(grouping.jobs == [
            QueueJobCandidate(primary: "vm.json", kind: .manifest,
                              members: ["vm.json", "boot.qcow2", "data-flat.vmdk", "data.vmdk"]),
        ])
    }

    @Test func ignoredNamesFormNoJob() {
        let grouping = QueueEntryFilter.groupJobs(names: [".x.vmdk", "a.vmdk.part", "readme.txt"]) { _, _ in [] }
        #expect(grouping.jobs.isEmpty)
    }
}
