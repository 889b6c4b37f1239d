import Foundation
import Stages

/// What `/etc/selinux/config` says: the mode the guest boots in and its policy.
struct SELinuxConfig: Equatable, Sendable {
    static let path = "/etc/selinux/config"

    enum Mode: String, Sendable { case enforcing, permissive, disabled }

    var mode: Mode
    /// `SELINUXTYPE`: the policy directory under /etc/selinux (`targeted` on RHEL, `default` on Debian).
    var policy: String

    /// nil when the file names no mode (then the kernel's default decides and we cannot tell).
    init?(_ text: String) {
        var mode: Mode?
        var policy = "targeted"
        for rawLine in text.split(separator: "\n") {
            let line = rawLine.trimmingCharacters(in: .whitespaces)
            guard !line.hasPrefix("#"), let equals = line.firstIndex(of: "=") else { continue }
            let key = line[..<equals].trimmingCharacters(in: .whitespaces)
            let value = line[line.index(after: equals)...].trimmingCharacters(in: .whitespaces)
                .trimmingCharacters(in: CharacterSet(charactersIn: "\"'"))
            switch key {
            case "SELINUX": mode = Mode(rawValue: value.lowercased())
            case "SELINUXTYPE" where !value.isEmpty && !value.contains("/"): policy = value
            default: continue
            }
        }
        guard let mode else { return nil }
        self.mode = mode
        self.policy = policy
    }

    /// The file contexts setfiles labels from.
    var fileContexts: String { "/etc/selinux/\(policy)/contexts/files/file_contexts" }
}

/// Gives the files the fix wrote the SELinux labels the guest's policy expects. A file written
/// from the appliance has no label (or its temporary file's), and an enforcing guest denies
/// what it cannot read: an unlabeled fstab or initramfs can stop the boot. Relabels exactly
/// the changed files with the guest's own file contexts when the appliance can (setfiles);
/// otherwise asks the guest to relabel itself at first boot (`/.autorelabel`: one extra
/// reboot, minutes on a large filesystem), and says so.
struct SELinuxRelabeler {
    static let autorelabel = "/.autorelabel"

    /// What to do, decided from the config, what the guest and the appliance have, and what changed.
    enum Plan: Equatable {
        case nothing                         // no SELinux config: the guest does not use SELinux
        case skip(reason: String)
        case relabel(specfile: String, paths: [String])
        case relabelAtBoot(reason: String)
    }

    static func plan(config: SELinuxConfig?, configText: String?, changedFiles: [String],
                     fileContextsExist: Bool, applianceCanRelabel: Bool) -> Plan {
        guard configText != nil else { return .nothing }
        guard let config else {
            return .relabelAtBoot(reason: "\(SELinuxConfig.path) names no SELINUX= mode, so the guest may enforce")
        }
        guard config.mode != .disabled else {
            return .skip(reason: "SELinux is disabled in \(SELinuxConfig.path): no relabel needed")
        }
        let paths = Array(Set(changedFiles.filter { $0.hasPrefix("/") })).sorted()
        guard !paths.isEmpty else { return .skip(reason: "no file was changed: no relabel needed") }
        guard fileContextsExist else {
            return .relabelAtBoot(reason: "the policy's file contexts \(config.fileContexts) are missing from the guest")
        }
        guard applianceCanRelabel else {
            return .relabelAtBoot(reason: "the libguestfs appliance has no setfiles (feature selinuxrelabel)")
        }
        return .relabel(specfile: config.fileContexts, paths: paths)
    }

    /// Carries out the plan inside the mounted guest; returns a skipped step, if one.
    func apply(guest: GuestfsHandle, editor: GuestFileEditor) throws -> SkippedGuestFix? {
        let configText = try guest.isFile(SELinuxConfig.path) ? try guest.cat(SELinuxConfig.path) : nil
        let config = configText.flatMap(SELinuxConfig.init)
        // The backup copies under /var/lib/hyper2kvm are written by us too.
        var changed = editor.changes.map(\.file)
        if !editor.changes.isEmpty { changed.append(GuestFileEditor.backupDirectory) }
        let plan = Self.plan(config: config, configText: configText, changedFiles: changed,
                             fileContextsExist: try config.map { try guest.isFile($0.fileContexts) } ?? false,
                             applianceCanRelabel: guest.featureAvailable("selinuxrelabel"))
        switch plan {
        case .nothing:
            return nil
        case let .skip(reason):
            return SkippedGuestFix(area: "selinux", reason: reason)
        case let .relabel(specfile, paths):
            var relabelled: [String] = []
            for path in paths where try guest.exists(path) {
                try guest.selinuxRelabel(specfile: specfile, path: path)
                relabelled.append(path)
            }
            editor.record(GuestFixChange(area: "selinux", file: specfile, before: "labels of the files written by the fix",
                                         after: "relabelled by setfiles from \(specfile): \(relabelled.joined(separator: " "))"))
            return nil
        case let .relabelAtBoot(reason):
            try guest.write(Self.autorelabel, "")
            editor.record(GuestFixChange(area: "selinux", file: Self.autorelabel, before: "(absent)",
                                         after: "the guest relabels every file at its first boot and reboots once: \(reason)"))
            return nil
        }
    }
}
