import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The one timestamp format: ISO 8601 with milliseconds, in two styles that files already on
/// disk fix.
public enum Timestamp {
    public enum Style: Sendable {
        /// "2026-01-31T12:00:00.123Z": the journal, `metadata.json`, the logs. Fixed width, so
        /// text order is time order. Milliseconds are truncated, never rounded up.
        case utc
        /// "2026-01-31T13:00:00.123+01:00": the host's local time with its offset, as the
        /// upstream tool writes `timestamp` in `.error.json` reports.
        case local
    }

    public static func format(_ date: Date, style: Style = .utc) -> String {
        switch style {
        case .utc: utc(date)
        case .local: local(date)
        }
    }

    public static func now(style: Style = .utc) -> String {
        format(Date(), style: style)
    }

    /// Parses either style, and the same without milliseconds; nil for anything else.
    public static func parse(_ text: String) -> Date? {
        (try? Date.ISO8601FormatStyle(includingFractionalSeconds: true).parse(text))
            ?? (try? Date.ISO8601FormatStyle().parse(text))
    }

    private static func utc(_ date: Date) -> String {
        // By hand rather than a formatter: fixed truncation to the millisecond and no
        // locale or calendar in the way.
        let milliseconds = Int64((date.timeIntervalSince1970 * 1000).rounded(.down))
        var seconds = time_t(milliseconds.floorDivided(by: 1000))
        let millisecondPart = Int(milliseconds - Int64(seconds) * 1000)
        var parts = tm()
        gmtime_r(&seconds, &parts)
        return "\(pad(Int(parts.tm_year) + 1900, 4))-\(pad(Int(parts.tm_mon) + 1, 2))-\(pad(Int(parts.tm_mday), 2))"
            + "T\(pad(Int(parts.tm_hour), 2)):\(pad(Int(parts.tm_min), 2)):\(pad(Int(parts.tm_sec), 2))"
            + ".\(pad(millisecondPart, 3))Z"
    }

    private static func local(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        formatter.timeZone = TimeZone.current
        return formatter.string(from: date)
    }

    private static func pad(_ value: Int, _ width: Int) -> String {
        let digits = String(value)
        return digits.count >= width ? digits : String(repeating: "0", count: width - digits.count) + digits
    }
}

extension Int64 {
    /// Division rounding towards negative infinity, so dates before 1970 format correctly.
    fileprivate func floorDivided(by divisor: Int64) -> Int64 {
        let quotient = self / divisor
        return (self % divisor != 0 && (self < 0) != (divisor < 0)) ? quotient - 1 : quotient
    }
}
