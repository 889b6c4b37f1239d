#!/usr/bin/env python3
"""Power-loss harness: the hyper2kvm daemon inside a Debian guest (qemu, TCG), the VM
killed with SIGKILL at chosen moments so the guest's page cache dies, then rebooted.

Model: a SIGKILL of qemu loses everything the guest had not yet written to its virtual
disk (its page cache, the ext4 journal not yet committed), but not what qemu had already
written to the image file on the host. That is power loss with a volatile write cache
that an fsync (a FLUSH to the virtual disk) empties.

The guest (scripts/powerloss.d/guest-run) streams the daemon's log over a serial port
while it runs; every "<stage> started/completed" and "Completed:" line is printed after
its journal commit returned, so the host records it as acknowledged. After each cut,
before the daemon runs again, `verify --json` and `journal export` look at what survived:
by default on the host, with the data disk loop-mounted at the guest's path (the mount
replays the ext4 journal as the guest's would); with --check-in-guest inside the rebooted
guest (the same, a minute slower per cut under TCG). A cut fails when:
  - a transition the host saw acknowledged is missing from the journal (lost commit);
  - verify reports a committed artifact missing, of another size or another SHA-256;
  - the journal cannot be opened (quick_check) after the cut;
  - a published disk differs from its input (`qemu-img compare` against a raw copy of each
    input kept on the host; host checks only). One input is 192 MiB copied in three 64 MiB
    chunks, so cuts can land between journaled chunks of a copy.
The first cut falls 1-8 s into the convert stage of the multi-chunk input (policy "copy"),
later ones 0.5-3 s after a commit or at a random time. At the end every job must have been
published, after one more cut once all were done.

Exit status: 0 when no cut failed (or, with --expect-failure, when at least one did),
1 otherwise, 2 on a harness error (guest did not boot, timeouts).
"""

import argparse
import glob
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
CACHE = os.environ.get("HYPER2KVM_TEST_CACHE", "/var/cache/hyper2kvm-test")
FINISHED = {"published", "archived"}

STARTED = re.compile(r"job=(\d+).*?\b([a-z]+) started")
COMPLETED = re.compile(r"job=(\d+).*?\b([a-z]+) completed in")
QUEUED = re.compile(r"New file queued: (.+) \(job (\d+)\)")
RESUMING = re.compile(r"resuming job (\d+) \((.+)\) after restart")
PUBLISHED = re.compile(r"Completed: (.+?) \u2192 ")


class HarnessError(Exception):
    pass


def log(message):
    print(f"powerloss: {message}", file=sys.stderr, flush=True)


def run(cmd, **kwargs):
    return subprocess.run(cmd, check=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kwargs)


