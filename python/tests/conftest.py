"""Shared fixtures: one context, a small simulated night, the clred CLI."""
import os
import pathlib
import shutil
import subprocess

import numpy as np
import pytest

import clred

REPO = pathlib.Path(__file__).resolve().parents[2]
DATA = pathlib.Path(os.environ.get("CLRED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def ctx():
    return clred.Context()


@pytest.fixture(scope="session")
def cli():
    """The clred executable (CLRED_BIN, else the build beside the sources)."""
    path = os.environ.get("CLRED_BIN") or shutil.which("clred") or str(REPO / "build" / "clred")
    if not os.access(path, os.X_OK):
        pytest.skip("the clred CLI is not built (set CLRED_BIN)")

    def run(*args, ok=True):
        p = subprocess.run([path, *map(str, args)], capture_output=True, text=True)
        if ok and p.returncode != 0:
            raise AssertionError(f"clred {' '.join(map(str, args))}: exit {p.returncode}: {p.stderr}")
        return p
    return run


@pytest.fixture(scope="session")
def night(tmp_path_factory):
    """A small raw night (96 x 80 pixels): 3 bias, 3 dark, 3 flat, 4 science."""
    d = tmp_path_factory.mktemp("night")
    clred.simulate(d, seed=3, size=(96, 80), nbias=3, ndark=3, nflat=3, nscience=4, nepoch2=0, nstars=25,
                   overwrite=True)
    return d


def sorted_glob(d, pattern):
    return sorted(str(p) for p in pathlib.Path(d).glob(pattern))


def assert_same(a, b, rtol=0.0):
    """Equal images (NaN where the other is NaN); rtol 0 = bit for bit."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape
    if rtol == 0:
        np.testing.assert_array_equal(a, b)
    else:
        np.testing.assert_allclose(a, b, rtol=rtol, atol=0, equal_nan=True)
