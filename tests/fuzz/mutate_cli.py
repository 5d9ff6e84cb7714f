#!/usr/bin/env python3
"""Mutational fuzz of the command line: valid small FITS, tile-compressed
FITS and .npy files are damaged (bytes flipped, files cut or extended,
header cards given hostile values: NAXISn, BITPIX, BZERO, ZCMPTYPE, ZTILEn,
ZVALn, PCOUNT, .npy shapes and dtypes) and given to stats, combine, sources,
register and calibrate. Each run must end within the timeout, by exit 0 or
by exit 1 with one line on stderr that names the damaged file, and leave no
temporary file and (on exit 1) no output.

The system python3 only (no numpy). Inputs that broke a rule are kept in
--keep (commit them under tests/fuzz/regressions/cli/ once fixed); --replay
runs such a folder first.

  tests/fuzz/mutate_cli.py --bin build/clred --seconds 30            # CI
  tests/fuzz/mutate_cli.py --bin build/clred --count 3000 --jobs 2   # a long run
"""
import argparse
import concurrent.futures
import math
import os
import random
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")
REGRESSIONS = os.path.join(HERE, "regressions", "cli")

# ----------------------------------------------------------------- seeds


def card(key, value, comment=""):
    if isinstance(value, bool):
        v = "%20s" % ("T" if value else "F")
    elif isinstance(value, int):
        v = "%20d" % value
    elif isinstance(value, float):
        v = "%20s" % repr(value).upper()
    else:
        v = "'%-8s'" % value
    text = "%-8s= %s" % (key, v)
    if comment:
        text += " / " + comment
    return text[:80].ljust(80).encode("ascii")


def fits_hdu(cards, data):
    header = b"".join(cards) + b"END".ljust(80)
    header += b" " * (-len(header) % 2880)
    return header + data + b"\0" * (-len(data) % 2880)


def star_field(w, h, seed, shift=(0.0, 0.0)):
    """Sky, noise and a few Gaussian stars, row-major floats."""
    rng = random.Random(seed)
    stars = [(6 + rng.random() * (w - 12), 6 + rng.random() * (h - 12), 2000 + 8000 * rng.random())
             for _ in range(6)]
    noise = random.Random(seed + 1)
    pix = []
    for y in range(h):
        for x in range(w):
            v = 100.0 + noise.gauss(0, 5)
            for sx, sy, f in stars:
                dx, dy = x - sx - shift[0], y - sy - shift[1]
                v += f / (2 * math.pi * 1.7) * math.exp(-(dx * dx + dy * dy) / 3.4)
            pix.append(v)
    return pix


def fits_float(w, h, pix, extra=()):
    cards = [card("SIMPLE", True), card("BITPIX", -32), card("NAXIS", 2), card("NAXIS1", w), card("NAXIS2", h),
             card("EXPTIME", 10.0), card("GAIN", 1.5), card("RDNOISE", 4.0)] + list(extra)
    return fits_hdu(cards, struct.pack(">%df" % len(pix), *pix))


def fits_int16(w, h, pix):
    cards = [card("SIMPLE", True), card("BITPIX", 16), card("NAXIS", 2), card("NAXIS1", w), card("NAXIS2", h),
             card("BZERO", 32768.0), card("BSCALE", 1.0)]
    vals = [max(-32768, min(32767, int(round(p - 32768)))) for p in pix]
    return fits_hdu(cards, struct.pack(">%dh" % len(vals), *vals))


def npy(shape, descr, payload):
    head = "{'descr': '%s', 'fortran_order': False, 'shape': (%s), }" % (
        descr, ", ".join(str(s) for s in shape) + ("," if len(shape) == 1 else ""))
    head += " " * (-(len(head) + 11) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(head)) + head.encode("ascii") + payload


def make_seeds(folder):
    """Writes the seeds; returns {name: path} and the good frame the
    two-input commands pair with a mutant."""
    os.makedirs(folder, exist_ok=True)
    seeds = {}

    def put(name, data):
        p = os.path.join(folder, name)
        with open(p, "wb") as f:
            f.write(data)
        seeds[name] = p

    w, h = 40, 36
    field = star_field(w, h, 1)
    put("stars_f32.fits", fits_float(w, h, field))
    put("stars_i16.fits", fits_int16(w, h, star_field(w, h, 1, (1.5, -1.0))))
    put("stars_f4.npy", npy((h, w), "<f4", struct.pack("<%df" % len(field), *field)))
    put("stars_i2.npy", npy((h, w), "<i2", struct.pack("<%dh" % len(field), *[int(v) for v in field])))
    put("stars_f8.npy", npy((h, w), "<f8", struct.pack("<%dd" % len(field), *field)))
    for sub in ("fits", "fz", "npy"):
        d = os.path.join(CORPUS, sub)
        for name in sorted(os.listdir(d)) if os.path.isdir(d) else []:
            if "negative" in name or "short" in name:
                continue  # already invalid
            with open(os.path.join(d, name), "rb") as f:
                put("corpus_" + name, f.read())
    good = os.path.join(folder, "good.fits")
    with open(good, "wb") as f:
        f.write(fits_float(w, h, star_field(w, h, 1, (0.7, 0.4))))
    return seeds, good

