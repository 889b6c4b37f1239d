/// The live status page at `/`: one document with its style and script inline, no external
/// asset, so it works on a host without internet access and the CSP can forbid every other
/// source. It polls `/api/v1/jobs` and `/api/v1/overview` every two seconds. Everything a
/// queue file's name or an error message puts on the page goes through `textContent`, never
/// HTML: those strings are chosen by whoever dropped the file.
enum StatusPage {
    static let contentSecurityPolicy =
        "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

    static let html = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>hyper2kvm</title>
<style>
  :root { --bg:#f6f7f9; --card:#fff; --ink:#1c2430; --muted:#667085; --line:#e3e6ea; --ok:#1a7f37; --bad:#c62828; --warn:#b26a00; --bar:#2f6fde; }
  * { box-sizing: border-box; }
  body { margin:0; font:14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; background:var(--bg); color:var(--ink); }
  header { display:flex; align-items:center; gap:16px; padding:12px 20px; background:#1c2430; color:#fff; }
  header h1 { font-size:18px; margin:0; font-weight:600; }
  header .meta { color:#c7cdd6; font-size:12px; }
  #ready { margin-left:auto; padding:3px 10px; border-radius:12px; font-weight:600; font-size:12px; }
  #ready.ok { background:var(--ok); } #ready.bad { background:var(--bad); }
  main { padding:16px 20px; display:grid; gap:16px; grid-template-columns: minmax(0,3fr) minmax(260px,1fr); }
  section { background:var(--card); border:1px solid var(--line); border-radius:8px; padding:12px 16px; }
  h2 { font-size:15px; margin:0 0 8px; }
  table { width:100%; border-collapse:collapse; }
  th, td { text-align:left; padding:6px 8px; border-bottom:1px solid var(--line); vertical-align:top; }
  th { color:var(--muted); font-weight:500; font-size:12px; }
  td.num { text-align:right; font-variant-numeric: tabular-nums; white-space:nowrap; }
  .src { font-family: ui-monospace, Menlo, Consolas, monospace; font-size:12px; word-break:break-all; }
  .bar { position:relative; height:14px; background:#e8ecf2; border-radius:7px; overflow:hidden; min-width:120px; }
  .bar > span { position:absolute; left:0; top:0; bottom:0; background:var(--bar); transition: width .6s; }
  .bar > em { position:relative; display:block; text-align:center; font-size:10px; line-height:14px; font-style:normal; }
  .state { font-size:12px; padding:1px 7px; border-radius:10px; background:#eef1f5; white-space:nowrap; }
  .state.failed { background:#fde8e8; color:var(--bad); } .state.published, .state.archived { background:#e6f4ea; color:var(--ok); }
  .err { color:var(--bad); font-size:12px; white-space:pre-wrap; word-break:break-word; }
  .disk { font-size:12px; color:var(--muted); }
  dl { display:grid; grid-template-columns:auto 1fr; gap:4px 10px; margin:0; font-size:13px; }
  dt { color:var(--muted); } dd { margin:0; word-break:break-all; }
  .empty { color:var(--muted); font-style:italic; }
  .problems { color:var(--bad); font-size:12px; margin:6px 0 0; padding-left:18px; }
  details pre { font-size:11px; background:#f3f4f6; padding:6px; overflow:auto; max-height:260px; }
  @media (max-width: 900px) { main { grid-template-columns: 1fr; } }
</style>
</head>
<body>
<header>
  <h1>hyper2kvm</h1>
  <span class="meta" id="version"></span>
  <span class="meta" id="updated">loading…</span>
  <span id="ready"></span>
</header>
<main>
  <div style="display:grid; gap:16px; align-content:start">
    <section><h2>Running and queued</h2><table id="active"></table></section>
    <section><h2>Failed</h2><table id="failed"></table></section>
    <section><h2>Done</h2><table id="done"></table></section>
  </div>
  <div style="display:grid; gap:16px; align-content:start">
    <section><h2>Free space</h2><dl id="space"></dl><ul class="problems" id="problems"></ul></section>
    <section><h2>Configuration</h2><dl id="config"></dl></section>
    <section><h2>Jobs</h2><dl id="counts"></dl></section>
  </div>
</main>
<script>
"use strict";
const DONE = new Set(["published", "archived", "duplicate"]);
const el = (tag, props, ...kids) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "text") node.textContent = v; else if (k === "class") node.className = v; else node.setAttribute(k, v);
  }
  for (const kid of kids) if (kid !== null && kid !== undefined) node.append(kid);
  return node;
};
const bytes = n => {
  if (n === null || n === undefined || !isFinite(n)) return "–";
  const units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]; let i = 0;
  while (Math.abs(n) >= 1024 && i < units.length - 1) { n /= 1024; i++; }
  return (i ? n.toFixed(1) : String(n)) + " " + units[i];
};
const duration = s => {
  if (s === null || s === undefined || !isFinite(s)) return "–";
  s = Math.max(0, Math.round(s));
  const h = Math.floor(s / 3600), m = Math.floor(s % 3600 / 60), r = s % 60;
  return h ? `${h} h ${m} min` : m ? `${m} min ${r} s` : `${r} s`;
};
const bar = fraction => {
  if (fraction === null || fraction === undefined) return el("span", {class: "empty", text: "–"});
  const pct = Math.max(0, Math.min(100, fraction * 100));
  const fill = el("span"); fill.style.width = pct.toFixed(1) + "%";
  return el("div", {class: "bar", role: "progressbar", "aria-valuenow": pct.toFixed(0), "aria-valuemin": "0", "aria-valuemax": "100"},
            fill, el("em", {text: pct.toFixed(0) + "%"}));
};
const name = path => { const parts = String(path).split("/"); return parts[parts.length - 1] || String(path); };
const fill = (table, head, rows, emptyText) => {
  table.replaceChildren();
  if (!rows.length) { table.append(el("tr", {}, el("td", {class: "empty", text: emptyText}))); return; }
  table.append(el("tr", {}, ...head.map(h => el("th", {text: h}))));
  for (const row of rows) table.append(row);
};
// A job's own rate and ETA (and per-disk figures) win when the journal provides them;
// otherwise the endpoint's estimate from the progress it has seen.
const estimateOf = (job, estimates) => {
  if (job.bytes_per_second !== undefined || job.eta_seconds !== undefined)
    return {bytes_per_second: job.bytes_per_second, eta_seconds: job.eta_seconds};
  return estimates[String(job.id)] || null;
};
const historyLink = job => {
  const details = el("details", {}, el("summary", {text: "history"}));
  const link = el("a", {href: "/api/v1/jobs/" + encodeURIComponent(job.id), text: "JSON"});
  details.append(link);
  details.addEventListener("toggle", async () => {
    if (!details.open || details.dataset.loaded) return;
    details.dataset.loaded = "1";
    try {
      const doc = await (await fetch("/api/v1/jobs/" + encodeURIComponent(job.id))).json();
      const lines = (doc.transitions || []).map(t => `${t.at}  ${t.from || "∅"} → ${t.to}${t.stage ? " [" + t.stage + " #" + t.attempt + "]" : ""}${t.detail ? "  " + t.detail : ""}`);
      details.append(el("pre", {text: lines.join("\n")}));
    } catch (e) { details.append(el("div", {class: "err", text: String(e)})); }
  });
  return details;
};
function render(status, overview) {
  const jobs = status.jobs || [];
  const estimates = overview.estimates || {};
  const active = jobs.filter(j => !DONE.has(j.state) && j.state !== "failed");
  const failed = jobs.filter(j => j.state === "failed").reverse();
  const done = jobs.filter(j => DONE.has(j.state)).reverse().slice(0, 50);
  fill(document.getElementById("active"), ["Job", "Source", "State", "Stage", "Progress", "Rate", "ETA"],
    active.map(job => {
      const est = estimateOf(job, estimates);
      const source = el("td", {class: "src", title: job.sourcePath, text: name(job.sourcePath)});
      for (const disk of job.disks || []) {
        source.append(el("div", {class: "disk", text: `${disk.name || "disk"}: ${disk.progress !== undefined ? Math.round(disk.progress * 100) + "%" : ""} ${disk.bytes_per_second !== undefined ? bytes(disk.bytes_per_second) + "/s" : ""} ${disk.eta_seconds !== undefined ? "ETA " + duration(disk.eta_seconds) : ""}`}));
      }
      return el("tr", {"data-job": job.id, "data-state": job.state},
        el("td", {class: "num", text: String(job.id)}), source,
        el("td", {}, el("span", {class: "state " + job.state, text: job.state})),
        el("td", {text: job.stage || "–"}), el("td", {}, bar(job.progress)),
        el("td", {class: "num", text: est && est.bytes_per_second !== undefined ? bytes(est.bytes_per_second) + "/s" : "–"}),
        el("td", {class: "num", text: est ? duration(est.eta_seconds) : "–"}));
    }), "nothing running or waiting");
  fill(document.getElementById("failed"), ["Job", "Source", "Stage", "Error", ""],
    failed.map(job => el("tr", {"data-job": job.id, "data-state": job.state},
      el("td", {class: "num", text: String(job.id)}), el("td", {class: "src", title: job.sourcePath, text: name(job.sourcePath)}),
      el("td", {text: job.stage || "–"}), el("td", {class: "err", text: job.error || "(no message)"}), el("td", {}, historyLink(job)))),
    "no failed jobs");
  fill(document.getElementById("done"), ["Job", "Source", "State", "Output", "Finished", ""],
    done.map(job => el("tr", {"data-job": job.id, "data-state": job.state},
      el("td", {class: "num", text: String(job.id)}), el("td", {class: "src", title: job.sourcePath, text: name(job.sourcePath)}),
      el("td", {}, el("span", {class: "state " + job.state, text: job.state})),
      el("td", {class: "src", text: job.outputPath || "–"}), el("td", {text: job.updatedAt || ""}), el("td", {}, historyLink(job)))),
    "none yet");
  const dl = (id, pairs) => {
    const node = document.getElementById(id); node.replaceChildren();
    for (const [k, v] of pairs) node.append(el("dt", {text: k}), el("dd", {text: v}));
  };
  dl("space", Object.entries(overview.space || {}).sort().map(([k, s]) =>
    [k, `${bytes(s.available_bytes)} free of ${bytes(s.capacity_bytes)} (${s.path})`]).concat([["floor", bytes(overview.space_floor_bytes)]]));
  const problems = document.getElementById("problems"); problems.replaceChildren();
  for (const p of overview.problems || []) problems.append(el("li", {text: p}));
  const c = overview.configuration || {};
  dl("config", [["watch_dir", c.watch_dir], ["output_dir", c.output_dir], ["workdir", c.workdir], ["state_dir", c.state_dir],
    ["max_concurrent", String(c.max_concurrent)], ["out_format", c.out_format + (c.compress ? " (compressed)" : "")],
    ["checksum", String(c.checksum)], ["fix_guest", String(c.fix_guest)], ["use_v2v", String(c.use_v2v)],
    ["libvirt_integration", String(c.libvirt_integration)], ["http_listen", c.http_listen],
    ["config", (c.config_files || []).join(", ") || "(defaults)"]]);
  dl("counts", Object.entries(status.counts || {}).sort().map(([k, v]) => [k, String(v)]));
  document.getElementById("version").textContent = "version " + overview.version;
  const ready = document.getElementById("ready");
  ready.textContent = overview.ready ? "ready" : "not ready"; ready.className = overview.ready ? "ok" : "bad";
  document.getElementById("updated").textContent = "updated " + new Date().toLocaleTimeString();
}
async function refresh() {
  try {
    const [status, overview] = await Promise.all([fetch("/api/v1/jobs"), fetch("/api/v1/overview")].map(p => p.then(r => r.json())));
    render(status, overview);
  } catch (e) {
    document.getElementById("updated").textContent = "daemon unreachable: " + e;
  } finally {
    setTimeout(refresh, 2000);
  }
}
refresh();
</script>
</body>
</html>
"""#
}
