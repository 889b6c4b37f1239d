/// grub's environment block, `grubenv`. RHEL 8 keeps the kernel command line of its Boot
/// Loader Specification entries there, as `kernelopts=…`, and each entry says
/// `options $kernelopts`; grub's `blscfg` expands the variable at boot. The file is a block of
/// fixed size that grub rewrites in place (`grub2-editenv`, `save_env`): a header line,
/// `name=value` lines, then `#` up to the block's size (1024 bytes). grub refuses a block whose
/// size is not what it expects, so an edit keeps the size or is not made.
struct GrubEnvironmentBlock: Equatable, Sendable {
    static let header = "# GRUB Environment Block\n"

    struct Variable: Equatable, Sendable {
        var name: String
        var value: String
    }

    var variables: [Variable]
    /// The block's size in bytes, kept on rewrite.
    let size: Int

    /// nil when `text` is not an environment block (no header).
    init?(_ text: String) {
        guard text.hasPrefix(Self.header) else { return nil }
        size = text.utf8.count
        variables = text.dropFirst(Self.header.count).split(separator: "\n").compactMap { line in
            // The padding is a run of `#`; a line starting with `#` is never a variable.
            guard !line.hasPrefix("#"), let equals = line.firstIndex(of: "=") else { return nil }
            return Variable(name: String(line[..<equals]), value: String(line[line.index(after: equals)...]))
        }
    }

    func value(_ name: String) -> String? {
        variables.first { $0.name == name }?.value
    }

    /// The block as grub writes it, padded with `#` to `size`; nil when the variables no longer
    /// fit in it.
    func rendered() -> String? {
        let body = Self.header + variables.map { "\($0.name)=\($0.value)\n" }.joined()
        guard body.utf8.count <= size else { return nil }
        return body + String(repeating: "#", count: size - body.utf8.count)
    }

    /// `options` as grub's blscfg passes it to the kernel: `$name` and `${name}` replaced by the
    /// block's value, or by nothing for a variable the block does not set (`$tuned_params` on a
    /// guest without tuned).
    func expand(_ options: String) -> String {
        var result = ""
        var index = options.startIndex
        while index < options.endIndex {
            guard options[index] == "$" else {
                result.append(options[index])
                index = options.index(after: index)
                continue
            }
            var nameStart = options.index(after: index)
            let braced = nameStart < options.endIndex && options[nameStart] == "{"
            if braced { nameStart = options.index(after: nameStart) }
            var nameEnd = nameStart
            while nameEnd < options.endIndex, options[nameEnd].isLetter || options[nameEnd].isNumber || options[nameEnd] == "_" {
                nameEnd = options.index(after: nameEnd)
            }
            guard nameEnd > nameStart else {
                result.append("$")
                index = options.index(after: index)
                continue
            }
            result += value(String(options[nameStart..<nameEnd])) ?? ""
            index = nameEnd
            if braced, index < options.endIndex, options[index] == "}" { index = options.index(after: index) }
        }
        return result
    }
}
