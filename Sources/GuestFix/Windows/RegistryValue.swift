import Foundation

/// A registry value with its type, encoded as Windows stores it (strings UTF-16LE with a
/// terminating NUL) and rendered as `.reg` text for the fix report.
enum RegistryValue: Sendable, Equatable {
    case string(String)
    case expandString(String)
    case binary([UInt8])
    case dword(UInt32)
    case multiString([String])
    /// Any other type, kept as raw bytes.
    case other(type: Int64, data: [UInt8])

    var type: Int64 {
        switch self {
        case .string: 1
        case .expandString: 2
        case .binary: 3
        case .dword: 4
        case .multiString: 7
        case .other(let type, _): type
        }
    }

    var data: [UInt8] {
        switch self {
        case .string(let text), .expandString(let text): Self.utf16(text)
        case .binary(let bytes): bytes
        case .dword(let value): (0..<4).map { UInt8(truncatingIfNeeded: value >> (8 * $0)) }
        case .multiString(let items): items.flatMap(Self.utf16) + [0, 0]
        case .other(_, let data): data
        }
    }

    /// Decodes what hivex returned; malformed strings or dwords are kept as `.other`.
    init(type: Int64, data: [UInt8]) {
        switch type {
        case 1, 2:
            guard data.count % 2 == 0 else {
                self = .other(type: type, data: data)
                return
            }
            let text = Self.decodeStrings(data).first ?? ""
            self = type == 1 ? .string(text) : .expandString(text)
        case 3:
            self = .binary(data)
        case 4 where data.count == 4:
            self = .dword((0..<4).reduce(UInt32(0)) { $0 | UInt32(data[$1]) << (8 * $1) })
        case 7 where data.count % 2 == 0:
            self = .multiString(Self.decodeStrings(data))
        default:
            self = .other(type: type, data: data)
        }
    }

    /// The text form: the string itself for REG_SZ/REG_EXPAND_SZ, else nil.
    var text: String? {
        switch self {
        case .string(let text), .expandString(let text): text
        default: nil
        }
    }

    /// `.reg` rendering: `"text"`, `dword:00000001`, `hex(2):…` (with the text alongside for
    /// readability), `hex(7):…`, `hex:…`.
    var regText: String {
        switch self {
        case .string(let text): "\"\(Self.escaped(text))\""
        case .dword(let value): "dword:" + String(format: "%08x", value)
        case .expandString(let text): "hex(2):\(Self.hex(data)) ; \"\(Self.escaped(text))\""
        case .multiString(let items): "hex(7):\(Self.hex(data)) ; " + items.map { "\"\(Self.escaped($0))\"" }.joined(separator: ", ")
        case .binary(let bytes): "hex:" + Self.hex(bytes)
        case .other(let type, let bytes): "hex(\(String(type, radix: 16))):" + Self.hex(bytes)
        }
    }

    static func utf16(_ text: String) -> [UInt8] {
        text.utf16.flatMap { [UInt8(truncatingIfNeeded: $0), UInt8(truncatingIfNeeded: $0 >> 8)] } + [0, 0]
    }

    /// NUL-separated UTF-16LE strings (the list ends at the first empty string).
    static func decodeStrings(_ data: [UInt8]) -> [String] {
        var strings: [String] = []
        var units: [UInt16] = []
        var index = 0
        while index + 1 < data.count {
            let unit = UInt16(data[index]) | UInt16(data[index + 1]) << 8
            index += 2
            if unit == 0 {
                if units.isEmpty { break }
                strings.append(String(decoding: units, as: UTF16.self))
                units = []
            } else {
                units.append(unit)
            }
        }
        if !units.isEmpty { strings.append(String(decoding: units, as: UTF16.self)) }
        return strings
    }

    private static func hex(_ bytes: [UInt8]) -> String {
        bytes.map { String(format: "%02x", $0) }.joined(separator: ",")
    }

    private static func escaped(_ text: String) -> String {
        text.replacingOccurrences(of: "\\", with: "\\\\").replacingOccurrences(of: "\"", with: "\\\"")
    }
}
