"""``nacc submission`` + ``bench/evaluate_submission.sh``: the commaVQ challenge flow on real
segments (the dev clip cut into 3 segments of 200 frames with commaVQ-style names).  The
script's fresh-venv step is replaced by this interpreter (EVAL_PYTHON) to stay fast."""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import ROOT
from nacc.cli import main

SCRIPT = ROOT / "bench" / "evaluate_submission.sh"
NAMES = [f"b0c9d2329ad1606b_2018-08-02--08-34-47_{i}.npy" for i in (4, 5, 6)]


def npy_bytes(arr) -> bytes:
    b = io.BytesIO()
    np.save(b, arr)
    return b.getvalue()


@pytest.fixture(scope="module")
def real(tmp_path_factory, dev_clip):
    """A shard of 3 real segments and the same segments as a directory of originals."""
    d = tmp_path_factory.mktemp("real")
    (d / "originals").mkdir()
    with tarfile.open(d / "data-0000.tar.gz", "w:gz") as t:
        for i, name in enumerate(NAMES):
            raw = npy_bytes(dev_clip[200 * i:200 * (i + 1)])
            (d / "originals" / name).write_bytes(raw)
            for member, data in ((f"{i:06d}.json", json.dumps({"file_name": name}).encode()),
                                 (f"{i:06d}.token.npy", raw)):
                info = tarfile.TarInfo(member)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    return d


@pytest.fixture(scope="module")
def zip_path(real):
    out = real / "submission.zip"
    r = CliRunner().invoke(main, ["submission", str(real / "data-0000.tar.gz"), "-o", str(out),
                                  "--predictor", "prevframe"])
    assert r.exit_code == 0, r.output
    return out


def evaluate(zip_file, originals, tmp_path):
    env = dict(os.environ, EVAL_PYTHON=sys.executable, TMPDIR=str(tmp_path))
    env.pop("NUMBA_CACHE_DIR", None)    # numba caches the unzipped source next to it
    return subprocess.run(["bash", str(SCRIPT), str(zip_file), str(originals)],
                          capture_output=True, text=True, env=env)


def test_zip_layout(zip_path):
    z = zipfile.ZipFile(zip_path)
    names = z.namelist()
    assert names[0] == "decompress.py" and "submission.nacc" in names
    assert "nacc_src/nacc/codec.py" in names and "nacc_src/nacc/predictors/prevframe.py" in names
    assert not any("__pycache__" in n or n.startswith("nacc_src/tests") for n in names)
    assert "nacc_src/nacc/cli.py" not in names          # decoding does not import it
    assert z.getinfo("submission.nacc").compress_type == zipfile.ZIP_STORED
    script = z.read("decompress.py").decode()
    assert "'numpy" in script and "'numba" in script     # pip requirements from PyPI


def test_evaluate_flow_on_real_segments(zip_path, real, tmp_path):
    r = evaluate(zip_path, real / "originals", tmp_path)
    assert r.returncode == 0, r.stderr
    assert "3 file(s) byte-identical" in r.stderr
    # every segment under its exact dataset name (the unzipped folder is OUTPUT_DIR)
    assert r.stderr.count("decompress.py: 3 segment(s) -> ") == 1
    rate = float(r.stdout.split("Compression rate:")[1])
    assert rate == pytest.approx(3 * 200 * 128 * 10 / 8 / zip_path.stat().st_size, abs=1e-3)
    # the shard itself is also accepted as the originals
    r = evaluate(zip_path, real / "data-0000.tar.gz", tmp_path)
    assert r.returncode == 0, r.stderr
    assert list(tmp_path.iterdir()) == []               # the script cleans up


def test_decompress_py_needs_output_dir(zip_path, tmp_path):
    zipfile.ZipFile(zip_path).extractall(tmp_path / "sub")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OUTPUT_DIR")}
    r = subprocess.run([sys.executable, str(tmp_path / "sub" / "decompress.py")],
                       capture_output=True, text=True, env=env)
    assert r.returncode == 2 and "usage: OUTPUT_DIR=dir python decompress.py" in r.stderr


def test_existing_output_is_refused(zip_path, real):
    before = zip_path.read_bytes()
    r = CliRunner().invoke(main, ["submission", str(real / "originals"), "-o", str(zip_path)])
    assert r.exit_code == 1
    assert f"nacc: {zip_path}: {zip_path} already exists (use -f to overwrite)" in r.output
    assert zip_path.read_bytes() == before


def test_not_a_submission(tmp_path, real):
    z = tmp_path / "other.zip"
    with zipfile.ZipFile(z, "w") as f:
        f.writestr("decompress.py", "print('hi')\n")
    r = evaluate(z, real / "originals", tmp_path)
    assert r.returncode == 1
    assert r.stderr.strip() == f"nacc: {z}: not a nacc submission (no submission.nacc / nacc_src/)"
    (tmp_path / "junk.zip").write_bytes(b"not a zip")
    r = evaluate(tmp_path / "junk.zip", real / "originals", tmp_path)
    assert r.returncode == 1 and r.stderr.startswith(f"nacc: {tmp_path / 'junk.zip'}: not a zip")


def test_reserved_names_and_bad_input(tmp_path, dev_clip):
    d = tmp_path / "segs"
    d.mkdir()
    np.save(d / "decompress.py.npy", dev_clip[:3])
    np.save(d / "a.npy", dev_clip[:3])
    (d / "nacc_src").mkdir()
    np.save(d / "nacc_src" / "x.npy", dev_clip[:3])
    r = CliRunner().invoke(main, ["submission", str(d), "-o", str(tmp_path / "s.zip")])
    assert r.exit_code == 1 and "clashes with the submission's own 'nacc_src'" in r.output
    assert not (tmp_path / "s.zip").exists()
    r = CliRunner().invoke(main, ["submission", str(tmp_path / "nope.npy"), "-o",
                                  str(tmp_path / "s.zip")])
    assert r.exit_code == 1 and "No such file or directory" in r.output


def test_minify_keeps_code(tmp_path):
    from nacc.submission import minify

    src = (ROOT / "nacc" / "container.py").read_text()
    small = minify(src, "container.py")
    assert len(small) < 0.8 * len(src) and '"""' not in small
    compile(small, "container.py", "exec")
