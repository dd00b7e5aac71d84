"""The start and exit of a ``nacc`` process: what ``nacc decompress`` of a cm archive imports
(nothing it does not use), and ``nacc.cli.run``'s quick exit (same status, same output)."""
from __future__ import annotations

import os
import stat
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT

# a process that decodes through ``nacc.cli.run`` and, at its exit, prints the modules of
# these packages it loaded (not those the interpreter's start loaded, e.g. an editable
# install's finder imports pathlib)
_WATCH = ("numba", "llvmlite", "torch", "triton", "zstandard", "tqdm", "tempfile", "shutil",
          "pathlib", "concurrent", "multiprocessing", "subprocess", "nacc.training",
          "nacc.neural", "nacc.gpt")
_CHILD = f"""
import atexit, sys
before = set(sys.modules)
def report():
    watch = {_WATCH!r}
    print("LOADED", *sorted(m for m in set(sys.modules) - before
                            if any(m == w or m.startswith(w + ".") for w in watch)))
atexit.register(report)
sys.argv = ["nacc", *sys.argv[1:]]
from nacc.cli import run
run()
"""


def _nacc(args, cwd, code=None):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "nacc.cli",
                                                            *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True)


@pytest.fixture(scope="module")
def archive(tmp_path_factory, dev_clip):
    import nacc

    d = tmp_path_factory.mktemp("startup")
    clip = np.ascontiguousarray(dev_clip[:3])
    np.save(d / "clip.npy", clip)
    (d / "clip.npy.nacc").write_bytes(nacc.compress(clip))
    return d


def test_decode_imports_only_what_it_uses(archive):
    """``nacc decompress`` of a cm archive loads no training, neural or GPU code, no
    progress bar, no pools, no tempfile/shutil (the output is written by ``fileio``), and
    no numba where the ahead-of-time kernels are in use."""
    from nacc.kernels.cpu import aot

    r = _nacc(["decompress", "-q", "-f", "clip.npy.nacc", "-o", "out.npy"], archive, _CHILD)
    assert r.returncode == 0, r.stderr.decode()
    assert (archive / "out.npy").read_bytes() == (archive / "clip.npy").read_bytes()
    loaded = r.stdout.decode().split("LOADED", 1)[1].split()
    allowed = () if aot.kernels() is not None else ("numba", "llvmlite")
    assert [m for m in loaded if m.split(".")[0] not in allowed] == []


def test_run_exit_status_and_output(archive):
    """``nacc.cli.run`` (``python -m nacc.cli``) ends with the command's status, and what
    the command wrote to stdout arrives whole."""
    r = _nacc(["decompress", "-c", "clip.npy.nacc"], archive)
    assert r.returncode == 0 and r.stdout == (archive / "clip.npy").read_bytes()
    r = _nacc(["decompress", "missing.nacc"], archive)
    assert r.returncode == 1 and b"missing.nacc" in r.stderr
    r = _nacc(["decompress", "--no-such-option", "clip.npy.nacc"], archive)
    assert r.returncode == 2 and b"--no-such-option" in r.stderr


def test_new_tmp(tmp_path):
    """The temporary files of single-file writes: named as ``clean_stale`` finds them, new
    (never an existing file), mode 0600, absolute paths."""
    from nacc import fileio

    fd1, p1 = fileio._new_tmp(tmp_path, "out.npy")
    fd2, p2 = fileio._new_tmp(str(tmp_path), "out.npy")
    os.close(fd1)
    os.close(fd2)
    assert p1 != p2 and os.path.isabs(p1) and os.path.dirname(p1) == str(tmp_path)
    for p in (p1, p2):
        m = fileio._TMP.match(os.path.basename(p))
        assert m and int(m.group(1)) == os.getpid()
        assert stat.S_IMODE(os.stat(p).st_mode) == 0o600 and os.path.getsize(p) == 0
