/// What an OVF package holds besides its descriptor, manifest and disks, said in the job's facts.
enum OVFPackageFacts {
    /// A `.cert` is the exporter's signature over the manifest (`SHA256(vm.mf)= <signature>`)
    /// followed by its X.509 certificate. It is recorded, not checked: a signature proves who
    /// exported the VM only against a trust store of exporter certificates, which this
    /// converter does not have; the `.mf` digests, which are checked, already bind the files
    /// to the manifest.
    static func certificates(_ certificates: [(name: String, size: UInt64)], hasManifest: Bool) -> [String] {
        certificates.prefix(4).map { certificate in
            "signing certificate \(certificate.name.prefix(100)) (\(certificate.size) bytes) present: recorded, signature not checked"
                + (hasManifest ? "" : " (and there is no manifest it could sign)")
        }
    }

    /// Members of an OVA that neither the descriptor nor the manifest names.
    static func unlisted(_ names: [String]) -> [String] {
        guard !names.isEmpty else { return [] }
        let listed = names.prefix(8).map { "'\($0.prefix(100))'" }.joined(separator: ", ")
        return ["OVA members the OVF does not reference, ignored: \(listed)" + (names.count > 8 ? " and \(names.count - 8) more" : "")]
    }

    /// ovftool `--chunkSize` splits a file into `name.000000000`, `name.000000001`…; qemu would
    /// need them joined first, which is not done here.
    static func refuseChunked(_ disk: OVFDescriptor.Disk, file: String) throws {
        guard let chunkSize = disk.chunkSize else { return }
        throw StageError(.badInput, file: file,
                         "disk '\(disk.href)' is split into chunks of \(chunkSize) bytes (ovf:chunkSize); chunked OVF disks are not "
                             + "supported: export it again without --chunkSize")
    }
}
