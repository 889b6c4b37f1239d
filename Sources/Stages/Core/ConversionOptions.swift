/// The conversion settings a stage needs, as plain values (decoded from the configuration
/// by the Daemon module; stages never read configuration themselves).
public struct ConversionOptions: Sendable, Codable, Equatable {
    /// How much of /etc/fstab and /etc/crypttab is rewritten (README: Guest fixes).
    public enum FstabMode: String, Sendable, Codable, CaseIterable {
        /// Every bus-bound name, /dev/vdX included (its disk order may differ after conversion).
        case stabilizeAll = "stabilize-all"
        /// Only names that cannot resolve on virtio: /dev/sdX, hdX, xvdX, nvme, cciss and
        /// controller-bound by-path/by-id links; /dev/vdX already names a virtio disk.
        case minimal
        /// Only /dev/disk/by-path and controller-bound /dev/disk/by-id links.
        case bypathOnly = "bypath-only"
        case noop
    }

    public var outFormat: String = "qcow2"
    public var compress: Bool = false
    public var compressLevel: Int = 3
    public var checksum: Bool = true
    public var vmName: String?
    public var vmMemoryMiB: Int?
    public var vmVcpus: Int?
    public var vmUEFI: Bool?
    public var fstabMode: FstabMode = .stabilizeAll
    public var regenInitramfs: Bool = true
    public var updateGrub: Bool = true
    public var removeVMwareTools: Bool = false
    public var fixGuest: Bool = true
    /// `use_v2v`: virt-v2v converts the guest (stage `v2v`) instead of hyper2kvm's fixer (`fix`).
    public var useV2V: Bool = false
    public var libvirtNetwork: String = "default"
    /// Define the published VM in libvirt (the `register` stage).
    public var libvirtIntegration: Bool = false
    public var libvirtURI: String = "qemu:///system"
    /// Host bridge the NICs join instead of `libvirtNetwork`.
    public var libvirtBridge: String?
    /// Storage pool the disks are imported into; nil: the domain uses the published files.
    public var libvirtPool: String?
    public var libvirtAutostart: Bool = false
    /// Replace the definition of a same-named domain this job did not define.
    public var libvirtOverwrite: Bool = false
    public var emitDomainXML: Bool = true
    /// Windows guests: inject virtio storage/network drivers so the guest boots on virtio.
    /// Off, or when no driver fits the guest, the domain keeps SATA disks and e1000e NICs.
    public var winVirtio: Bool = false
    /// Windows guests: Hyper-V enlightenments in the domain XML.
    public var winHyperv: Bool = false
    /// A virtio-win ISO or unpacked directory (`virtio_win`, else the `VIRTIO_WIN` environment variable).
    public var virtioWin: String?
    /// `manifest_allowed_dirs`: where an Artifact Manifest's disks may be, besides the
    /// directory the manifest was dropped in (absolute paths; empty: only there).
    public var manifestAllowedDirectories: [String] = []
    /// `copy_chunk_mib`: the window of guest address space convert copies and journals at a
    /// time (a crash costs at most one); 1 GiB by measurement (BENCHMARKS.md, "Chunked copy").
    public var copyChunkMiB: Int = 1024
    public var copyChunkBytes: UInt64 { UInt64(max(copyChunkMiB, 1)) << 20 }
    /// `dry_run`: a preflight. Probe, extract and fix run (the fix on throw-away overlays),
    /// the fixed overlays are measured, the verdict is written as a report, and every later
    /// stage is skipped: nothing is converted or published.
    public var dryRun: Bool = false

    public init() {}
}
