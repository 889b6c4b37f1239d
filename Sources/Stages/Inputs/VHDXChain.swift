import Foundation

#if canImport(Glibc)
import Glibc
#endif

/// One file of a VHDX chain, opened once (`PinnedFile`) and parsed.
struct VHDXChainLink {
    let file: PinnedFile
    let layout: VHDXLayout
    var path: String { file.path }
}

/// A VHDX differencing chain resolved and validated link by link inside one directory tree
/// (the job's own files), from the newest file down to its base.
///
/// A parent is found only by its `relative_path`, resolved against the child's directory and
/// required to stay inside `root`; every directory on the way is opened with `O_NOFOLLOW`,
/// the file itself as a `PinnedFile` (no symlink, no hard link, a regular file). A parent
/// named only by an absolute or volume path is refused: it points outside the export. The
/// parent's DataWriteGuid must equal the child's `parent_linkage` (or `parent_linkage2`),
/// the virtual size and logical sector size must agree, no file may appear twice, and the
/// chain is at most `maximumDepth` files deep.
struct VHDXChain {
    /// Base first, then each differencing file in the order its blocks apply.
    let links: [VHDXChainLink]

    static let maximumDepth = PinnedImage.maximumChainDepth

    var base: VHDXChainLink { links[0] }
    var differencing: ArraySlice<VHDXChainLink> { links.dropFirst() }

    static func resolve(top path: String, root: String) throws -> VHDXChain {
        var links: [VHDXChainLink] = []
        // The top file too is reached by a walk from the root that follows no symlink: a
        // `Virtual Hard Disks` that is a symlink must not lead to disks outside the export.
        let topURL = URL(fileURLWithPath: path)
        let topComponents = try insideComponents(topURL.lastPathComponent, childDirectory: topURL.deletingLastPathComponent().path,
                                                 root: root, child: path)
        var file = try PinnedFile.open(named: topURL.lastPathComponent,
                                       in: try PinnedDirectory(root: root, components: topComponents.dropLast(), referrer: path),
                                       referrer: path, role: "VHDX disk")
        while true {
            let layout = try VHDXLayout(reading: try file.reader())
            let link = VHDXChainLink(file: file, layout: layout)
            if links.contains(where: { $0.file.isSameFile(as: file) }) {
                throw StageError(.badInput, file: file.path, "VHDX chain loops: \(file.path) is its own ancestor")
            }
            if let child = links.last { try checkLink(child: child, parent: link) }
            // Every BAT entry checked now, before any copy starts; the base's too, since qemu-img
            // writes its blocks into the work file before any checkpoint is applied.
            try VHDXBlockTable(layout: layout, reader: try file.reader()).validateAll()
            links.append(link)
            guard let locator = layout.parent else { break }
            guard links.count < maximumDepth else {
                throw StageError(.badInput, file: path, "VHDX chain is deeper than \(maximumDepth) files")
            }
            file = try openParent(locator, of: file.path, root: root)
        }
        return VHDXChain(links: links.reversed())
    }

    private static func checkLink(child: VHDXChainLink, parent: VHDXChainLink) throws {
        let linkages = [child.layout.parent?.linkage, child.layout.parent?.linkage2].compactMap { $0 }.compactMap(VHDXGUID.init(text:))
        guard linkages.contains(parent.layout.dataWriteGUID) else {
            let named = child.layout.parent?.linkage ?? "none"
            throw StageError(.badInput, file: child.path,
                             "VHDX parent linkage \(named) does not match the DataWriteGuid \(parent.layout.dataWriteGUID) of its parent \(parent.path): the parent changed after the checkpoint was taken")
        }
        guard child.layout.virtualDiskSize == parent.layout.virtualDiskSize,
              child.layout.logicalSectorSize == parent.layout.logicalSectorSize else {
            throw StageError(.badInput, file: child.path,
                             "VHDX virtual size \(child.layout.virtualDiskSize) / sector size \(child.layout.logicalSectorSize) differs from its parent \(parent.path) (\(parent.layout.virtualDiskSize) / \(parent.layout.logicalSectorSize))")
        }
    }

    /// The parent by its relative path, opened without following any symlink, inside `root`.
    private static func openParent(_ locator: VHDXParentLocator, of child: String, root: String) throws -> PinnedFile {
        guard let relative = locator.relativePath else {
            let absolute = locator.absoluteWin32Path ?? locator.volumePath ?? "none"
            throw StageError(.badInput, file: child,
                             "VHDX names its parent only by an absolute path (\(absolute)); only a parent inside the export, named by relative_path, is followed")
        }
        let components = try insideComponents(relative, childDirectory: URL(fileURLWithPath: child).deletingLastPathComponent().path,
                                               root: root, child: child)
        guard let name = components.last else {
            throw StageError(.badInput, file: child, "VHDX parent path \(relative.debugDescription) names the export directory itself")
        }
        let directory = try PinnedDirectory(root: root, components: components.dropLast(), referrer: child)
        return try PinnedFile.open(named: name, in: directory, referrer: child, role: "VHDX parent")
    }

    /// `relative` (Windows separators) resolved against the child's directory, as components
    /// below `root`; refused when it leaves `root` or is absolute.
    static func insideComponents(_ relative: String, childDirectory: String, root: String, child: String) throws -> [String] {
        let rootPath = URL(fileURLWithPath: root).standardizedFileURL.path
        let directory = URL(fileURLWithPath: childDirectory).standardizedFileURL.path
        guard directory == rootPath || directory.hasPrefix(rootPath + "/") else {
            throw StageError(.badInput, file: child, "VHDX file lies outside the export directory \(rootPath)")
        }
        var components = directory.dropFirst(rootPath.count).split(separator: "/").map(String.init)
        let parts = relative.split(whereSeparator: { $0 == "\\" || $0 == "/" }).map(String.init)
        guard !relative.hasPrefix("\\"), !relative.hasPrefix("/"), !parts.contains(where: { $0.contains(":") }) else {
            throw StageError(.badInput, file: child, "VHDX relative_path \(relative.debugDescription) is an absolute path; refused")
        }
        for part in parts {
            switch part {
            case ".": continue
            case "..":
                guard !components.isEmpty else {
                    throw StageError(.badInput, file: child,
                                     "VHDX parent \(relative.debugDescription) lies outside the export directory \(rootPath); only the job's own files are read")
                }
                components.removeLast()
            default: components.append(part)
            }
        }
        return components
    }
}

extension PinnedDirectory {
    /// `root/components…`, each directory opened with `O_NOFOLLOW` relative to the one before,
    /// so a symlinked directory cannot lead the walk out of `root`.
    convenience init(root: String, components: ArraySlice<String>, referrer: String) throws {
        var descriptor = Glibc.open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw StageError(.ioFailed, file: root, "cannot open the directory: \(String(cString: strerror(errno)))")
        }
        var path = root
        for component in components {
            let next = openat(descriptor, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            close(descriptor)
            path += "/" + component
            guard next >= 0 else {
                throw StageError(.badInput, file: referrer,
                                 "VHDX parent directory \(path) \(errno == ELOOP || errno == ENOTDIR ? "is not a plain directory (a symlink?)" : "cannot be opened: \(String(cString: strerror(errno)))")")
            }
            descriptor = next
        }
        self.init(path: path, descriptor: descriptor)
    }
}
