/// A configuration problem, naming the file, the key and what was expected.
public struct ConfigurationError: Error, CustomStringConvertible, Sendable, Equatable {
    public var file: String
    public var key: String?
    public var message: String

    public init(file: String, key: String? = nil, _ message: String) {
        self.file = file
        self.key = key
        self.message = message
    }

    public var description: String {
        guard let key else { return "\(file): \(message)" }
        return "\(file): key '\(key)': \(message)"
    }
}

/// Several configuration problems at once, so an operator fixes a file in one pass.
public struct ConfigurationErrors: Error, CustomStringConvertible, Sendable {
    public var errors: [ConfigurationError]
    public var description: String { errors.map(\.description).joined(separator: "\n") }
}
