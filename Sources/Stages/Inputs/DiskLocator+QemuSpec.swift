import Foundation

extension DiskLocator {
    /// The image argument for qemu-img: the plain path, or, for a member inside an archive,
    /// a `json:` spec that reads the byte range in place through the raw driver.
    ///
    /// Always pass `-f format` as well; the spec names the driver so qemu never probes.
    public var qemuImageSpec: String {
        guard offset != nil || length != nil else { return path }
        var rangeFile: [String: Any] = [
            "driver": "raw",
            "file": ["driver": "file", "filename": path],
        ]
        if let offset { rangeFile["offset"] = offset }
        if let length { rangeFile["size"] = length }
        let spec: [String: Any] = ["driver": format, "file": rangeFile]
        // JSONSerialization of string/number dictionaries cannot fail.
        let data = (try? JSONSerialization.data(withJSONObject: spec, options: [.sortedKeys, .withoutEscapingSlashes])) ?? Data()
        return "json:" + String(decoding: data, as: UTF8.self)
    }

    /// True when the disk is a byte range of a larger file (an archive member).
    public var isArchiveMember: Bool { offset != nil || length != nil }
}
