import Foundation
import SystemSupport
import Yams

extension ArtifactManifest {
    /// The two spellings of the same document: hypersdk's `WriteToFile` writes YAML when
    /// the name ends in `.yaml`/`.yml`, JSON otherwise.
    public enum Syntax: String, Sendable {
        case json, yaml

        /// From the file name; anything but `.yaml`/`.yml` is JSON, as in hypersdk.
        public init(fileName: String) {
            switch (fileName as NSString).pathExtension.lowercased() {
            case "yaml", "yml": self = .yaml
            default: self = .json
            }
        }
    }

    /// A real manifest is a few KiB; anything past this is not one.
    public static let maximumBytes = 1 << 20

    /// YAML aliases can make a small document expand exponentially ("billion laughs");
    /// no manifest has anywhere near this many nodes.
    static let maximumYAMLNodes = 100_000

    /// Reads, decodes and validates the manifest at `url` (no disk file is touched).
    ///
    /// - Throws: `StageError(.badInput)` naming the file and, where there is one, the JSON
    ///   path of the problem (`disks[1].local_path: must be an absolute path`).
    public static func load(from url: URL) throws -> ArtifactManifest {
        let path = url.path
        let data: Data
        do {
            let handle = try FileHandle(forReadingFrom: url)
            defer { try? handle.close() }
            data = try handle.read(upToCount: maximumBytes + 1) ?? Data()
        } catch {
            throw StageError(.ioFailed, file: path, "cannot read the manifest: \(error.localizedDescription)")
        }
        guard data.count <= maximumBytes else {
            throw StageError(.badInput, file: path, "manifest is larger than \(maximumBytes) bytes: not an Artifact Manifest")
        }
        let manifest = try parse(data, syntax: Syntax(fileName: url.lastPathComponent), file: path)
        try manifest.validate(file: path)
        return manifest
    }

    /// Decodes `data` (types only; see `validate(file:)` for the rules) and records the
    /// keys it does not know in `unrecognisedKeys`.
    public static func parse(_ data: Data, syntax: Syntax, file: String) throws -> ArtifactManifest {
        var manifest: ArtifactManifest
        let tree: JSONValue
        switch syntax {
        case .json:
            try checkJSONSyntax(data, file: file)
            let decoder = JSONDecoder()
            manifest = try decoding(file: file, syntax: syntax) { try decoder.decode(ArtifactManifest.self, from: data) }
            tree = try decoding(file: file, syntax: syntax) { try decoder.decode(JSONValue.self, from: data) }
        case .yaml:
            guard let text = String(data: data, encoding: .utf8) else {
                throw StageError(.badInput, file: file, "manifest is not valid UTF-8 text")
            }
            let root = try decoding(file: file, syntax: syntax) { try Yams.compose(yaml: text) }
            guard let root else {
                throw StageError(.badInput, file: file, "manifest is empty: expected a YAML mapping with manifest_version and disks")
            }
            var budget = maximumYAMLNodes
            guard fitsNodeBudget(root, budget: &budget) else {
                throw StageError(.badInput, file: file,
                                 "YAML expands to more than \(maximumYAMLNodes) nodes (aliases?): not an Artifact Manifest")
            }
            let decoder = YAMLDecoder()
            manifest = try decoding(file: file, syntax: syntax) { try decoder.decode(ArtifactManifest.self, from: root) }
            tree = try decoding(file: file, syntax: syntax) { try decoder.decode(JSONValue.self, from: root) }
        }
        manifest.unrecognisedKeys = unrecognisedKeys(in: tree)
        return manifest
    }

    /// JSONDecoder says only "not valid JSON"; JSONSerialization says where, as a byte
    /// offset, which is turned into a line and column an operator can find.
    private static func checkJSONSyntax(_ data: Data, file: String) throws {
        do {
            _ = try JSONSerialization.jsonObject(with: data, options: [.fragmentsAllowed])
        } catch {
            let detail = (error as NSError).userInfo[NSDebugDescriptionErrorKey] as? String ?? "\(error)"
            var location = ""
            if let range = detail.range(of: "character "),
               let offset = Int(detail[range.upperBound...].prefix { $0.isNumber }), offset <= data.count {
                let before = data.prefix(offset)
                let line = before.reduce(1) { $1 == UInt8(ascii: "\n") ? $0 + 1 : $0 }
                let column = offset - (before.lastIndex(of: UInt8(ascii: "\n")).map { $0 - data.startIndex + 1 } ?? 0) + 1
                location = " at line \(line), column \(column)"
            }
            throw StageError(.badInput, file: file, "not valid JSON\(location): \(detail)")
        }
    }

    /// Counts nodes depth-first and stops as soon as the budget is spent, so an alias bomb
    /// costs at most `budget` steps.
    private static func fitsNodeBudget(_ node: Node, budget: inout Int) -> Bool {
        budget -= 1
        guard budget >= 0 else { return false }
        switch node {
        case .scalar, .alias:
            return true
        case .sequence(let sequence):
            for child in sequence where !fitsNodeBudget(child, budget: &budget) { return false }
            return true
        case .mapping(let mapping):
            for (key, value) in mapping {
                guard fitsNodeBudget(key, budget: &budget), fitsNodeBudget(value, budget: &budget) else { return false }
            }
            return true
        }
    }

