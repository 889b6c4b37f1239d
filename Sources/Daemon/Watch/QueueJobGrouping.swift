import Stages

/// One job the queue directory holds: the file that leads it and every file that belongs to it.
public struct QueueJobCandidate: Sendable, Equatable {
    /// The name the job is known by: a disk, a VMDK descriptor, an `.ovf`, an `.ova` or a manifest.
    public var primary: String
    public var kind: InputKind
    /// `primary` first, then the other files that belong to the job (extents, the disks an OVF
    /// or manifest refers to, the OVF's `.mf`/`.cert`), sorted. They are archived together.
    public var members: [String]
    /// Files the primary refers to that are not (yet) in the directory. A job with missing
    /// members is not complete: its disks may still be on their way.
    public var missing: [String]

    public init(primary: String, kind: InputKind, members: [String], missing: [String] = []) {
        self.primary = primary
        self.kind = kind
        self.members = members
        self.missing = missing
    }
}

/// The jobs found in one listing of the queue directory.
public struct QueueJobGrouping: Sendable, Equatable {
    /// Sorted by primary name; callers order them by arrival themselves.
    public var jobs: [QueueJobCandidate] = []
    /// Extents whose descriptor is not in the directory (yet): not a job of their own.
    public var orphanExtents: [String] = []
    /// OVFs and manifests whose references could not be read (often: still being written),
    /// with the reason. Until they can be read, which disks they claim is unknown, so a caller
    /// may hold back lone disks while this is not empty.
    public var unreadableDescriptors: [String: String] = [:]
    /// Sets that can never be a job (a VMDK snapshot tree, a chain that loops), by the name that
    /// leads them: the caller refuses all their files together (see `QueueVMDKChains`).
    var refusedSets: [String: QueueVMDKChains.RefusedSet] = [:]

    public init() {}

    /// The refused set a file belongs to, with the name that leads it.
    func refusedSet(containing name: String) -> (lead: String, set: QueueVMDKChains.RefusedSet)? {
        refusedSets.first { $0.value.members.contains(name) }.map { ($0.key, $0.value) }
    }

    /// The job a file belongs to, if any.
    public func job(containing name: String) -> QueueJobCandidate? {
        jobs.first { $0.members.contains(name) }
    }
}

extension QueueEntryFilter {
    /// Files beside a descriptor that belong to its job when present (archived with it, never waited for).
    static let sidecarExtensions: [InputKind: [String]] = [.ovf: ["mf", "cert"], .vmx: ["nvram", "vmsd", "vmxf"]]