class Workload:
    """The run directory: config, the data disk holding the queue with small inputs."""

    def __init__(self, root, jobs, rng):
        self.root = root
        os.makedirs(os.path.join(root, "guest"))  # the mount point of the data disk
        staging = os.path.join(root, "staging")
        for sub in ("queue", "output", "work", "state", "tmp", "home"):
            os.makedirs(os.path.join(staging, sub))
        self.rng = rng
        self.inputs = []
        self.resumed_copies = 0   # copies the journal says resumed inside a disk (last check)
        self.chunked = []         # names of the multi-chunk inputs
        # The content of each input as raw, kept on the host: every published disk is
        # compared with it (verify only checks a disk against the digest the journal holds,
        # which a copy that journaled a chunk it had not made durable would match).
        self.originals = os.path.join(root, "originals")
        os.makedirs(self.originals)
        self.add_chunked_input(os.path.join(staging, "queue"))
        self.add_inputs(os.path.join(staging, "queue"), jobs)
        guest = os.path.join(root, "guest")
        with open(os.path.join(root, "config.yaml"), "w") as f:
            f.write(
                "command: daemon\n"
                f"watch_dir: {guest}/queue\n"
                f"output_dir: {guest}/output\n"
                f"workdir: {guest}/work\n"
                f"state_dir: {guest}/state\n"
                "fix_guest: false\n"
                "checksum: true\n"
                "emit_domain_xml: true\n"
                "libvirt_integration: false\n"
                "archive_processed: true\n"
                "max_concurrent: 1\n"
                "file_stable_seconds: 1\n"
                "copy_chunk_mib: 64\n"
                "verbose: 1\n"
            )
        self.disk = os.path.join(root, "data.img")
        with open(self.disk, "wb") as f:
            f.truncate(2 << 30)  # sparse; room for the jobs queued when all are done
        run(["mkfs.ext4", "-q", "-F", "-L", "powerloss-data", "-d", staging, self.disk])
        shutil.rmtree(staging)


    def add_chunked_input(self, queue):
        """One input copied in several journaled chunks (64 MiB each): 192 MiB with 16 MiB of
        random data at the start of each chunk, so cuts can land between its chunks."""
        index = len(self.inputs)
        name = f"vm{index}.raw"
        raw = os.path.join(self.root, name)
        with open(raw, "wb") as f:
            for chunk in range(3):
                f.seek(chunk * (64 << 20))
                f.write(self.rng.randbytes(16 << 20))
            f.truncate(192 << 20)
        run(["cp", "--sparse=always", raw, os.path.join(self.originals, name)])
        shutil.move(raw, os.path.join(queue, name))
        self.inputs.append(name)
        self.chunked.append(name)

    def add_inputs(self, queue, count):
        """Writes `count` new inputs into `queue`: a few MiB of random data each (a distinct
        content per job, so no duplicates), raw and qcow2 in turn."""
        for _ in range(count):
            index = len(self.inputs)
            raw = os.path.join(self.root, f"input-{index}.raw")
            size_mib = 3 + index % 3
            with open(raw, "wb") as f:
                f.write(self.rng.randbytes(size_mib << 20))
                f.truncate((size_mib + 4) << 20)
            run(["cp", "--sparse=always", raw, os.path.join(self.originals, f"vm{index}.raw")])
            if index % 2:
                name = f"vm{index}.qcow2"
                run(["qemu-img", "convert", "-f", "raw", "-O", "qcow2", raw, os.path.join(queue, name)])
                os.remove(raw)
            else:
                name = f"vm{index}.raw"
                shutil.move(raw, os.path.join(queue, name))
            self.inputs.append(name)


