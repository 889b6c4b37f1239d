import Foundation
import TestSupport
import Testing

/// The daemon never maps libguestfs: only `hyper2kvm-fix-guest`, the guest-fix child, links
/// it. Read from the built binaries: their dynamic sections (`readelf -d`, the DT_NEEDED
/// entries) and `ldd`, which also lists what those libraries pull in, since a library that
/// needed libguestfs would bring it into the daemon just the same.
@Suite("Product linkage")
struct ProductLinkageTests {
    /// Built beside `hyper2kvm`, where the daemon looks for it.
    static var fixerBinary: String {
        URL(fileURLWithPath: ProductBinary.path).deletingLastPathComponent().appendingPathComponent("hyper2kvm-fix-guest").path
    }

    /// The DT_NEEDED sonames: `0x…1 (NEEDED)  Shared library: [libguestfs.so.0]`.
    static func neededLibraries(of binary: String) async throws -> [String] {
        let dynamic = try await sh(["readelf", "--dynamic", "--wide", binary], environment: ["LC_ALL": "C"]).out
        return dynamic.split(separator: "\n").filter { $0.contains("(NEEDED)") }.compactMap { line in
            guard let open = line.firstIndex(of: "["), let close = line.lastIndex(of: "]"), open < close else { return nil }
            return String(line[line.index(after: open)..<close])
        }
    }

    @Test("hyper2kvm links no libguestfs, directly or through another library")
    func theDaemonDoesNotLinkLibguestfs() async throws {
        let needed = try await Self.neededLibraries(of: ProductBinary.path)
        // Read right: a Swift executable needs at least the C library and the Swift runtime.
        #expect(needed.contains("libc.so.6") && needed.contains("libswiftCore.so"), "\(needed)")
        #expect(!needed.contains { $0.contains("guestfs") }, "\(ProductBinary.path) needs \(needed)")
        let loaded = try await sh(["ldd", ProductBinary.path], environment: ["LC_ALL": "C"]).out
        #expect(!loaded.contains("guestfs"), "ldd \(ProductBinary.path):\n\(loaded)")
    }

    @Test("hyper2kvm-fix-guest links libguestfs (the check above can see it where it is)")
    func theGuestFixerLinksLibguestfs() async throws {
        #expect(FileManager.default.isExecutableFile(atPath: Self.fixerBinary), "\(Self.fixerBinary) was not built")
        let needed = try await Self.neededLibraries(of: Self.fixerBinary)
        #expect(needed.contains("libguestfs.so.0"), "\(Self.fixerBinary) needs \(needed)")
    }
}
