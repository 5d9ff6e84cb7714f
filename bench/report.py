#!/usr/bin/env python3
"""Merges the JSON of one benchmark run (clred-bench and peers.py, per stack
shape) into bench/results/<device>-<date>.json, a Markdown table (.md) and a
scaling plot (.png, when matplotlib is there), with where each target stands.

    python3 bench/report.py --results-dir bench/results --mode quick \
        --skipped WORK/skipped.txt WORK/1024x5 WORK/2048x20 ...

Each WORK/<size>x<depth> folder holds clred.json and, when the peers ran,
peers.json. Needs only the standard library; the plot needs matplotlib.
The roofline per step (bench/roofline.py) goes to <stem>-roofline.{json,md}.
Speed-ups are peer time / clred time from the same run.
"""
import argparse
import datetime
import json
import os
import platform
import re
import sys

import roofline

# (step, clred mode, peer tool) pairs whose ratio is reported.
PAIRS = [
    ("median", "memory", "numpy.median"),
    ("median", "memory", "ccdproc median_combine"),
    ("sigclip", "memory", "astropy sigma_clip"),
    ("sigclip", "memory", "ccdproc sigma_clipping"),
    ("median", "files", "numpy/astropy script"),
    ("sigclip", "files", "numpy/astropy script"),
    ("calibrate", "memory", "numpy"),
    ("calibrate", "memory", "ccdproc ccd_process"),
    ("calibrate", "files", "numpy/astropy script"),
    ("stats", "memory", "astropy sigma_clipped_stats"),
    ("stats", "files", "astropy sigma_clipped_stats"),
    ("background", "memory", "SEP Background"),
    ("background", "files", "SEP Background"),
    ("cosmic", "memory", "astroscrappy detect_cosmics"),
    ("cosmic", "files", "astroscrappy detect_cosmics"),
    ("cosmic-sepmed", "memory", "astroscrappy detect_cosmics"),
    ("detect", "memory", "SEP Background + extract"),
    ("detect", "files", "SEP Background + extract"),
    ("register", "memory", "skimage phase_cross_correlation"),
    ("register-stack", "memory", "skimage phase_cross_correlation"),
    ("photometry", "memory", "photutils aperture + ApertureStats"),
    ("photometry", "files", "photutils aperture + ApertureStats"),
]


def load(path):
    with open(path) as f:
        return json.load(f)


def slug(text):
    text = re.sub(r"\((R|TM|C)\)", "", text, flags=re.I)
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:60]


def host_info():
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem = None
    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_bytes": mem, "system": platform.platform(),
            "loadavg_at_report": os.getloadavg() if hasattr(os, "getloadavg") else None}


def find(results, **kw):
    for r in results:
        if all(r.get(k) == v for k, v in kw.items()):
            return r
    return None


def config_entry(folder):
    clred = load(os.path.join(folder, "clred.json"))
    peers_path = os.path.join(folder, "peers.json")
    peers = load(peers_path) if os.path.exists(peers_path) else None
    entry = {"size": clred["size"], "depth": clred["depth"], "ncal": clred["ncal"],
             "copy_gbps": clred.get("copy_gbps"), "fma_gflops": clred.get("fma_gflops"), "clred": clred["results"],
             "peers": peers["results"] if peers else [], "speedups": []}
    for step, mode, tool in PAIRS:
        c = find(clred["results"], step=step, mode=mode)
        p = find(entry["peers"], step=step, mode=mode, tool=tool)
        if not c or not p or not c.get("wall_s") or not p.get("wall_s"):
            continue
        agreement = p.get("agreement", {})
        entry["speedups"].append({
            "step": step, "mode": mode, "peer": tool, "clred_s": c["wall_s"], "peer_s": p["wall_s"],
            "speedup": p["wall_s"] / c["wall_s"], "agree": agreement.get("agree"),
            "max_abs": agreement.get("max_abs"), "max_rel": agreement.get("max_rel")})
    return entry, clred, peers


def speedup(configs, size, depth, step, mode, peer):
    for c in configs:
        if c["size"] == size and c["depth"] == depth:
            for s in c["speedups"]:
                if (s["step"], s["mode"], s["peer"]) == (step, mode, peer):
                    return s
    return None


def clred_result(configs, size, depth, step, mode):
    for c in configs:
        if c["size"] == size and c["depth"] == depth:
            return find(c["clred"], step=step, mode=mode)
    return None


def largest_config(configs):
    return max(configs, key=lambda c: (c["size"] ** 2 * c["depth"], c["size"])) if configs else None


