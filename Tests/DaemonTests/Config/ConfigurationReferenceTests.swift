import Foundation
import Testing
@testable import Daemon

/// The README's configuration table is generated from the key table; these keep the two,
/// and the stated defaults, true to the code.
@Suite struct ConfigurationReferenceTests {
    static let readme = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("README.md")

    @Test func theREADMEHoldsTheTableGeneratedFromTheKeyTable() throws {
        let text = try String(contentsOf: Self.readme, encoding: .utf8)
        let begin = try #require(text.range(of: ConfigurationReference.beginMarker + "\n"), "README.md lacks the begin marker")
        let end = try #require(text.range(of: "\n" + ConfigurationReference.endMarker, range: begin.upperBound..<text.endIndex),
                               "README.md lacks the end marker")
        let inREADME = String(text[begin.upperBound..<end.lowerBound])
        #expect(inREADME == ConfigurationReference.markdown(),
                "README.md's configuration table differs from the key table: run scripts/readme-config-table")
    }

    @Test func everyKeyHasATypeADefaultAndAMeaning() {
        for key in ConfigurationKeys.all {
            if case .replaced = key.status { continue }
            #expect(!key.type.isEmpty && !key.defaultValue.isEmpty, "\(key.name)")
            #expect(key.summary.hasSuffix("."), "\(key.name): the meaning is one or more sentences")
            #expect(!key.summary.contains("(default:"), "\(key.name): the default belongs in its own column")
        }
    }

    /// Where the stated default is a plain value, it is the value `config check` shows for an
    /// empty configuration (so "else 1" and "else 2" cannot both be written again).
    @Test func aPlainStatedDefaultIsTheEffectiveDefault() throws {
        let effective = Dictionary(
            EffectiveConfiguration.render(Configuration(baseDirectory: "$HOME")).split(separator: "\n").dropFirst()
                .compactMap { line -> (String, String)? in
                    guard let colon = line.firstIndex(of: ":") else { return nil }
                    return (String(line[..<colon]), String(line[line.index(colon, offsetBy: 2)...]))
                },
            uniquingKeysWith: { first, _ in first })
        var compared = 0
        for key in ConfigurationKeys.all {
            guard let value = effective[key.name], !value.hasPrefix("("), key.name != "retry_policy" else { continue }
            let stated = String(key.defaultValue.replacingOccurrences(of: "`", with: "").prefix { $0 != " " })
            if let a = Double(stated), let b = Double(value) {
                #expect(a == b, "\(key.name): README says \(stated), the code's default is \(value)")
            } else {
                #expect(stated == value, "\(key.name): README says \(stated), the code's default is \(value)")
            }
            compared += 1
        }
        #expect(compared >= 25)
        let policy = Configuration.RetryPolicy()
        let retry = try #require(ConfigurationKeys.lookup("retry_policy")).defaultValue
        #expect(retry == "enabled, \(policy.maxRetries) retries, \(Int(policy.retryDelaySeconds)) s, ×\(Int(policy.backoffMultiplier))" && policy.enabled)
    }
}
