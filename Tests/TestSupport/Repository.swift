import Foundation

/// The repository checkout the tests were built from (for scripts/, migrations/, examples).
public enum Repository {
    /// This file is Tests/TestSupport/Repository.swift: three levels below the root.
    public static let root = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    /// A script under scripts/.
    public static func script(_ name: String) -> String { root.appendingPathComponent("scripts/" + name).path }
}

/// The built `hyper2kvm` binary (swift build --build-tests builds it beside the tests).
public enum ProductBinary {
    public static var path: String {
        // On Linux the test bundle is an executable whose bundleURL is its build directory.
        let candidates = [
            Bundle.main.bundleURL.appendingPathComponent("hyper2kvm").path,
            Bundle.main.bundleURL.deletingLastPathComponent().appendingPathComponent("hyper2kvm").path,
            Repository.root.appendingPathComponent(".build/debug/hyper2kvm").path,
        ]
        return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates[1]
    }
}

/// What the tests that run the real guest tools share: the repository (for scripts/) and
/// the libguestfs settings for this machine, where KVM hangs (tests set TCG; the product never does).
public enum RealGuestTesting {
    public static let repositoryRoot = Repository.root

    /// Waits until the daemon under `base` has published `vm` (its SHA256SUMS exists) and
    /// archived the queued file `queued`, or has given up on it (its `.error.json` exists),
    /// at most `seconds`.
    /// Returns the published directory; the caller checks which of the two happened.
    public static func awaitPublication(base: String, vm: String, queued: String, seconds: TimeInterval) async throws -> String {
        let published = base + "/output/" + vm
        let deadline = Date().addingTimeInterval(seconds)
        // The source is archived after the outputs are published and `published` is committed,
        // so the outputs alone do not mean the job is done.
        let done = {
            FileManager.default.fileExists(atPath: published + "/SHA256SUMS")
                && !FileManager.default.fileExists(atPath: base + "/queue/" + queued)
        }
        while Date() < deadline && !done() {
            if FileManager.default.fileExists(atPath: base + "/queue/.errors/\(queued).error.json") { break }
            try await Task.sleep(for: .seconds(2))
        }
        return published
    }

    /// For a child process's environment.
    public static var libguestfsEnvironment: [String: String] {
        var environment = ["LIBGUESTFS_BACKEND": "direct"]
        if ProcessInfo.processInfo.environment["HYPER2KVM_TEST_KVM"] != "1" { environment["LIBGUESTFS_BACKEND_SETTINGS"] = "force_tcg" }
        return environment
    }

    /// For libguestfs inside the test process; a value the caller already set wins.
    public static func configureLibguestfsForTests() {
        for (key, value) in libguestfsEnvironment { setenv(key, value, 0) }
    }
}

/// Pids whose command line contains `text` (a child or its qemu names the test's files).
public func processes(mentioning text: String) -> [Int32] {
    let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
    return entries.compactMap { entry in
        guard let pid = Int32(entry), pid != getpid(),
              let data = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { return nil }
        let line = String(decoding: data.map { $0 == 0 ? UInt8(ascii: " ") : $0 }, as: UTF8.self)
        return line.contains(text) ? pid : nil
    }
}
