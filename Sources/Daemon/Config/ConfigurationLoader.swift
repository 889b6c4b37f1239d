import Foundation
import Yams

/// Reads one or more YAML (or JSON, or KEY=VALUE) files into a `Configuration`. Later files win.
///
/// Nothing is silently dropped: an unknown key is an error naming the file, the key and
/// the nearest valid key; a wrong type names the expected type; a key hyper2kvm knows
/// but does not implement yet fails when it asks for the missing behaviour.
public enum ConfigurationLoader {
    public static func load(files: [String], base: Configuration = Configuration()) throws -> Configuration {
        var configuration = base
        var errors: [ConfigurationError] = []
        for file in files {
            do {
                let text = try String(contentsOfFile: file, encoding: .utf8)
                errors += apply(text: text, file: file, to: &configuration)
                configuration.sources.append(file)
            } catch let error as ConfigurationError {
                errors.append(error)
            } catch {
                errors.append(ConfigurationError(file: file, "cannot read: \(error.localizedDescription)"))
            }
        }
        if errors.isEmpty { errors += validate(configuration, file: files.last ?? "<defaults>") }
        guard errors.isEmpty else { throw ConfigurationErrors(errors: errors) }
        return configuration
    }

    /// One `key: value` of a document, with where it was written (the file, or `file:line`
    /// for the KEY=VALUE form) and the key as the operator wrote it.
    struct Entry {
        let writtenKey: String
        let lookupName: String
        let value: Node
        let location: String
        /// KEY=VALUE files hold scalars only.
        let isShellForm: Bool
    }

    /// Applies one document (YAML, or KEY=VALUE assignments); returns every problem found in it.
    static func apply(text: String, file: String, to configuration: inout Configuration) -> [ConfigurationError] {
        let read = entries(text: text, file: file)
        guard read.errors.isEmpty else { return read.errors }
        return apply(read.entries, to: &configuration)
    }

    static func entries(text: String, file: String) -> (entries: [Entry], errors: [ConfigurationError]) {
        if ShellAssignments.isShellForm(text) {
            let parsed = ShellAssignments.parse(text)
            guard parsed.errors.isEmpty else {
                return ([], parsed.errors.map { ConfigurationError(file: "\(file):\($0.line)", $0.message) })
            }
            return (parsed.assignments.map { assignment in
                // Unquoted values are typed as YAML would type them (1, true); quoted ones are strings.
                let style: Node.Scalar.Style = assignment.quoted ? .doubleQuoted : .plain
                return Entry(writtenKey: assignment.name, lookupName: assignment.name.lowercased(),
                             value: .scalar(.init(assignment.value, .implicit, style)),
                             location: "\(file):\(assignment.line)", isShellForm: true)
            }, [])
        }
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            return ([], [ConfigurationError(file: file, "not valid YAML: \(error)")])
        }
        guard let root else { return ([], []) }  // an empty file configures nothing
        guard let mapping = root.mapping else {
            return ([], [ConfigurationError(file: file, "the configuration must be a mapping of key: value (or KEY=VALUE lines)")])
        }
        var entries: [Entry] = []
        for (keyNode, valueNode) in mapping {
            guard let rawKey = keyNode.string else {
                return ([], [ConfigurationError(file: file, "keys must be strings")])
            }
            entries.append(Entry(writtenKey: rawKey, lookupName: rawKey.replacingOccurrences(of: "-", with: "_"),
                                 value: valueNode, location: file, isShellForm: false))
        }
        return (entries, [])
    }

    static func apply(_ entries: [Entry], to configuration: inout Configuration) -> [ConfigurationError] {
        var errors: [ConfigurationError] = []
        var seen: Set<String> = []
        for entry in entries {
            let rawKey = entry.writtenKey, valueNode = entry.value
            func error(_ message: String) { errors.append(ConfigurationError(file: entry.location, key: rawKey, message)) }
            guard let key = ConfigurationKeys.lookup(entry.lookupName) else {
                let hint = nearestKey(to: entry.lookupName)
                    .map { " (did you mean '\(entry.isShellForm ? $0.uppercased() : $0)'?)" } ?? ""
                error("unknown key\(hint)")
                continue
            }
            if !seen.insert(key.name).inserted {
                error("given more than once (as '\(key.name)' or an alias)")
                continue
            }
            let value = ConfigurationValue(node: valueNode)
            switch key.status {
            case .replaced(let reason):
                error(reason)
                continue
            case .notImplemented(let what) where key.isActive(value):
                error("accepted but not implemented yet: \(what)")
                continue
            default:
                break
            }
            if entry.isShellForm && key.type == "mapping" {
                error("is a mapping (\(key.summary.dropLast(key.summary.hasSuffix(".") ? 1 : 0))): write this configuration in YAML to set it")
                continue
            }
            do throws(ConfigurationValue.Mismatch) {
                try key.apply(value, &configuration)
            } catch {
                let got = valueNode.scalar?.string ?? "a \(valueNode.kindName)"
                errors.append(ConfigurationError(file: entry.location, key: rawKey, "expected \(error.expected), got '\(got)'"))
            }
        }
        return errors
    }

    static func validate(_ configuration: Configuration, file: String) -> [ConfigurationError] {
        var errors: [ConfigurationError] = []
        if let command = configuration.command, command != .daemon, configuration.input == nil {
            errors.append(ConfigurationError(file: file, key: "command",
                                             "'\(command.rawValue)' needs an input (key 'input' or '\(command.rawValue == "local" ? "vmdk" : command.rawValue)')"))
        }
        if configuration.conversion.compress && configuration.conversion.outFormat != "qcow2" {
            errors.append(ConfigurationError(file: file, key: "compress", "compression needs out_format: qcow2"))
        }
        if let drivers = configuration.conversion.virtioWin, !FileManager.default.fileExists(atPath: drivers) {
            errors.append(ConfigurationError(file: file, key: "virtio_win",
                                             "\(drivers) does not exist (a virtio-win ISO or directory; also read from VIRTIO_WIN)"))
        }
        return errors
    }

    /// The valid key closest to `name` by edit distance, if reasonably close.
    static func nearestKey(to name: String) -> String? {
        let scored = ConfigurationKeys.allNames.map { ($0, editDistance(name, $0)) }
        guard let best = scored.min(by: { $0.1 < $1.1 }) else { return nil }
        return best.1 <= max(3, name.count / 2) ? best.0 : nil
    }

    static func editDistance(_ a: String, _ b: String) -> Int {
        let a = Array(a), b = Array(b)
        guard !a.isEmpty else { return b.count }
        guard !b.isEmpty else { return a.count }
        var previous = Array(0...b.count)
        for i in 1...a.count {
            var current = [i] + Array(repeating: 0, count: b.count)
            for j in 1...b.count {
                let substitution = previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)
                current[j] = min(previous[j] + 1, current[j - 1] + 1, substitution)
            }
            previous = current
        }
        return previous[b.count]
    }
}

extension Node {
    var kindName: String {
        switch self {
        case .scalar: return "scalar"
        case .mapping: return "mapping"
        case .sequence: return "list"
        case .alias: return "alias"
        }
    }
}