def evaluate_targets(configs, device_type):
    """Each target with its measured value, where it was measured and whether
    it is met (None when this run cannot tell: wrong device or not measured)."""
    targets = []
    on_gpu = device_type == "gpu"

    def add(name, kind, goal, value, met, where, note=""):
        applies = (kind == "gpu") == on_gpu
        targets.append({"target": name, "device": kind, "goal": goal, "measured": value,
                        "met": met if applies else None, "where": where,
                        "note": note if applies else f"{kind.upper()} target; this run is on a {device_type}"
                        + (f"; {note}" if note else "")})

    big = largest_config(configs)
    for step, label in (("calibrate", "calibration"), ("median", "median stacking"), ("sigclip", "sigma-clip stacking")):
        r = find(big["clred"], step=step, mode="memory") if big else None
        frac = r.get("fraction_of_copy") if r else None
        where = f"{big['depth']}x{big['size']}^2" if big else "-"
        add(f"{label} kernels >= 70% of copy bandwidth", "gpu", ">= 0.70",
            None if frac is None else round(frac, 3), None if frac is None else frac >= 0.70, where,
            "" if r else "not measured")
    r = clred_result(configs, 4096, 20, "median", "memory")
    ms = r["kernel_s"] * 1e3 if r and r.get("kernel_s") else None
    add("20x4096^2 median kernel time < 3 ms", "gpu", "< 3 ms", None if ms is None else round(ms, 3),
        None if ms is None else ms < 3.0, "20x4096^2", "" if r else "20x4096^2 not run")
    for step, peer, goal in (("median", "numpy.median", 30), ("sigclip", "astropy sigma_clip", 30),
                             ("median", "ccdproc median_combine", 200), ("sigclip", "ccdproc sigma_clipping", 200)):
        s = speedup(configs, 2048, 20, step, "memory", peer)
        value = None if s is None else round(s["speedup"], 2)
        met = None if s is None else (s["speedup"] >= goal and s["agree"] is not False)
        note = "" if s else "20x2048^2 or the peer not run"
        if s and s["agree"] is False:
            note = "outputs disagree: not counted"
        add(f"in-memory 20x2048^2 {step} >= {goal}x faster than {peer}", "cpu", f">= {goal}x", value, met,
            "20x2048^2", note)
    for step in ("median", "sigclip", "calibrate"):
        s = speedup(configs, 2048, 20, step, "files", "numpy/astropy script")
        value = None if s is None else round(s["speedup"], 2)
        met = None if s is None else (s["speedup"] >= 5 and s["agree"] is not False)
        add(f"files in to file out, {step}: >= 5x faster than a numpy/astropy script", "cpu", ">= 5x", value, met,
            "20x2048^2", "" if s else "20x2048^2 or the peer not run")
    for step, mode, peer, goal, label in (
            ("register", "memory", "skimage phase_cross_correlation", 5, "registration 0.01 px >= 5x faster than skimage"),
            ("register-stack", "memory", "skimage phase_cross_correlation", 4,
             "registration 0.01 px, per frame of a 20-frame stack (reference spectrum reused) >= 4x faster than skimage"),
            ("background", "memory", "SEP Background", 1 / 1.5, "background within 1.5x of SEP"),
            ("cosmic", "memory", "astroscrappy detect_cosmics", 5,
             "cosmic rays (niter 4, true medians) >= 5x faster than astroscrappy"),
            ("cosmic-sepmed", "memory", "astroscrappy detect_cosmics", 5,
             "cosmic rays (niter 4, separable medians: astroscrappy's default) >= 5x faster than astroscrappy")):
        s = speedup(configs, 2048, 20, step, mode, peer)
        value = None if s is None else round(s["speedup"], 2)
        met = None if s is None else (s["speedup"] >= goal and s["agree"] is not False)
        note = "" if s else "2048^2 or the peer not run"
        if s and s["agree"] is False:
            note = "outputs disagree: not counted"
        add(label, "cpu", f">= {goal:.2f}x", value, met, "2048^2", note)
    return targets


def memlimit_summary(configs):
    best = None
    for c in configs:
        r = find(c["clred"], step="memlimit", mode="files")
        if r and r.get("wall_s") and (best is None or c["size"] ** 2 * c["depth"] > best[0]):
            best = (c["size"] ** 2 * c["depth"], c, r)
    if not best:
        return None
    _, c, r = best
    return {"size": c["size"], "depth": c["depth"], "wall_s": r["wall_s"], "note": r["note"]}


def fmt(v, unit="", digits=4):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}g}{unit}"
    return f"{v}{unit}"


def cell(text):
    """Text for a Markdown table cell: a | would end the cell."""
    return str(text).replace("|", "\\|")


