"""Measurement helpers shared by bench/daemon and bench/resume (Python 3 standard library only).

Runs the real release daemon as a child process, timestamps each of its log lines as it
arrives, reads its CPU, context switches and memory from /proc, and reads the journal
(SQLite) read-only the way `hyper2kvm status` does.
"""

import atexit
import datetime
import os
import shutil
import re
import signal
import sqlite3
import statistics
import subprocess
import threading
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def log(tag, message):
    print(f"[{tag}] {message}", file=os.sys.stderr, flush=True)


def build_release(tag):
    """Builds the product into .build-bench (shared with the other bench scripts; SwiftPM
    serialises concurrent builds on its lock) and returns a private copy of the binary, so
    a rebuild by another script cannot swap it while we measure."""
    log(tag, "building release (scratch path .build-bench)")
    subprocess.run(["swift", "build", "-c", "release", "--product", "hyper2kvm", "--scratch-path", ".build-bench"],
                   cwd=REPO, check=True, stdout=os.sys.stderr)
    return private_binary(os.path.join(REPO, ".build-bench", "release", "hyper2kvm"))


def private_binary(path):
    cache = os.environ.get("HYPER2KVM_BENCH_CACHE", "/var/tmp/hyper2kvm-bench")
    # The copy keeps the name `hyper2kvm`: the daemon runs its source reader and guest fixer
    # as children of that name beside its own executable, and a renamed copy would not find them.
    directory = os.path.join(cache, "bin", str(os.getpid()))
    os.makedirs(directory, exist_ok=True)
    copied = []
    source_directory = os.path.dirname(os.path.abspath(path))
    for name in sorted(os.listdir(source_directory)):
        if name != os.path.basename(path) and not name.startswith("hyper2kvm-"):
            continue
        source = os.path.join(source_directory, name)
        if not (os.path.isfile(source) and os.access(source, os.X_OK)):
            continue
        target = os.path.join(directory, "hyper2kvm" if name == os.path.basename(path) else name)
        with open(source, "rb") as src, open(target + ".tmp", "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        os.chmod(target + ".tmp", 0o755)
        os.rename(target + ".tmp", target)
        copied.append(target)
    atexit.register(lambda: shutil.rmtree(directory, ignore_errors=True))
    return os.path.join(directory, "hyper2kvm")


# --- the daemon as a child ---------------------------------------------------------------

class Daemon:
    """`hyper2kvm daemon --base-dir BASE --config CONFIG`, with every stderr line kept as
    (monotonic time of arrival, wall time of arrival, text)."""

    def __init__(self, binary, base, config, env=None):
        self.base = base
        self.lines = []
        self._cond = threading.Condition()
        self.exec_wall = time.time()
        self.exec_mono = time.monotonic()
        self.proc = subprocess.Popen([binary, "daemon", "--base-dir", base, "--config", config],
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     env=env, text=True, errors="replace", bufsize=1)
        self.pid = self.proc.pid
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stderr:
            stamp = (time.monotonic(), time.time(), line.rstrip("\n"))
            with self._cond:
                self.lines.append(stamp)
                self._cond.notify_all()
        with self._cond:
            self._cond.notify_all()

    def wait_for(self, pattern, count=1, timeout=60.0, start=0):
        """Waits until `count` lines from index `start` on match `pattern`; returns the
        matching (mono, wall, text) tuples. Raises on timeout or when the daemon exits."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                hits = [entry for entry in self.lines[start:] if regex.search(entry[2])]
                if len(hits) >= count:
                    return hits[:count]
                if self.proc.poll() is not None and not self._reader.is_alive():
                    raise RuntimeError(f"daemon exited ({self.proc.returncode}) before '{pattern}' x{count}; "
                                       f"last lines:\n" + "\n".join(e[2] for e in self.lines[-15:]))
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"'{pattern}' seen {len(hits)}/{count} times after {timeout} s; last lines:\n"
                                       + "\n".join(e[2] for e in self.lines[-15:]))
                self._cond.wait(min(left, 0.5))

    def line_count(self):
        with self._cond:
            return len(self.lines)

    def stop(self, timeout=60.0):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        return self.proc.returncode


# --- /proc ---------------------------------------------------------------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def proc_snapshot(pid):
    """Context switches summed over every thread, CPU seconds (user+sys), threads, VmRSS
    and VmHWM in KiB."""
    per_thread = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        counts = [0, 0]
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches:"):
                        counts[0] = int(line.split()[1])
                    elif line.startswith("nonvoluntary_ctxt_switches:"):
                        counts[1] = int(line.split()[1])
        except FileNotFoundError:
            continue  # a thread ended between listdir and open
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                counts.append(f.read().strip())
        except OSError:
            counts.append("?")
        per_thread[tid] = counts
    fields = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    with open(f"/proc/{pid}/stat") as f:
        stat = f.read().rsplit(")", 1)[1].split()
    cpu = (int(stat[11]) + int(stat[12])) / CLOCK_TICKS  # utime, stime (fields 14, 15)
    rollup = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                key, _, value = line.partition(":")
                if value.strip().endswith("kB"):
                    rollup[key] = int(value.split()[0])
    except OSError:
        pass
    return {
        "per_thread": per_thread, "cpu_s": cpu,
        "rss_anon_kib": int(fields.get("RssAnon", "0 kB").split()[0]),
        "rss_file_kib": int(fields.get("RssFile", "0 kB").split()[0]),
        # Pss shares each shared-library page among the processes that map it; Private_* is
        # what this process alone costs.
        "pss_kib": rollup.get("Pss", 0),
        "private_kib": rollup.get("Private_Clean", 0) + rollup.get("Private_Dirty", 0),
        "threads": int(fields.get("Threads", "0")),
        "rss_kib": int(fields.get("VmRSS", "0 kB").split()[0]),
        "hwm_kib": int(fields.get("VmHWM", "0 kB").split()[0]),
    }


def switches_between(before, after):
    """Context switches between two snapshots, per thread: threads alive in `after` count
    from their `before` value (or from 0 when they started in between). Switches of threads
    that ended in between are lost, so `perf stat` is the better figure when it exists."""
    return sum(switches_by_thread(before, after).values())


def switches_by_thread(before, after):
    """Context switches between two snapshots per thread, keyed "tid comm"."""
    deltas = {}
    for tid, (vol, invol, comm) in after["per_thread"].items():
        old = before["per_thread"].get(tid, [0, 0, comm])
        deltas[f"{tid} {comm}"] = (vol - old[0]) + (invol - old[1])
    return deltas


def perf_available():
    try:
        out = subprocess.run(["perf", "stat", "-x,", "-e", "context-switches", "--", "true"],
                             capture_output=True, text=True, timeout=20)
        return out.returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def perf_stat_start(pid, seconds):
    """`perf stat -p PID` for `seconds`; returns the Popen (collect with perf_stat_result)."""
    return subprocess.Popen(["perf", "stat", "-x,", "-e", "context-switches,cpu-migrations,page-faults,task-clock",
                             "-p", str(pid), "--", "sleep", str(seconds)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def perf_stat_result(proc):
    _, err = proc.communicate()
    values = {}
    for line in err.splitlines():
        parts = line.split(",")
        if len(parts) >= 3 and parts[2]:
            raw = parts[0]
            values[parts[2]] = 0.0 if raw.startswith("<not") else float(raw)
    return values


# --- journal -------------------------------------------------------------------------------

def journal_connect(state_dir):
    """Read-only connection; WAL lets it read while the daemon writes."""
    path = os.path.join(state_dir, "journal.sqlite")
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    conn.execute("PRAGMA busy_timeout = 10000")
    return conn


def iso_to_epoch(text):
    """The journal's "2026-01-31T12:00:00.000Z" as seconds since the epoch."""
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def epoch_to_iso(seconds):
    moment = datetime.datetime.fromtimestamp(seconds, tz=datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


# --- figures -------------------------------------------------------------------------------

def median(values):
    return statistics.median(values) if values else float("nan")


def machine_line():
    cpu = "?"
    flags = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and cpu == "?":
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line
    sha = "SHA-NI" if " sha_ni" in flags else "no SHA-NI"
    with open("/proc/loadavg") as f:
        load = " ".join(f.read().split()[:3])
    return f"{os.cpu_count()} CPUs, {cpu} ({sha}), kernel {os.uname().release}; load average {load}"


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def small_qcow2_images(directory, count, prefix="img"):
    """`count` small valid qcow2 images with distinct content (so deduplication never
    calls one a copy of another): one made by qemu-img (1 MiB, 64 KiB of it data), the others the same file with
    another virtual size (1 MiB + i x 64 KiB; one L1 entry covers 512 MiB, so the header
    stays valid)."""
    os.makedirs(directory, exist_ok=True)
    template = os.path.join(directory, ".template.qcow2")
    raw = template + ".raw"
    # One 64 KiB data cluster: the file then ends on a cluster boundary. (A bare
    # `qemu-img create` image is 196,616 bytes, less than its image-end-offset 262,144, and
    # the product's probe rejects it as truncated; see BENCHMARKS.md.)
    with open(raw, "wb") as f:
        f.write(os.urandom(65536))
        f.truncate(1 << 20)
    subprocess.run(["qemu-img", "convert", "-q", "-f", "raw", "-O", "qcow2", raw, template], check=True)
    os.unlink(raw)
    with open(template, "rb") as f:
        data = bytearray(f.read())
    os.unlink(template)
    names = []
    for i in range(count):
        size = (1 << 20) + i * 65536
        data[24:32] = size.to_bytes(8, "big")
        name = f"{prefix}-{i:04d}.qcow2"
        with open(os.path.join(directory, name), "wb") as f:
            f.write(data)
        names.append(name)
    return names
