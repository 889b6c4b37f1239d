/// What qemu (7.2, `block/vmdk.c`) reads out of a VMDK text descriptor, byte for byte.
///
/// Our own reading is one extent per line; qemu's is not. `vmdk_parse_extents` runs, at the
/// start of every '\n'-separated line,
///
///     sscanf(p, "%10s %" SCNd64 " %10s \"%511[^\n\r\"]\" %" SCNd64, access, &sectors, type, fname, &offset)
///
/// whose whitespace directives (and `%s`/`%d` themselves) skip newlines, so
/// `RW 8192 FLAT\n"/etc/shadow" 0` is one extent to qemu and none to a line reader; a blank
/// line before an extent line makes qemu read that extent twice; a '\r' does not end a line;
/// nothing after a NUL exists. `vmdk_parent_open` finds the backing file with
/// `strstr(desc, "parentFileNameHint")` in the first 20 sectors, comments included.
///
/// Replaying both exactly lets the descriptor check refuse any text the two readings disagree
/// on, so the names we validate are the names qemu opens.
enum QemuVMDKDescriptorScan {
    /// One extent qemu would open (access `RW`, a type it supports, a positive size).
    struct Extent: Equatable {
        var sectors: Int64
        var type: String
        /// `%511[^\n\r"]`: at most 511 bytes, cut there if the name is longer.
        var fileName: [UInt8]
        /// Sectors into the file (FLAT; 0 for VMFS; 0 and unused for sparse types).
        var offsetSectors: Int64
        /// 1-based line (counted in '\n') where qemu's scan started, and where its match ended.
        var firstLine: Int
        var lastLine: Int
    }

    enum Outcome: Equatable {
        case extents([Extent])
        /// qemu stops with "Invalid extent line" at this line (1-based).
        case invalid(line: Int)
    }

    /// `DESC_SIZE`: the bytes `vmdk_parent_open` searches.
    static let parentWindowBytes = 20 * 512
    /// `sizeof(bs->auto_backing_file) - 1` (PATH_MAX - 1).
    static let maximumParentNameBytes = 4095
    static let openedTypes: Set<String> = ["FLAT", "SPARSE", "VMFS", "VMFSSPARSE", "SESPARSE"]

    /// The extents `vmdk_parse_extents` opens, in order, from the descriptor bytes.
    static func extents(in text: [UInt8]) -> Outcome {
        let bytes = text.prefix { $0 != 0 }
        var found: [Extent] = []
        var lineStart = bytes.startIndex
        var line = 1
        while lineStart < bytes.endIndex {
            let match = Match(scanning: bytes, from: lineStart)
            if match.count >= 4, match.access == "RW" {
                var offset = match.offset
                switch match.type {
                case "FLAT":
                    guard match.count == 5, offset >= 0 else { return .invalid(line: line) }
                case "VMFS":
                    guard match.count == 4 else { return .invalid(line: line) }
                    offset = 0
                default:
                    guard match.count == 4 else { return .invalid(line: line) }
                }
                if match.sectors > 0, openedTypes.contains(match.type) {
                    let lastLine = line + bytes[lineStart..<match.end].count { $0 == UInt8(ascii: "\n") }
                    found.append(Extent(sectors: match.sectors, type: match.type, fileName: match.fileName,
                                        offsetSectors: offset, firstLine: line, lastLine: lastLine))
                }
            }
            // next_line(): just past the next '\n', or the end.
            guard let newline = bytes[lineStart...].firstIndex(of: UInt8(ascii: "\n")) else { break }
            lineStart = newline + 1
            line += 1
        }
        return .extents(found)
    }

    enum ParentHint: Equatable {
        case none
        case name([UInt8])
        /// qemu fails to open the image (no closing quote, or a name longer than PATH_MAX).
        case invalid
    }

    /// The backing file name `vmdk_parent_open` takes from `window` (the descriptor's first
    /// `parentWindowBytes` bytes): the first `parentFileNameHint` anywhere, then the 2
    /// characters after it skipped blindly (meant to be `="`), up to the next `"`.
    static func parentFileNameHint(in window: [UInt8]) -> ParentHint {
        let text = Array(window.prefix(parentWindowBytes).prefix { $0 != 0 })
        let key = Array("parentFileNameHint".utf8)
        guard let keyStart = firstIndex(of: key, in: text) else { return .none }
        let nameStart = keyStart + key.count + 2
        guard nameStart <= text.count,
              let close = text[nameStart...].firstIndex(of: UInt8(ascii: "\"")) else { return .invalid }
        let name = Array(text[nameStart..<close])
        guard name.count <= maximumParentNameBytes else { return .invalid }
        // An empty backing_file means "no backing file" to qemu.
        return name.isEmpty ? .none : .name(name)
    }