# ------------------------------------------------------------- mutations


FITS_KEYS = [b"SIMPLE", b"BITPIX", b"NAXIS", b"NAXIS1", b"NAXIS2", b"NAXIS3", b"BZERO", b"BSCALE", b"EXTEND",
             b"XTENSION", b"PCOUNT", b"GCOUNT", b"TFIELDS", b"TFORM1", b"TTYPE1", b"THEAP", b"ZIMAGE", b"ZCMPTYPE",
             b"ZBITPIX", b"ZNAXIS", b"ZNAXIS1", b"ZNAXIS2", b"ZTILE1", b"ZTILE2", b"ZNAME1", b"ZVAL1", b"ZNAME2",
             b"ZVAL2", b"ZQUANTIZ", b"ZSCALE", b"ZZERO", b"EXPTIME", b"GAIN", b"RDNOISE", b"EXTNAME", b"BLANK"]
HOSTILE_VALUES = ["0", "-1", "1", "2", "3", "7", "8", "16", "-16", "32", "-32", "64", "-64", "20", "255", "65536",
                  "2147483647", "2147483648", "-2147483648", "4294967297", "9223372036854775807",
                  "-9223372036854775808", "18446744073709551617", "1E30", "-1E30", "1E308", "1E-308", "NAN", "INF",
                  "0.5", "T", "F", "''", "'RICE_1'", "'GZIP_1'", "'GZIP_2'", "'HCOMPRESS_1'", "'PLIO_1'",
                  "'NOCOMPRESS'", "'BOGUS'", "'1PB(1000000000)'", "'1QB(5)'", "'1PJ(0)'", "'E'", "'BINTABLE'",
                  "'IMAGE'", "'SCI'", "'VAR'", "'MASK'", "'BLOCKSIZE'", "'BYTEPIX'", "'NOISEBIT'", "'SUBTRACTIVE_DITHER_2'",
                  "", "'unterminated", "12345678901234567890123456789"]


def header_cards(data):
    """Offsets of every 80-byte card up to the first END, in every HDU
    header that starts on a 2880 boundary and looks like one."""
    cards = []
    for block in range(0, len(data), 2880):
        head = data[block:block + 8]
        if not (head.startswith(b"SIMPLE") or head.startswith(b"XTENSION")):
            continue
        off = block
        while off + 80 <= len(data):
            cards.append(off)
            if data[off:off + 8] == b"END     ":
                break
            off += 80
    return cards


def mutate_card(data, rng):
    cards = header_cards(data)
    if not cards:
        return flip_bytes(data, rng)
    keyed = [o for o in cards if data[o:o + 8].rstrip() in FITS_KEYS]
    off = rng.choice(keyed if keyed and rng.random() < 0.8 else cards)
    key = data[off:off + 8]
    choice = rng.random()
    if choice < 0.75:
        value = rng.choice(HOSTILE_VALUES)
        new = (key + b"= " + ("%20s" % value).encode("ascii"))[:80].ljust(80)
    elif choice < 0.85:
        new = b" " * 80  # card blanked (e.g. a mandatory keyword gone)
    elif choice < 0.92:
        new = bytes(data[off:off + 80]).replace(b"=", b" ", 1)  # no value indicator
    else:
        new = bytes(rng.choice([0, 7, 9, 10, 13, 127, 200]) if rng.random() < 0.1 else c
                    for c in data[off:off + 80])  # control or 8-bit characters
    return data[:off] + new + data[off + 80:]


