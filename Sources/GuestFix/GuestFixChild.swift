import Foundation
import Stages

/// The child's side of `IsolatedGuestFixer` (Stages), which `hyper2kvm-fix-guest` runs:
/// libguestfs is called here and in the rest of this module, never in the daemon.
public enum GuestFixChild {
    /// Reads the request, fixes the guest in this process and writes the answer; returns
    /// the exit status (0, or `IsolatedSourceReader.stageErrorStatus` with a `StageError` answered).
    public static func serve(request requestPath: String, answer answerPath: String) async -> Int32 {
        OrphanWatch.start()
        var response = IsolatedGuestFixer.Response()
        do {
            let data: Data
            do {
                data = try Data(contentsOf: URL(fileURLWithPath: requestPath))
            } catch {
                throw StageError(.ioFailed, file: requestPath, "cannot read the guest fixer's request: \(error)")
            }
            let request: IsolatedGuestFixer.Request
            do {
                request = try JSONDecoder().decode(IsolatedGuestFixer.Request.self, from: data)
            } catch {
                throw StageError(.toolFailed, file: requestPath, "the guest fixer's request is not JSON it can read: \(error)")
            }
            var fixer = LinuxGuestFixer()
            if let hook = GuestFixTestHook.fromEnvironment() { fixer.checkpoint = { hook.fire(at: $0) } }
            response.report = try await fixer.fix(disks: request.disks.map { (URL(fileURLWithPath: $0.path), $0.format) },
                                                  options: request.options, identifier: request.identifier)
        } catch let error as StageError {
            response = IsolatedGuestFixer.Response(error: .init(error))
        } catch {
            response = IsolatedGuestFixer.Response(error: .init(StageError(.toolFailed, file: requestPath, "the guest fix failed: \(error)")))
        }
        do {
            try JSONEncoder().encode(response).write(to: URL(fileURLWithPath: answerPath), options: .atomic)
        } catch {
            FileHandle.standardError.write(Data("cannot write the guest fixer's answer to \(answerPath): \(error)\n".utf8))
            return 1
        }
        return response.error == nil ? 0 : IsolatedSourceReader.stageErrorStatus
    }
}

/// Tests prove that a guest-fix child that crashes or stalls costs one stage attempt, not
/// the daemon: `HYPER2KVM_GUESTFIX_HOOK_FOR_TESTS=<action>@<point>` makes the child, at the
/// fixer's checkpoint `<point>` (`started`, before libguestfs; `launched`; `inspected`),
/// SIGKILL itself (`kill`), abort (`abort`), or stall until it is stopped (`stall`, a guest
/// tool that never ends). With
/// `HYPER2KVM_GUESTFIX_HOOK_ONCE=<file>` it fires only while that file does not exist, and
/// creates it first, so the next attempt runs normally. Only the child reads these
/// variables; nothing in a dropped file can set them.
struct GuestFixTestHook: Sendable {
    static let variable = "HYPER2KVM_GUESTFIX_HOOK_FOR_TESTS"
    static let onceVariable = "HYPER2KVM_GUESTFIX_HOOK_ONCE"

    enum Action: String, Sendable { case kill, abort, stall }
    var action: Action
    var point: String
    var onceFile: String?

    static func fromEnvironment(_ environment: [String: String] = ProcessInfo.processInfo.environment) -> GuestFixTestHook? {
        guard let armed = environment[variable], !armed.isEmpty else { return nil }
        let parts = armed.split(separator: "@", maxSplits: 1).map(String.init)
        guard parts.count == 2, let action = Action(rawValue: parts[0]) else {
            FileHandle.standardError.write(Data("\(variable)=\(armed) is not <kill|abort|stall>@<point>; ignored\n".utf8))
            return nil
        }
        return GuestFixTestHook(action: action, point: parts[1], onceFile: environment[onceVariable].flatMap { $0.isEmpty ? nil : $0 })
    }

    func fire(at point: String) {
        guard point == self.point else { return }
        if let onceFile {
            // O_EXCL: only the attempt that creates the file fires.
            let descriptor = open(onceFile, O_WRONLY | O_CREAT | O_EXCL, 0o644)
            guard descriptor >= 0 else { return }
            close(descriptor)
        }
        FileHandle.standardError.write(Data("\(Self.variable): \(action.rawValue) at \(point)\n".utf8))
        switch action {
        case .kill: _ = kill(getpid(), SIGKILL)
        case .abort: abort()
        case .stall: while true { sleep(60) }
        }
    }
}