def calibrate_floor_lines(c):
    """The files calibration (SCI written, as the script) and the script over
    each I/O floor row (inputs read and outputs written as bytes, no
    computing) measured in the same run: how far each is from the floor."""
    clred = find(c["clred"], step="calibrate", mode="files")
    script = find(c["peers"], step="calibrate", mode="files", tool="numpy/astropy script") if c["peers"] else None
    floors = [r for r in c["clred"] if r["step"] == "calibrate" and r["mode"].startswith("floor-")]
    if not clred or not floors:
        return []
    lines = ["", "Calibration files in, files out, against its I/O floor (every input read and every output "
             "written once as bytes; how an output replaces the old file differs by row):", "",
             "| floor | floor s | clred / floor | script / floor |", "|---|---|---|---|"]
    for f in floors:
        ratio = lambda r: fmt(r["wall_s"] / f["wall_s"], "x", 3) if r and r.get("wall_s") and f.get("wall_s") else "–"
        lines.append(f"| {f['mode'][len('floor-'):]} | {fmt(f.get('wall_s'))} | {ratio(clred)} | {ratio(script)} |")
    return lines


def markdown(doc):
    dev = doc["device"]
    lines = [f"# clred benchmarks: {dev['name']} ({dev['type']}), {doc['date']}", ""]
    lines.append(f"Device: {dev['name']} — {dev['platform']}, {dev['version']}, driver {dev['driver']}, "
                 f"{dev['compute_units']} compute units, {dev['global_mem'] / 2**30:.1f} GiB.  ")
    h = doc["host"]
    lines.append(f"Host: {h['cpu']}, {h['cores']} cores, "
                 f"{(h['memory_bytes'] or 0) / 2**30:.0f} GiB; {h['system']}.  ")
    lines.append(f"Run: `bench/run{' --quick' if doc['mode'] == 'quick' else ''}`, {doc['mode']} grid, "
                 f"best of {doc.get('repeat', '?')} timed repetitions after a warm-up (slow peers: one run).  ")
    if doc.get("load_note"):
        lines.append(f"**Load:** {doc['load_note']}  ")
    if doc.get("peer_versions"):
        lines.append("Peers: " + ", ".join(f"{k} {v}" for k, v in doc["peer_versions"].items() if v) + ".  ")
    lines += ["", "Speed-up = peer wall time / clred wall time, both measured in this run. "
              "\"memory\": frames already in host memory, result in host memory. \"files\": files in, "
              "file(s) out (clred writes SCI+VAR+MASK+NCONTRIB, the script SCI only). "
              "GB/s = the least bytes the kernels must move / kernel time; % of copy = that over the "
              "device's copy_words bandwidth measured in the same run.", ""]
    lines += ["## Targets", "", "| target | goal | measured | where | met | note |", "|---|---|---|---|---|---|"]
    for t in doc["targets"]:
        met = {True: "yes", False: "**no**", None: "n/a"}[t["met"]]
        lines.append(f"| {t['target']} | {t['goal']} | {fmt(t['measured'])} | {t['where']} | {met} | {cell(t['note'])} |")
    if doc.get("memlimit"):
        m = doc["memlimit"]
        lines += ["", f"Largest stack run under a device memory limit: {m['depth']}x{m['size']}^2 "
                      f"in {m['wall_s']:.3f} s ({m['note']})."]
    for c in doc["configs"]:
        lines += ["", f"## {c['depth']} x {c['size']}^2 (calibration: {c['ncal']} frames); copy bandwidth "
                      f"{fmt(c['copy_gbps'], ' GB/s', 3)}", "",
                  "| step | mode | clred wall s | kernels s | transfers s | kernel GB/s | % of copy | note |",
                  "|---|---|---|---|---|---|---|---|"]
        for r in c["clred"]:
            frac = r.get("fraction_of_copy")
            pct = "–" if frac is None or r["step"] == "copy" else f"{100 * frac:.0f}%"
            lines.append(f"| {r['step']} | {r['mode']} | {fmt(r.get('wall_s'))} | {fmt(r.get('kernel_s'))} | "
                         f"{fmt(r.get('transfer_s'))} | {fmt(r.get('kernel_gbps'), '', 3)} | {pct} | {cell(r.get('note', ''))} |")
        if c["peers"]:
            lines += ["", "| step | mode | peer | peer wall s | speed-up | agrees with clred | max abs diff | note |",
                      "|---|---|---|---|---|---|---|---|"]
            for p in c["peers"]:
                s = next((s for s in c["speedups"] if (s["step"], s["mode"], s["peer"]) ==
                          (p["step"], p["mode"], p["tool"])), None)
                a = p.get("agreement", {})
                agree = {True: "yes", False: "**NO**", None: "–"}[a.get("agree")]
                note = p.get("skipped") and f"skipped: {p['skipped']}" or p.get("note", "")
                if a.get("note"):
                    note = f"{note}; {a['note']}" if note else a["note"]
                elif a.get("agree") is None and a.get("reason"):
                    note = f"{note}; {a['reason']}" if note else a["reason"]
                lines.append(f"| {p['step']} | {p['mode']} | {p['tool']} | {fmt(p.get('wall_s'))} | "
                             f"{fmt(s['speedup'], 'x', 3) if s else '–'} | {agree} | {fmt(a.get('max_abs'), '', 3)} | {cell(note)} |")
        lines += calibrate_floor_lines(c)
    if doc.get("skipped"):
        lines += ["", "## Not run", ""] + [f"- {s}" for s in doc["skipped"]]
    return "\n".join(lines) + "\n"


