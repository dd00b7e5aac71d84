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
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import ROOT
from nacc.cli import main
from nacc.errors import NaccError

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
    assert not any(n.startswith("nacc_src/nacc/cli/") for n in names)  # decoding does not import it
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


def test_decompress_py_writes_all_or_nothing_with_the_cli_modes(zip_path, tmp_path):
    """A segment that cannot be written (here a folder where the third goes) leaves
    OUTPUT_DIR as it was; a run that succeeds writes files of mode 0o666 & ~umask, as the
    CLI does (issue 28: segments before a bad one were left, readable by their owner only)."""
    zipfile.ZipFile(zip_path).extractall(tmp_path / "sub")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "OUTPUT_DIR")}
    out = tmp_path / "out"
    (out / NAMES[2]).mkdir(parents=True)

    def run():
        return subprocess.run(["sh", "-c", f"umask 022 && exec {sys.executable} "
                               f"{tmp_path / 'sub' / 'decompress.py'}"],
                              capture_output=True, text=True,
                              env=dict(env, OUTPUT_DIR=str(out)))

    r = run()
    assert r.returncode == 1
    assert f"nacc: submission.nacc: {out / NAMES[2]} is a folder" in r.stderr, r.stderr
    assert sorted(p.name for p in out.iterdir()) == [NAMES[2]]
    (out / NAMES[2]).rmdir()
    r = run()
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(NAMES)
    assert {oct((out / n).stat().st_mode & 0o777) for n in NAMES} == {"0o644"}


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


# -- the zip is complete wherever nacc is installed ----------------------------------------
def test_models_outside_the_package_are_packed(tmp_path, dev_clip, monkeypatch):
    """A pip install keeps the cm prior in <prefix>/share/nacc/models, outside the package
    (here: $NACC_MODELS below a .venv folder, as in a typical install); the zip must still
    carry it as nacc_src/models, and decompress.py must point nacc there."""
    import shutil

    from nacc import submission

    zoo = tmp_path / ".venv" / "share" / "nacc" / "models"
    shutil.copytree(ROOT / "models" / "cm-prior", zoo / "cm-prior")
    monkeypatch.setenv("NACC_MODELS", str(zoo))
    import nacc

    archive = nacc.compress(dev_clip[:2], predictor="cm")
    p = submission.plan(archive)
    prior = json.loads((ROOT / "models" / "cm-prior" / "priors.json").read_text())
    assert f"{submission.SRC}/models/cm-prior/priors.json" in p.files
    assert p.files[f"{submission.SRC}/models/cm-prior/priors.json"] == \
        (zoo / "cm-prior" / "priors.json").read_bytes()
    shipped = sorted(n for n in p.files if n.startswith(f"{submission.SRC}/models/"))
    assert len(shipped) >= 2 and prior                       # json + the default prior's files
    assert not any(str(zoo) in n or ".venv" in n for n in p.files)
    script = submission.decompress_script(p)
    assert 'os.environ["NACC_MODELS"] = str(HERE / "nacc_src" / "models")' in script


