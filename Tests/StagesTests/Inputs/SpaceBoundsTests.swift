import Foundation
import Testing
import TestSupport
@testable import Stages

/// Space before bytes: an estimate is checked before writing, and decompression is bounded.
@Suite("Space bounds", .serialized)
struct SpaceBoundsTests {
    // MARK: - The decision

    @Test("a need fits, waits for space, or can never fit")
    func verdicts() {
        let space = FileSystemSpace(available: 100, capacity: 1000)
        #expect(SpaceNeed(bytes: 100, directory: "/w").verdict(on: space) == .fits)
        #expect(SpaceNeed(bytes: 101, directory: "/w").verdict(on: space) == .waitForSpace)
        #expect(SpaceNeed(bytes: 1000, directory: "/w").verdict(on: space) == .waitForSpace)
        #expect(SpaceNeed(bytes: 1001, directory: "/w").verdict(on: space) == .neverFits)
    }

    @Test("a need that does not fit now is a no-space error carrying it; one that never fits is bad input")
    func errors() throws {
        let space = FileSystemSpace(available: 5 << 20, capacity: 1 << 30)
        let need = SpaceNeed(bytes: 200 << 20, directory: "/var/lib/work/job-1")
        let waiting = #expect(throws: StageError.self) {
            try SpaceCheck.require(need, on: space, for: "converting 1 disk(s) to qcow2", file: "/q/a.vmdk")
        }
        #expect(waiting?.code == .noSpace)
        #expect(waiting?.spaceNeed == need)
        #expect(waiting?.file == "/q/a.vmdk")
        #expect(waiting?.message.contains("needs 209715200 bytes (200.0 MiB)") == true, "\(String(describing: waiting))")
        #expect(waiting?.message.contains("5242880 bytes (5.0 MiB) free") == true, "\(String(describing: waiting))")