def plot(doc, path):
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("report: matplotlib is not installed: no plot", file=sys.stderr)
        return False
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
    series = {}
    for c in doc["configs"]:
        values = c["size"] ** 2 * c["depth"]
        for r in c["clred"]:
            if r["step"] in ("median", "sigclip") and r.get("wall_s"):
                series.setdefault(f"clred {r['step']} ({r['mode']})", []).append((values, r["wall_s"]))
        for p in c["peers"]:
            if p["step"] in ("median", "sigclip") and p.get("wall_s"):
                series.setdefault(f"{p['tool']} {p['step']} ({p['mode']})", []).append((values, p["wall_s"]))
        for s in c["speedups"]:
            if s["step"] in ("median", "sigclip"):
                series.setdefault(f"speedup:{s['step']} {s['mode']} vs {s['peer']}", []).append((values, s["speedup"]))
    for name, pts in sorted(series.items()):
        pts.sort()
        xs, ys = [p[0] for p in pts], [p[1] for p in pts]
        if name.startswith("speedup:"):
            ax2.plot(xs, ys, "o-", label=name[len("speedup:"):])
        else:
            ax.plot(xs, ys, "o-" if name.startswith("clred") else "s--", label=name)
    ax.set(xscale="log", yscale="log", xlabel="stack values (width x height x depth)", ylabel="wall time (s)",
           title="Stacking time")
    ax2.set(xscale="log", yscale="log", xlabel="stack values (width x height x depth)",
            ylabel="speed-up (peer time / clred time)", title="clred speed-up over peers")
    for a in (ax, ax2):
        a.grid(True, which="both", alpha=0.3)
        a.legend(fontsize=7)
    dev = doc["device"]
    fig.suptitle(f"{dev['name']} ({dev['type']}), {doc['date']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("folders", nargs="+", help="WORK/<size>x<depth> folders with clred.json (+ peers.json)")
    p.add_argument("--results-dir", required=True)
    p.add_argument("--mode", default="full")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--skipped", help="a file with one line per combination not run, and why")
    p.add_argument("--load-note", default="", help="what else was running on the machine")
    p.add_argument("--name", help="file name stem (default <device>-<date>)")
    args = p.parse_args()
    configs, device, versions = [], None, None
    for folder in args.folders:
        if not os.path.exists(os.path.join(folder, "clred.json")):
            print(f"report: {folder}: no clred.json, left out", file=sys.stderr)
            continue
        entry, clred, peers = config_entry(folder)
        configs.append(entry)
        device = device or clred["device"]
        versions = versions or (peers or {}).get("versions")
    if not configs:
        print("report: no results to report", file=sys.stderr)
        return 1
    configs.sort(key=lambda c: (c["size"], c["depth"]))
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d")
    skipped = []
    if args.skipped and os.path.exists(args.skipped):
        with open(args.skipped) as f:
            skipped = [line.strip() for line in f if line.strip()]
    doc = {"device": device, "date": date,
           "generated_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "mode": args.mode, "repeat": args.repeat, "host": host_info(), "load_note": args.load_note,
           "peer_versions": versions, "configs": configs, "skipped": skipped}
    doc["targets"] = evaluate_targets(configs, device["type"])
    doc["memlimit"] = memlimit_summary(configs)
    os.makedirs(args.results_dir, exist_ok=True)
    stem = os.path.join(args.results_dir, args.name or f"{device['type']}-{slug(device['name'])}-{date}")
    with open(stem + ".json", "w") as f:
        json.dump(doc, f, indent=1)
    md = markdown(doc)
    with open(stem + ".md", "w") as f:
        f.write(md)
    plotted = plot(doc, stem + ".png")
    roof = roofline.write(doc, stem)
    print(f"report: {stem}.json, {stem}.md, {stem}-roofline.json, {stem}-roofline.md" +
          (f", {stem}.png" if plotted else ""), file=sys.stderr)
    below = [f"{r['step']} ({r['mode']}, {r['depth']}x{r['size']}^2)" for r in roof["rows"] if r["below_half"]]
    print(f"  roofline: {len(below)} of {len(roof['rows'])} below {100 * roofline.HALF:.0f}%", file=sys.stderr)
    for t in doc["targets"]:
        met = {True: "met", False: "NOT MET", None: "n/a"}[t["met"]]
        print(f"  target {t['target']}: {fmt(t['measured'])} ({t['goal']}) {met}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
