// Hashes one file with `FileDigest.sha256(of:)` N times and prints the throughput of each run
// and the median, so `bench/convert` can set it next to `openssl dgst -sha256` and `sha256sum`.
//
//   digest-bench FILE [RUNS [BUFFER_BYTES]]   (RUNS defaults to 3, BUFFER_BYTES to FileDigest's)
//
// Output (one `key value` pair per line, easy to parse from bash):
//   buffer_bytes 8388608
//   run 1 mb_s 1234.5 wall_s 0.870 cpu_s 0.860 sha256 …
//   median_mb_s 1234.5
//   median_cpu_mb_s 1240.1
//
// MB/s is decimal (10^6 bytes per second), as `openssl speed` reports it. CPU seconds (user +
// system of this process) are printed too: on a shared host the wall clock includes time spent
// waiting for a core, CPU time does not.

import Foundation
import Stages

#if canImport(Glibc)
import Glibc
#endif

struct DigestBenchArguments {
    let file: URL
    let runs: Int
    let bufferBytes: Int

    init(_ arguments: [String]) throws {
        guard (2...4).contains(arguments.count) else {
            throw UsageError("usage: digest-bench FILE [RUNS [BUFFER_BYTES]]")
        }
        if arguments.count == 4 {
            guard let bytes = Int(arguments[3]), bytes >= 4096 else {
                throw UsageError("digest-bench: BUFFER_BYTES must be an integer of at least 4096, got '\(arguments[3])'")
            }
            bufferBytes = bytes
        } else {
            bufferBytes = FileDigest.bufferSize
        }
        file = URL(fileURLWithPath: arguments[1])
        if arguments.count >= 3 {
            guard let runs = Int(arguments[2]), runs > 0 else {
                throw UsageError("digest-bench: RUNS must be a positive integer, got '\(arguments[2])'")
            }
            self.runs = runs
        } else {
            runs = 3
        }
    }
}

struct UsageError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// User + system CPU seconds consumed so far by this process.
func processCPUSeconds() -> Double {
    var usage = rusage()
    getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
    func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1e6 }
    return seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

func median(_ values: [Double]) -> Double {
    let sorted = values.sorted()
    let middle = sorted.count / 2
    return sorted.count % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2
}

func run() throws {
    let arguments = try DigestBenchArguments(CommandLine.arguments)
    let attributes = try FileManager.default.attributesOfItem(atPath: arguments.file.path)
    guard let size = (attributes[.size] as? NSNumber)?.doubleValue, size > 0 else {
        throw UsageError("digest-bench: \(arguments.file.path): empty or unreadable size")
    }

    print("buffer_bytes \(arguments.bufferBytes)")
    print("file_bytes \(Int(size))")
    var wallRates: [Double] = []
    var cpuRates: [Double] = []
    for index in 1...arguments.runs {
        let cpuStart = processCPUSeconds()
        let clock = ContinuousClock()
        let start = clock.now
        let digest = try FileDigest.hash(.sha256, of: arguments.file, bufferSize: arguments.bufferBytes)
        let elapsed = clock.now - start
        let wall = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
        let cpu = processCPUSeconds() - cpuStart
        let rate = size / wall / 1e6
        let cpuRate = cpu > 0 ? size / cpu / 1e6 : 0
        wallRates.append(rate)
        cpuRates.append(cpuRate)
        print(String(format: "run %d mb_s %.1f wall_s %.3f cpu_s %.3f sha256 %@",
                     index, rate, wall, cpu, digest))
    }
    print(String(format: "median_mb_s %.1f", median(wallRates)))
    print(String(format: "median_cpu_mb_s %.1f", median(cpuRates)))
}

do {
    try run()
} catch {
    FileHandle.standardError.write(Data("\(error)\n".utf8))
    exit(1)
}
