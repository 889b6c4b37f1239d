import Foundation
import SystemSupport
import Testing

@Suite("JSONValue")
struct JSONValueTests {
    static let document = """
        {"name": "web01", "vcpus": 2, "ratio": 0.25, "efi": true, "variant": null,
         "sizes": [9223372036854775807, -9223372036854775808, 0, 1e3],
         "nested": {"a": [{"b": [null, false, "x", {}]}], "empty": []}}
        """

    @Test func decodesEveryKindExactly() throws {
        let value = try JSONDecoder().decode(JSONValue.self, from: Data(Self.document.utf8))
        guard case .object(let members) = value else {
            Issue.record("not an object: \(value)")
            return
        }
        #expect(members["name"] == .string("web01"))
        #expect(members["vcpus"] == .integer(2))
        #expect(members["ratio"] == .number(0.25))
        #expect(members["efi"] == .bool(true))
        #expect(members["variant"] == .null)
        #expect(members["sizes"] == .array([.integer(.max), .integer(.min), .integer(0), .number(1000)]))
        #expect(members["nested"] == .object(["a": .array([.object(["b": .array([.null, .bool(false), .string("x"), .object([:])])])]),
                                              "empty": .array([])]))
        #expect(value.objectKeys == ["efi", "name", "nested", "ratio", "sizes", "variant", "vcpus"])
    }

    @Test func roundTripsThroughJSON() throws {
        let value = try JSONDecoder().decode(JSONValue.self, from: Data(Self.document.utf8))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let again = try JSONDecoder().decode(JSONValue.self, from: encoder.encode(value))
        #expect(again == value)
        // Large integers stay integers, to the last digit.
        let text = String(decoding: try encoder.encode(JSONValue.array([.integer(.max), .integer(.min)])), as: UTF8.self)
        #expect(text == "[9223372036854775807,-9223372036854775808]")
    }

    @Test func integerAndNumberAreOneJSONNumber() {
        #expect(JSONValue.integer(12) == .number(12))
        #expect(JSONValue.number(12) == .integer(12))
        #expect(JSONValue.integer(12) != .number(12.5))
        #expect(JSONValue.integer(.max) != .number(0x1p63))  // Int64.max has no exact Double
        #expect(JSONValue.string("12") != .integer(12))
        #expect(JSONValue.null != .bool(false))
    }

    @Test func numbersBeyondSixtyFourBitsBecomeDoubles() throws {
        let value = try JSONDecoder().decode(JSONValue.self, from: Data("18446744073709551615".utf8))
        #expect(value == .number(0x1p64))  // UInt64.max, rounded to the nearest Double
    }

    @Test func encodesAnEncodableThroughTheGivenEncoder() throws {
        struct Inspection: Encodable {
            var rootDevice = "/dev/sda1"
            var majorVersion = 12
        }
        let encoder = JSONEncoder()
        encoder.keyEncodingStrategy = .convertToSnakeCase
        let value = try JSONValue(encoding: Inspection(), with: encoder)
        #expect(value == .object(["root_device": .string("/dev/sda1"), "major_version": .integer(12)]))
    }

    @Test func hostileDocumentsDecodeOrThrowButNeverTrap() throws {
        let decode = { (text: String) throws -> JSONValue in try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8)) }
        // Nested past the decoder's depth limit: an error, not a stack overflow.
        #expect(throws: (any Error).self) { try decode(String(repeating: "[", count: 100_000)) }
        #expect(throws: (any Error).self) { try decode(String(repeating: "[", count: 10_000) + String(repeating: "]", count: 10_000)) }
        #expect(throws: (any Error).self) { try decode("") }
        #expect(try decode("123456789012345678901234567890") == .number(123_456_789_012_345_678_901_234_567_890))
        #expect(try decode("-0") == .integer(0))
        #expect(try decode(#""\u00e9\u0000""#) == .string("é\u{0}"))
        _ = try? decode("1e400")
        _ = try? decode(#"{"a": 1, "a": 2}"#)
        _ = try? decode(#""\ud800""#)
    }
}
