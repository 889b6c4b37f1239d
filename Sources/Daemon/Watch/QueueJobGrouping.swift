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

    public init() {}

    /// The job a file belongs to, if any.
    public func job(containing name: String) -> QueueJobCandidate? {
        jobs.first { $0.members.contains(name) }
    }
}

extension QueueEntryFilter {
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
    public static func groupJobs(
        names: [String],
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

        // Files claimed by an OVF or manifest; the descriptor claims them with their extents.
        var claimedBy: [String: String] = [:]
        var jobsByPrimary: [String: QueueJobCandidate] = [:]
        for (name, kind) in candidates where kind == .ovf || kind == .manifest {
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
                    for extent in extentsByDescriptor[reference] ?? [] where claimedBy[extent] == nil {
                        claimedBy[extent] = name
                        job.members.append(extent)
                    }
                }
                if kind == .ovf, let (stem, _) = splitExtension(name) {
                    for sidecar in [stem + ".mf", stem + ".cert"] where present.contains(sidecar) {
                        job.members.append(sidecar)
                    }
                }
            } catch {
                grouping.unreadableDescriptors[name] = String(describing: error)
            }
            jobsByPrimary[name] = job
        }

        for (name, kind) in candidates where jobsByPrimary[name] == nil && claimedBy[name] == nil {
            let extents = kind == .vmdk ? (extentsByDescriptor[name] ?? []) : []
            jobsByPrimary[name] = QueueJobCandidate(primary: name, kind: kind, members: [name] + extents)
        }
        // An OVF/manifest listed after another descriptor that claimed it is not a job of its own.
        for (claimed, _) in claimedBy { jobsByPrimary[claimed] = nil }

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
