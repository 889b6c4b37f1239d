"""One table of every figure of issue 8 next to its reference, from the reports bench/run
collected in one directory: convert.md, journal.md, daemon.json, resume.json, v2v.md.

  python3 bench/lib/summary.py RUN_DIR [COMMAND]
"""

import json
import os
import re
import statistics
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import benchlib as B  # noqa: E402


def read(path):
    try:
        with open(path) as f:
            return f.read()
    except FileNotFoundError:
        return None


def table_row(markdown, label):
    """Cells of the markdown table row whose first cell is `label`."""
    if not markdown:
        return None
    for line in markdown.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells and cells[0] == label:
            return cells
    return None


def num(text):
    match = re.search(r"-?[0-9]+(\.[0-9]+)?", text or "")
    return float(match.group(0)) if match else None


def verdict(value, op, limit):
    if value is None:
        return "—"
    ok = value <= limit if op == "<=" else (value < limit if op == "<" else value >= limit)
    return "met" if ok else "**missed**"


def fmt(value, unit="", digits=2):
    return "—" if value is None else f"{value:.{digits}f}{unit}"


def main():
    run = sys.argv[1]
    command = sys.argv[2] if len(sys.argv) > 2 else "bench/run"
    rows = []

    def add(item, figure, ours, reference, ratio, goal, verdict_text):
        rows.append(f"| {item} | {figure} | {ours} | {reference} | {ratio} | {goal} | {verdict_text} |")

    # 1. end-to-end vs virt-v2v
    v2v = read(os.path.join(run, "v2v.md"))
    wall = table_row(v2v, "wall s")
    if wall:
        ratio = num(wall[3])
        add(1, "end-to-end test guest, fixes on (wall s)", wall[1], f"virt-v2v {wall[2]}", fmt(ratio, "×"),
            "≤ 0.7×", verdict(ratio, "<=", 0.7))
        rss = table_row(v2v, "peak RSS MiB (largest process)")
        if rss:
            add(1, "… peak RSS MiB", rss[1], rss[2], "", "", "")
        boots = [r for r in (v2v or "").splitlines() if r.startswith("| boots")]
        if boots:
            cells = [c.strip() for c in boots[0].strip("|").split("|")]
            add(1, "… output boots (virtio, TCG)", cells[1], cells[2], "", "boots", "")
    else:
        add(1, "end-to-end vs virt-v2v", "not run", "", "", "≤ 0.7×", "—")

    # 2. pipeline (fix excluded) vs qemu-img; 3. SHA-256 vs openssl
    convert = read(os.path.join(run, "convert.md"))
    size = re.search(r"## bench/convert — (\d+) GiB", convert or "")
    size_text = f"{size.group(1)} GiB" if size else "?"
    pairs = [
        ("pipeline --no-fix --no-checksum", "hyper2kvm convert --no-fix --no-checksum", "bare `qemu-img convert -O qcow2`"),
        ("pipeline --no-fix (SHA-256 on)", "hyper2kvm convert --no-fix (SHA-256 on)", "bare `qemu-img convert -O qcow2`"),
        ("pipeline --no-fix --compress --no-checksum", "hyper2kvm convert --no-fix --compress --no-checksum",
         "bare `qemu-img convert -c zstd`"),
        ("pipeline --no-fix --compress (SHA-256 on)", "hyper2kvm convert --no-fix --compress (SHA-256 on)",
         "bare `qemu-img convert -c zstd`"),
    ]
    for figure, label, ref_label in pairs:
        ours, ref = table_row(convert, label), table_row(convert, ref_label)
        if ours and ref:
            ratio = num(ours[4])
            add(2, f"{figure}, {size_text} half-random (wall s)", ours[1], f"qemu-img {ref[1]}", fmt(ratio, "×"),
                "≤ 1.10×", verdict(ratio, "<=", 1.10))
    for mode in ("warm", "cold"):
        ours = table_row(convert, f"FileDigest.sha256 (digest-bench), {mode}")
        ref = table_row(convert, f"openssl dgst -sha256, {mode}")
        if ours and ref:
            # The paired ratio (each run's own openssl/FileDigest) when the report has it:
            # medians of separate runs swing with the host's CPU speed.
            paired = len(ours) > 5
            ratio = num(ours[5] if paired else ours[3])
            detail = f"wall; median of per-run ratios, medians {ours[3]}" if paired else "wall"
            add(3, f"SHA-256 MB/s, 1 GiB, {mode} ({detail}; CPU {ours[2]} vs {ref[2]})", ours[1], f"openssl {ref[1]}",
                fmt(ratio, "×"), "≥ 0.95×", verdict(ratio, ">=", 0.95))
    if not convert:
        add("2–3", "pipeline vs qemu-img; SHA-256 vs openssl", "not run", "", "", "", "—")

    # 4. journal
    journal = read(os.path.join(run, "journal.md"))
    match = re.search(r"journal API: ([0-9.]+) transitions/s.*raw SQLite: ([0-9.]+) inserts/s; ratio ([0-9.]+)%",
                      journal or "")
    if match:
        api, raw, pct = float(match.group(1)), float(match.group(2)), float(match.group(3))
        add(4, "journal transitions/s (WAL, synchronous=FULL)", f"{api:.0f}", f"raw SQLite {raw:.0f}",
            f"{pct / 100:.2f}×", "≥ 0.25× (bench/journal)", verdict(pct / 100, ">=", 0.25))
    else:
        add(4, "journal transitions/s", "not run", "", "", "", "—")

    # 5. resume
    resume = read(os.path.join(run, "resume.json"))
    if resume:
        r = json.loads(resume)
        first = [x["first_resumed_s"] for x in r["rounds"]]
        started = [x["first_stage_started_s"] for x in r["rounds"]]
        med, mx = statistics.median(first), max(first)
        add(5, f"restart → first `resumed` ({r['finished']} finished + {r['unfinished']} unfinished jobs), "
               f"median / max of {len(first)}", f"{med * 1000:.0f} / {mx * 1000:.0f} ms", "", "",
            "< 500 ms", verdict(mx, "<", 0.5))
        add(5, "restart → first stage of a resumed job running", f"{statistics.median(started) * 1000:.0f} / "
               f"{max(started) * 1000:.0f} ms", "", "", "", "")
    else:
        add(5, "restart-to-resumed", "not run", "", "", "< 500 ms", "—")

    # 6. daemon
    daemon = read(os.path.join(run, "daemon.json"))
    if daemon:
        d = json.loads(daemon)
        idle, ren, burst = d["idle"], d["rename"], d["burst"]
        perf = idle.get("perf_context_switches")
        wake = perf / idle["seconds"] if perf is not None else idle["wakeups_per_s"]
        source = "perf stat" if perf is not None else "/proc"
        by_thread = idle.get("by_thread", {})
        others = sum(v for k, v in by_thread.items() if not k.endswith("qos.overcommit"))
        where = (f"; all but {others} in libdispatch's manager thread (1 Hz workqueue monitor)"
                 if by_thread and others < idle["ctxt_switches"] else "")
        add(6, f"idle wakeups/s over {idle['seconds']:.0f} s ({source}; /proc: {idle['wakeups_per_s']:.2f}/s{where})",
            f"{wake:.2f}", "", "", "~0 (no polling)", verdict(wake, "<", 0.5))
        pss = f" (PSS {idle['pss_mib']:.1f}, private {idle['private_mib']:.1f})" if "pss_mib" in idle else ""
        add(6, "idle RSS MiB (VmRSS)", f"{idle['rss_mib']:.1f}{pss}", "", "", "< 40 MiB",
            verdict(idle["rss_mib"], "<", 40))
        mx = max(ren["log_s"])
        add(6, f"rename → queued (log line), median / max of {ren['samples']}",
            f"{B.median(ren['log_s']) * 1000:.0f} / {mx * 1000:.0f} ms", "", "", "< 200 ms", verdict(mx, "<", 0.2))
        add(6, f"burst: {burst['files']} files renamed in at once → all queued",
            f"{burst['all_queued_log_s']:.2f} s ({burst['files'] / burst['all_queued_log_s']:.0f}/s)", "", "", "", "")
    else:
        add(6, "daemon idle / rename / burst", "not run", "", "", "", "—")

    load_start = (read(os.path.join(run, "load-start")) or "?").strip()
    load_end = (read(os.path.join(run, "load-end")) or "?").strip()
    print(f"""# bench/run summary

Command: `{command}` — reports and raw figures in `{run}`.

**Machine:** {B.machine_line().split('; load')[0]}; qemu-img {qemu_version()}.
Load average at start / end: {load_start} / {load_end} (2 CPUs; other work shares this host).

| # | Figure | hyper2kvm | Reference (same run) | Ratio | Goal | Verdict |
|---|---|---:|---:|---:|---|---|""")
    print("\n".join(rows))


def qemu_version():
    import subprocess
    try:
        out = subprocess.run(["qemu-img", "--version"], capture_output=True, text=True).stdout
        return out.split("\n")[0].replace("qemu-img version ", "")
    except OSError:
        return "?"


if __name__ == "__main__":
    main()
