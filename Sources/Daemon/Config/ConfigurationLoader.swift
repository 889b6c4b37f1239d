import Foundation
import Yams

/// Reads one or more YAML (or JSON) files into a `Configuration`. Later files win.
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

    /// Applies one document; returns every problem found in it.
    static func apply(text: String, file: String, to configuration: inout Configuration) -> [ConfigurationError] {
        let root: Node?
        do {
            root = try Yams.compose(yaml: text)
        } catch {
            return [ConfigurationError(file: file, "not valid YAML: \(error)")]
        }
        guard let root else { return [] }  // an empty file configures nothing
        guard let mapping = root.mapping else {
            return [ConfigurationError(file: file, "the configuration must be a mapping of key: value")]
        }
        var errors: [ConfigurationError] = []
        var seen: Set<String> = []
        for (keyNode, valueNode) in mapping {
            guard let rawKey = keyNode.string else {
                errors.append(ConfigurationError(file: file, "keys must be strings"))
                continue
            }
            let name = rawKey.replacingOccurrences(of: "-", with: "_")
            guard let key = ConfigurationKeys.lookup(name) else {
                let hint = nearestKey(to: name).map { " (did you mean '\($0)'?)" } ?? ""
                errors.append(ConfigurationError(file: file, key: rawKey, "unknown key\(hint)"))
                continue
            }
            if !seen.insert(key.name).inserted {
                errors.append(ConfigurationError(file: file, key: rawKey, "given more than once (as '\(key.name)' or an alias)"))
                continue
            }
            let value = ConfigurationValue(node: valueNode)
            switch key.status {
            case .replaced(let reason):
                errors.append(ConfigurationError(file: file, key: rawKey, reason))
                continue
            case .notImplemented(let what) where key.isActive(value):
                errors.append(ConfigurationError(file: file, key: rawKey, "accepted but not implemented yet: \(what)"))
                continue
            default:
                break
            }
            do throws(ConfigurationValue.Mismatch) {
                try key.apply(value, &configuration)
            } catch {
                let got = valueNode.scalar?.string ?? "a \(valueNode.kindName)"
                errors.append(ConfigurationError(file: file, key: rawKey, "expected \(error.expected), got '\(got)'"))
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