def mutate_npy(data, rng):
    if len(data) < 10 or not data.startswith(b"\x93NUMPY"):
        return flip_bytes(data, rng)
    hlen = struct.unpack("<H", data[8:10])[0]
    head = data[10:10 + hlen].decode("latin-1")
    body = data[10 + hlen:]
    choice = rng.random()
    if choice < 0.4:
        dims = rng.choice(["", "0,", "-1, 4", "4, -1", "2305843009213693953, 1", "1000000000, 1000000000",
                           "1048577, 1", "36, 40, 3", "36, 40, 1000000", "1, 1", "40,", "99999999999999999999999, 2",
                           "36, 40", "40, 36", "2, 18, 40", "abc", "36, 40,,", "(36, 40)"])
        head = head[:head.find("'shape':")] + "'shape': (%s), }" % dims if "'shape':" in head else head
    elif choice < 0.7:
        descr = rng.choice(["<f4", ">f4", "<f8", "<i2", "<u2", "<i4", "<u4", "<i8", "|u1", "|b1", "<c8", "<f2",
                            "|O", "<U3", "V12", "<f16", "", "<f4 "])
        head = head.replace(head[head.find("'descr':"):head.find(",", head.find("'descr':"))],
                            "'descr': '%s'" % descr, 1) if "'descr':" in head else head
    elif choice < 0.8:
        head = head.replace("False", rng.choice(["True", "1", "None", "Flase"]), 1)
    elif choice < 0.9:
        new_len = rng.choice([0, 1, hlen - 1, hlen + 1, 65535, 10])
        return data[:8] + struct.pack("<H", new_len) + data[10:]
    else:
        return flip_bytes(data[:10 + hlen], rng, 3) + body
    head = head.rstrip("\n")
    head += " " * (-(len(head) + 11) % 64) + "\n"
    return data[:8] + struct.pack("<H", len(head) % 65536) + head.encode("latin-1") + body


def flip_bytes(data, rng, count=None):
    b = bytearray(data)
    if not b:
        return bytes(b)
    header_end = min(len(b), 2880 * (1 + rng.randrange(2)))
    for _ in range(count or rng.choice([1, 1, 2, 4, 8, 32])):
        hi = header_end if rng.random() < 0.5 else len(b)
        i = rng.randrange(hi)
        b[i] = rng.choice([b[i] ^ (1 << rng.randrange(8)), rng.randrange(256), 0, 0xff, 0x20, 0x30 + rng.randrange(10)])
    return bytes(b)


