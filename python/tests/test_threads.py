"""Two threads, two contexts: both run at once (the GIL is released) and
give the serial results."""
import threading
import time

import numpy as np

import clred
from conftest import assert_same


def work(ctx, seed):
    rng = np.random.default_rng(seed)
    frames = [rng.normal(100, 5, (96, 128)).astype(np.float32) for _ in range(7)]
    out = ctx.combine(frames, method="median", reject="sigclip")
    return out.data, ctx.stats(out)


def test_two_threads_two_contexts_give_the_serial_results():
    serial_ctx = clred.Context()
    expected = [work(serial_ctx, s) for s in (1, 2)]
    contexts = [clred.Context(), clred.Context()]
    results = [None, None]
    errors = []

    def run(i):
        try:
            for _ in range(3):
                results[i] = work(contexts[i], i + 1)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for (data, st), (edata, est) in zip(results, expected):
        assert_same(data, edata)
        assert st == est


def test_the_gil_is_released_during_device_work():
    ctx = clred.Context()
    big = [np.random.default_rng(i).normal(0, 1, (512, 512)).astype(np.float32) for i in range(9)]
    ticks = []
    done = threading.Event()

    def ticker():
        while not done.is_set():
            ticks.append(time.perf_counter())
            time.sleep(0.001)

    t = threading.Thread(target=ticker)
    t.start()
    t0 = time.perf_counter()
    ctx.combine(big, method="median", reject="sigclip")
    t1 = time.perf_counter()
    done.set()
    t.join()
    during = [x for x in ticks if t0 < x < t1]
    # a held GIL would leave the ticker silent for the whole call
    assert len(during) >= 2 or (t1 - t0) < 0.01
