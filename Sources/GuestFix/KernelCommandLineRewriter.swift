import Foundation

/// Replaces bus-dependent device paths in `root=` and `resume=` kernel parameters with
/// stable identifiers, in the places a Linux guest keeps its kernel command line.
///
/// Every kind of non-stable name is rewritten whatever `fstab_mode` says: a `root=/dev/sda1`
/// cannot boot once the disk is /dev/vda, and the last `root=` on the line wins, so a
/// stale one left after a good one breaks the boot (virt-v2v leaves exactly that).
enum KernelCommandLineRewriter {
    /// Parameters whose value is a block device.
    static let deviceParameters = ["root", "resume"]

    /// Rewrites the device parameters inside one piece of text (a whole command line, or a
    /// config line that contains one). Quotes and spacing around the parameters stay.
    static func rewriteParameters(in text: String, resolve: (DeviceReference) -> String?)
        -> (text: String, unresolved: [String])
    {
        var result = ""
        var unresolved: [String] = []
        var copiedTo = text.startIndex
        for (_, range) in parameterValues(in: text) {
            result += text[copiedTo..<range.lowerBound]
            let value = String(text[range])
            let reference = DeviceReference(spec: value)
            if reference.kind.needsStabilising(in: .stabilizeAll) {
                if let stable = resolve(reference) {
                    result += stable
                } else {
                    result += value
                    unresolved.append(value)
                }
            } else {
                result += value
            }
            copiedTo = range.upperBound
        }
        result += text[copiedTo...]
        return (result, unresolved)
    }

    /// The device parameters of a command line, in order: `[("root", "UUID=…"), ("resume", …)]`.
    static func deviceParameters(in text: String) -> [(name: String, value: String)] {
        parameterValues(in: text).map { ($0.name, String(text[$0.value])) }
    }

    /// Each device parameter's name and the range of its value, in order.
    private static func parameterValues(in text: String) -> [(name: String, value: Range<String.Index>)] {
        var found: [(name: String, value: Range<String.Index>)] = []
        var index = text.startIndex
        while index < text.endIndex {
            if isTokenStart(index, in: text), let (name, valueRange) = parameter(at: index, in: text) {
                found.append((name, valueRange))
                index = valueRange.upperBound
                continue
            }
            index = text.index(after: index)
        }
        return found
    }

    /// Parameters start a word: `root=` inside `myroot=` or `rd.root=` is another parameter.
    private static func isTokenStart(_ index: String.Index, in text: String) -> Bool {
        index == text.startIndex || " \t\"'".contains(text[text.index(before: index)])
    }

    private static func parameter(at index: String.Index, in text: String) -> (String, Range<String.Index>)? {
        for name in deviceParameters {
            let prefix = name + "="
            guard text[index...].hasPrefix(prefix) else { continue }
            let valueStart = text.index(index, offsetBy: prefix.count)
            var valueEnd = valueStart
            while valueEnd < text.endIndex, !" \t\n\"';".contains(text[valueEnd]) {
                valueEnd = text.index(after: valueEnd)
            }
            return (name, valueStart..<valueEnd)
        }
        return nil
    }

    /// Rewrites the lines selected by `isCommandLine` (given the line without leading blanks).
    static func rewriteLines(_ text: String, isCommandLine: (String) -> Bool,
                             resolve: (DeviceReference) -> String?) -> TextRewriteResult {
        var lines = text.components(separatedBy: "\n")
        var edits: [TextEdit] = []
        var unresolved: [String] = []
        for index in lines.indices {
            let line = lines[index]
            let trimmed = line.drop { $0 == " " || $0 == "\t" }
            guard !trimmed.hasPrefix("#"), isCommandLine(String(trimmed)) else { continue }
            let (edited, missing) = rewriteParameters(in: line, resolve: resolve)
            unresolved += missing
            if edited != line {
                lines[index] = edited
                edits.append(TextEdit(line: index + 1, before: line, after: edited))
            }
        }
        return TextRewriteResult(text: lines.joined(separator: "\n"), edits: edits, unresolved: unresolved)
    }

