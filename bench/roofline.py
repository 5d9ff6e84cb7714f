"""Roofline of each benchmarked step: the bytes its kernels must move and the
operations they must do (models below), its measured kernel time (the
runtime's profiling events), and how close that comes to the device's two
ceilings measured in the same run: copy_words' bandwidth and fma_rate's FLOP
rate (kernels/bench.cl). A step is bound by whichever ceiling its model needs
more time under; its roofline fraction is that least time over its kernel
time. Every step below 50 % is listed with a reason.

report.py calls write(doc, stem), which writes <stem>-roofline.json and .md.
Standard library only.
"""
import json
import math
import os
import re

HALF = 0.5

# Operations per step, counted as one per add, multiply, compare or min/max
# (an fma counts 2, as fma_rate's rate does; a kernel without fmas cannot
# reach that rate, so compute fractions are upper bounds of what is possible).
# Each entry: (function of (size, depth, ncal) -> operations, the formula as
# text, why the step stands where it does: the part of the reason that reading
# the kernels gives; the measured part is added per row).


def _network(n):
    """Comparators of a Batcher odd-even merge network for n inputs, about
    n log2(n)^2 / 4; each comparator is a min and a max."""
    lg = math.log2(max(n, 2))
    return n * lg * (lg + 1) / 4


def _kernel_network(kind, n):
    """Comparators of the network kernels/combine.cl compiles for a stack of
    n (its SORT_n or MEDIAN_n macro, written by scripts/combine_networks.py);
    Batcher's count where the file or the macro is not there."""
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "kernels", "combine.cl")
    try:
        with open(path) as f:
            text = f.read()
    except OSError:
        return _network(n)
    m = re.search(r"#define %s_%d\(CE\)((?:[^\n]*\\\n)*[^\n]*)" % (kind, n), text)
    return m.group(1).count("CE(") if m else _network(n)


def _sigclip_ops(s, d, c, r):
    """Per pixel: the depth's median network (it places the middle ranks and
    the extremes; a full sort only for the windows whose middle ranks are
    others) and, per clipping round, 8 per value: the sum and the sum of
    squares about a shift (subtract, add, fma) and the two threshold tests
    with their counts. The rounds are those the bench measured (at least 1 +
    the fraction of pixels that clipped; see bench/combine.c): 1 where the
    results lack it."""
    rounds = (r or {}).get("clip_rounds") or 1.0
    return (2.0 * _kernel_network("MEDIAN", d) + rounds * 8.0 * d) * s * s


def _fft2(size):
    """5 N log2 N flops per complex transform of N points, N = size^2."""
    n = size * size
    return 5 * n * math.log2(n)


