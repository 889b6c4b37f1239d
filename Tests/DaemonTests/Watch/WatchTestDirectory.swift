import Foundation

/// A fresh temporary directory for one test, removed by `remove()`.
struct WatchTestDirectory {
    let path: String

    init(_ label: String = #function) throws {
        let safeLabel = label.filter { $0.isLetter || $0.isNumber }
        path = FileManager.default.temporaryDirectory
            .appendingPathComponent("h2k-watch-\(safeLabel)-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }

    func file(_ name: String) -> String { path + "/" + name }

    @discardableResult
    func write(_ name: String, _ contents: String = "data") throws -> String {
        try Data(contents.utf8).write(to: URL(fileURLWithPath: file(name)))
        return file(name)
    }

    func exists(_ relativePath: String) -> Bool {
        FileManager.default.fileExists(atPath: file(relativePath))
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}
