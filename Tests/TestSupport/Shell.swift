import Foundation
import Stages

/// What a finished tool left: its exit status and its two output streams.
public typealias ShellResult = (status: Int32, out: String, err: String)

/// Runs a host tool found on PATH; throws `TestToolFailure` with its stderr unless it exits 0
/// (or `allowFailure`).
///
/// The wait happens on a thread of its own: the tests share one process whose cooperative
/// pool has as many threads as the host has cores (2 here). A boot test or a real-guest
/// conversion blocking two of them for minutes stalled every other test's timers, and
/// tests with a time limit failed without having done anything wrong.
@discardableResult
public func sh(_ arguments: [String], environment: [String: String] = [:], in directory: URL? = nil,
               allowFailure: Bool = false) async throws -> ShellResult {
    try await BlockingWork.run("h2k-test-sh") {
        try shBlocking(arguments, environment: environment, in: directory, allowFailure: allowFailure)
    }
}

/// `sh` for the few callers that cannot be async (a `defer` or a `deinit` cleaning up);
/// never for a long tool, and never from an async test body.
@discardableResult
public func shBlocking(_ arguments: [String], environment: [String: String] = [:], in directory: URL? = nil,
                       allowFailure: Bool = false) throws -> ShellResult {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    process.environment = ProcessInfo.processInfo.environment.merging(environment) { _, new in new }
    if let directory { process.currentDirectoryURL = directory }
    let out = Pipe(), err = Pipe()
    process.standardOutput = out
    process.standardError = err
    // Nothing a test runs reads the terminal; a tool that tries ends at once instead of waiting.
    process.standardInput = FileHandle.nullDevice
    try process.run()
    // Read before waiting so a chatty tool cannot block on a full pipe.
    let outData = out.fileHandleForReading.readDataToEndOfFile()
    let errText = String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    let result: ShellResult = (process.terminationStatus, String(decoding: outData, as: UTF8.self), errText)
    if !allowFailure && result.status != 0 {
        throw TestToolFailure(command: arguments, status: result.status, stderr: result.err)
    }
    return result
}

/// Failure of a helper tool a test ran; the test fails with the tool's stderr.
public struct TestToolFailure: Error, CustomStringConvertible {
    public var command: [String]
    public var status: Int32
    public var stderr: String
    public var description: String { "\(command.joined(separator: " ")) exited \(status): \(stderr)" }
}

/// A test fixture that could not be set up, with a sentence saying why.
public struct FixtureError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Carries a value that is not Sendable to a `BlockingWork` thread and back. Only for test
/// values that one task hands over and waits for, never touched by two threads at once.
public struct Unchecked<Value>: @unchecked Sendable {
    public let value: Value
    public init(_ value: Value) { self.value = value }
}