MODELS = {
    "calibrate": (lambda s, d, c: 8.0 * s * s * c,
                  "8 per pixel per frame: (raw - bias - dark t) / flat and its variance",
                  "one fused, VW-vectorised pass per frame (raw and masters in, SCI, VAR, MASK out), whole-vector "
                  "stores (POCL's vstore16 had written the mask as sixteen 16-bit stores) and non-temporal ones "
                  "for frames larger than a cache; in POCL's code the samples gather on the loads: bound by "
                  "memory, not by its divisions"),
    "median": (lambda s, d, c: 2.0 * _network(d) * s * s,
               "2 x (Batcher comparators for the depth) per output pixel",
               "one launch of the stack kernel; the median network is the lead's work (issue 14 item 3), not "
               "analysed here"),
    "mean": (lambda s, d, c: 6.0 * d * s * s,
             "6 per value: the finiteness test, the pivot's sum (2) for the mean's estimate, then the shifted sum "
             "and sum of squares about it (3)",
             "one launch of the stack kernel, no network (the plain mean needs no order): two float passes over "
             "the values held in registers (vec_mean_sums in kernels/combine.cl); in POCL's code the samples "
             "sit on the loads of the 20 frames' streams: bound by memory"),
    "memlimit": (lambda s, d, c: 2.0 * _network(d) * s * s,
                 "as median, in bands under a device memory limit",
                 "the median network in bands, one launch per band"),
    "sigclip": (_sigclip_ops,
                "2 x (comparators of the depth's median network) + clip_rounds (measured) x 8 per value",
                "per output pixel the depth's median network and the clipping rounds, in float with an exact "
                "fallback (kernels/combine.cl); a vector of pixels runs as many rounds as its slowest lane, every "
                "round after the first selects its window by value (masks and selects the model does not count), "
                "and a window whose middle ranks the network did not place sorts a copy; with AVX2's 16 vector "
                "registers the 20-input network spills about one move per min/max (perf, 2026-12-08), and each "
                "vector waits on one chain (loads, network, sums, thresholds, decision) more than on its "
                "operations"),
    "stats": (lambda s, d, c: 19.3 * s * s,
              "19.3 per pixel: the single read's fast set (2 compares for the core, 6 for three holes, 3 gap "
              "counts, 1 count, 4 for the shifted sum and square in double, 2 for the extrema: 18), the ~4% of "
              "pixels outside it one by one through the table (~20 each: 0.8) and the sample counts (6 per pixel "
              "over 5/64 of a 2048^2 frame's rows: 0.5)",
              "exact statistics by the bin method (host/steps/stats_bins.c) in ONE read where a sample of rows "
              "(every 16th, counted in fine bins after every 64th placed them) predicts the clipping run. The "
              "single read must move the frame once (4 bytes a pixel, 6 with a mask plane; the byte model), plus "
              "the sample's 5/64 of the rows and ~4% of the pixels copied to the gather slots. On a CPU "
              "stats_bin_one classifies eight pixels at a time by float compares (core, three holes around the "
              "predicted median and MAD ends), sums the fast set in double vectors with no branch and notes the "
              "other lanes as one byte of bits per eight pixels, taken through the table after each "
              "2048-pixel chunk; elsewhere "
              "stats_bin_scan (keys, one branch per eight pixels). Where the prediction misses, the two-pass "
              "method (and then radix selection) answers. The read is bound by instructions, not bytes: "
              "on one core stats_bin_one spends 67% in the vector loop (~45 vector operations per eight "
              "pixels at ~3.5 a cycle: ~1.7 cycles a pixel) and 33% taking the ~4% other pixels through the "
              "table (~20 cycles each; 2026-12-08, POCL pthread on an AMD EPYC, perf), against the ~1 cycle "
              "a pixel that 50% of copy bandwidth allows on 2 cores; exact double sums alone take ~0.4. "
              "Noting the other lanes as bits (one store per eight pixels instead of eight) and packing the "
              "gap counters into one register took the kernel from 5.3 to 4.5 ms on one core"),
    "background": (lambda s, d, c: 30.0 * s * s,
                   "30 per pixel: clipped box statistics (~3 rounds) and the bicubic interpolation",
                   "the clipped box statistics (bkg_box_stats) take most of the time; not analysed here"),
    "cosmic": (lambda s, d, c: 4 * (2.0 * (_network(25) + _network(9) + _network(49)) + 40.0) * s * s,
               "4 iterations x (true 3x3, 5x5, 7x7 median networks + Laplacian and tests)",
               "true medians per pixel and iteration: comparator networks (median_5x5 the largest), scalar "
               "per work-item; every iteration re-reads the frame"),
    "cosmic-sepmed": (lambda s, d, c: 4 * (2.0 * 2 * (_network(5) + _network(7) + _network(3)) + 40.0) * s * s,
                      "4 iterations x (separable 3, 5, 7 medians on rows and columns + Laplacian and tests)",
                      "separable medians: small networks but many passes per iteration (rows, columns, the "
                      "good-pixel histogram, growth), each re-reading the frame"),
    "detect": (lambda s, d, c: (30.0 + 2 * 25 + 10.0) * s * s,
               "background (30) + 5x5 matched filter (2 x 25) + threshold and labels (10) per pixel",
               "the matched filter's column and row passes (filter_cols, filter_rows) take most of the time; "
               "not analysed here"),
    "fft-clFFT": (lambda s, d, c: 2 * _fft2(s), "forward + inverse 2-D complex FFT, 5 N log2 N each",
                  "the FFT library's own kernels (not launched through clred_run, so not named in the profile)"),
    "fft-VkFFT": (lambda s, d, c: 2 * _fft2(s), "forward + inverse 2-D complex FFT, 5 N log2 N each",
                  "the FFT library's own kernels (not launched through clred_run, so not named in the profile)"),
    "register-clFFT": (lambda s, d, c: 3 * _fft2(s), "3 complex 2-D FFTs (two forward, one inverse)",
                       "FFTs (the library's kernels, unnamed in the profile) plus padding/apodisation and the "
                       "upsampled-DFT refinement (issue 14 item 4)"),
    "register": (lambda s, d, c: 3 * _fft2(s), "3 complex 2-D FFTs (two forward, one inverse)",
                 "FFTs (the library's kernels, unnamed in the profile) plus padding/apodisation and the "
                 "upsampled-DFT refinement (issue 14 item 4)"),
    "photometry": (lambda s, d, c: 10000 * 460 * 30.0,
                   "10000 positions x ~460 pixels of aperture and annulus x 30 (exact overlap area)",
                   "one launch of aperture_photometry over 10000 positions; not analysed here"),
}