def truncate(data, rng):
    if len(data) < 2:
        return data
    choice = rng.random()
    if choice < 0.4:
        n = rng.randrange(len(data))
    elif choice < 0.7:
        n = 2880 * rng.randrange(max(1, len(data) // 2880))
    else:
        n = len(data) - rng.randrange(1, min(len(data), 3000))
    return data[:n]


def extend(data, rng):
    tail = rng.choice([b"\0" * rng.randrange(1, 3000), bytes(rng.randrange(256) for _ in range(rng.randrange(1, 200))),
                       data[:2880], b"XTENSION= 'IMAGE   '".ljust(2880)])
    return data + tail


def splice(data, rng):
    """A block of the file repeated or removed (headers over data, lost blocks)."""
    blocks = max(1, len(data) // 2880)
    i = rng.randrange(blocks) * 2880
    if rng.random() < 0.5:
        return data[:i] + data[i + 2880:]
    return data[:i] + data[i:i + 2880] + data[i:]


def mutate(data, name, rng):
    ops = [flip_bytes, truncate, extend, splice]
    ops += [mutate_npy] * 5 if name.endswith(".npy") else [mutate_card] * 6
    out = data
    for _ in range(rng.choice([1, 1, 1, 2, 3])):
        out = rng.choice(ops)(out, rng)
    return out

# ------------------------------------------------------------------ runs


COMMANDS = ["stats", "combine", "sources", "register", "calibrate_bias", "calibrate_raw"]


def argv_for(command, path, good, outdir):
    out = os.path.join(outdir, "out")
    return {
        "stats": ["stats", path],
        "combine": ["combine", "-o", out + ".fits", good, path],
        "sources": ["sources", "-o", out + ".fits", path],
        "register": ["register", "--table", out + ".csv", good, path],
        "calibrate_bias": ["calibrate", "--bias", path, "-o", out + ".fits", good],
        "calibrate_raw": ["calibrate", "-o", out + ".fits", path],
    }[command]


def run_one(binary, command, path, good, workdir, timeout, env):
    """Runs one command on one file; returns None or a description of the
    rule it broke."""
    outdir = tempfile.mkdtemp(dir=workdir)
    try:
        argv = [binary] + argv_for(command, path, good, outdir)
        try:
            p = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=timeout, env=env,
                               cwd=outdir)
        except subprocess.TimeoutExpired:
            return "hang: over %g s" % timeout
        err = p.stderr.decode("utf-8", "replace")
        lines = [l for l in err.splitlines() if l.strip() and not l.startswith("clred: warning")]
        left = [n for n in os.listdir(outdir)]
        if p.returncode < 0:
            return "crash: signal %s: %s" % (signal.Signals(-p.returncode).name, err[-400:])
        if "Sanitizer" in err or "runtime error:" in err:
            return "sanitizer report (exit %d): %s" % (p.returncode, err[-600:])
        if any(".tmp" in n for n in left):
            return "temporary file left: %s" % left
        if p.returncode == 0:
            return None
        if p.returncode != 1:
            return "exit %d (expected 0 or 1): %s" % (p.returncode, err.strip()[-400:])
        if left:
            return "exit 1 but output left: %s" % left
        if len(lines) != 1:
            return "exit 1 with %d lines on stderr: %s" % (len(lines), err.strip()[-400:])
        if os.path.basename(path) not in lines[0]:
            return "exit 1 without naming the file: %s" % lines[0]
        return None
    finally:
        shutil.rmtree(outdir, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.environ.get("CLRED_BIN", "build/clred"))
    ap.add_argument("--count", type=int, default=0, help="mutants to make (0: until --seconds)")
    ap.add_argument("--seconds", type=float, default=0, help="time budget (0: until --count)")
    ap.add_argument("--commands-per-file", type=int, default=2,
                    help="commands each mutant goes through (at random; 6 = all)")
    ap.add_argument("--seed", type=int, default=int(time.time()))
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--timeout", type=float, default=30.0, help="seconds one run may take")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--keep", default=None, help="folder for the inputs that broke a rule")
    ap.add_argument("--replay", default=REGRESSIONS, help="folder of earlier finds run first (all commands)")
    a = ap.parse_args()
    if not a.count and not a.seconds:
        a.seconds = 30
    binary = os.path.abspath(a.bin)
    work = a.workdir or tempfile.mkdtemp(prefix="clred_fuzz_cli_")
    os.makedirs(work, exist_ok=True)
    seeds, good = make_seeds(os.path.join(work, "seeds"))
    mutants = os.path.join(work, "mutants")
    os.makedirs(mutants, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("ASAN_OPTIONS", "detect_leaks=0")
    rng = random.Random(a.seed)
    print("mutate_cli: seed %d, %d seed files, binary %s" % (a.seed, len(seeds), binary), flush=True)

    # Each command once on a good file first, unhurried: a cold kernel cache
    # compiles the programs then, and a compile is not a hang.
    for c in COMMANDS:
        problem = run_one(binary, c, good, good, work, 600.0, env)
        if problem:
            print("mutate_cli: %s fails on a good file: %s" % (c, problem))
            return 1

    jobs = []  # (command, path)
    for name in sorted(os.listdir(a.replay)) if os.path.isdir(a.replay) else []:
        for c in COMMANDS:
            jobs.append((c, os.path.join(a.replay, name)))
    for name, path in sorted(seeds.items()):
        jobs.append(("stats", path))

    def new_mutants(n):
        out = []
        names = sorted(seeds)
        for _ in range(n):
            name = rng.choice(names)
            with open(seeds[name], "rb") as f:
                data = mutate(f.read(), name, rng)
            stem = "m%06d_%s" % (new_mutants.count, name)
            new_mutants.count += 1
            path = os.path.join(mutants, stem)
            with open(path, "wb") as f:
                f.write(data)
            for c in rng.sample(COMMANDS, min(a.commands_per_file, len(COMMANDS))):
                out.append((c, path))
        return out
    new_mutants.count = 0

    start = time.monotonic()
    runs = failures = 0
    seen = set()
    with concurrent.futures.ThreadPoolExecutor(max_workers=a.jobs) as pool:
        pending = set()
        queue = list(jobs)
        while True:
            elapsed = time.monotonic() - start
            out_of_time = a.seconds and elapsed > a.seconds
            if not queue and not out_of_time and (not a.count or new_mutants.count < a.count):
                queue = new_mutants(min(50, a.count - new_mutants.count) if a.count else 50)
            while queue and len(pending) < 2 * a.jobs and not out_of_time:
                c, p = queue.pop(0)
                fut = pool.submit(run_one, binary, c, p, good, work, a.timeout, env)
                fut.job = (c, p)
                pending.add(fut)
            if not pending:
                break
            done, pending = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
            for fut in done:
                runs += 1
                problem = fut.result()
                if problem:
                    failures += 1
                    c, p = fut.job
                    key = (c, problem.split(":")[0])
                    print("FAIL %s %s: %s" % (c, p, problem), flush=True)
                    if a.keep and key not in seen:
                        os.makedirs(a.keep, exist_ok=True)
                        shutil.copy(p, os.path.join(a.keep, os.path.basename(p)))
                    seen.add(key)
    elapsed = time.monotonic() - start
    print("mutate_cli: %d runs on %d mutants in %.1f s, %d failure(s)" % (runs, new_mutants.count, elapsed, failures))
    if not a.workdir:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
