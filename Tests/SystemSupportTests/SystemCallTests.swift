import Glibc
import SystemPackage
import SystemSupport
import Testing

@Suite("SystemCall")
struct SystemCallTests {
    @Test func retriesWhileInterruptedThenReturnsTheResult() {
        var calls = 0
        let result = SystemCall.retryingOnInterrupt { () -> Int32 in
            calls += 1
            if calls < 3 {
                errno = EINTR
                return -1
            }
            return 7
        }
        #expect(result == 7)
        #expect(calls == 3)
    }

    @Test func anotherFailureIsReturnedAtOnceWithItsErrno() {
        var calls = 0
        let result = SystemCall.retryingOnInterrupt { () -> Int in
            calls += 1
            errno = EIO
            return -1
        }
        #expect(result == -1 && errno == EIO && calls == 1)
    }

    @Test func checkedThrowsAnErrorNamingCallPathAndErrno() {
        var calls = 0
        let error = #expect(throws: SystemError.self) {
            try SystemCall.checked("fsync", path: "/out/disk.qcow2") { () -> Int32 in
                calls += 1
                errno = calls == 1 ? EINTR : ENOSPC
                return -1
            }
        }
        #expect(calls == 2)
        #expect(error == SystemError(operation: "fsync", path: "/out/disk.qcow2", errno: .noSpace))
        #expect(error?.isOutOfSpace == true)
        #expect(error?.description == "/out/disk.qcow2: fsync failed: No space left on device (errno 28)")
    }

    @Test func checkedWithoutRetryReportsTheInterruption() {
        var calls = 0
        let error = #expect(throws: SystemError.self) {
            try SystemCall.checked("link", path: "/a", destination: "/b", retryOnInterrupt: false) { () -> Int32 in
                calls += 1
                errno = EINTR
                return -1
            }
        }
        #expect(calls == 1)
        #expect(error?.errno == .interrupted)
        #expect(error?.description.hasPrefix("/a: link to /b failed: ") == true)
    }
}
