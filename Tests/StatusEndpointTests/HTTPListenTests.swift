import Foundation
import Testing
import TestSupport
import Daemon
import Journal
@testable import StatusEndpoint

/// `http_listen` as the loader reads it, the Host check against DNS rebinding, and the
/// journal-following logic of the metrics, on fixed inputs.
@Suite struct HTTPListenTests {
    func load(_ yaml: String) throws -> Configuration {
        let scratch = try Scratch("http-listen")
        let path = try scratch.write("config.yaml", yaml)
        return try ConfigurationLoader.load(files: [path])
    }

    @Test func defaultIsLoopbackOnAPortOutsideTheExporterRange() throws {
        let configuration = try load("command: daemon\n")
        #expect(configuration.httpListen == .tcp(host: "127.0.0.1", port: 8718))
        #expect(configuration.httpListen.isLocalOnly)
        #expect(!(9090...9999).contains(HTTPListen.defaultPort))
    }

    @Test(arguments: [
        ("off", HTTPListen.off),
        ("false", HTTPListen.off),
        ("127.0.0.1:9999", HTTPListen.tcp(host: "127.0.0.1", port: 9999)),
        ("\"[::1]:8718\"", HTTPListen.tcp(host: "::1", port: 8718)),
        ("0.0.0.0:80", HTTPListen.tcp(host: "0.0.0.0", port: 80)),
        ("unix:/run/hyper2kvm/http.sock", HTTPListen.unixSocket(path: "/run/hyper2kvm/http.sock")),
    ])
    func acceptedValues(text: String, expected: HTTPListen) throws {
        #expect(try load("http_listen: \(text)\n").httpListen == expected)
    }

    @Test(arguments: ["localhost:8718", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:-1", "1.2.3:80",
                      "unix:relative.sock", "unix:", "[::1]8718", "[zz::1]:80", "true", "127.0.0.1:８０", "", "300.1.1.1:80",
                      "unix:/" + String(repeating: "a", count: 200)])
    func refusedValues(text: String) throws {
        #expect(throws: ConfigurationErrors.self) { try load("http_listen: \"\(text)\"\n") }
    }

    @Test func unknownKeysNextToItStayErrors() throws {
        #expect(throws: ConfigurationErrors.self) { try load("http_listen: off\nhttp_port: 80\n") }
    }

    @Test func hostCheckRefusesRebindingNames() {
        #expect(HostCheck.allowed(authority: "127.0.0.1:8718", listenHost: "127.0.0.1"))
        #expect(HostCheck.allowed(authority: "localhost:8718", listenHost: "127.0.0.1"))
        #expect(HostCheck.allowed(authority: "[::1]:8718", listenHost: "::1"))
        #expect(!HostCheck.allowed(authority: "evil.example:8718", listenHost: "127.0.0.1"))
        #expect(!HostCheck.allowed(authority: "127.0.0.1.evil.example", listenHost: "127.0.0.1"))
    }

    func row(_ id: Int64, job: Int64, _ to: JobState, _ stage: String?, _ at: String) -> TransitionRecord {
        TransitionRecord(id: id, jobID: job, from: nil, to: to, stage: stage, attempt: 1, at: at, detail: nil)
    }

    @Test func stageDurationsPairStartsWithCompletionsAcrossReads() {
        var durations = StageDurations()
        let first = durations.read([
            row(1, job: 1, .stageStarted, "probe", "2026-01-01T00:00:00.000Z"),
            row(2, job: 2, .stageStarted, "probe", "2026-01-01T00:00:01.000Z"),
            row(3, job: 1, .stageCompleted, "probe", "2026-01-01T00:00:02.500Z"),
            row(4, job: 2, .stageFailed, "probe", "2026-01-01T00:00:03.000Z"),
            row(5, job: 1, .stageStarted, "convert", "2026-01-01T00:00:03.000Z"),
        ])
        #expect(first.map(\.stage) == ["probe"] && first.map(\.seconds) == [2.5])
        #expect(durations.lastTransition == 5)
        let second = durations.read([row(6, job: 1, .stageCompleted, "convert", "2026-01-01T01:00:03.000Z"),
                                     row(7, job: 2, .stageCompleted, "probe", "2026-01-01T01:00:03.000Z")])
        // Job 2's probe failed: a later completion row without a start gives no duration.
        #expect(second.map(\.stage) == ["convert"] && second.map(\.seconds) == [3600])
    }
}

/// Rate and ETA from the progress the journal keeps, on fixed samples.
@Suite struct ProgressRatesTests {
    func job(_ progress: Double?, stage: String = "convert", state: JobState = .stageStarted, size: Int64 = 1000) -> JobRecord {
        JobRecord(id: 7, sourcePath: "/q/a.vmdk", sourceKind: "vmdk",
                  identity: SourceIdentity(device: 1, inode: 2, size: size, mtimeNanoseconds: 0, ctimeNanoseconds: 0),
                  sourceSHA256: nil, vmName: nil, state: state, stage: stage, attempt: 1, progress: progress,
                  outputPath: nil, error: nil, createdAt: "", updatedAt: "")
    }

    @Test func averageOfTheStageSoFarAndItsETA() {
        var rates = ProgressRates()
        #expect(rates.sample([job(0.1)], now: 0).isEmpty)
        #expect(rates.sample([job(0.1)], now: 1).isEmpty)
        let estimate = rates.sample([job(0.5)], now: 4)[7]
        #expect(estimate == .init(bytesPerSecond: 100, etaSeconds: 5))
    }

    @Test func aNewStageOrAStepBackStartsOver() {
        var rates = ProgressRates()
        _ = rates.sample([job(0.9, stage: "convert")], now: 0)
        #expect(rates.sample([job(0.95, stage: "checksum")], now: 1).isEmpty)
        #expect(rates.sample([job(0.2, stage: "checksum")], now: 2).isEmpty)
        let eta = rates.sample([job(0.4, stage: "checksum")], now: 4)[7]?.etaSeconds ?? 0
        #expect(abs(eta - 6) < 1e-9, "\(eta)")
        // A job that is no longer running is forgotten.
        #expect(rates.sample([job(nil, state: .archived)], now: 5).isEmpty)
        #expect(rates.sample([job(0.5, stage: "checksum")], now: 6).isEmpty)
    }
}
