"""A night on a LocalCluster of two workers: the serial products, and a worker
killed mid-night whose shard runs again elsewhere, leaving every product
complete and no partial file."""
import os
import pathlib
import signal
import time

import numpy as np
import pytest

import clred

distributed = pytest.importorskip("distributed")
from clred.distributed import reduce_night, run_shard  # noqa: E402


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    d = tmp_path_factory.mktemp("dnight")
    clred.simulate(d, seed=11, size=(96, 96), nbias=3, ndark=3, nflat=3, nscience=3, nepoch2=2, nstars=30,
                   filters="g,r", overwrite=True)
    for p in d.glob("truth_*.fits"):
        p.unlink()
    return sorted(str(p) for p in d.glob("*.fits"))


@pytest.fixture(scope="module")
def serial(raw, tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    rep = clred.Context().night(raw, out)
    assert rep["ngroups"] >= 6  # bias, dark, 2 flats, 2 fields x 2 filters
    return out, rep


def products(d):
    return sorted(str(p.relative_to(d)) for p in pathlib.Path(d).rglob("*.fits"))


def assert_same_products(a, b):
    assert products(a) == products(b)
    for rel in products(a):
        x, y = clred.read(pathlib.Path(a) / rel), clred.read(pathlib.Path(b) / rel)
        for p in ("data", "var", "mask"):
            u, v = getattr(x, p), getattr(y, p)
            assert (u is None) == (v is None), (rel, p)
            if u is not None:
                np.testing.assert_array_equal(u, v, err_msg=f"{rel} {p}")


def no_temporaries(d):
    return [str(p) for p in pathlib.Path(d).rglob("*") if p.name.endswith(".tmp")]


@pytest.fixture
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                                  resources={"GPU": 1}) as cluster, distributed.Client(cluster) as c:
        yield c


def test_two_workers_give_the_serial_products(client, raw, serial, tmp_path):
    summary = reduce_night(client, raw, tmp_path, nshards=4, resources={"GPU": 1})
    assert summary["ngroups"] == serial[1]["ngroups"]
    assert len({r["pid"] for r in summary["shards"]}) == 2  # both workers took shards
    assert summary["nwritten"] == len(products(serial[0]))
    assert_same_products(tmp_path, serial[0])
    assert not no_temporaries(tmp_path)


def test_a_killed_worker_s_shard_runs_again(client, raw, serial, tmp_path):
    pids = client.run(os.getpid)  # worker address -> pid
    futures = [client.submit(run_shard, raw, str(tmp_path), i, 2, key=f"shard-{i}", pure=False) for i in range(2)]
    victim = None
    deadline = time.time() + 120
    while victim is None and time.time() < deadline:
        busy = [w for w, tasks in client.processing().items() if tasks]
        # mid-night: a product is written and a worker is still at its shard
        if busy and any(pathlib.Path(tmp_path).rglob("*.fits")):
            victim = busy[0]
        time.sleep(0.02)
    assert victim is not None, "no shard started"
    os.kill(pids[victim], signal.SIGKILL)
    reports = client.gather(futures)  # the lost shard runs again on a worker
    assert {r["shard"][0] for r in reports} == {0, 1}
    assert pids[victim] not in {r["pid"] for r in reports}
    assert_same_products(tmp_path, serial[0])
    assert not no_temporaries(tmp_path)


def test_the_slurm_array_script_gives_the_serial_products(cli, raw, serial, tmp_path):
    """examples/slurm_night.sh as two array tasks (Slurm's variables set by hand)."""
    import subprocess
    from conftest import REPO
    script = REPO / "examples" / "slurm_night.sh"
    clred_bin = os.environ.get("CLRED_BIN", str(REPO / "build" / "clred"))
    env = dict(os.environ, PATH=f"{os.path.dirname(clred_bin)}:{os.environ['PATH']}", SLURM_ARRAY_TASK_COUNT="2")
    rawdir = os.path.dirname(raw[0])
    for i in (1, 2):
        p = subprocess.run(["bash", script, rawdir, tmp_path / "out"], env=dict(env, SLURM_ARRAY_TASK_ID=str(i)),
                           capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
    assert_same_products(tmp_path / "out", serial[0])
    assert sorted(p.name for p in (tmp_path / "out").glob("manifest*.json")) == [
        "manifest.shard-1-of-2.json", "manifest.shard-2-of-2.json"]
