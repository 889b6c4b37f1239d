import Foundation
import SystemSupport
import Testing

@Suite("Timestamp")
struct TimestampTests {
    @Test func utcIsFixedWidthWithTruncatedMilliseconds() {
        #expect(Timestamp.format(Date(timeIntervalSince1970: 1_767_225_600.5)) == "2026-01-01T00:00:00.500Z")
        #expect(Timestamp.format(Date(timeIntervalSince1970: 1_767_225_600.9996)) == "2026-01-01T00:00:00.999Z")
        #expect(Timestamp.format(Date(timeIntervalSince1970: -0.25)) == "1969-12-31T23:59:59.750Z")
        #expect(Timestamp.format(Date(timeIntervalSince1970: 0)) == "1970-01-01T00:00:00.000Z")
    }

    @Test func bothStylesRoundTripToTheMillisecond() throws {
        let dates = [0, 1_767_225_600.125, 1_700_000_000.999, 4_102_444_799.5, -86_400.25].map(Date.init(timeIntervalSince1970:))
        for date in dates {
            let truncated = (date.timeIntervalSince1970 * 1000).rounded(.down) / 1000
            for style in [Timestamp.Style.utc, .local] {
                let text = Timestamp.format(date, style: style)
                let parsed = try #require(Timestamp.parse(text), "\(text)")
                #expect(abs(parsed.timeIntervalSince1970 - truncated) < 0.0005, "\(text)")
            }
        }
    }

    @Test func localStyleCarriesTheOffset() {
        let text = Timestamp.format(Date(timeIntervalSince1970: 1_767_225_600.5), style: .local)
        // "2026-01-01T01:00:00.500+01:00", or "…Z" on a host in UTC.
        #expect(text.hasSuffix("Z") || text.dropLast(6).hasSuffix(".500"))
        #expect(text.count == 24 || text.count == 29)
    }

    @Test func textOrderIsTimeOrder() {
        let dates = stride(from: 1_767_225_590.0, to: 1_767_225_610.0, by: 0.37).map(Date.init(timeIntervalSince1970:))
        let texts = dates.map { Timestamp.format($0) }
        #expect(texts == texts.sorted())
        #expect(Set(texts.map(\.count)) == [24])
    }

    @Test func parseAcceptsWholeSecondsAndRejectsTheRest() {
        #expect(Timestamp.parse("2026-01-01T00:00:00Z") == Date(timeIntervalSince1970: 1_767_225_600))
        for text in ["", "yesterday", "2026-01-01", "2026-13-01T00:00:00.000Z", "2026-01-01 00:00:00.000Z"] {
            #expect(Timestamp.parse(text) == nil, "\(text)")
        }
    }
}