YARDSTICKS = ("copy", "fma")

# Steps whose kernels read the frame: the reads they made (launches x the
# share of the frame each reads, a function of the frame's side), so that the
# report also gives the bandwidth of the bytes actually read (model bytes x
# reads), not only of the least a step must move.


def _stats_sample_share(size):
    """stats_bin_hist counts two samples of rows per call: every step-th row
    (step = pixels / 131072, 1 to 16, as SAMPLE_PIXELS and SAMPLE_STEP_MAX in
    host/steps/stats_bins.c) and every 4 step-th: the mean share of a launch.
    The full count of the two-pass fallback, taken only where the sample
    misleads, is under-counted by it and shows as a second stats_bin_scan
    launch per call."""
    step = min(max(size * size // 131072, 1), 16)
    return (1.0 / step + 1.0 / min(4 * step, size // 2 or 1)) / 2


FRAME_READS = {"stats": {"stats_bin_hist": _stats_sample_share, "stats_bin_one": 1.0, "stats_bin_scan": 1.0,
                         "stats_select": 1.0}}


def _row(config, r, copy_gbps, fma_gflops):
    step, kernel_s = r["step"], r.get("kernel_s") or 0.0
    model = MODELS.get(step)
    ops = None
    if model:  # models that use the measured result take it as a fourth argument
        args = (config["size"], config["depth"], config["ncal"])
        ops = model[0](*args, r) if model[0].__code__.co_argcount == 4 else model[0](*args)
    nbytes = r.get("model_bytes") or None
    t_bytes = nbytes / (copy_gbps * 1e9) if nbytes and copy_gbps else None
    t_ops = ops / (fma_gflops * 1e9) if ops and fma_gflops else None
    bounds = [(t, name) for t, name in ((t_bytes, "memory"), (t_ops, "compute")) if t is not None]
    least, bound = max(bounds) if bounds else (None, None)
    fraction = least / kernel_s if least is not None and kernel_s > 0 else None
    kernels = r.get("kernels") or []
    named = sum(k["s"] for k in kernels)
    top = [{"name": k["name"], "s": k["s"], "launches": k["launches"],
            "share": k["s"] / kernel_s if kernel_s > 0 else None} for k in kernels]
    row = {"size": config["size"], "depth": config["depth"], "step": step, "mode": r["mode"],
           "kernel_s": kernel_s, "model_bytes": nbytes, "model_ops": ops, "clip_rounds": r.get("clip_rounds"),
           "ops_formula": model[1] if model else None,
           "gbps": nbytes / kernel_s * 1e-9 if nbytes and kernel_s > 0 else None,
           "fraction_of_copy": nbytes / kernel_s * 1e-9 / copy_gbps if nbytes and kernel_s > 0 and copy_gbps else None,
           "gflops": ops / kernel_s * 1e-9 if ops and kernel_s > 0 else None,
           "fraction_of_fma": ops / kernel_s * 1e-9 / fma_gflops if ops and kernel_s > 0 and fma_gflops else None,
           "bound": bound, "roofline_fraction": fraction, "kernels": top,
           "unnamed_s": max(kernel_s - named, 0.0) if kernels else kernel_s}
    readers = FRAME_READS.get(step)
    if readers and nbytes and kernel_s > 0 and copy_gbps:
        share = {n: w(config["size"]) if callable(w) else w for n, w in readers.items()}
        reads = round(sum(k["launches"] * share[k["name"]] for k in kernels if k["name"] in share), 2)
        row["frame_reads"] = reads
        row["fraction_of_copy_read"] = reads * nbytes / kernel_s * 1e-9 / copy_gbps
    row["below_half"] = fraction is not None and fraction < HALF
    if row["below_half"] or fraction is None:
        row["reason"] = _reason(row, model)
    return row


def _reason(row, model):
    parts = []
    if row["kernels"]:
        k = row["kernels"][0]
        share = f"{100 * k['share']:.0f}%" if k["share"] is not None else "?"
        parts.append(f"{share} of the kernel time in {k['name']} ({k['launches']} launch"
                     f"{'es' if k['launches'] != 1 else ''})")
    elif row["kernel_s"]:
        parts.append("no kernel of it is named in the profile")
    if row["bound"]:
        other = row["fraction_of_fma"] if row["bound"] == "memory" else row["fraction_of_copy"]
        parts.append(f"{row['bound']}-bound by the model; the other ceiling is at "
                     f"{100 * other:.1f}%" if other is not None else f"{row['bound']}-bound by the model")
    if row.get("frame_reads"):
        parts.append(f"{row['frame_reads']} reads of the frame: the bytes actually read move at "
                     f"{100 * row['fraction_of_copy_read']:.1f}% of copy bandwidth")
    if model:
        parts.append(model[2])
    else:
        parts.append("no operation model for this step")
    return "; ".join(parts)


def roofline(doc):
    rows = []
    for c in doc["configs"]:
        copy_gbps, fma_gflops = c.get("copy_gbps"), c.get("fma_gflops")
        for r in c["clred"]:
            if r["step"] in YARDSTICKS or r["mode"] == "failed" or not r.get("kernel_s"):
                continue
            rows.append(_row(c, r, copy_gbps, fma_gflops))
    return {"device": doc["device"], "date": doc["date"], "load_note": doc.get("load_note"),
            "ceilings": [{"size": c["size"], "depth": c["depth"], "copy_gbps": c.get("copy_gbps"),
                          "fma_gflops": c.get("fma_gflops")} for c in doc["configs"]],
            "half": HALF, "rows": rows}


def _pct(v):
    return "–" if v is None else f"{100 * v:.1f}%"


def _num(v, digits=3):
    return "–" if v is None else f"{v:.{digits}g}"


def markdown(roof):
    dev = roof["device"]
    lines = [f"# Roofline: {dev['name']} ({dev['type']}), {roof['date']}", "",
             "Per step: the least bytes its kernels must move (model_bytes, bench/*.c) and the operations they "
             "must do (bench/roofline.py MODELS), against the device's copy_words bandwidth and fma_rate FLOP "
             "rate measured in the same run. The roofline fraction is the larger of bytes / copy rate and "
             "operations / FLOP rate, over the measured kernel time: 100% is at the ceiling that binds. "
             "Operation counts are models (one per add, compare or min/max), so compute fractions are estimates.",
             ""]
    if roof.get("load_note"):
        lines += [f"**Load:** {roof['load_note']}", ""]
    lines += ["| stack | copy GB/s | fma GFLOP/s |", "|---|---|---|"]
    for c in roof["ceilings"]:
        lines.append(f"| {c['depth']}x{c['size']}^2 | {_num(c['copy_gbps'])} | {_num(c['fma_gflops'])} |")
    lines += ["", "| stack | step | mode | kernel s | bytes | ops | GB/s | % copy | GFLOP/s | % fma | bound | "
              "roofline | largest kernels (share, launches) |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in roof["rows"]:
        ks = ", ".join(f"{k['name']} {_pct(k['share'])} ×{k['launches']}" for k in r["kernels"][:3])
        frac = _pct(r["roofline_fraction"])
        if r["below_half"]:
            frac = f"**{frac}**"
        lines.append(f"| {r['depth']}x{r['size']}^2 | {r['step']} | {r['mode']} | {_num(r['kernel_s'], 4)} | "
                     f"{_num(r['model_bytes'])} | {_num(r['model_ops'])} | {_num(r['gbps'])} | "
                     f"{_pct(r['fraction_of_copy'])} | {_num(r['gflops'])} | {_pct(r['fraction_of_fma'])} | "
                     f"{r['bound'] or '–'} | {frac} | {ks or '–'} |")
    below = [r for r in roof["rows"] if r["below_half"]]
    lines += ["", f"## Below {100 * roof['half']:.0f}% of the roofline ({len(below)})", ""]
    for r in below:
        lines.append(f"- **{r['step']}** ({r['mode']}, {r['depth']}x{r['size']}^2, "
                     f"{_pct(r['roofline_fraction'])}): {r['reason']}")
    unmodelled = [r for r in roof["rows"] if r["roofline_fraction"] is None]
    if unmodelled:
        lines += ["", "## Not placed", ""]
        lines += [f"- {r['step']} ({r['mode']}): {r['reason']}" for r in unmodelled]
    models = sorted({(r["step"], r["ops_formula"]) for r in roof["rows"] if r["ops_formula"]})
    lines += ["", "## Operation models", "", "| step | operations |", "|---|---|"]
    lines += [f"| {s} | {f} |" for s, f in models]
    return "\n".join(lines) + "\n"


def write(doc, stem):
    roof = roofline(doc)
    with open(stem + "-roofline.json", "w") as f:
        json.dump(roof, f, indent=1)
    with open(stem + "-roofline.md", "w") as f:
        f.write(markdown(roof))
    return roof
