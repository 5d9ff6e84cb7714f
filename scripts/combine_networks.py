#!/usr/bin/env python3
"""Writes the depth-specific comparator networks of kernels/combine.cl (the
block between its "generated networks" markers) and checks every one.

SORT_n sorts n inputs; MEDIAN_n leaves the two middle ranks, (n-1)/2 and n/2,
and the two extremes, 0 and n-1, of n inputs in place (the rest unsorted: the
extremes cost nothing or one comparator more, and let a clipping round that
clips nothing skip its counts). CLIP_n places ranks 0, 1, n-2 and n-1 and the
middle ranks of every window that drops at most those extremes, one from
each side ((n-2)/2 to (n+1)/2): a sigma-clipping round that clips at most
one value from a side then counts, sums and finds its window's median from
those positions alone (the "edge" windows of combine_stack_vec). They serve the vector kernel built
for one stack depth (-DNFIX=n), where a network smaller than Batcher's pruned
one is a direct saving: each comparator is two or three vector instructions
per VW pixels.

Construction: the optimal networks for 2-6 and 10 inputs (Knuth, TAOCP 5.3.4;
Waksman's 29-comparator network for 10), larger n by the split a + b = n whose
two sorts plus Batcher's odd-even merge of unequal halves is smallest; the
median network is that network pruned backwards to the comparators the middle
ranks depend on. For 20 inputs: 93 comparators to sort instead of 103, 77 for
the median. Every network is checked by the 0-1 principle: exhaustively up to
20 inputs, on 2^18 random 0-1 inputs above that (standard library only, a
few seconds).

Usage: scripts/combine_networks.py [kernels/combine.cl]  (rewrites in place)
"""
import random
import sys

BASE = {
    1: [],
    2: [(0, 1)],
    3: [(0, 2), (0, 1), (1, 2)],
    4: [(0, 1), (2, 3), (0, 2), (1, 3), (1, 2)],
    5: [(0, 3), (1, 4), (0, 2), (1, 3), (0, 1), (2, 4), (1, 2), (3, 4), (2, 3)],
    6: [(0, 5), (1, 3), (2, 4), (1, 2), (3, 4), (0, 3), (2, 5), (0, 1), (2, 3), (4, 5), (1, 2), (3, 4)],
    10: [(4, 9), (3, 8), (2, 7), (1, 6), (0, 5), (1, 4), (6, 9), (0, 3), (5, 8), (0, 2), (3, 6), (7, 9), (0, 1),
         (2, 4), (5, 7), (8, 9), (1, 2), (4, 6), (7, 8), (3, 5), (2, 5), (6, 8), (1, 3), (4, 7), (2, 3), (6, 7),
         (3, 4), (5, 6), (4, 5)],
}
MAX_DEPTH = 32


def merge(a, b):
    """Batcher's odd-even merge of the sorted position lists a and b."""
    if not a or not b:
        return []
    if len(a) == 1 and len(b) == 1:
        return [(a[0], b[0])]
    net = merge(a[0::2], b[0::2]) + merge(a[1::2], b[1::2])
    seq = a + b
    return net + [(seq[i], seq[i + 1]) for i in range(1, len(seq) - 1, 2)]


_memo = {}


def sorter(n):
    if n not in _memo:
        cands = [BASE[n]] if n in BASE else []
        for a in range(1, n // 2 + 1):
            b = n - a
            cands.append(sorter(a) + [(i + a, j + a) for i, j in sorter(b)] +
                         merge(list(range(a)), list(range(a, n))))
        _memo[n] = min(cands, key=len)
    return _memo[n]


def prune(net, ranks):
    need, keep = set(ranks), []
    for i, j in reversed(net):
        if i in need or j in need:
            keep.append((i, j))
            need |= {i, j}
    return keep[::-1]


def middle(n):
    return sorted({(n - 1) // 2, n // 2})


def placed(n):
    """The ranks MEDIAN_n places: the middle ones and the extremes."""
    return sorted(set(middle(n)) | {0, n - 1})


def clip_placed(n):
    """The ranks CLIP_n places: the extremes and the next ones in, and the
    middle ranks of the windows [lo, hi), lo in {0, 1}, hi in {n-1, n}."""
    return sorted({0, 1, n - 2, n - 1} | set(range((n - 2) // 2, (n + 1) // 2 + 1))) if n >= 2 else [0]


def inputs(n):
    """Input k of every test vector as one integer, a bit per vector: all 2^n
    0-1 vectors up to 20 inputs, 2^18 random ones above. A comparator is then
    an AND (min) and an OR (max) on all vectors at once."""
    if n > 20:
        rng = random.Random(n)
        return [rng.getrandbits(1 << 18) for _ in range(n)], (1 << (1 << 18)) - 1
    total = 1 << n
    xs = []
    for k in range(n):
        half = 1 << k
        x, width = ((1 << half) - 1) << half, 2 * half  # vectors w with bit k set
        while width < total:
            x |= x << width
            width *= 2
        xs.append(x)
    return xs, (1 << total) - 1


def run(net, xs):
    x = list(xs)
    for i, j in net:
        x[i], x[j] = x[i] & x[j], x[i] | x[j]
    return x


def check(n):
    """0-1 principle: the sorter's outputs ascend in every test vector, and
    the median network's middle ranks equal the sorter's."""
    xs, full = inputs(n)
    s = run(sorter(n), xs)
    for r in range(n - 1):
        if s[r] & ~s[r + 1] & full:
            raise SystemExit(f"the sorting network for {n} inputs leaves ranks {r}, {r + 1} out of order")
    m = run(prune(sorter(n), placed(n)), xs)
    for r in placed(n):
        if m[r] != s[r]:
            raise SystemExit(f"the median network for {n} inputs is wrong at rank {r}")
    c = run(prune(sorter(n), clip_placed(n)), xs)
    for r in clip_placed(n):
        if c[r] != s[r]:
            raise SystemExit(f"the clipping network for {n} inputs is wrong at rank {r}")


def macro(name, net):
    body = " ".join(f"CE({i},{j})" for i, j in net)
    lines, line = [], ""
    for tok in body.split(" "):
        if line and len(line) + len(tok) > 100:
            lines.append(line)
            line = ""
        line = f"{line} {tok}" if line else tok
    lines.append(line)
    return f"#define {name}(CE) " + (" \\\n    ".join(lines) if lines != [""] else "")


def block():
    out = ["/* generated networks: scripts/combine_networks.py writes this block */"]
    for n in range(1, MAX_DEPTH + 1):
        s = sorter(n)
        m = prune(s, placed(n))
        check(n)
        out.append(macro(f"SORT_{n}", s))
        out.append(macro(f"MEDIAN_{n}", m))
        out.append(macro(f"CLIP_{n}", prune(s, clip_placed(n))))
    out.append("/* end of generated networks */")
    return "\n".join(out) + "\n"


def main():
    path = sys.argv[1] if len(sys.argv) > 1 else "kernels/combine.cl"
    src = open(path).read()
    start = src.index("/* generated networks:")
    end = src.index("/* end of generated networks */\n") + len("/* end of generated networks */\n")
    open(path, "w").write(src[:start] + block() + src[end:])


if __name__ == "__main__":
    main()