    /// `/etc/default/grub`: the `GRUB_CMDLINE_LINUX` and `GRUB_CMDLINE_LINUX_DEFAULT`
    /// assignments, and `GRUB_DISABLE_LINUX_UUID=true` (which makes grub-mkconfig write
    /// `root=/dev/sdX` itself) commented out.
    static func rewriteGrubDefaults(_ text: String, resolve: (DeviceReference) -> String?) -> TextRewriteResult {
        var result = rewriteLines(text, isCommandLine: { line in
            let assignment = line.hasPrefix("export ") ? line.dropFirst("export ".count).drop { $0 == " " } : Substring(line)
            return assignment.hasPrefix("GRUB_CMDLINE_LINUX=") || assignment.hasPrefix("GRUB_CMDLINE_LINUX_DEFAULT=")
        }, resolve: resolve)
        var lines = result.text.components(separatedBy: "\n")
        for index in lines.indices {
            let trimmed = lines[index].trimmingCharacters(in: .whitespaces)
            let disabling = ["GRUB_DISABLE_LINUX_UUID=true", "GRUB_DISABLE_LINUX_UUID=\"true\"", "GRUB_DISABLE_LINUX_UUID='true'"]
            guard disabling.contains(trimmed) else { continue }
            let before = lines[index]
            lines[index] = "#\(trimmed)  # commented out by hyper2kvm: root= must not name a bus-dependent device"
            result.edits.append(TextEdit(line: index + 1, before: before, after: lines[index]))
        }
        result.text = lines.joined(separator: "\n")
        result.edits.sort { $0.line < $1.line }
        return result
    }

    /// A BLS entry (`/boot/loader/entries/*.conf`): its `options` line.
    static func rewriteBootLoaderEntry(_ text: String, resolve: (DeviceReference) -> String?) -> TextRewriteResult {
        rewriteLines(text, isCommandLine: { firstWord($0) == "options" }, resolve: resolve)
    }

    /// A grub environment block (`grubenv`, RHEL 8): its `kernelopts` value, which every BLS
    /// entry's `options $kernelopts` names. The block keeps its size; when the stable names do
    /// not fit in it, nothing is changed and `unfitted` says so.
    static func rewriteGrubEnvironment(_ text: String, resolve: (DeviceReference) -> String?)
        -> (result: TextRewriteResult, unfitted: Bool)
    {
        guard var block = GrubEnvironmentBlock(text) else { return (TextRewriteResult(text: text), false) }
        var result = TextRewriteResult(text: text)
        for index in block.variables.indices where block.variables[index].name == "kernelopts" {
            let before = block.variables[index]
            let (edited, missing) = rewriteParameters(in: before.value, resolve: resolve)
            result.unresolved += missing
            guard edited != before.value else { continue }
            block.variables[index].value = edited
            // Line numbers count the header as line 1.
            result.edits.append(TextEdit(line: index + 2, before: "kernelopts=\(before.value)", after: "kernelopts=\(edited)"))
        }
        guard result.changed else { return (result, false) }
        guard let rendered = block.rendered() else { return (TextRewriteResult(text: text, unresolved: result.unresolved), true) }
        result.text = rendered
        return (result, false)
    }

    /// A `grub.cfg` (or grub1 `menu.lst`): the `linux`/`linux16`/`linuxefi`/`kernel` commands.
    /// `set root=…` is grub's own device syntax and is not touched.
    static func rewriteGrubConfig(_ text: String, resolve: (DeviceReference) -> String?) -> TextRewriteResult {
        rewriteLines(text, isCommandLine: { grubKernelCommands.contains(firstWord($0)) },
                     resolve: resolve)
    }

    /// The kernel command lines of a `grub.cfg`, without comments (the lines
    /// `rewriteGrubConfig` edits).
    static func grubKernelLines(_ text: String) -> [String] {
        text.split(separator: "\n", omittingEmptySubsequences: true).compactMap { line in
            let trimmed = String(line.drop { $0 == " " || $0 == "\t" })
            return grubKernelCommands.contains(firstWord(trimmed)) ? trimmed : nil
        }
    }

    private static let grubKernelCommands = ["linux", "linux16", "linuxefi", "kernel"]

    /// `/etc/kernel/cmdline` (systemd kernel-install, UKIs): the whole file is the command line.
    static func rewriteKernelCmdlineFile(_ text: String, resolve: (DeviceReference) -> String?) -> TextRewriteResult {
        rewriteLines(text, isCommandLine: { _ in true }, resolve: resolve)
    }

    private static func firstWord(_ line: String) -> String {
        String(line.prefix { $0 != " " && $0 != "\t" })
    }
}
