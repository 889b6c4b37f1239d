import Stages
import Testing
@testable import Daemon

/// How the queue takes a VMDK snapshot chain, and a `.vmx` with its disks, as one job.
@Suite("QueueEntryFilter.groupJobs: VMDK chains and .vmx")
struct QueueVMDKChainTests {
    /// `x-000002.vmdk` → `x-000001.vmdk` → `x.vmdk`, as VMware names a two-level chain.
    static let chain = ["x-000002.vmdk": "x-000001.vmdk", "x-000001.vmdk": "x.vmdk"]

    static func group(_ names: [String], parents: [String: String], references: [String: [String]] = [:]) -> QueueJobGrouping {
        QueueEntryFilter.groupJobs(names: names, parentOf: { parents[$0] }) { name, _ in references[name] ?? [] }
    }

    @Test func theNewestDeltaLeadsItsChainWithEveryParentAndExtent() {
        let grouping = Self.group(["x.vmdk", "x-flat.vmdk", "x-000001.vmdk", "x-000002.vmdk", "x-000002-s001.vmdk", "other.vmdk"],
                                  parents: Self.chain)
        #expect(grouping.jobs == [
            QueueJobCandidate(primary: "other.vmdk", kind: .vmdk, members: ["other.vmdk"]),
            QueueJobCandidate(primary: "x-000002.vmdk", kind: .vmdk,
                              members: ["x-000002.vmdk", "x-000001.vmdk", "x-000002-s001.vmdk", "x-flat.vmdk", "x.vmdk"]),
        ])
        #expect(grouping.job(containing: "x.vmdk")?.primary == "x-000002.vmdk")
        #expect(grouping.refusedSets.isEmpty)
    }

    @Test func aChainWaitsForAParentThatHasNotArrived() {
        let grouping = Self.group(["x-000001.vmdk", "x-000002.vmdk"], parents: Self.chain)
        #expect(grouping.jobs == [QueueJobCandidate(primary: "x-000002.vmdk", kind: .vmdk,
                                                    members: ["x-000002.vmdk", "x-000001.vmdk"], missing: ["x.vmdk"])])
    }

    @Test func aParentNamedWithAPathIsNotWaitedFor() {
        // It can never arrive in the queue: the probe refuses the job, naming it.
        let grouping = Self.group(["x-000001.vmdk"], parents: ["x-000001.vmdk": "../x.vmdk"])
        #expect(grouping.jobs == [QueueJobCandidate(primary: "x-000001.vmdk", kind: .vmdk, members: ["x-000001.vmdk"])])
    }

    @Test func twoDeltasOfOneParentAreASnapshotTreeRefusedAsOneSet() {
        let grouping = Self.group(["x.vmdk", "x-flat.vmdk", "a-000001.vmdk", "b-000001.vmdk", "lone.vmdk"],
                                  parents: ["a-000001.vmdk": "x.vmdk", "b-000001.vmdk": "x.vmdk"])
        #expect(grouping.jobs == [QueueJobCandidate(primary: "lone.vmdk", kind: .vmdk, members: ["lone.vmdk"])])
        let refused = grouping.refusedSet(containing: "x.vmdk")
        #expect(refused?.lead == "a-000001.vmdk")
        #expect(refused?.set.members == ["a-000001.vmdk", "b-000001.vmdk", "x.vmdk", "x-flat.vmdk"])
        #expect(refused?.set.reason.contains("x.vmdk is the parent of both a-000001.vmdk and b-000001.vmdk") == true)
    }

    @Test func aLoopWithNoNewestDeltaIsRefused() {
        let grouping = Self.group(["a.vmdk", "b.vmdk"], parents: ["a.vmdk": "b.vmdk", "b.vmdk": "a.vmdk"])
        #expect(grouping.jobs.isEmpty)
        #expect(grouping.refusedSet(containing: "b.vmdk")?.set.reason.contains("loops") == true)
    }

    @Test func aParentThatAnotherJobClaimsTakesThatJobIntoTheRefusal() {
        // app.ovf names x.vmdk as its disk, and a dropped delta of another VM names x.vmdk as its parent too.
        let grouping = Self.group(["app.ovf", "x.vmdk", "y-000001.vmdk", "z-000001.vmdk"],
                                  parents: ["y-000001.vmdk": "x.vmdk", "z-000001.vmdk": "x.vmdk"],
                                  references: ["app.ovf": ["x.vmdk"]])
        #expect(grouping.jobs.isEmpty)
        #expect(grouping.refusedSet(containing: "app.ovf") != nil)
    }

    @Test func aVMXTakesItsDisksTheirChainsAndItsSidecars() {
        let names = ["web.vmx", "web.nvram", "web.vmsd", "web-000002.vmdk", "web-000001.vmdk", "web.vmdk", "web-flat.vmdk",
                     "data.vmdk", "data-flat.vmdk", "web.iso", "unrelated.vmdk"]
        let grouping = Self.group(names, parents: ["web-000002.vmdk": "web-000001.vmdk", "web-000001.vmdk": "web.vmdk"],
                                  references: ["web.vmx": ["web-000002.vmdk", "data.vmdk"]])
        #expect(grouping.jobs == [
            QueueJobCandidate(primary: "unrelated.vmdk", kind: .vmdk, members: ["unrelated.vmdk"]),
            QueueJobCandidate(primary: "web.vmx", kind: .vmx,
                              members: ["web.vmx", "data-flat.vmdk", "data.vmdk", "web-000001.vmdk", "web-000002.vmdk",
                                        "web-flat.vmdk", "web.nvram", "web.vmdk", "web.vmsd"]),
        ])
    }

    @Test func aVMXWaitsForItsDisksAndForTheirParents() {
        let grouping = Self.group(["web.vmx", "web-000001.vmdk"], parents: ["web-000001.vmdk": "web.vmdk"],
                                  references: ["web.vmx": ["web-000001.vmdk", "data.vmdk"]])
        #expect(grouping.job(containing: "web.vmx")?.missing == ["data.vmdk", "web.vmdk"])
    }

    @Test func vmxIsACandidateKind() {
        #expect(QueueEntryFilter.classify("Web01.VMX") == .candidate(.vmx))
        #expect(QueueEntryFilter.classify("web01.vmx~") == .ignored(.temporary))
    }
}
