/// The VMDK snapshot chains among the queue's `.vmdk` files: which file leads each chain, which
/// files are its parents, which parents are still to come, and which sets cannot be a job.
///
/// A chain is recognised by the names its descriptors give: the newest delta is the descriptor
/// that no other dropped descriptor names as its parent (`parentFileNameHint`); its parent, the
/// parent's parent and so on are members of its job, never jobs of their own. A chain is complete
/// when every parent it names is in the queue (the queue then waits for every member to be stable,
/// as for any set). Two deltas naming the same parent (a snapshot tree), or names that loop, are
/// not a chain: the whole set is refused, since any choice of a branch would be a guess.
/// Whether each link really is its parent's snapshot (CID/parentCID, the files' kinds) is checked
/// when the job is converted, link by link (`PinnedImage`).
struct QueueVMDKChains: Equatable {
    /// Newest delta → its parents, nearest first (present ones only).
    var parentsByLeaf: [String: [String]] = [:]
    /// Newest delta → the parent names it waits for (named, plain, not in the queue yet).
    var missingByLeaf: [String: [String]] = [:]
    /// Files that are some chain's parent: not jobs of their own.
    var parents: Set<String> = []
    /// Sets that cannot be a job: the name that leads the set → (all its files, why).
    var refused: [String: RefusedSet] = [:]

    struct RefusedSet: Equatable {
        var members: [String]
        var reason: String
    }

    /// The chain depth `PinnedImage` accepts; a longer chain is refused there, naming it.
    static let maximumDepth = 16

    /// - Parameters:
    ///   - vmdks: the `.vmdk` candidates in the queue.
    ///   - parentOf: the `parentFileNameHint` of a file, nil when it names none (or cannot be read:
    ///     the probe then says why).
    init(vmdks: [String], parentOf: (String) -> String?) {
        let present = Set(vmdks)
        var parentName: [String: String] = [:]
        var childrenOf: [String: [String]] = [:]
        for name in vmdks.sorted() {
            guard let parent = parentOf(name), !parent.isEmpty, parent != name else { continue }
            parentName[name] = parent
            if present.contains(parent) { childrenOf[parent, default: []].append(name) }
        }
        parents = Set(childrenOf.keys)
        for leaf in vmdks.sorted() where !parents.contains(leaf) {
            var chain: [String] = []
            var current = leaf
            while let parent = parentName[current], chain.count < Self.maximumDepth {
                guard present.contains(parent) else {
                    // A name with a path never arrives in the queue: the probe refuses it, naming it.
                    if !parent.contains("/") { missingByLeaf[leaf] = [parent] }
                    break
                }
                guard parent != leaf, !chain.contains(parent) else { break }  // a loop below the leaf: the probe names it
                chain.append(parent)
                current = parent
            }
            parentsByLeaf[leaf] = chain
        }
        refuseTrees(childrenOf: childrenOf)
        // Files that are all someone's parent and no one's newest delta: a loop with no way in.
        let reached = Set(parentsByLeaf.values.joined()).union(parentsByLeaf.keys)
        let stranded = parents.subtracting(reached).sorted()
        if let first = stranded.first {
            refused[first] = RefusedSet(members: stranded,
                                        reason: "the snapshot chain of \(stranded.joined(separator: ", ")) loops: each names another as its parent, so none is the newest state")
        }
    }

    /// Chains that share a parent form a tree: each group of them, with all their files, is
    /// refused as one set, led by its first newest delta.
    private mutating func refuseTrees(childrenOf: [String: [String]]) {
        var groups: [Set<String>] = []
        for (leaf, chain) in parentsByLeaf.sorted(by: { $0.key < $1.key }) {
            var group = Set([leaf] + chain)
            let overlapping = groups.indices.filter { !groups[$0].isDisjoint(with: chain) }
            for index in overlapping.reversed() { group.formUnion(groups.remove(at: index)) }
            groups.append(group)
        }
        for group in groups {
            let leaves = group.filter { parentsByLeaf[$0] != nil }.sorted()
            guard leaves.count > 1, let lead = leaves.first else { continue }
            let shared = group.filter { (childrenOf[$0]?.count ?? 0) > 1 }.sorted()
            let forks = shared.map { "\($0) is the parent of both \((childrenOf[$0] ?? []).sorted().joined(separator: " and "))" }
            refused[lead] = RefusedSet(
                members: [lead] + group.subtracting([lead]).sorted(),
                reason: "\(forks.joined(separator: "; ")): a snapshot tree, not a chain, and which branch is the VM is not known; drop one chain per job")
        }
    }

    /// Every file of the job `leaf` leads (itself excluded): its parents.
    func members(of leaf: String) -> [String] {
        parentsByLeaf[leaf] ?? []
    }
}
