import Foundation
import Testing
import TestSupport
@testable import Stages

/// A manifest dropped into the queue may name only files in the queue or under
/// `manifest_allowed_dirs`, and learns nothing about any other path.
@Suite("ArtifactManifestPathPolicy", .serialized)
struct ArtifactManifestPathPolicyTests {
    /// `queue/` (where the manifest is dropped), `allowed/` (a manifest_allowed_dirs entry) and
    /// `host/` (everything else on the host), with a real disk image in each.
    private struct Layout {
        let dir: Scratch
        let queue: URL, allowed: URL, host: URL
        let queueDisk: URL, allowedDisk: URL, hostDisk: URL

        init(_ label: String = #function) async throws {
            dir = try Scratch(label)
            queue = try dir.subdirectory("queue")
            allowed = try dir.subdirectory("allowed")
            host = try dir.subdirectory("host")
            queueDisk = try await TestImageFactory.makeImage(.raw, named: "q", in: queue, sizeMiB: 1, randomMiB: 1)
            allowedDisk = try await TestImageFactory.makeImage(.raw, named: "a", in: allowed, sizeMiB: 1, randomMiB: 1)
            hostDisk = try await TestImageFactory.makeImage(.raw, named: "secret", in: host, sizeMiB: 1, randomMiB: 1)
        }

        func manifest(naming path: String, checksum: String? = nil) throws -> URL {
            var disk: [String: Any] = ["id": "d", "source_format": "raw", "local_path": path]
            if let checksum { disk["checksum"] = checksum }
            return try ManifestFixtures.write(ManifestFixtures.minimal(disks: [disk]), named: "vm.json", in: queue)
        }

        func read(_ manifest: URL) async throws -> SourceReading {
            try await SourceReader.read(source: manifest, kind: .manifest, scratchDirectory: dir.url,
                                        manifestAllowedDirectories: [allowed.path])
        }

        /// The error reading a manifest that names `path`; nil if it was accepted.
        func error(naming path: String, checksum: String? = nil) async throws -> String? {
            do {
                _ = try await read(try manifest(naming: path, checksum: checksum))
                return nil
            } catch let error as StageError {
                return error.description
            }
        }

        func notAllowed(_ path: String) -> String {
            "\(queue.path)/vm.json: disks[0].local_path: '\(path)' is not allowed (outside the queue and manifest_allowed_dirs)"
        }
    }

    @Test func diskInTheQueueAndUnderAnAllowedDirectoryAreAccepted() async throws {
        let layout = try await Layout()
        for disk in [layout.queueDisk, layout.allowedDisk] {
            let reading = try await layout.read(try layout.manifest(naming: disk.path))
            #expect(reading.description.disks.map(\.locator.path) == [disk.resolvingSymlinksInPath().path])
        }
    }

    @Test func anAbsoluteHostPathIsNotAllowed() async throws {
        let layout = try await Layout()
        for path in [layout.hostDisk.path, "/etc/passwd", "/etc", "/dev/zero", "/proc/self/environ"] {
            #expect(try await layout.error(naming: path) == layout.notAllowed(path))
        }
    }

    @Test func dotDotEscapesAreNotAllowed() async throws {
        let layout = try await Layout()
        for path in [layout.queue.path + "/../host/secret.raw", layout.allowed.path + "/../host/secret.raw",
                     layout.queue.path + "/nothing/../../host/secret.raw", layout.queue.path + "/../host/missing.raw"] {
            #expect(try await layout.error(naming: path) == layout.notAllowed(path))
        }
    }

    @Test func aSymlinkInTheQueueOrInAnAllowedDirectoryPointingOutIsNotAllowed() async throws {
        let layout = try await Layout()
        let fileManager = FileManager.default
        let links = [
            (layout.queue.appendingPathComponent("link.raw"), layout.hostDisk.path),
            (layout.allowed.appendingPathComponent("link.raw"), layout.hostDisk.path),
            (layout.queue.appendingPathComponent("dirlink"), layout.host.path),
            (layout.queue.appendingPathComponent("dangling.raw"), layout.host.path + "/missing.raw"),
        ]
        for (link, target) in links {
            try fileManager.createSymbolicLink(atPath: link.path, withDestinationPath: target)
        }
        for path in [links[0].0.path, links[1].0.path, links[2].0.path + "/secret.raw", links[2].0.path + "/missing.raw",
                     links[3].0.path] {
            #expect(try await layout.error(naming: path) == layout.notAllowed(path))
        }
        // A link that stays inside is fine.
        try fileManager.createSymbolicLink(atPath: layout.queue.path + "/inside.raw", withDestinationPath: layout.allowedDisk.path)
        #expect(try await layout.error(naming: layout.queue.path + "/inside.raw") == nil)
    }

    @Test func anExistingAndAMissingOutsidePathGiveByteIdenticalErrors() async throws {
        let layout = try await Layout()
        let path = layout.hostDisk.path
        // Present, with a wrong checksum: neither the checksum nor the size is looked at.
        let present = try await layout.error(naming: path, checksum: ManifestFixtures.zeroChecksum)
        try FileManager.default.removeItem(at: layout.hostDisk)
        let absent = try await layout.error(naming: path, checksum: ManifestFixtures.zeroChecksum)
        #expect(present != nil && present == absent)
        // A directory and a file outside read the same as well.
        #expect(try await layout.error(naming: layout.host.path) == layout.notAllowed(layout.host.path))
        // Inside, the reasons are told: the queue is the dropper's own.
        let missing = layout.queue.path + "/missing.raw"
        #expect(try await layout.error(naming: missing) == "\(layout.queue.path)/vm.json: disks[0].local_path: '\(missing)' does not exist")
    }

    @Test func aDescriptorWhosePathLeftTheRootsIsRefused() async throws {
        // The post-open check alone: a root that no longer contains what was opened.
        let layout = try await Layout()
        let policy = ArtifactManifestPathPolicy(manifest: layout.queue.appendingPathComponent("vm.json"), allowedDirectories: [])
        let opened = try policy.open(layout.queueDisk.path, field: "f", manifestPath: "m")
        defer { opened.close() }
        #expect(ArtifactManifestPathPolicy.realPath(ofDescriptor: opened.descriptor) == layout.queueDisk.resolvingSymlinksInPath().path)
        let other = ArtifactManifestPathPolicy(manifest: layout.allowed.appendingPathComponent("vm.json"), allowedDirectories: [])
        #expect(!other.contains(realPath: opened.realPath))
    }
}