class Boot:
    """One life of the VM: qemu started, its second serial port followed line by line."""

    def __init__(self, number, workload, binary, image, check_in_guest):
        self.number = number
        self.acks_path = os.path.join(workload.root, f"acks-{number}.log")
        self.console_path = os.path.join(workload.root, f"console-{number}.log")
        open(self.acks_path, "w").close()
        append = " ".join([
            # no_timer_check: a TCG guest starved of CPU otherwise panics in the IO-APIC
            # timer check; panic=-1 turns any panic into an exit of qemu (-no-reboot).
            "root=/dev/vda", "ro", "console=ttyS0", "loglevel=4", "fsck.mode=skip",
            "no_timer_check", "panic=-1", f"powerloss.check={'guest' if check_in_guest else 'host'}",
            "init=/usr/local/sbin/powerloss-init",
            f"powerloss.script={HERE}/guest-run",
            f"powerloss.run={workload.root}",
            f"powerloss.bin={binary}",
        ])
        cmd = [
            "qemu-system-x86_64", "-machine", "accel=tcg", "-m", "1024", "-smp", "1",
            "-display", "none", "-no-reboot", "-nic", "none",
            "-kernel", image["kernel"], "-initrd", image["initrd"], "-append", append,
            "-drive", f"file={image['root']},if=virtio,format=qcow2,readonly=on",
            "-drive", f"file={workload.disk},if=virtio,format=raw,cache=writeback",
            "-virtfs", "local,path=/,mount_tag=hostroot,security_model=none,readonly=on,multidevs=remap",
            "-serial", f"file:{self.console_path}", "-serial", f"file:{self.acks_path}",
        ]
        self.started = time.monotonic()
        self.process = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                        stderr=open(os.path.join(workload.root, f"qemu-{number}.err"), "w"))
        self.handle = open(self.acks_path, "r", errors="replace")
        self.pending = ""

    def lines(self, timeout, idle=False):
        """Yields complete lines as the guest writes them (and None every 50 ms of silence
        when `idle`); raises after `timeout` seconds without a line, or when qemu exits."""
        deadline = time.monotonic() + timeout
        while True:
            chunk = self.handle.read()
            if chunk:
                self.pending += chunk
                while "\n" in self.pending:
                    line, self.pending = self.pending.split("\n", 1)
                    deadline = time.monotonic() + timeout
                    yield line.rstrip("\r")
                continue
            if self.process.poll() is not None:
                raise HarnessError(f"boot {self.number}: qemu exited ({self.process.returncode}); see {self.console_path}")
            if time.monotonic() > deadline:
                raise HarnessError(f"boot {self.number}: no output for {timeout} s; see {self.console_path}")
            if idle:
                yield None
            time.sleep(0.05)

    def peek_first_line(self, timeout):
        """Waits for the guest's first line and keeps it for lines()."""
        for line in self.lines(timeout):
            self.pending = line + "\n" + self.pending
            return

    def cut(self):
        """Power loss: SIGKILL to qemu, nothing of the guest's cache survives."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()
        self.handle.close()


class Ledger:
    """What the host saw acknowledged, as counts of (job, transition, stage)."""

    def __init__(self):
        self.acked = {}
        self.job_of_name = {}
        self.published = set()

    def note(self, line):
        """Records an acknowledgement in a daemon log line; returns its description or None."""
        key = None
        if m := COMPLETED.search(line):
            key = (int(m.group(1)), "stage-completed", m.group(2))
        elif m := STARTED.search(line):
            key = (int(m.group(1)), "stage-started", m.group(2))
        elif m := QUEUED.search(line):
            self.job_of_name[os.path.basename(m.group(1))] = int(m.group(2))
        elif m := RESUMING.search(line):
            self.job_of_name[os.path.basename(m.group(2))] = int(m.group(1))
        elif m := PUBLISHED.search(line):
            job = self.job_of_name.get(os.path.basename(m.group(1)))
            if job is not None:
                key = (job, "published", None)
                self.published.add(job)
        if key is None:
            return None
        self.acked[key] = self.acked.get(key, 0) + 1
        return key

    def lost(self, history):
        """Acknowledged transitions the journal no longer has."""
        lost = []
        for key, count in sorted(self.acked.items(), key=str):
            if history.get(key, 0) < count:
                lost.append(f"job {key[0]} {key[1]} {key[2] or ''}: acknowledged {count}x, journal has {history.get(key, 0)}")
        return lost


def export_records(lines):
    """(type, record) of each JSON line of `hyper2kvm journal export`."""
    for line in lines:
        line = line.strip()
        if line.startswith("{"):
            entry = json.loads(line)
            yield entry.get("type"), entry.get("record", {})


def parse_export(lines):
    history, states = {}, {}
    for kind, record in export_records(lines):
        if kind == "job":
            states[record["id"]] = record["state"]
        elif kind == "transition":
            stage = record.get("stage") if record["to"] in ("stage-started", "stage-completed") else None
            key = (record["jobID"], record["to"], stage)
            history[key] = history.get(key, 0) + 1
    return history, states


def judge_verify(text, status):
    """Problems in the output of `hyper2kvm verify --json`."""
    start = text.find("{")
    try:
        report = json.loads(text[start:]) if start >= 0 else None
    except json.JSONDecodeError:
        report = None
    if report is None:
        return [f"verify failed to run ({status}): {text.strip()[:400]}"]
    problems = [f"verify: job {f['job']} {f['stage']}/{f['name']}: {f['problem']}" for f in report.get("findings", [])]
    if not problems and status != 0:
        problems.append(f"verify exited {status} without findings")
    return problems


def judge_export(lines, status, ledger):
    """Lost acknowledgements in the output of `hyper2kvm journal export`; (problems, job states)."""
    if status != 0:
        return [f"journal export failed ({status}): {' '.join(lines)[:400]}"], {}
    history, states = parse_export(lines)
    return [f"lost: {item}" for item in ledger.lost(history)], states


def compare_published(workload, export_lines):
    """Each published disk against its input's content (`qemu-img compare`); returns
    (problems, how many copies the journal says resumed inside the disk)."""
    problems, resumed = [], 0
    sources, outputs = {}, {}
    for kind, record in export_records(export_lines):
        if kind == "job":
            sources[record["id"]] = os.path.basename(record.get("sourcePath", ""))
            if record.get("state") in FINISHED and record.get("outputPath"):
                outputs[record["id"]] = record["outputPath"]
        elif kind == "transition" and "resumed at chunk" in (record.get("detail") or ""):
            resumed += 1
    for job, output in sorted(outputs.items()):
        stem = os.path.splitext(sources.get(job, ""))[0]
        original = os.path.join(workload.originals, stem + ".raw")
        disks = sorted(glob.glob(os.path.join(output, "*.qcow2"))) if os.path.isdir(output) else []
        if not os.path.exists(original) or len(disks) != 1:
            problems.append(f"job {job}: published {output} holds {len(disks)} qcow2 disk(s), input {stem or '?'}")
            continue
        compare = subprocess.run(["qemu-img", "compare", "-f", "raw", "-F", "qcow2", original, disks[0]],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if compare.returncode != 0:
            problems.append(f"job {job}: published disk differs from its input: {compare.stdout.strip()[:300]}")
    return problems, resumed


def check_in_guest(boot, ledger, timeout):
    """Reads the guest's after-cut report (verify and export run inside the guest before
    the daemon starts); returns (problems, job states)."""
    verify, export, block = [], [], None
    problems, states = [], {}
    for line in boot.lines(timeout):
        if line.startswith("POWERLOSS-GUEST-FAILED"):
            raise HarnessError(f"boot {boot.number}: {line}")
        if line == "POWERLOSS-NO-JOURNAL":
            if ledger.acked:
                problems.append("the journal is gone after the cut")
        elif line == "POWERLOSS-VERIFY-BEGIN":
            block = verify
        elif line == "POWERLOSS-EXPORT-BEGIN":
            block = export
        elif line.startswith("POWERLOSS-VERIFY-END"):
            block = None
            problems += judge_verify("\n".join(verify), int(line.split()[-1]))
        elif line.startswith("POWERLOSS-EXPORT-END"):
            block = None
            found, states = judge_export(export, int(line.split()[-1]), ledger)
            problems += found
        elif line.startswith("POWERLOSS-DAEMON-START"):
            return problems, states
        elif block is not None:
            block.append(line)
    raise HarnessError("unreachable")


def check_on_host(workload, binary, ledger, refill=0):
    """The same checks on the host, between the cut and the next boot: the data disk is
    loop-mounted at the path the guest uses (so the journal's paths hold), which replays
    the ext4 journal as the guest's next mount would, and verify/export run natively
    (seconds instead of a minute of TCG). Returns (problems, job states)."""
    mount_point = os.path.join(workload.root, "guest")
    state = os.path.join(mount_point, "state")
    run(["mount", "-o", "loop", workload.disk, mount_point])
    try:
        if not os.path.exists(os.path.join(state, "journal.sqlite")):
            return (["the journal is gone after the cut"] if ledger.acked else []), {}
        verify = subprocess.run([binary, "verify", "--state-dir", state, "--json"],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        problems = judge_verify(verify.stdout, verify.returncode)
        export = subprocess.run([binary, "journal", "export", "--state-dir", state],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        found, states = judge_export(export.stdout.splitlines(), export.returncode, ledger)
        if export.returncode == 0:
            different, resumed = compare_published(workload, export.stdout.splitlines())
            found += different
            workload.resumed_copies = resumed
        if refill and len(states) == len(workload.inputs) and all(s in FINISHED for s in states.values()):
            # Every job is done but cuts remain: queue more work so the next cuts land
            # in stages again rather than in an idle daemon.
            workload.add_chunked_input(os.path.join(mount_point, "queue"))
            workload.add_inputs(os.path.join(mount_point, "queue"), refill)
        return problems + found, states
    finally:
        run(["umount", mount_point])


def wait_for_daemon(boot, timeout):
    for line in boot.lines(timeout):
        if line.startswith("POWERLOSS-GUEST-FAILED"):
            raise HarnessError(f"boot {boot.number}: {line}")
        if line.startswith("POWERLOSS-DAEMON-START"):
            return


def follow_daemon(boot, ledger, rng, policy, jobs, timeout, chunked=()):
    """Follows the daemon's log until the cut policy says cut; returns what was cut after.
    Policy "copy": 1-8 s into the convert stage of an input named in `chunked` (a copy of
    several chunks, and the hashes beside it), or at once if that stage ends first."""
    commits_left = rng.randint(1, 3)
    random_deadline = time.monotonic() + rng.uniform(2.0, 25.0) if policy == "random" else None
    last = "daemon start"
    cut_at = None
    if len(ledger.published) == jobs:
        # Nothing left to commit: cut while the daemon idles.
        cut_at = time.monotonic() + rng.uniform(0.5, 3.0)
    for line in boot.lines(timeout, idle=True):
        if line is not None and line.startswith("POWERLOSS-DAEMON-EXIT"):
            raise HarnessError(f"boot {boot.number}: the daemon exited: {line}")
        key = ledger.note(line) if line is not None else None
        now = time.monotonic()
        if key is not None:
            last = f"{key[1]} {key[2] or ''} job {key[0]}".strip()
            if policy == "commit" and key[1] != "stage-started" and cut_at is None:
                commits_left -= 1
                if commits_left == 0 or len(ledger.published) == jobs:
                    # Shortly after an acknowledged commit, before the guest's writeback.
                    cut_at = now + rng.uniform(0.5, 3.0)
            if policy == "final" and len(ledger.published) == jobs and cut_at is None:
                cut_at = now + rng.uniform(0.5, 3.0)
            chunked_jobs = {ledger.job_of_name[name] for name in chunked if name in ledger.job_of_name}
            if policy == "copy" and key[0] in chunked_jobs and key[2] == "convert":
                if key[1] == "stage-started" and cut_at is None:
                    cut_at = now + rng.uniform(1.0, 8.0)
                elif key[1] == "stage-completed":
                    cut_at = now
        if random_deadline is not None and now >= random_deadline:
            return last
        if cut_at is not None and now >= cut_at:
            return last
    return last


def start_boot(number, workload, binary, image, check_in_guest, timeout):
    """Boots the guest; a kernel panic before the guest's first line (a TCG guest starved of
    CPU can fail its early timer checks) is retried twice, with a note on stderr."""
    for attempt in range(3):
        boot = Boot(number, workload, binary, image, check_in_guest)
        try:
            boot.peek_first_line(timeout)
            return boot
        except HarnessError as e:
            boot.cut()
            if attempt == 2 or "qemu exited" not in str(e):
                raise
            log(f"boot {number} failed before the guest started ({e}); booting again")
    raise HarnessError("unreachable")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cuts", type=int, default=20, help="power cuts while jobs run (default 20)")
    parser.add_argument("--binary", default=os.path.join(REPO, ".build/debug/hyper2kvm"), help="hyper2kvm binary to test")
    parser.add_argument("--jobs", type=int, default=4, help="inputs queued at the start (default 4)")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--expect-failure", action="store_true",
                        help="negative control: succeed only if some cut loses a committed artifact")
    parser.add_argument("--keep", action="store_true", help="keep the run directory")
    parser.add_argument("--json", metavar="FILE", help="write the summary as JSON to FILE")
    parser.add_argument("--check-in-guest", action="store_true",
                        help="run verify/export inside the rebooted guest (slow under TCG) instead of on the host")
    parser.add_argument("--boot-timeout", type=float, default=600.0, help="seconds without a line from the guest before the run is an error (default 600)")
    args = parser.parse_args()

    binary = os.path.abspath(args.binary)
    if not os.access(binary, os.X_OK):
        raise SystemExit(f"powerloss: {binary} is not an executable (build it first)")
    subprocess.run([os.path.join(HERE, "build-guest")], check=True)
    image = {"root": f"{CACHE}/powerloss-guest.qcow2", "kernel": f"{CACHE}/powerloss-guest.vmlinuz",
             "initrd": f"{CACHE}/powerloss-guest.initrd"}

    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 32)
    rng = random.Random(seed)
    base = os.environ.get("HYPER2KVM_POWERLOSS_DIR", "/var/tmp/hyper2kvm-powerloss")
    os.makedirs(base, exist_ok=True)
    root = os.path.join(base, f"run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
    os.makedirs(root)
    log(f"run directory {root}, seed {seed}, binary {binary}")
    workload = Workload(root, args.jobs, rng)
    ledger = Ledger()

    cuts = []        # one entry per cut: what it followed, seconds, problems found after it
    boots = 0
    final_states = {}
    started = time.monotonic()
    error = None
    boot = None
    try:
        cut_number = 0
        while True:
            if boots > args.cuts + 2 * args.jobs + 8:
                raise HarnessError(f"jobs still unfinished after {boots} boots")
            boot_started = time.monotonic()
            if args.check_in_guest:
                boots += 1
                boot = start_boot(boots, workload, binary, image, True, args.boot_timeout)
                problems, states = check_in_guest(boot, ledger, args.boot_timeout)
            else:
                refill = args.jobs if cut_number < args.cuts else 0
                problems, states = check_on_host(workload, binary, ledger, refill) if cuts else ([], {})
            if cuts:
                earlier = set(cuts[-2]["problems"]) if len(cuts) > 1 else set()
                cuts[-1]["problems"] = problems
                # A damaged artifact stays recorded until its stage is redone, so the next
                # cut can report it again: "new" counts the losses this cut caused.
                cuts[-1]["new_problems"] = [p for p in problems if p not in earlier]
                cuts[-1]["check_seconds"] = round(time.monotonic() - boot_started, 1)
                status = "FAILED: " + "; ".join(problems) if problems else "ok"
                log(f"after cut {len(cuts)}: {status}")
            final_states = states
            ledger.published |= {job for job, state in states.items() if state in FINISHED}
            all_done = states and len(states) == len(workload.inputs) and all(s in FINISHED for s in states.values())
            if cut_number > args.cuts and all_done:
                if boot is not None:
                    boot.cut()
                break
            if not args.check_in_guest:
                boots += 1
                boot = start_boot(boots, workload, binary, image, False, args.boot_timeout)
                wait_for_daemon(boot, args.boot_timeout)
            if cut_number == 0 and args.cuts > 0:
                # The first cut lands in the multi-chunk copy (CI runs one cut).
                policy = "copy"
            elif cut_number < args.cuts:
                policy = "random" if rng.random() < 0.25 else "commit"
            else:
                policy = "final"
            daemon_started = time.monotonic()
            last = follow_daemon(boot, ledger, rng, policy, len(workload.inputs), args.boot_timeout, workload.chunked)
            boot.cut()
            cut_number += 1
            cuts.append({"cut": cut_number, "policy": policy, "after": last,
                         "run_seconds": round(time.monotonic() - daemon_started, 1),
                         "boot_seconds": round(daemon_started - boot_started, 1)})
            log(f"cut {cut_number} ({policy}) after {last}")
            if policy == "final":
                cut_number = args.cuts + 1
    except HarnessError as e:
        error = str(e)
        log(f"ERROR: {e}")
    finally:
        if boot is not None:
            boot.cut()
        if os.path.ismount(os.path.join(root, "guest")):
            subprocess.run(["umount", os.path.join(root, "guest")])

    failed_cuts = [c for c in cuts if c.get("problems")]
    losing_cuts = [c for c in cuts if c.get("new_problems")]
    unfinished = {job: state for job, state in final_states.items() if state not in FINISHED}
    if error is None and (len(final_states) != len(workload.inputs) or unfinished):
        error = f"jobs not finished at the end: {final_states}"
    elapsed = time.monotonic() - started
    summary = {
        "seed": seed, "binary": binary, "jobs": len(workload.inputs), "cuts": len(cuts), "boots": boots,
        "failed_cuts": len(failed_cuts), "cuts_with_new_loss": len(losing_cuts), "error": error, "seconds": round(elapsed, 1),
        "copies_resumed_mid_disk": workload.resumed_copies,
        "seconds_per_cut": round(elapsed / max(len(cuts), 1), 1),
        "final_states": {str(k): v for k, v in final_states.items()}, "details": cuts, "run_directory": root,
    }
    if args.json:
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
    log(f"{len(cuts)} cuts ({boots} boots) in {elapsed:.0f} s, {elapsed / max(len(cuts), 1):.1f} s per cut; "
        f"{len(failed_cuts)} cut(s) found committed data lost ({len(losing_cuts)} with a new loss); "
        f"{workload.resumed_copies} copy(ies) resumed inside a disk"
        + (f"; error: {error}" if error else ""))

    if args.expect_failure:
        ok = len(failed_cuts) > 0
        log("negative control: " + ("the loss was detected" if ok else "NOTHING detected: the harness cannot see lost writes"))
    else:
        ok = not failed_cuts and error is None
    if ok and not args.keep:
        shutil.rmtree(root, ignore_errors=True)
    elif not ok:
        log(f"kept {root} (console-N.log, acks-N.log)")
    sys.exit(0 if ok else (2 if error and not failed_cuts else 1))


if __name__ == "__main__":
    main()