        let never = #expect(throws: StageError.self) {
            try SpaceCheck.require(SpaceNeed(bytes: 2 << 30, directory: "/w"), on: space, for: "x", file: "/q/a.vmdk")
        }
        #expect(never?.code == .badInput)
        #expect(never?.spaceNeed == nil)
        #expect(never?.message.contains("can never fit") == true)
    }

    @Test("the convert estimate adds 1/64 and the reserve, and saturates instead of overflowing")
    func convertEstimate() {
        #expect(ConvertSpaceEstimate(required: 64 << 20).bytes == (64 << 20) + (1 << 20) + SpaceCheck.reserveBytes)
        #expect(ConvertSpaceEstimate(required: .max - 1).bytes == .max)
    }

    @Test("a resumed copy asks only for what is not written yet, never less than the reserve; publishing elsewhere asks for all")
    func resumedConvertEstimate() {
        let required: UInt64 = 64 << 20
        let half = ConvertSpaceEstimate(required: required, alreadyWritten: 32 << 20)
        #expect(half.bytes == (32 << 20) + (1 << 20) + SpaceCheck.reserveBytes)
        #expect(half.wholeBytes == ConvertSpaceEstimate(required: required).bytes)
        #expect(ConvertSpaceEstimate(required: required, alreadyWritten: 1 << 40).bytes == SpaceCheck.reserveBytes)
        #expect(ConvertSpaceEstimate(required: .max, alreadyWritten: .max).bytes == SpaceCheck.reserveBytes)
    }

    @Test("allocated bytes count a file's blocks, not its holes; missing files and directories count nothing")
    func allocatedBytes() throws {
        let dir = try Scratch()
        let sparse = dir.url.appendingPathComponent("sparse")
        let handle = try FileHandle(forWritingTo: { FileManager.default.createFile(atPath: sparse.path, contents: nil); return sparse }())
        try handle.truncate(atOffset: 1 << 30)
        try handle.seek(toOffset: 0)
        try handle.write(contentsOf: Data(repeating: 7, count: 1 << 20))
        try handle.synchronize()
        try handle.close()
        let allocated = AllocatedBytes.of(sparse.path)
        #expect(allocated >= 1 << 20 && allocated < 8 << 20, "\(allocated)")
        #expect(AllocatedBytes.of(dir.url.appendingPathComponent("absent").path) == 0)
        #expect(AllocatedBytes.of(dir.url.path) == 0)
    }

    @Test("two estimates checked one after the other cannot both count the same free bytes")
    func reservations() throws {
        let dir = try Scratch()
        let free = try #require(FileSystemSpace.of(dir.url.path)).available
        let reservations = SpaceReservations()
        let need = SpaceNeed(bytes: free / 10 * 6, directory: dir.url.path)
        let first = try reservations.reserve(need, for: "first", file: nil)
        #expect(reservations.heldBytes(at: dir.url.path) == need.bytes)
        let second = #expect(throws: StageError.self) { _ = try reservations.reserve(need, for: "second", file: "/q/b.vmdk") }
        #expect(second?.code == .noSpace)
        #expect(second?.spaceNeed == need)
        #expect(second?.message.contains("about to be written by other conversions") == true, "\(String(describing: second))")
        first.release()
        first.release()  // twice is once
        #expect(reservations.heldBytes(at: dir.url.path) == 0)
        let again = try reservations.reserve(need, for: "second", file: nil)
        again.release()
    }

    @Test("statvfs of a real directory: free within capacity")
    func realFilesystem() throws {
        let space = try #require(FileSystemSpace.of(NSTemporaryDirectory()))
        #expect(space.available > 0 && space.available <= space.capacity)
        #expect(FileSystemSpace.of("/nonexistent/\(UUID().uuidString)") == nil)
    }

    // MARK: - qemu-img measure

    @Test("measure counts allocated data, also through a json: spec of an archive member")
    func measure() async throws {
        let dir = try Scratch()
        let raw = dir.file("disk.raw")
        try await TestImageFactory.makeRaw(at: raw, sizeMiB: 64, randomMiB: 4)
        let qemuImg = QemuImg()
        let plain = try await qemuImg.measure(raw.path, sourceFormat: "raw", outputFormat: "qcow2")
        #expect(plain.required >= 4 << 20 && plain.required < 8 << 20, "\(plain)")
        #expect(plain.fullyAllocated >= 64 << 20)
        let compressed = try await qemuImg.measure(raw.path, sourceFormat: "raw", outputFormat: "qcow2", compress: true)
        #expect(compressed.required >= plain.required / 2)
        // The first 8 MiB as an in-place member: the 4 random MiB are all it holds.
        let member = try PinnedImage.open(DiskLocator(path: raw.path, format: "raw", offset: 0, length: 8 << 20))
        let ranged = try await qemuImg.measure(member.spec, sourceFormat: "raw", outputFormat: "qcow2")
        withExtendedLifetime(member) {}
        #expect(ranged.required == plain.required)
        #expect(ranged.fullyAllocated < 9 << 20)
    }

    @Test("a compressed qcow2 source measures at what it expands to, not what it stores")
    func compressedSourceMeasuresExpanded() async throws {
        let dir = try Scratch()
        let raw = dir.file("y.raw")
        try await TestImageFactory.run("sh", ["-c", "yes | head -c \(64 << 20) > \"$1\"", "sh", raw.path])
        let compressed = dir.file("y.qcow2")
        try await TestImageFactory.run("qemu-img", ["convert", "-c", "-f", "raw", "-O", "qcow2", raw.path, compressed.path])
        let stored = try #require(try FileManager.default.attributesOfItem(atPath: compressed.path)[.size] as? NSNumber).uint64Value
        #expect(stored < 2 << 20, "stored \(stored)")
        let measurement = try await QemuImg().measure(compressed.path, sourceFormat: "qcow2", outputFormat: "qcow2")
        #expect(measurement.required >= 64 << 20, "\(measurement)")
    }

    // MARK: - AMI decompression

    /// A tar.gz AMI holding one raw-named member of `mebibytes` made by `generator` (a shell
    /// pipeline printing endless bytes), built here; nothing is committed.
    private func bomb(in dir: Scratch, mebibytes: Int, generator: String) async throws -> URL {
        let staging = try dir.subdirectory("bomb-staging")
        let member = staging.appendingPathComponent("disk.raw")
        try await TestImageFactory.run("sh", ["-c", "\(generator) | head -c \(mebibytes << 20) > \"$1\"", "sh", member.path])
        let ami = dir.file("bomb.ami")
        try await TestImageFactory.makeTar(at: ami, from: staging, members: ["disk.raw"], gzip: true)
        try FileManager.default.removeItem(at: staging)
        return ami
    }

    /// A tmpfs of `mebibytes` mounted inside `dir`; unmounted by the returned closure.
    private func smallFilesystem(in dir: Scratch, mebibytes: Int) async throws -> (URL, () -> Void) {
        let mountPoint = try dir.subdirectory("small")
        let (status, message) = try await OutputTestImages.status("mount", ["-t", "tmpfs", "-o", "size=\(mebibytes)m", "tmpfs", mountPoint.path])
        try #require(status == 0, "needs root to mount a tmpfs: \(message)")
        return (mountPoint, { _ = try? shBlocking(["umount", "-l", mountPoint.path], allowFailure: true) })
    }

    @Test("a gzip bomb of 200 MiB past the decompression limit is refused with the numbers, nothing kept")
    func bombPastTheLimit() async throws {
        let dir = try Scratch()
        let ami = try await bomb(in: dir, mebibytes: 200, generator: "yes")
        let scratch = try dir.subdirectory("scratch")
        let limits = AMIReader.DecompressionLimits(maximumBytes: 32 << 20, reserveBytes: 0)
        let error = await #expect(throws: StageError.self) { _ = try await AMIReader.read(ami, scratchDirectory: scratch, limits: limits) }
        #expect(error?.code == .badInput)
        #expect(error?.file == ami.path)
        #expect(error?.message.contains("more than 33554432 bytes (32.0 MiB)") == true, "\(String(describing: error))")
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.path).isEmpty)
    }

    @Test("a gzip bomb whose trailer declares its size is refused before a byte is written")
    func bombRefusedByItsTrailer() async throws {
        let dir = try Scratch()
        let ami = try await bomb(in: dir, mebibytes: 200, generator: "yes")
        let (small, unmount) = try await smallFilesystem(in: dir, mebibytes: 32)
        defer { unmount() }
        let error = await #expect(throws: StageError.self) {
            _ = try await AMIReader.read(ami, scratchDirectory: small, limits: .init(reserveBytes: 1 << 20))
        }
        #expect(error?.code == .badInput, "more than the whole filesystem: \(String(describing: error))")
        #expect(error?.message.contains("gzip trailer declares") == true, "\(String(describing: error))")
        #expect(error?.message.contains("can never fit") == true)
        #expect(try FileManager.default.contentsOfDirectory(atPath: small.path).isEmpty)
    }

    @Test("a gzip bomb with a lying trailer stops at the free space: no fill, a no-space error with what it needs")
    func bombWithForgedTrailer() async throws {
        let dir = try Scratch()
        let ami = try await bomb(in: dir, mebibytes: 200, generator: "yes")
        // ISIZE says 1 KiB: only the byte counter can stop it now.
        let handle = try FileHandle(forUpdating: ami)
        let size = try handle.seekToEnd()
        try handle.seek(toOffset: size - 4)
        try handle.write(contentsOf: Data([0x00, 0x04, 0x00, 0x00]))
        try handle.close()
        let (small, unmount) = try await smallFilesystem(in: dir, mebibytes: 256)
        defer { unmount() }
        // 200 MiB of ballast leaves about 56 MiB free: the bomb would fill it.
        try await TestImageFactory.run("dd", ["if=/dev/zero", "of=\(small.path)/ballast", "bs=1M", "count=200", "status=none"])
        let scratch = small.appendingPathComponent("scratch")
        let freeBefore = try #require(FileSystemSpace.of(small.path)).available
        let reserve: UInt64 = 8 << 20
        let error = await #expect(throws: StageError.self) {
            _ = try await AMIReader.read(ami, scratchDirectory: scratch, limits: .init(reserveBytes: reserve))
        }
        #expect(error?.code == .noSpace, "\(String(describing: error))")
        #expect(error?.file == ami.path)
        let need = try #require(error?.spaceNeed)
        #expect(need.directory == scratch.path)
        #expect(need.bytes > freeBefore, "a wait must last until more than was free: \(need.bytes) vs \(freeBefore)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.path).isEmpty, "the partial output is removed")
        #expect(try #require(FileSystemSpace.of(small.path)).available >= freeBefore - (1 << 20))
    }

    @Test("zeros decompress into holes: a 200 MiB bomb of zeros allocates almost nothing and reads back",
          .tags(.slow), .notInQuickRun)
    func zerosBecomeHoles() async throws {
        let dir = try Scratch()
        let ami = try await bomb(in: dir, mebibytes: 200, generator: "cat /dev/zero")
        // Room for what the trailer declares (the plan is made on it), not much more.
        let (small, unmount) = try await smallFilesystem(in: dir, mebibytes: 256)
        defer { unmount() }
        let freeBefore = try #require(FileSystemSpace.of(small.path)).available
        let reading = try await AMIReader.read(ami, scratchDirectory: small, limits: .init(reserveBytes: 1 << 20))
        let disk = try #require(reading.description.disks.first)
        #expect(disk.locator.format == "raw")
        #expect(disk.locator.length == 200 << 20)
        let tar = small.appendingPathComponent(AMIReader.decompressedName)
        var info = stat()
        #expect(stat(tar.path, &info) == 0)
        #expect(info.st_size > 200 << 20)
        #expect(info.st_blocks * 512 < 1 << 20, "allocated \(info.st_blocks * 512) bytes")
        #expect(try #require(FileSystemSpace.of(small.path)).available > freeBefore - (1 << 20))
        // gzip itself agrees on the content, up to the archive's end-of-archive blocks (the
        // record padding tar adds after them is not kept: decompression stops there).
        let reference = dir.file("reference.tar")
        try await TestImageFactory.run("sh", ["-c", "gzip -dc -- \"$1\" > \"$2\"", "sh", ami.path, reference.path])
        try await TestImageFactory.run("truncate", ["-s", "\(info.st_size)", reference.path])
        #expect(try await TestImageFactory.referenceDigest(of: reference) == TestImageFactory.referenceDigest(of: tar))
    }

    @Test("gzip members after the tar's end are never decompressed: a small AMI followed by 2 GiB of zero members ends at once",
          .tags(.slow), .notInQuickRun)
    func trailingMembersAreNotRead() async throws {
        let dir = try Scratch()
        let disk = dir.file("disk.raw")
        try await TestImageFactory.makeRaw(at: disk, sizeMiB: 1, randomMiB: 1)
        let ami = dir.file("vm.ami")
        try await TestImageFactory.run("sh", ["-c", "cd \"$1\" && tar -cf - disk.raw | gzip -1 > \"$2\" && "
                                        + "for i in 1 2 3 4 5 6 7 8; do head -c 268435456 /dev/zero | gzip -1 >> \"$2\"; done",
                                        "sh", dir.url.path, ami.path])
        let started = ContinuousClock.now
        let reading = try await AMIReader.read(ami, scratchDirectory: dir.file("scratch"))
        let readTime = ContinuousClock.now - started
        #expect(reading.description.disks.first?.locator.length == 1 << 20)
        // Inflating the 2 GiB of zeros takes seconds; stopping at the archive's end does not. The
        // yardstick is gzip inflating the same file in the same run, not a fixed time: on a
        // loaded 2-core host a fixed 5 s bound failed at 5.3 s while the reader had still
        // stopped in time. Measured here: 0.2 s against 7 s.
        let inflating = ContinuousClock.now
        try await TestImageFactory.run("sh", ["-c", "gzip -dc -- \"$1\" > /dev/null", "sh", ami.path])
        let inflateTime = ContinuousClock.now - inflating
        #expect(readTime < inflateTime / 2, "reading took \(readTime), inflating everything \(inflateTime)")
        let tar = dir.file("scratch").appendingPathComponent(AMIReader.decompressedName)
        var info = stat()
        #expect(stat(tar.path, &info) == 0)
        #expect(info.st_size < 2 << 20, "the decompressed archive kept \(info.st_size) bytes")
    }

    @Test("a corrupt gzip stream is bad input naming the file")
    func corruptStream() async throws {
        let dir = try Scratch()
        let ami = dir.file("broken.ami")
        var bytes = Data([0x1f, 0x8b, 0x08, 0x00, 0, 0, 0, 0, 0, 0x03])
        bytes.append(Data(repeating: 0xff, count: 64))
        try bytes.write(to: ami)
        let scratch = try dir.subdirectory("scratch")
        let error = await #expect(throws: StageError.self) { _ = try await AMIReader.read(ami, scratchDirectory: scratch) }
        #expect(error?.code == .badInput)
        #expect(error?.file == ami.path)
        #expect(error?.message.contains("cannot decompress") == true, "\(String(describing: error))")
        #expect(try FileManager.default.contentsOfDirectory(atPath: scratch.path).isEmpty)
    }
}