    /// Groups the regular files of the queue directory into jobs.
    ///
    /// An OVF dropped with its disks forms one job; so does a VMDK descriptor with its extents,
    /// and a manifest with the queue files it names. Everything else that is a candidate is a
    /// job of one file.
    ///
    /// - Parameters:
    ///   - names: names of the regular files at the top of the queue directory.
    ///   - referencedNames: for an `.ovf` (kind `.ovf`) or a manifest (kind `.manifest`), the
    ///     names of the files it refers to (OVF `<File ovf:href>`; a manifest's disks that lie in
    ///     the queue directory). Names with a `/` never match a top-level file and are reported
    ///     missing. Throwing marks the descriptor unreadable; it then stays a one-file job.
    ///   - parentOf: a `.vmdk`'s `parentFileNameHint` (nil: none): snapshot chains are one job,
    ///     led by the newest delta (see `QueueVMDKChains`).
    public static func groupJobs(
        names: [String],
        parentOf: (_ name: String) -> String? = { _ in nil },
        referencedNames: (_ name: String, _ kind: InputKind) throws -> [String]
    ) -> QueueJobGrouping {
        let present = Set(names)
        var grouping = QueueJobGrouping()
        var candidates: [(name: String, kind: InputKind)] = []
        var extentsByDescriptor: [String: [String]] = [:]
        for name in names.sorted() {
            switch classify(name) {
            case .candidate(let kind): candidates.append((name, kind))
            case .extent(let descriptor):
                if present.contains(descriptor) {
                    extentsByDescriptor[descriptor, default: []].append(name)
                } else {
                    grouping.orphanExtents.append(name)
                }
            case .ignored: break
            }
        }

        let chains = QueueVMDKChains(vmdks: candidates.filter { $0.kind == .vmdk }.map(\.name), parentOf: parentOf)
        // A refused set goes to .errors whole: with the extents of its descriptors.
        grouping.refusedSets = chains.refused.mapValues { set in
            var set = set
            set.members += set.members.flatMap { extentsByDescriptor[$0] ?? [] }
            return set
        }
        /// A disk's extents, and for the newest delta of a chain its parents with their extents.
        func filesOf(_ disk: String) -> [String] {
            (extentsByDescriptor[disk] ?? []) + chains.members(of: disk).flatMap { [$0] + (extentsByDescriptor[$0] ?? []) }
        }

        // Files claimed by an OVF, a .vmx or a manifest; the descriptor claims them with their extents.
        var claimedBy: [String: String] = [:]
        var jobsByPrimary: [String: QueueJobCandidate] = [:]
        for (name, kind) in candidates where kind == .ovf || kind == .manifest || kind == .vmx {
            var job = QueueJobCandidate(primary: name, kind: kind, members: [name])
            do {
                for reference in try referencedNames(name, kind) where reference != name {
                    guard present.contains(reference) else {
                        if !job.missing.contains(reference) { job.missing.append(reference) }
                        continue
                    }
                    guard claimedBy[reference] == nil else { continue }
                    claimedBy[reference] = name
                    job.members.append(reference)
                    for file in filesOf(reference) where claimedBy[file] == nil {
                        claimedBy[file] = name
                        job.members.append(file)
                    }
                    job.missing += (chains.missingByLeaf[reference] ?? []).filter { !job.missing.contains($0) }
                }
                if let sidecars = sidecarExtensions[kind], let (stem, _) = splitExtension(name) {
                    for sidecar in sidecars.map({ stem + "." + $0 }) where present.contains(sidecar) {
                        job.members.append(sidecar)
                    }
                }
            } catch {
                grouping.unreadableDescriptors[name] = String(describing: error)
            }
            jobsByPrimary[name] = job
        }

        for (name, kind) in candidates where jobsByPrimary[name] == nil && claimedBy[name] == nil {
            // A chain's parent is a member of its newest delta's job, never a job of its own.
            guard kind != .vmdk || !chains.parents.contains(name) else { continue }
            let files = kind == .vmdk ? filesOf(name) : []
            jobsByPrimary[name] = QueueJobCandidate(primary: name, kind: kind, members: [name] + files,
                                                    missing: kind == .vmdk ? chains.missingByLeaf[name] ?? [] : [])
        }
        // An OVF/manifest listed after another descriptor that claimed it is not a job of its own.
        for (claimed, _) in claimedBy { jobsByPrimary[claimed] = nil }

        // A refused set is no job: a job holding one of its files (an OVF or .vmx naming a disk of
        // the tree) is refused with it, all its files together.
        for lead in grouping.refusedSets.keys.sorted() {
            for (primary, job) in jobsByPrimary.sorted(by: { $0.key < $1.key }) {
                guard var set = grouping.refusedSets[lead], !Set(job.members).isDisjoint(with: set.members) else { continue }
                jobsByPrimary[primary] = nil
                set.members += job.members.filter { !set.members.contains($0) }
                grouping.refusedSets[lead] = set
            }
        }
        grouping.jobs = jobsByPrimary.values
            .map { job in
                var job = job
                job.members = [job.primary] + job.members.dropFirst().sorted()
                job.missing.sort()
                return job
            }
            .sorted { $0.primary < $1.primary }
        return grouping
    }
}
