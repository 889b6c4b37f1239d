import Foundation
import TestSupport

/// Reading back what a durable write left in a scratch directory.
extension Scratch {
    func read(_ name: String) throws -> String {
        String(decoding: try Data(contentsOf: file(name)), as: UTF8.self)
    }

    func names() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: path).sorted()
    }
}
