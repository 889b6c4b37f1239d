import TestSupport
import Foundation
import Testing
@testable import GuestFix
@testable import Stages

/// What the fix does about SELinux labels, decided from the guest's config.
@Suite("SELinux relabel decisions")
struct SELinuxRelabelTests {
    /// /etc/selinux/config as RHEL 9 installs it (comments shortened).
    static let rhel = """
        # This file controls the state of SELinux on the system.
        # SELINUX= can take one of these three values:
        #     enforcing - SELinux security policy is enforced.
        SELINUX=enforcing
        # SELINUXTYPE= can take one of these three values:
        SELINUXTYPE=targeted

        """

    @Test func theModeAndPolicyAreRead() throws {
        let config = try #require(SELinuxConfig(Self.rhel))
        #expect(config.mode == .enforcing)
        #expect(config.fileContexts == "/etc/selinux/targeted/contexts/files/file_contexts")
        // Debian's selinux-basics writes SELINUXTYPE=default.
        let debian = try #require(SELinuxConfig("SELINUX=permissive\nSELINUXTYPE=default\n"))
        #expect(debian.mode == .permissive && debian.policy == "default")
        #expect(SELinuxConfig("# nothing\nSELINUXTYPE=targeted\n") == nil)
        // A policy name cannot lead out of /etc/selinux.
        #expect(SELinuxConfig("SELINUX=enforcing\nSELINUXTYPE=../../tmp\n")?.policy == "targeted")
    }

    @Test func noConfigMeansNothingToDo() {
        #expect(SELinuxRelabeler.plan(config: nil, configText: nil, changedFiles: ["/etc/fstab"],
                                      fileContextsExist: false, applianceCanRelabel: true) == .nothing)
    }

    @Test func disabledOrUnchangedGuestsAreSkippedWithTheReason() {
        let disabled = SELinuxConfig("SELINUX=disabled\n")
        #expect(SELinuxRelabeler.plan(config: disabled, configText: "SELINUX=disabled\n", changedFiles: ["/etc/fstab"],
                                      fileContextsExist: true, applianceCanRelabel: true)
                == .skip(reason: "SELinux is disabled in /etc/selinux/config: no relabel needed"))
        if case .skip = SELinuxRelabeler.plan(config: SELinuxConfig(Self.rhel), configText: Self.rhel, changedFiles: [],
                                              fileContextsExist: true, applianceCanRelabel: true) {} else {
            Issue.record("an enforcing guest with nothing changed needs no relabel")
        }
    }

    @Test func changedFilesAreRelabelledWhenTheApplianceCanElseTheGuestRelabelsAtBoot() {
        let config = SELinuxConfig(Self.rhel)
        let changed = ["/etc/fstab", "/boot/initramfs-5.14.0-362.8.1.el9_3.x86_64.img", "/etc/fstab"]
        #expect(SELinuxRelabeler.plan(config: config, configText: Self.rhel, changedFiles: changed,
                                      fileContextsExist: true, applianceCanRelabel: true)
                == .relabel(specfile: "/etc/selinux/targeted/contexts/files/file_contexts",
                            paths: ["/boot/initramfs-5.14.0-362.8.1.el9_3.x86_64.img", "/etc/fstab"]))
        guard case .relabelAtBoot(let reason) = SELinuxRelabeler.plan(config: config, configText: Self.rhel, changedFiles: changed,
                                                                      fileContextsExist: true, applianceCanRelabel: false) else {
            Issue.record("without setfiles in the appliance the guest must relabel at boot")
            return
        }
        #expect(reason.contains("setfiles"))
        guard case .relabelAtBoot(let missing) = SELinuxRelabeler.plan(config: config, configText: Self.rhel, changedFiles: changed,
                                                                       fileContextsExist: false, applianceCanRelabel: true) else {
            Issue.record("without the policy's file contexts the guest must relabel at boot")
            return
        }
        #expect(missing.contains("file_contexts"))
        // A config without a mode: the guest may enforce, so it relabels.
        if case .relabelAtBoot = SELinuxRelabeler.plan(config: nil, configText: "SELINUXTYPE=targeted\n", changedFiles: changed,
                                                       fileContextsExist: true, applianceCanRelabel: true) {} else {
            Issue.record("an unreadable mode must not skip the relabel")
        }
    }
}