def _fake_zip(script: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("decompress.py", script)
    return buf.getvalue()


WRITE = ("import os, pathlib\nout = pathlib.Path(os.environ['OUTPUT_DIR'])\n"
         "out.mkdir(parents=True, exist_ok=True)\n")


def test_self_test_refuses_an_incomplete_zip():
    """The self-test fails a zip that reads this installation, writes wrong bytes or
    nothing, or exits non-zero; and passes one that restores the sample from itself."""
    from nacc import submission

    want = [("a.npy", b"\x93NUMPYdata"), ("b.npy", b"other")]
    ok = WRITE + "(out / 'a.npy').write_bytes(b'\\x93NUMPYdata')\n"
    assert submission.self_test(_fake_zip(ok), want) >= 0
    reads = ok + f"open({str(submission.package_root() / 'nacc' / 'errors.py')!r}).read()\n"
    with pytest.raises(NaccError, match=r"self-test: decompress.py read .*nacc/errors.py from "
                                        r"this installation, not from the zip"):
        submission.self_test(_fake_zip(reads), want)
    with pytest.raises(NaccError, match="wrote a.npy differently from the original"):
        submission.self_test(_fake_zip(WRITE + "(out / 'a.npy').write_bytes(b'x')\n"), want)
    with pytest.raises(NaccError, match="did not write a.npy"):
        submission.self_test(_fake_zip(WRITE), want)
    with pytest.raises(NaccError, match=r"failed \(exit 1\): .*ModuleNotFoundError: No module "
                                        r"named 'nacc_missing'"):
        submission.self_test(_fake_zip("import nacc_missing\n"), want)
    # a clean environment: no PYTHONPATH, -I, a fresh HOME, cwd outside the zip
    env = ("import os, sys, pathlib\nassert 'PYTHONPATH' not in os.environ\n"
           "assert sys.flags.isolated and os.environ['NACC_AOT'] == '0'\n"
           "assert pathlib.Path.cwd() != pathlib.Path(__file__).parent\n"
           "assert os.environ['NACC_SUBMISSION_SAMPLE'] == '1'\n")
    assert submission.self_test(_fake_zip(env + ok.split("\n", 1)[1].replace(
        "out =", "import pathlib\nout =")), want) >= 0


def test_self_test_output_is_reported(zip_path, real):
    r = CliRunner().invoke(main, ["submission", str(real / "data-0000.tar.gz"), "-o",
                                  str(zip_path), "-f", "--predictor", "prevframe"])
    assert r.exit_code == 0, r.output
    assert "self-test: decoding 1 segment(s) with the zip alone in a clean environment" in r.output
    assert "self-test passed (1 segment(s) from the zip alone in " in r.output


def _link_dists(dists, into):
    """A folder of symlinks to the top-level files of installed distributions (a venv that
    holds only them, without network)."""
    import importlib.metadata as md

    into.mkdir(parents=True, exist_ok=True)
    for d in dists:
        dist = md.distribution(d)
        for top in {f.parts[0] for f in dist.files or [] if f.parts[0] not in ("..", "bin")}:
            src = Path(dist.locate_file(top))
            if src.exists() and not (into / top).exists():
                (into / top).symlink_to(src)


def _venv(path, dists):
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    lib = next(path.glob("lib/python*/site-packages"))
    _link_dists(dists, path / "deps")
    # a site dir, so that the .pth files among them run (setuptools' distutils shim)
    (lib / "deps.pth").write_text(f"import site; site.addsitedir({str(path / 'deps')!r})\n")
    return path / "bin" / "python"


@pytest.mark.slow
def test_pip_installed_submission_passes_the_protocol(real, tmp_path):
    """The whole flow from a plain (non-editable) pip install: `nacc submission` with the
    default cm prior (in share/nacc/models there), then bench/evaluate_submission.sh with a
    fresh venv holding only numpy and numba (decompress.py's requirements)."""
    deps = ["numpy", "numba", "llvmlite", "click", "tqdm"]   # install_requires only
    py = _venv(tmp_path / "inst", deps)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "NACC_MODELS",
                                                            "NUMBA_CACHE_DIR")}
    # a wheel built here (offline), then a plain pip install of it in the fresh venv
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-index",
                    "--no-build-isolation", "-w", str(tmp_path / "whl"), str(ROOT)],
                   check=True, env=env, cwd=tmp_path)
    wheel, = (tmp_path / "whl").glob("nacc-*.whl")
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                    str(wheel)], check=True, env=env, cwd=tmp_path)
    nacc_bin = tmp_path / "inst" / "bin" / "nacc"
    where = subprocess.run([str(py), "-c", "import nacc.models as m; print(m.models_dir())"],
                           capture_output=True, text=True, env=env, cwd=tmp_path, check=True)
    assert where.stdout.strip() == str(tmp_path / "inst" / "share" / "nacc" / "models")
    out = tmp_path / "sub.zip"
    r = subprocess.run([str(nacc_bin), "submission", str(real / "data-0000.tar.gz"), "-o",
                        str(out)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "self-test passed" in r.stderr
    names = zipfile.ZipFile(out).namelist()
    assert "nacc_src/models/cm-prior/priors.json" in names
    ev_py = _venv(tmp_path / "eval", ["numpy", "numba", "llvmlite"])
    ev_env = dict(env, EVAL_PYTHON=str(ev_py), TMPDIR=str(tmp_path))
    r = subprocess.run(["bash", str(SCRIPT), str(out), str(real / "originals")],
                       capture_output=True, text=True, env=ev_env)
    assert r.returncode == 0, r.stderr
    assert "3 file(s) byte-identical" in r.stderr
    rate = float(r.stdout.split("Compression rate:")[1])
    assert rate == pytest.approx(3 * 200 * 128 * 10 / 8 / out.stat().st_size, abs=1e-3)
