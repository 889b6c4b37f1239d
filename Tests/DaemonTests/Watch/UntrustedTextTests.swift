import Foundation
import Logging
import Testing
@testable import Daemon

@Suite("UntrustedText")
struct UntrustedTextTests {
    @Test func controlsBecomeVisibleEscapes() {
        #expect(UntrustedText.escaped("plain name.vmdk") == "plain name.vmdk")
        #expect(UntrustedText.escaped("a\nb\rc\td") == #"a\nb\rc\td"#)
        #expect(UntrustedText.escaped("\u{1b}[2J\u{7f}\u{0}") == #"\x1b[2J\x7f\x00"#)
        #expect(UntrustedText.escaped("next\u{85}line\u{2028}sep\u{202e}gpj.exe") == #"next\u{85}line\u{2028}sep\u{202e}gpj.exe"#)
        #expect(UntrustedText.escaped("été ☃ 日本 C:\\dir") == "été ☃ 日本 C:\\dir")
    }

    @Test func invalidUTF8BytesAreShownAsHex() {
        #expect(UntrustedText.escaped(bytes: Array("ok".utf8) + [0xff, 0xc3] + Array("é\n".utf8)) == #"ok\xff\xc3é\n"#)
        #expect(UntrustedText.escaped(bytes: [0xc0, 0xaf]) == #"\xc0\xaf"#)  // overlong '/'
    }

    /// Collects what the escaping handler passes on.
    final class Recorder: LogHandler, @unchecked Sendable {
        var events: [(String, Logger.Metadata?)] = []
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .trace
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) { events.append((event.message.description, event.metadata)) }
    }

    @Test func theDaemonsLogHandlerEscapesMessagesAndMetadata() {
        let recorder = Recorder()
        let logger = Logger(label: "test") { _ in EscapingLogHandler(inner: recorder) }
        logger.error("cannot queue x\n2026-01-01 info FAKE.vmdk", metadata: ["file": "a\u{1b}b"])
        #expect(recorder.events.count == 1)
        #expect(recorder.events.first?.0 == #"cannot queue x\n2026-01-01 info FAKE.vmdk"#)
        #expect(recorder.events.first?.1?["file"] == .string(#"a\x1bb"#))
    }
}