    /// Runs a decode and turns whatever it throws into a `StageError` naming the file and the
    /// JSON path of the offending value.
    private static func decoding<T>(file: String, syntax: Syntax, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as StageError {
            throw error
        } catch let error as DecodingError {
            throw StageError(.badInput, file: file, describe(error, syntax: syntax))
        } catch {
            // Yams reports syntax errors with their line and column in the description.
            throw StageError(.badInput, file: file, "not valid \(syntax == .json ? "JSON" : "YAML"): \(error)")
        }
    }

    static func describe(_ error: DecodingError, syntax: Syntax) -> String {
        switch error {
        case .keyNotFound(let key, let context):
            return "\(jsonPath(context.codingPath + [key])): required key is missing"
        case .typeMismatch(let type, let context):
            return "\(jsonPath(context.codingPath)): expected \(typeName(type))"
        case .valueNotFound(let type, let context):
            return "\(jsonPath(context.codingPath)): expected \(typeName(type)), found null"
        case .dataCorrupted(let context):
            if context.codingPath.isEmpty {
                let detail = (context.underlyingError as NSError?)?.userInfo[NSDebugDescriptionErrorKey] as? String
                    ?? context.underlyingError.map { "\($0)" } ?? context.debugDescription
                return "not valid \(syntax == .json ? "JSON" : "YAML"): \(detail)"
            }
            return "\(jsonPath(context.codingPath)): \(context.debugDescription)"
        @unknown default:
            return "cannot decode the manifest: \(error)"
        }
    }

    /// `disks[1].local_path` from a coding path; `(document)` for the root.
    static func jsonPath(_ codingPath: [any CodingKey]) -> String {
        var path = ""
        for key in codingPath {
            if let index = key.intValue {
                path += "[\(index)]"
            } else {
                path += path.isEmpty ? key.stringValue : ".\(key.stringValue)"
            }
        }
        return path.isEmpty ? "(document)" : path
    }

    private static func typeName(_ type: Any.Type) -> String {
        switch type {
        case is String.Type: "a string"
        case is Bool.Type: "true or false"
        case is Int.Type, is Int64.Type: "an integer"
        case is Double.Type: "a number"
        default:
            if "\(type)".hasPrefix("Array") || "\(type)".contains("Sequence") { "a list" }
            else if "\(type)".hasPrefix("Dictionary") || "\(type)".contains("Mapping") { "a mapping" }
            else { "an object (\(type))" }
        }
    }

    // MARK: - Unrecognised keys

    /// The keys each object of the schema may hold, by schema path (`[]` for "any element").
    /// Free-form maps (`configuration`, `metadata.tags`, `hooks`, `profile_overrides`,
    /// `libvirt_integration`) are not listed, so nothing under them is reported.
    static let knownKeys: [String: Set<String>] = [
        "": Set(CodingKeys.allNames),
        "source": ["provider", "vm_id", "vm_name", "datacenter", "export_method", "export_timestamp"],
        "vm": ["cpu", "mem_gb", "firmware", "secureboot", "os_hint", "os_version"],
        "disks[]": ["id", "source_format", "bytes", "local_path", "checksum", "boot_order_hint", "label", "disk_type"],
        "nics[]": ["id", "mac", "network"],
        "warnings[]": ["stage", "message", "timestamp"],
        "metadata": ["hypersdk_version", "job_id", "created_at", "tags"],
        "pipeline": ["inspect", "fix", "convert", "validate"],
        "pipeline.inspect": ["enabled", "collect_guest_info"],
        "pipeline.fix": ["enabled", "backup", "print_fstab", "update_grub", "regen_initramfs", "fstab_mode", "remove_vmware_tools"],
        "pipeline.convert": ["enabled", "compress", "compress_level"],
        "pipeline.validate": ["enabled", "check_image_integrity"],
        "output": ["directory", "format", "filename"],
        "options": ["dry_run", "verbose", "report"],
        "options.report": ["enabled", "path"],
    ]

    static func unrecognisedKeys(in tree: JSONValue) -> [String] {
        var found: [String] = []
        collectUnrecognised(tree, schemaPath: "", path: "", into: &found)
        return found
    }

    private static func collectUnrecognised(_ value: JSONValue, schemaPath: String, path: String, into found: inout [String]) {
        switch value {
        case .object(let members):
            guard let known = knownKeys[schemaPath] else { return }
            for key in members.keys.sorted() {
                let childPath = path.isEmpty ? key : "\(path).\(key)"
                guard known.contains(key), let child = members[key] else {
                    found.append(childPath)
                    continue
                }
                collectUnrecognised(child, schemaPath: schemaPath.isEmpty ? key : "\(schemaPath).\(key)",
                                    path: childPath, into: &found)
            }
        case .array(let elements):
            for (index, element) in elements.enumerated() {
                collectUnrecognised(element, schemaPath: schemaPath + "[]", path: "\(path)[\(index)]", into: &found)
            }
        default:
            return
        }
    }
}

extension ArtifactManifest.CodingKeys {
    static var allNames: [String] { allCases.map(\.rawValue) }
}
