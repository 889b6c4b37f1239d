import Synchronization

/// The kernel modules of the initramfs images already listed in one guest fix, so that the
/// boot check does not list again an image the initramfs step has just listed or rebuilt and
/// listed. A listing unpacks the whole image inside the appliance (`lsinitramfs`, `lsinitrd`):
/// tens of seconds under TCG, and on a loaded host the boot check spent most of its time
/// there. Keyed by the path in the guest and the file's size; a rebuild forgets the path.
final class InitramfsListings: Sendable {
    private struct Listing {
        let size: Int64
        let modules: Set<String>
    }

    private let listings = Mutex<[String: Listing]>([:])

    /// The modules inside `image`, from this fix's earlier listing of the same file when there
    /// is one, else listed now (InitramfsRegenerator.modulesInside); nil when it cannot be listed.
    func modules(guest: GuestfsHandle, tool: InitramfsRegenerator.Tool?, image: String,
                 scratchDirectory: String? = nil) -> Set<String>? {
        let size = try? guest.fileSize(image)
        if let size, let earlier = listings.withLock({ $0[image] }), earlier.size == size {
            return earlier.modules
        }
        guard let modules = InitramfsRegenerator.modulesInside(guest: guest, tool: tool, image: image,
                                                               scratchDirectory: scratchDirectory) else { return nil }
        if let size { listings.withLock { $0[image] = Listing(size: size, modules: modules) } }
        return modules
    }

    /// Called before `image` is rewritten: its earlier listing no longer holds.
    func forget(_ image: String) {
        _ = listings.withLock { $0.removeValue(forKey: image) }
    }
}