    private static func firstIndex(of needle: [UInt8], in haystack: [UInt8]) -> Int? {
        guard haystack.count >= needle.count else { return nil }
        for start in 0...(haystack.count - needle.count)
        where haystack[start] == needle[0] && haystack[start..<(start + needle.count)].elementsEqual(needle) {
            return start
        }
        return nil
    }

    /// One glibc `sscanf` of the extent format: how many conversions matched, their values, and
    /// where the last matched directive ended (trailing whitespace the format skipped not included).
    private struct Match {
        var count = 0
        var access = ""
        var sectors: Int64 = 0
        var type = ""
        var fileName: [UInt8] = []
        var offset: Int64 = -1
        var end: Int

        init(scanning bytes: ArraySlice<UInt8>, from start: Int) {
            var cursor = start
            end = start
            guard let access = Self.string(bytes, &cursor, width: 10) else { return }
            self.access = access
            count = 1
            end = cursor
            guard let sectors = Self.integer(bytes, &cursor) else { return }
            self.sectors = sectors
            count = 2
            end = cursor
            guard let type = Self.string(bytes, &cursor, width: 10) else { return }
            self.type = type
            count = 3
            end = cursor
            Self.skipSpace(bytes, &cursor)
            guard cursor < bytes.endIndex, bytes[cursor] == UInt8(ascii: "\"") else { return }
            cursor += 1
            let nameStart = cursor
            while cursor < bytes.endIndex, cursor - nameStart < 511,
                  ![UInt8(ascii: "\n"), UInt8(ascii: "\r"), UInt8(ascii: "\"")].contains(bytes[cursor]) {
                cursor += 1
            }
            guard cursor > nameStart else { return }
            fileName = Array(bytes[nameStart..<cursor])
            count = 4
            end = cursor
            guard cursor < bytes.endIndex, bytes[cursor] == UInt8(ascii: "\"") else { return }
            cursor += 1
            end = cursor
            guard let offset = Self.integer(bytes, &cursor) else { return }
            self.offset = offset
            count = 5
            end = cursor
        }

        /// C `isspace` in the C locale.
        static func isSpace(_ byte: UInt8) -> Bool {
            byte == 0x20 || (0x09...0x0d).contains(byte)
        }

        static func skipSpace(_ bytes: ArraySlice<UInt8>, _ cursor: inout Int) {
            while cursor < bytes.endIndex, isSpace(bytes[cursor]) { cursor += 1 }
        }

        /// `%Ns`: leading whitespace skipped, then up to `width` non-space bytes (at least one).
        static func string(_ bytes: ArraySlice<UInt8>, _ cursor: inout Int, width: Int) -> String? {
            skipSpace(bytes, &cursor)
            let start = cursor
            while cursor < bytes.endIndex, cursor - start < width, !isSpace(bytes[cursor]) { cursor += 1 }
            guard cursor > start else { return nil }
            return String(decoding: bytes[start..<cursor], as: UTF8.self)
        }

        /// `%lld` as glibc reads it: whitespace, an optional sign, decimal digits; a value out
        /// of range is clamped as strtoll clamps it.
        static func integer(_ bytes: ArraySlice<UInt8>, _ cursor: inout Int) -> Int64? {
            skipSpace(bytes, &cursor)
            var position = cursor
            var negative = false
            if position < bytes.endIndex, bytes[position] == UInt8(ascii: "+") || bytes[position] == UInt8(ascii: "-") {
                negative = bytes[position] == UInt8(ascii: "-")
                position += 1
            }
            let digitsStart = position
            var magnitude: UInt64 = 0
            var clamped = false
            while position < bytes.endIndex, (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(bytes[position]) {
                let digit = UInt64(bytes[position] - UInt8(ascii: "0"))
                let (times10, overflow1) = magnitude.multipliedReportingOverflow(by: 10)
                let (next, overflow2) = times10.addingReportingOverflow(digit)
                if overflow1 || overflow2 { clamped = true } else { magnitude = next }
                position += 1
            }
            guard position > digitsStart else { return nil }
            cursor = position
            if negative {
                return clamped || magnitude > UInt64(Int64.max) ? .min : -Int64(magnitude)
            }
            return clamped || magnitude > UInt64(Int64.max) ? .max : Int64(magnitude)
        }
    }
}
