/// Arithmetic on numbers read from untrusted bytes (header fields, descriptor lines).
///
/// Swift traps on overflow, and a trap inside the daemon kills every job with it, so a
/// field a hostile file controls must never reach `+`, `*`, `<<` or `Int(_:)` unchecked.
/// Each helper turns an overflow into `StageError(.badInput)` naming the file and the field.
enum CheckedArithmetic {
    static func add<T: FixedWidthInteger>(_ left: T, _ right: T, field: @autoclosure () -> String, file: String) throws -> T {
        let (sum, overflow) = left.addingReportingOverflow(right)
        guard !overflow else { throw overflowError(field(), "\(left) + \(right)", file: file) }
        return sum
    }

    static func multiply<T: FixedWidthInteger>(_ left: T, _ right: T, field: @autoclosure () -> String,
                                               file: String) throws -> T {
        let (product, overflow) = left.multipliedReportingOverflow(by: right)
        guard !overflow else { throw overflowError(field(), "\(left) × \(right)", file: file) }
        return product
    }

    /// `value` as an `Int` (a byte count or index), or an error when it does not fit.
    static func int<T: BinaryInteger>(_ value: T, field: @autoclosure () -> String, file: String) throws -> Int {
        guard let converted = Int(exactly: value) else {
            throw StageError(.badInput, file: file, "\(field()) of \(value) is out of range")
        }
        return converted
    }

    private static func overflowError(_ field: String, _ expression: String, file: String) -> StageError {
        StageError(.badInput, file: file, "\(field) overflows (\(expression) is out of range): a corrupt or hostile header")
    }
}

extension UInt64 {
    /// Sectors of 512 bytes as a byte count, or an error naming the field when it overflows.
    func sectorsToBytes(field: @autoclosure () -> String, file: String) throws -> UInt64 {
        try CheckedArithmetic.multiply(self, 512, field: field(), file: file)
    }
}
