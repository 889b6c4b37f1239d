import Foundation
import Testing
import TestSupport

/// `/metrics` and the jobs API of a real daemon that converted real images and refused garbage:
/// the text passes `promtool check metrics` and parses with the Python prometheus_client
/// parser, and every figure matches what the journal says (`hyper2kvm status/history --json`).
@Suite(.serialized, .tags(.slow), .notInQuickRun) struct EndpointMetricsTests {
    typealias Sample = (name: String, labels: [String: String], value: Double)

    /// Parses the exposition text with prometheus_client (Debian's python3-prometheus-client).
    func parse(_ text: String, in scratch: Scratch) async throws -> [Sample] {
        let input = try scratch.write("metrics.txt", text)
        let script = """
            import json, sys
            from prometheus_client.parser import text_string_to_metric_families
            out = []
            for family in text_string_to_metric_families(open(sys.argv[1]).read()):
                for s in family.samples:
                    out.append([s.name, s.labels, s.value])
            print(json.dumps(out))
            """
        // Debian's interpreter: python3-prometheus-client is a Debian package (scripts/install-deps).
        let result = try await sh(["/usr/bin/python3", "-c", script, input])
        let rows = try JSONSerialization.jsonObject(with: Data(result.out.utf8)) as? [[Any]] ?? []
        return rows.compactMap { row in
            guard row.count == 3, let name = row[0] as? String, let labels = row[1] as? [String: String],
                  let value = (row[2] as? NSNumber)?.doubleValue else { return nil }
            return (name, labels, value)
        }
    }

    func value(_ samples: [Sample], _ name: String, _ labels: [String: String] = [:]) -> Double? {
        samples.first { sample in sample.name == name && labels.allSatisfy { key, value in sample.labels[key] == value } }?.value
    }

    @Test func metricsAndJobsAPIMatchTheJournalAfterSeveralJobsWithFailures() async throws {
        let scratch = try Scratch("endpoint-metrics")
        let daemon = try EndpointDaemon(scratch: scratch)
        #expect(await daemon.waitForEndpoint(), "log:\n\(daemon.output)")

        let raw = scratch.path("base.raw")
        try await TestDisks.makeRaw(at: raw)
        for (name, format) in [("one.qcow2", "qcow2"), ("two.vmdk", "vmdk"), ("three.vhd", "vpc")] {
            try await TestDisks.convert(raw: raw, to: scratch.path(name), format: format, options: [])
            try FileManager.default.moveItem(atPath: scratch.path(name), toPath: daemon.queue + "/" + name)
        }
        for name in ["garbage.vmdk", "garbage.qcow2"] {
            try await sh(["dd", "if=/dev/urandom", "of=\(scratch.path(name))", "bs=64k", "count=2", "status=none"])
            try FileManager.default.moveItem(atPath: scratch.path(name), toPath: daemon.queue + "/" + name)
        }

        var status: [String: Any] = [:]
        let settled = await waitUntil(180) {
            guard let text = try? shBlocking(["curl", "-sS", "--max-time", "5", daemon.url + "/api/v1/jobs"]).out,
                  let document = try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any],
                  let counts = document["counts"] as? [String: Int] else { return false }
            status = document
            return counts["archived"] == 3 && counts["failed"] == 2
        }
        #expect(settled, "jobs did not settle: \(status["counts"] ?? "none"); log:\n\(daemon.output)")

        // The same document, byte for byte, as the command line's, which reads the journal
        // from another process.
        let cliStatus = try await sh([ProductBinary.path, "status", "--json", "--state-dir", daemon.stateDir]).out
        #expect(cliStatus == (try await daemon.get("/api/v1/jobs").body) + "\n")
        let jobs = status["jobs"] as? [[String: Any]] ?? []
        var artifactBytes = 0.0, convertedSourceBytes = 0.0, completions: [String: Int] = [:]
        for job in jobs {
            guard let id = job["id"] as? Int else { continue }
            let api = try await daemon.get("/api/v1/jobs/\(id)")
            #expect(api.status == 200)
            let cliText = try await sh([ProductBinary.path, "history", "\(id)", "--json", "--state-dir", daemon.stateDir]).out
            #expect(cliText == api.body + "\n", "job \(id)")
            let cliHistory = try JSONSerialization.jsonObject(with: Data(cliText.utf8)) as? [String: Any] ?? [:]
            for artifact in cliHistory["artifacts"] as? [[String: Any]] ?? [] { artifactBytes += (artifact["size"] as? NSNumber)?.doubleValue ?? 0 }
            for row in cliHistory["transitions"] as? [[String: Any]] ?? [] where row["to"] as? String == "stage-completed" {
                let stage = row["stage"] as? String ?? "?"
                completions[stage, default: 0] += 1
                if stage == "convert" {
                    convertedSourceBytes += ((job["identity"] as? [String: Any])?["size"] as? NSNumber)?.doubleValue ?? 0
                }
            }
        }
        #expect(try await daemon.get("/api/v1/jobs/99999").status == 404)
        #expect(try await daemon.get("/api/v1/jobs/abc").status == 400)

        let metrics = try await daemon.get("/metrics")
        #expect(metrics.status == 200)
        let file = try scratch.write("scrape.prom", metrics.body)
        let promtool = try await sh(["sh", "-c", "promtool check metrics < '\(file)'"], allowFailure: true)
        #expect(promtool.status == 0, "promtool: \(promtool.out)\(promtool.err)\n\(metrics.body)")

        let samples = try await parse(metrics.body, in: scratch)
        let counts = status["counts"] as? [String: Int] ?? [:]
        for (state, count) in counts {
            #expect(value(samples, "hyper2kvm_jobs", ["state": state]) == Double(count), "state \(state)")
        }
        #expect(value(samples, "hyper2kvm_jobs", ["state": "running"]) == nil)
        let failuresByCode = samples.filter { $0.name == "hyper2kvm_job_failures_total" }
        #expect(failuresByCode.reduce(0) { $0 + $1.value } == Double(counts["failed"] ?? -1), "\(failuresByCode)")
        #expect(failuresByCode.allSatisfy { $0.labels["code"] == "bad-input" }, "\(failuresByCode)")
        #expect(value(samples, "hyper2kvm_output_bytes_written_total") == artifactBytes)
        #expect(value(samples, "hyper2kvm_source_bytes_read_total") == convertedSourceBytes)
        #expect(convertedSourceBytes > 0 && artifactBytes > 0)
        for (stage, count) in completions {
            #expect(value(samples, "hyper2kvm_stage_duration_seconds_count", ["stage": stage]) == Double(count), "stage \(stage)")
        }
        #expect(completions["convert"] == 3)
        #expect(value(samples, "hyper2kvm_queue_depth") == 0)
        #expect((value(samples, "hyper2kvm_journal_commit_seconds_count") ?? 0) > 0)
        #expect((value(samples, "hyper2kvm_filesystem_free_bytes", ["directory": "work"]) ?? 0) > 0)
        #expect((value(samples, "hyper2kvm_filesystem_free_bytes", ["directory": "output"]) ?? 0) > 0)
        #expect(samples.contains { $0.name == "hyper2kvm_build_info" && $0.value == 1 && $0.labels["version"] != nil })

        // A second scrape does not count the same bytes or stages twice.
        let again = try await parse(try await daemon.get("/metrics").body, in: scratch)
        #expect(value(again, "hyper2kvm_output_bytes_written_total") == artifactBytes)
        #expect(value(again, "hyper2kvm_stage_duration_seconds_count", ["stage": "convert"]) == 3)

        #expect(try await daemon.get("/healthz").status == 200)
        let ready = try await daemon.get("/readyz")
        #expect(ready.status == 200, "\(ready.body)")
        // A page elsewhere that rebinds its own name to 127.0.0.1 is refused.
        #expect(try await daemon.get("/api/v1/jobs", headers: ["Host: attacker.example"]).status == 403)
        let page = try await daemon.get("/")
        #expect(page.status == 200 && page.body.contains("<title>hyper2kvm</title>") && !page.body.contains("http://") && !page.body.contains("https://"))
        #expect(await daemon.stop() == 0, "log:\n\(daemon.output)")
    }

    @Test func offMeansNothingListens() async throws {
        let scratch = try Scratch("endpoint-off")
        let daemon = try EndpointDaemon(scratch: scratch, listen: "off")
        #expect(await waitUntil(20) { daemon.output.contains("Daemon ready") }, "log:\n\(daemon.output)")
        #expect(await daemon.waitForEndpoint(seconds: 2) == false)
        #expect(!daemon.output.contains("HTTP endpoint on"))
        #expect(await daemon.stop() == 0)
    }

    @Test func aPortInUseIsLoggedAndTheDaemonRunsOn() async throws {
        let scratch = try Scratch("endpoint-busy")
        let first = try EndpointDaemon(scratch: scratch)
        #expect(await first.waitForEndpoint(), "log:\n\(first.output)")
        let other = try Scratch("endpoint-busy-2")
        let clash = try EndpointDaemon(scratch: other, port: first.port)
        #expect(await waitUntil(20) { clash.output.contains("cannot serve") && clash.output.contains("Daemon ready") },
                "log:\n\(clash.output)")
        #expect(clash.process.isRunning)
        #expect(await clash.stop() == 0)
        #expect(await first.stop() == 0)
    }
}
