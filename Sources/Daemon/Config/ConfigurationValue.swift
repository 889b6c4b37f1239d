import Yams

/// A YAML value with typed readers that say what was expected.
struct ConfigurationValue {
    struct Mismatch: Error { let expected: String }
    let node: Node

    func bool() throws(Mismatch) -> Bool {
        guard case .scalar = node, let value = node.bool else { throw Mismatch(expected: "a boolean (true/false)") }
        return value
    }
    func int(in range: ClosedRange<Int>? = nil) throws(Mismatch) -> Int {
        let expectation = range.map { "an integer from \($0.lowerBound) to \($0.upperBound)" } ?? "an integer"
        guard case .scalar = node, let value = node.int else { throw Mismatch(expected: expectation) }
        if let range, !range.contains(value) { throw Mismatch(expected: expectation) }
        return value
    }
    func number(min: Double = 0) throws(Mismatch) -> Double {
        guard case .scalar = node, let value = node.float ?? node.int.map(Double.init), value >= min else {
            throw Mismatch(expected: "a number ≥ \(min)")
        }
        return value
    }
    func string() throws(Mismatch) -> String {
        guard case .scalar(let scalar) = node, node.bool == nil || scalar.style != .plain else {
            throw Mismatch(expected: "a string")
        }
        return scalar.string
    }
    func path() throws(Mismatch) -> String {
        let value = try string()
        guard !value.isEmpty else { throw Mismatch(expected: "a non-empty path") }
        return value
    }
    /// A list of absolute paths (a single path is a list of one).
    func absolutePaths() throws(Mismatch) -> [String] {
        let expectation = "a list of absolute paths"
        let nodes: [Node]
        switch node {
        case .sequence(let sequence): nodes = Array(sequence)
        case .scalar: nodes = [node]
        default: throw Mismatch(expected: expectation)
        }
        var paths: [String] = []
        for item in nodes {
            guard case .scalar(let scalar) = item, scalar.string.hasPrefix("/"), !scalar.string.contains("\0") else {
                throw Mismatch(expected: expectation)
            }
            paths.append(scalar.string)
        }
        return paths
    }
    func oneOf(_ choices: [String]) throws(Mismatch) -> String {
        let value = try string()
        guard choices.contains(value) else { throw Mismatch(expected: "one of " + choices.joined(separator: ", ")) }
        return value
    }
    var isFalseOrNull: Bool {
        if case .scalar(let scalar) = node, scalar.tag == .implicit, scalar.string == "null" || scalar.string == "~" { return true }
        return node.bool == false
    }
}
