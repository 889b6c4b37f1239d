/// The work that can only happen once the converted guest runs: installing the staged
/// drivers with `pnputil` and uninstalling VMware Tools. It is a batch file next to the
/// staged drivers, started once by the machine `RunOnce` key, which Windows runs with
/// administrator rights at the first logon of an administrator (there is no offline way to
/// run a program before logon without installing a service wrapper such as rhsrvany).
/// The boot storage driver does not depend on it: it is registered boot-start offline.
struct WindowsFirstBoot {
    static let scriptName = "hyper2kvm-firstboot.cmd"
    static let logName = "hyper2kvm-firstboot.log"
    static let runOnceKey = "Microsoft\\Windows\\CurrentVersion\\RunOnce"
    static let runOnceValue = "hyper2kvm-firstboot"
    /// Where drivers and the script live, relative to %SystemRoot%.
    static let directory = "Drivers\\VirtIO"

    var installDrivers: Bool
    var uninstallCommands: [String]

    var isNeeded: Bool { installDrivers || !uninstallCommands.isEmpty }

    /// The batch file, CRLF line ends as cmd.exe expects.
    var script: String {
        var lines = [
            "@echo off",
            "rem Written by hyper2kvm: finishes the move to KVM at the first logon, then is not run again.",
            "set H2K=%SystemRoot%\\\(Self.directory)",
            "echo %DATE% %TIME% hyper2kvm first boot >> \"%H2K%\\\(Self.logName)\"",
        ]
        if installDrivers {
            lines.append("for /r \"%H2K%\" %%f in (*.inf) do pnputil -i -a \"%%f\" >> \"%H2K%\\\(Self.logName)\" 2>&1")
        }
        for command in uninstallCommands {
            lines.append("\(command) >> \"%H2K%\\\(Self.logName)\" 2>&1")
        }
        lines.append("echo %DATE% %TIME% done >> \"%H2K%\\\(Self.logName)\"")
        return lines.joined(separator: "\r\n") + "\r\n"
    }

    /// The RunOnce command (REG_EXPAND_SZ, so %SystemRoot% resolves on any drive letter).
    static var runOnceCommand: RegistryValue {
        .expandString("cmd.exe /c \"%SystemRoot%\\\(directory)\\\(scriptName)\"")
    }
}
