"""Alert packets (clred subtract --alerts) read by a broker's reader, fastavro:
ZTF's record layout, the candidate's values as clred's own catalog gives them
(magnitudes through the frame's MAGZP, jd from MJD-OBS), and cutouts that
gunzip to FITS images equal to clred's cutout cubes."""
import gzip
import io
import os
import pathlib
import shutil
import subprocess

import numpy as np
import pytest

fastavro = pytest.importorskip("fastavro")
from astropy.io import fits  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parents[2]


def clred_cli():
    path = os.environ.get("CLRED_BIN") or shutil.which("clred") or str(REPO / "build" / "clred")
    if not os.access(path, os.X_OK):
        pytest.skip("the clred CLI is not built (set CLRED_BIN)")

    def run(*args):
        p = subprocess.run([path, *map(str, args)], capture_output=True, text=True)
        assert p.returncode == 0, f"clred {' '.join(map(str, args))}: exit {p.returncode}: {p.stderr}"
        return p
    return run


def test_alerts_read_with_fastavro(tmp_path):
    run = clred_cli()
    pair = tmp_path / "pair"
    run("simulate-pair", "-o", pair, "--size", "128x128", "--ntransients", "12", "--seed", "5")
    mjd, exptime, zp = 60123.5, 60.0, 26.0
    with fits.open(pair / "new.fits", mode="update") as hdul:
        h = next(hdu for hdu in hdul if hdu.data is not None).header
        h["MJD-OBS"], h["EXPTIME"], h["FILTER"], h["MAGZP"] = mjd, exptime, "g", zp
    alerts = tmp_path / "alerts"
    run("subtract", pair / "new.fits", pair / "ref.fits", "-o", tmp_path / "diff.fits",
        "--new-psf", pair / "new_psf.fits", "--ref-psf", pair / "ref_psf.fits",
        "--candidates", tmp_path / "cands.csv", "--cutouts", tmp_path / "cut.fits", "--alerts", alerts)
    cat = np.genfromtxt(tmp_path / "cands.csv", delimiter=",", names=True)
    files = sorted(alerts.glob("*.avro"), key=lambda p: int(p.stem))
    assert len(files) == len(cat) >= 3

    pid = round(mjd * 1e5)  # MJD-OBS is the exposure's start
    with fits.open(tmp_path / "cut.fits") as cut:
        cubes = {name: cut[name].data for name in ("NEW", "REF", "DIFF")}
    for k, (path, row) in enumerate(zip(files, cat)):
        with open(path, "rb") as f:
            reader = fastavro.reader(f)
            assert reader.writer_schema["name"] == "ztf.alert"
            records = list(reader)
        assert len(records) == 1
        a = records[0]
        candid = pid * 1000000 + k + 1
        assert path.name == f"{candid}.avro"
        assert a["schemavsn"] == "3.3" and a["publisher"].startswith("clred")
        assert a["candid"] == candid and a["prv_candidates"] is None
        c = a["candidate"]
        assert c["candid"] == candid and c["pid"] == pid and c["fid"] == 1 and c["programid"] == 0
        assert c["jd"] == pytest.approx(mjd + 2400000.5, abs=1e-8)
        assert c["isdiffpos"] == ("t" if row["ISDIFFPOS"] else "f")
        assert c["xpos"] == pytest.approx(row["X"] + 1, abs=1e-4)
        assert c["ypos"] == pytest.approx(row["Y"] + 1, abs=1e-4)
        assert np.isnan(c["ra"]) and np.isnan(c["dec"])  # the simulated pair has no WCS
        magpsf = zp - 2.5 * np.log10(abs(row["FLUX"]))
        assert c["magpsf"] == pytest.approx(magpsf, abs=1e-5)
        assert c["sigmapsf"] == pytest.approx(2.5 / np.log(10) * row["FLUX_ERR"] / abs(row["FLUX"]), rel=1e-5)
        magap = zp - 2.5 * np.log10(abs(row["AP_FLUX"]))
        assert c["magap"] == pytest.approx(magap, abs=1e-5)
        assert c["magdiff"] == pytest.approx(magap - magpsf, abs=1e-5)
        assert c["scorr"] == pytest.approx(abs(row["SCORE"]), rel=1e-8)
        assert c["nneg"] == row["NNEG"] and c["nbad"] == row["NBAD"]
        for key, col in (("fwhm", "FWHM"), ("elong", "ELONGATION"), ("sumrat", "SUMRAT"),
                         ("mindtoedge", "EDGE_DIST")):
            assert c[key] == pytest.approx(row[col], rel=1e-6, abs=1e-6), key
        if np.isfinite(row["REF_DIST"]):
            assert c["distnr"] == pytest.approx(row["REF_DIST"], rel=1e-6)
        else:
            assert c["distnr"] is None
        assert c["magzpsci"] == zp and c["exptime"] == exptime
        assert 15 < c["diffmaglim"] < 30
        assert c["rb"] is None and c["drb"] is None and c["ssnamenr"] is None
        for field, cube, tail in (("cutoutScience", "NEW", "_targ_sci.fits.gz"),
                                  ("cutoutTemplate", "REF", "_ref.fits.gz"),
                                  ("cutoutDifference", "DIFF", "_targ_scimref.fits.gz")):
            stamp = a[field]
            assert stamp["fileName"].startswith(f"candid{candid}_") and stamp["fileName"].endswith(tail)
            with fits.open(io.BytesIO(gzip.decompress(stamp["stampData"]))) as s:
                np.testing.assert_array_equal(s[0].data, cubes[cube][k])
