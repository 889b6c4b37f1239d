import TestSupport
import Foundation
import Testing
@testable import GuestFix
@testable import Stages

/// The phony Windows disks and fake virtio-win trees built by `scripts/build-phony-windows`.
enum WindowsTestGuests {
    static var directory: URL {
        GuestFixTestGuests.cacheDirectory.appendingPathComponent("phony-windows-v1")
    }

    /// Builds the fixtures once per cache (about a minute, one appliance).
    static func ensure() async throws -> URL {
        if !FileManager.default.fileExists(atPath: directory.appendingPathComponent(".complete").path) {
            let script = GuestFixTestGuests.repositoryRoot.appendingPathComponent("scripts/build-phony-windows").path
            try await ExternalCommand(script, []).runChecked(about: directory.path)
        }
        return directory
    }

    static func image(_ name: String) async throws -> URL { try await ensure().appendingPathComponent("\(name).img") }

    /// Runs the fix stage's fixer on an overlay over `image`; the source must stay unchanged.
    static func fix(_ image: String, options: ConversionOptions, overlay: URL) async throws -> GuestFixReport {
        GuestFixTestGuests.configureLibguestfsForTests()
        let source = try await Self.image(image)
        try await GuestFixOverlay.create(over: source, sourceFormat: "raw", at: overlay)
        return try await LinuxGuestFixer(applianceMemoryMiB: 1024, applianceCPUs: 1)
            .fix(disks: [(overlay, "qcow2")], options: options, identifier: "test-\(image)")
    }

    static func virtioOptions(source: String) -> ConversionOptions {
        var options = ConversionOptions()
        options.winVirtio = true
        options.winHyperv = true
        options.virtioWin = directory.appendingPathComponent(source).path
        return options
    }
}

/// A `.reg` export parsed into key → value name → exported data, to diff hives.
struct RegExport: Equatable {
    var keys: [String: [String: String]]

    /// Exports `hive` with hivexregedit (independent of the code under test).
    init(hive: URL) async throws {
        let result = try await ExternalCommand("hivexregedit", ["--export", hive.path, "\\"]).runChecked(about: hive.path)
        self.init(text: result.stdoutText)
    }

    init(text: String) {
        var keys: [String: [String: String]] = [:]
        var current: String?
        for rawLine in text.components(separatedBy: "\n") {
            let line = rawLine.trimmingCharacters(in: CharacterSet(charactersIn: "\r"))
            if line.hasPrefix("[") && line.hasSuffix("]") {
                let key = String(line.dropFirst(2).dropLast())
                current = key
                keys[key, default: [:]] = keys[key] ?? [:]
            } else if let current, let equals = Self.nameEnd(line) {
                let rawName = String(line[..<equals])
                let name = rawName == "@" ? "" : String(rawName.dropFirst().dropLast()).replacingOccurrences(of: "\\\\", with: "\\")
                keys[current, default: [:]][name] = String(line[line.index(after: equals)...])
            }
        }
        self.keys = keys
    }

    private static func nameEnd(_ line: String) -> String.Index? {
        if line.hasPrefix("@=") { return line.index(after: line.startIndex) }
        guard line.hasPrefix("\"") else { return nil }
        var escaped = false
        var index = line.index(after: line.startIndex)
        while index < line.endIndex {
            let character = line[index]
            if escaped { escaped = false } else if character == "\\" { escaped = true } else if character == "\"" {
                let next = line.index(after: index)
                return next < line.endIndex && line[next] == "=" ? next : nil
            }
            index = line.index(after: index)
        }
        return nil
    }

    /// (key, value) pairs whose data differ or are new; removed values count too.
    func changes(from before: RegExport) -> Set<String> {
        var changed: Set<String> = []
        for (key, values) in keys {
            for (name, data) in values where before.keys[key]?[name] != data {
                changed.insert("\(key.lowercased())|\(name.lowercased())")
            }
        }
        for (key, values) in before.keys {
            for name in values.keys where keys[key]?[name] == nil {
                changed.insert("\(key.lowercased())|\(name.lowercased())")
            }
        }
        return changed
    }

    func value(_ key: String, _ name: String) -> String? {
        keys.first { $0.key.lowercased() == key.lowercased() }?.value.first { $0.key.lowercased() == name.lowercased() }?.value
    }

    /// hivexregedit's data text for a string value (it exports REG_SZ as `hex(1):`).
    static func hex(_ type: Int, _ value: RegistryValue) -> String {
        "hex(\(type)):" + value.data.map { String(format: "%02x", $0) }.joined(separator: ",")
    }
}

/// Copies files and listings out of fixed overlays with one read-only guestfish appliance.
enum WindowsGuestfishReader {
    struct Request {
        var image: URL
        var device: String
        var copyOut: [String]
        var into: URL
    }

    /// For each request: mounts `device` read-only, copies each guest file into `into`,
    /// and returns `find /` of the volume.
    static func read(_ requests: [Request]) async throws -> [[String]] {
        var script = ""
        for (index, request) in requests.enumerated() {
            script += "add-drive \(request.image.path) format:qcow2 readonly:true\n"
            _ = index
        }
        script += "run\n"
        let letters = Array("abcdefgh")
        for (index, request) in requests.enumerated() {
            let device = request.device.replacingOccurrences(of: "/dev/sda", with: "/dev/sd\(letters[index])")
            try FileManager.default.createDirectory(at: request.into, withIntermediateDirectories: true)
            script += "mount-ro \(device) /\n"
            for file in request.copyOut { script += "copy-out \(file) \(request.into.path)\n" }
            script += "echo ==== \(index)\nfind /\numount-all\n"
        }
        let scratch = try Scratch("guestfish")
        let scriptFile = scratch.file("script.txt")
        try script.write(to: scriptFile, atomically: true, encoding: .utf8)
        let result = try await ExternalCommand("guestfish", ["-f", scriptFile.path]).runChecked()
        var listings = Array(repeating: [String](), count: requests.count)
        var current: Int?
        for line in result.stdoutText.components(separatedBy: "\n") where !line.isEmpty {
            if line.hasPrefix("==== ") { current = Int(line.dropFirst(5)) } else if let current { listings[current].append(line) }
        }
        return listings
    }
}
