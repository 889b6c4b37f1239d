/// The `KEY=VALUE` form of a configuration file, as the systemd guide writes it
/// (`WATCH_DIR=/var/lib/hyper2kvm/queue`, `MAX_CONCURRENT=1`): one shell-style assignment a
/// line, `#` comments, blank lines, an optional `export`, and single or double quotes.
///
/// The file is read, never run: there is no variable expansion, no command substitution and
/// no line continuation. Each of those is an error naming the line rather than a value that
/// silently differs from what a shell would have made of it.
enum ShellAssignments {
    struct Assignment: Equatable {
        /// 1-based.
        let line: Int
        /// As written: upper case.
        let name: String
        let value: String
        /// Some part was quoted: the value is a string even if it reads `true` or `1`.
        let quoted: Bool
    }

    struct LineError: Error, Equatable {
        let line: Int
        let message: String
    }

    /// A file is in this form when its first line that is not blank or a comment is an
    /// assignment. (`NAME=value` as YAML is a bare string, never a configuration mapping.)
    static func isShellForm(_ text: String) -> Bool {
        for raw in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = raw.drop { $0 == " " || $0 == "\t" }
            if line.isEmpty || line.first == "#" || line == "\r" { continue }
            return assignmentName(in: stripExport(line)) != nil
        }
        return false
    }

    /// Every assignment, and every line that is not one.
    static func parse(_ text: String) -> (assignments: [Assignment], errors: [LineError]) {
        var assignments: [Assignment] = []
        var errors: [LineError] = []
        for (index, raw) in text.split(separator: "\n", omittingEmptySubsequences: false).enumerated() {
            let number = index + 1
            var line = Substring(raw.drop { $0 == " " || $0 == "\t" })
            if line.last == "\r" { line = line.dropLast() }
            if line.isEmpty || line.first == "#" { continue }
            line = stripExport(line)
            guard let name = assignmentName(in: line) else {
                errors.append(LineError(line: number, message: "expected NAME=VALUE, got '\(line.prefix(60))'"))
                continue
            }
            guard name.allSatisfy({ $0.isUppercase || $0.isNumber || $0 == "_" }) else {
                errors.append(LineError(line: number, message: "'\(name)' must be upper case (\(name.uppercased())=…) in a KEY=VALUE file"))
                continue
            }
            switch value(line.dropFirst(name.count + 1)) {
            case .success(let (text, quoted)):
                assignments.append(Assignment(line: number, name: String(name), value: text, quoted: quoted))
            case .failure(let problem):
                errors.append(LineError(line: number, message: "\(name): \(problem.message)"))
            }
        }
        return (assignments, errors)
    }

    private static func stripExport(_ line: Substring) -> Substring {
        guard line.hasPrefix("export "), line.count > 7 else { return line }
        return line.dropFirst(7).drop { $0 == " " || $0 == "\t" }
    }

    /// `NAME` of a line that starts `NAME=` (a shell identifier directly followed by `=`).
    private static func assignmentName(in line: Substring) -> Substring? {
        let name = line.prefix { $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "_") }
        guard let first = name.first, !first.isNumber, line.dropFirst(name.count).first == "=" else { return nil }
        return name
    }

    private struct ValueProblem: Error { let message: String }

    /// The value after `=`: quotes removed, backslash escapes applied, a trailing comment dropped.
    private static func value(_ text: Substring) -> Result<(String, Bool), ValueProblem> {
        var result = ""
        var quoted = false
        var index = text.startIndex
        func fail(_ message: String) -> Result<(String, Bool), ValueProblem> { .failure(ValueProblem(message: message)) }
        while index < text.endIndex {
            let character = text[index]
            switch character {
            case " ", "\t":
                let rest = text[index...].drop { $0 == " " || $0 == "\t" }
                guard rest.isEmpty || rest.first == "#" else {
                    return fail("unquoted space in the value; put the value in quotes")
                }
                return .success((result, quoted))
            case "'":
                guard let close = text[text.index(after: index)...].firstIndex(of: "'") else { return fail("unterminated ' quote") }
                result += text[text.index(after: index)..<close]
                quoted = true
                index = text.index(after: close)
                continue
            case "\"":
                quoted = true
                index = text.index(after: index)
                var closed = false
                while index < text.endIndex {
                    let inner = text[index]
                    if inner == "\"" { closed = true; break }
                    if inner == "$" || inner == "`" { return fail("\(inner) expansion is not supported (the file is read, not run by a shell)") }
                    if inner == "\\", text.index(after: index) < text.endIndex, "\"\\$`".contains(text[text.index(after: index)]) {
                        index = text.index(after: index)
                    }
                    result.append(text[index])
                    index = text.index(after: index)
                }
                guard closed else { return fail("unterminated \" quote") }
                index = text.index(after: index)
                continue
            case "\\":
                let next = text.index(after: index)
                guard next < text.endIndex else { return fail("a line continuation (\\ at the end) is not supported") }
                result.append(text[next])
                index = text.index(after: next)
                continue
            case "$", "`":
                return fail("\(character) expansion is not supported (the file is read, not run by a shell)")
            case ";", "&", "|", "<", ">", "(", ")":
                return fail("'\(character)' must be quoted (the file is read, not run by a shell)")
            default:
                result.append(character)
            }
            index = text.index(after: index)
        }
        return .success((result, quoted))
    }
}
