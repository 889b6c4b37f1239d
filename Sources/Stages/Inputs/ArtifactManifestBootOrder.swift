/// Turns the manifest's `boot_order_hint`s into `SourceDisk.bootOrderHint`s, avoiding
/// the Python loader's defect (it booted the data disk).
///
/// hypersdk writes `boot_order_hint` with Go's `omitempty`, so the value **0 is never
/// written**: the boot disk of a typical export (`disk-0`, hint 0) arrives with no hint
/// while `disk-1` carries 1. The Python loader defaulted a missing hint to 999 and so
/// booted the data disk. The rule here:
///
/// 1. No disk has a hint → every `bootOrderHint` stays nil. The manifest says nothing
///    about boot order; the first disk is the boot candidate and guest inspection decides.
///    (Never 999.)
/// 2. Some disk has a hint → a disk without one is read as hint **0**, since 0 is the only
///    value Go omits. Disks are then ordered by (hint, explicit before omitted, manifest
///    order): an explicit 0 beats an omitted one, and equal hints keep manifest order.
/// 3. The resulting `bootOrderHint` is the disk's **rank** in that order (0 boots first),
///    so that every consumer's "lowest hint, first on ties" picks the same disk. The
///    manifest's own values are kept in the fact this produces.
///
/// `disk_type: boot` is informational (as upstream) and never chooses the boot disk; a
/// disagreement with the chosen disk is reported as a warning fact.
enum ArtifactManifestBootOrder {
    struct Resolution: Equatable {
        /// Per disk, in manifest order.
        var hints: [Int?]
        var facts: [String]
    }

    static func resolve(_ disks: [ArtifactManifest.Disk]) -> Resolution {
        guard disks.contains(where: { $0.bootOrderHint != nil }) else {
            var facts = ["manifest gives no boot_order_hint: the boot disk is found by guest inspection (first disk, \(disks.first?.id ?? "-"), by default)"]
            facts += disagreement(disks, bootIndex: 0)
            return Resolution(hints: Array(repeating: nil, count: disks.count), facts: facts)
        }
        let order = disks.indices.sorted { left, right in
            let a = disks[left], b = disks[right]
            let hintA = a.bootOrderHint ?? 0, hintB = b.bootOrderHint ?? 0
            if hintA != hintB { return hintA < hintB }
            let omittedA = a.bootOrderHint == nil, omittedB = b.bootOrderHint == nil
            if omittedA != omittedB { return !omittedA }
            return left < right
        }
        var hints = [Int?](repeating: nil, count: disks.count)
        for (rank, index) in order.enumerated() { hints[index] = rank }
        let described = order.map { index in
            let disk = disks[index]
            return "\(disk.id) (\(disk.bootOrderHint.map(String.init) ?? "omitted, read as 0"))"
        }
        var facts = ["boot order from the manifest's boot_order_hint: \(described.joined(separator: ", "))"]
        facts += disagreement(disks, bootIndex: order[0])
        return Resolution(hints: hints, facts: facts)
    }

    private static func disagreement(_ disks: [ArtifactManifest.Disk], bootIndex: Int) -> [String] {
        guard disks.indices.contains(bootIndex) else { return [] }
        let labelled = disks.filter { $0.diskType == "boot" }.map(\.id)
        guard !labelled.isEmpty, !labelled.contains(disks[bootIndex].id) else { return [] }
        return ["warning: disk_type marks \(labelled.joined(separator: ", ")) as boot, but the boot order starts with \(disks[bootIndex].id); disk_type is informational and not used"]
    }
}
