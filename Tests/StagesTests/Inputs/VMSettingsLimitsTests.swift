import Foundation
import Testing
@testable import Stages

@Suite("VMSettingsLimits")
struct VMSettingsLimitsTests {
    func vm(vcpus: Int? = nil, memoryMiB: Int? = nil) -> VMDescription {
        VMDescription(name: "vm", vcpus: vcpus, memoryMiB: memoryMiB, disks: [], origin: "ovf")
    }

    @Test("numbers no hypervisor honours are refused, naming the file", arguments: [
        (Int?.some(0), Int?.none), (.some(1025), .none), (.some(.max), .none), (.some(-1), .none),
        (.none, .some(0)), (.none, .some((16 << 20) + 1)), (.none, .some(.max)),
    ])
    func refused(vcpus: Int?, memory: Int?) {
        let error = #expect(throws: StageError.self) { try VMSettingsLimits.check(vm(vcpus: vcpus, memoryMiB: memory), file: "x.ovf") }
        #expect(error?.file == "x.ovf")
        #expect(error?.code == .badInput)
    }

    @Test("ordinary and absent numbers pass")
    func accepted() throws {
        try VMSettingsLimits.check(vm(vcpus: 1024, memoryMiB: 16 << 20), file: "x.ovf")
        try VMSettingsLimits.check(vm(), file: "x.ovf")
    }

    @Test("control characters never reach a VM name")
    func printableNames() {
        #expect(VMSettingsLimits.printableName("web01") == "web01")
        #expect(VMSettingsLimits.printableName("vm\nINJECTED line") == "vm_INJECTED line")
        #expect(VMSettingsLimits.printableName("a\u{1b}[31mb\u{202e}") == "a_[31mb_")
        #expect(VMSettingsLimits.printableName("\n\t") == "__")
        #expect(VMSettingsLimits.printableName("  ") == "vm")
    }
}
