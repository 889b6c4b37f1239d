/// The kinds of input the pipeline accepts, decided by content (see `InputProbe`).
public enum InputKind: String, Codable, Sendable, CaseIterable {
    case vmdk, ova, ovf, vhd, vhdx, raw, ami, qcow2, manifest, vmx
    /// A Hyper-V export folder (`Virtual Hard Disks/`, `Virtual Machines/`): a directory.
    case hyperv
}

public enum Firmware: String, Codable, Sendable {
    case bios, uefi, unknown
}

/// Where the bytes of one disk image are, in terms qemu understands.
///
/// A member of an uncompressed OVA is read in place (`offset`/`length` inside the archive)
/// so the data is copied once, by the final convert, and never extracted.
public struct DiskLocator: Codable, Sendable, Hashable {
    public var path: String
    /// qemu block driver name: vmdk, vpc, vhdx, raw, qcow2.
    public var format: String
    public var offset: UInt64?
    public var length: UInt64?

    public init(path: String, format: String, offset: UInt64? = nil, length: UInt64? = nil) {
        self.path = path
        self.format = format
        self.offset = offset
        self.length = length
    }

    /// True when the disk is a byte range of a larger file (an archive member).
    public var isArchiveMember: Bool { offset != nil || length != nil }
}

public struct NetworkInterface: Codable, Sendable, Equatable {
    public var mac: String?
    public var network: String?
    public init(mac: String? = nil, network: String? = nil) {
        self.mac = mac
        self.network = network
    }
}

/// One disk of the source VM, in the VM's disk order.
public struct SourceDisk: Codable, Sendable, Equatable {
    /// Stable id used for output names (`<vm>.qcow2` for the boot disk, `<vm>-<id>.qcow2` for others).
    public var id: String
    public var locator: DiskLocator
    public var virtualSize: UInt64?
    /// Lower boots first; nil when the source says nothing (the boot disk is then found by inspection).
    public var bootOrderHint: Int?
    /// `sha256:<hex>` the source promised for the file as stored, verified before use.
    public var expectedSHA256: String?
    /// The file the probe validated: later stages open the disk again by its path and
    /// refuse another file found under that name (swapped in the queue between stages).
    public var identity: FileIdentity?

    public init(id: String, locator: DiskLocator, virtualSize: UInt64? = nil,
                bootOrderHint: Int? = nil, expectedSHA256: String? = nil) {
        self.id = id
        self.locator = locator
        self.virtualSize = virtualSize
        self.bootOrderHint = bootOrderHint
        self.expectedSHA256 = expectedSHA256
    }
}

/// Which file a path named when it was opened: device and inode.
public struct FileIdentity: Codable, Sendable, Equatable {
    public var device: UInt64
    public var inode: UInt64

    public init(device: UInt64, inode: UInt64) {
        self.device = device
        self.inode = inode
    }
}

/// What the source says about the VM (OVF, manifest, or defaults for a bare disk).
public struct VMDescription: Codable, Sendable, Equatable {
    public var name: String
    public var vcpus: Int?
    public var memoryMiB: Int?
    public var firmware: Firmware
    public var disks: [SourceDisk]
    public var nics: [NetworkInterface]
    public var osHint: String?
    /// Where the description came from: "ovf", "manifest", "disk".
    public var origin: String

    public init(name: String, vcpus: Int? = nil, memoryMiB: Int? = nil, firmware: Firmware = .unknown,
                disks: [SourceDisk], nics: [NetworkInterface] = [], osHint: String? = nil, origin: String) {
        self.name = name
        self.vcpus = vcpus
        self.memoryMiB = memoryMiB
        self.firmware = firmware
        self.disks = disks
        self.nics = nics
        self.osHint = osHint
        self.origin = origin
    }
}
