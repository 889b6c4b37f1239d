import TestSupport
import Foundation
import Testing
@testable import GuestFix
@testable import Stages

/// grub's environment block (RHEL 8's `kernelopts`), its expansion in BLS `options`, and the
/// rewrite that keeps the block's size.
@Suite("grub environment block")
struct GrubEnvironmentTests {
    /// A block as grub2-editenv writes it: header, variables, `#` to 1024 bytes. The variables
    /// are those a RHEL 8 install keeps (the default entry's id, the command line with LVM
    /// root and swap, boot_success), with the root moved to a bus name as on a guest that
    /// was converted from a physical machine.
    static func block(_ kernelopts: String) -> String {
        let body = GrubEnvironmentBlock.header
            + "saved_entry=2a0c9c5f3d6e4b8f9a1b2c3d4e5f6a7b-4.18.0-513.5.1.el8_9.x86_64\n"
            + "kernelopts=\(kernelopts)\n"
            + "boot_success=0\n"
        return body + String(repeating: "#", count: 1024 - body.utf8.count)
    }

    static func resolve(_ reference: DeviceReference) -> String? {
        reference.spec == "/dev/sda2" ? "UUID=6b8f0e2a-4f0c-4c53-9d8a-2f4f3c1e9a10" : nil
    }

    @Test func aBlockIsReadAndRenderedAtItsOwnSize() throws {
        let text = Self.block("root=/dev/mapper/rhel-root ro crashkernel=auto resume=/dev/mapper/rhel-swap rd.lvm.lv=rhel/root rhgb quiet")
        let block = try #require(GrubEnvironmentBlock(text))
        #expect(block.size == 1024)
        #expect(block.value("boot_success") == "0")
        #expect(block.value("kernelopts")?.hasPrefix("root=/dev/mapper/rhel-root ro") == true)
        #expect(block.rendered() == text)
        #expect(GrubEnvironmentBlock("kernelopts=root=/dev/sda2\n") == nil)
    }

    @Test func blsOptionsExpandTheBlocksVariablesAndDropUnsetOnes() throws {
        let block = try #require(GrubEnvironmentBlock(Self.block("root=UUID=abcd ro quiet")))
        #expect(block.expand("$kernelopts $tuned_params") == "root=UUID=abcd ro quiet ")
        #expect(block.expand("${kernelopts} console=ttyS0") == "root=UUID=abcd ro quiet console=ttyS0")
        #expect(block.expand("root=/dev/vda1 $") == "root=/dev/vda1 $")
    }

    @Test func kerneloptsWithABusNameIsRewrittenAndTheBlockKeepsItsSize() throws {
        let text = Self.block("root=/dev/sda2 ro crashkernel=auto resume=/dev/mapper/rhel-swap rhgb quiet")
        let (result, unfitted) = KernelCommandLineRewriter.rewriteGrubEnvironment(text, resolve: Self.resolve)
        #expect(!unfitted)
        #expect(result.edits.count == 1)
        #expect(result.text.utf8.count == 1024)
        let block = try #require(GrubEnvironmentBlock(result.text))
        #expect(block.value("kernelopts") == "root=UUID=6b8f0e2a-4f0c-4c53-9d8a-2f4f3c1e9a10 ro crashkernel=auto resume=/dev/mapper/rhel-swap rhgb quiet")
        #expect(block.value("saved_entry") == "2a0c9c5f3d6e4b8f9a1b2c3d4e5f6a7b-4.18.0-513.5.1.el8_9.x86_64")
        // Only kernelopts changed: every other byte of the header and variables is kept.
        #expect(result.text.hasSuffix("#"))
    }

    @Test func stableNamesThatDoNotFitLeaveTheBlockUnchanged() throws {
        let long = "root=/dev/sda2 ro " + String(repeating: "x", count: 860)
        let text = Self.block(long)
        #expect(text.utf8.count == 1024)
        let (result, unfitted) = KernelCommandLineRewriter.rewriteGrubEnvironment(text, resolve: Self.resolve)
        #expect(unfitted)
        #expect(result.text == text)
        #expect(!result.changed)
    }

    @Test func ubuntuDropInsAreRewrittenLikeEtcDefaultGrub() {
        // Ubuntu cloud images ship /etc/default/grub.d/50-cloudimg-settings.cfg in this form.
        let dropIn = "# Cloud Image specific Grub settings for Generic Cloud Images\n"
            + "GRUB_CMDLINE_LINUX_DEFAULT=\"console=tty1 console=ttyS0 root=/dev/sda2\"\n"
            + "GRUB_TIMEOUT=0\n"
        let result = KernelCommandLineRewriter.rewriteGrubDefaults(dropIn, resolve: Self.resolve)
        #expect(result.edits.count == 1)
        #expect(result.text.contains("GRUB_CMDLINE_LINUX_DEFAULT=\"console=tty1 console=ttyS0 root=UUID=6b8f0e2a-4f0c-4c53-9d8a-2f4f3c1e9a10\""))
    }
}

/// RHEL's BLS entries, as kernel-install writes them, read the way grub's blscfg does.
@Suite("BLS entries with grub variables")
struct BLSVariableTests {
    /// A RHEL 8 entry: the command line is `$kernelopts`, and every initrd line ends with
    /// `$tuned_initrd` (empty unless tuned adds an early image).
    static let rhel8Entry = """
        title Red Hat Enterprise Linux (4.18.0-513.5.1.el8_9.x86_64) 8.9 (Ootpa)
        version 4.18.0-513.5.1.el8_9.x86_64
        linux /vmlinuz-4.18.0-513.5.1.el8_9.x86_64
        initrd /initramfs-4.18.0-513.5.1.el8_9.x86_64.img $tuned_initrd
        options $kernelopts $tuned_params
        id rhel-20231107120000-4.18.0-513.5.1.el8_9.x86_64
        grub_users $grub_users
        grub_arg --unrestricted
        grub_class kernel
        """

    @Test func tunedInitrdIsNeverTakenForAFile() throws {
        let entry = try #require(BootEntryParser.blsEntry(Self.rhel8Entry, config: "/boot/loader/entries/x.conf"))
        let withoutBlock = entry.expandingVariables(from: nil)
        #expect(withoutBlock.initrds == ["/initramfs-4.18.0-513.5.1.el8_9.x86_64.img"])
        #expect(withoutBlock.options == "$kernelopts $tuned_params", "no block: the command line stays unknown, and the check says so")
        let block = try #require(GrubEnvironmentBlock(GrubEnvironmentTests.block("root=/dev/mapper/rhel-root ro resume=/dev/mapper/rhel-swap rhgb quiet")))
        let expanded = entry.expandingVariables(from: block)
        #expect(expanded.initrds == ["/initramfs-4.18.0-513.5.1.el8_9.x86_64.img"])
        #expect(expanded.options == "root=/dev/mapper/rhel-root ro resume=/dev/mapper/rhel-swap rhgb quiet ")
    }

    @Test func aTunedEarlyImageIsLoadedWhenTheBlockSetsIt() throws {
        let entry = try #require(BootEntryParser.blsEntry(Self.rhel8Entry, config: "/boot/loader/entries/x.conf"))
        let text = GrubEnvironmentBlock.header + "kernelopts=root=UUID=1 ro\ntuned_initrd=/tuned-initrd.img\n"
        let block = try #require(GrubEnvironmentBlock(text + String(repeating: "#", count: 1024 - text.utf8.count)))
        #expect(entry.expandingVariables(from: block).initrds == ["/initramfs-4.18.0-513.5.1.el8_9.x86_64.img", "/tuned-initrd.img"])
    }
}
