"""`nacc train` and the neural predictors on a machine without torch, train's progress
output in pipes, and the one-line notice when kernels compile (nacc.kernels.cpu.compile_notice)."""
from __future__ import annotations

import io
import subprocess
import sys

import numpy as np

from conftest import ROOT, cli_without

# run nacc's CLI with torch made absent (as on a machine where it is not installed)
NO_TORCH = cli_without("torch")


def _run(args, cwd, code=None):
    cmd = [sys.executable, "-c", code, *args] if code else [sys.executable, "-m", "nacc.cli", *args]
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin",
                               "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1",
                               "NUMBA_CACHE_DIR": str(ROOT / ".venv" / "numba-cache")})


def test_train_without_torch_says_so(tmp_path, dev_clip):
    np.save(tmp_path / "a.npy", dev_clip[:4])
    r = _run(["train", "a.npy", "-o", "m"], tmp_path, NO_TORCH)
    assert r.returncode == 1
    assert r.stderr == ("nacc: train: needs torch (pip install 'nacc[neural]'; on a machine "
                        "without a GPU the CPU build is much smaller: pip install torch "
                        "--index-url https://download.pytorch.org/whl/cpu)\n")
    assert not (tmp_path / "m").exists()


def test_neural_coding_without_torch(tmp_path, dev_clip):
    """The shipped lstm model codes and decodes with numpy and numba only."""
    np.save(tmp_path / "a.npy", dev_clip[:2])
    model = ROOT / "models" / "commavq-dev-lstm"
    r = _run(["compress", "a.npy", "--predictor", "lstm", "--model", str(model), "-q"],
             tmp_path, NO_TORCH)
    assert r.returncode == 0, r.stderr
    (tmp_path / "a.npy").rename(tmp_path / "orig.npy")
    r = _run(["decompress", "a.npy.nacc", "-q"], tmp_path, NO_TORCH)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "a.npy").read_bytes() == (tmp_path / "orig.npy").read_bytes()


def test_train_progress_in_a_pipe_is_plain_lines(tmp_path, dev_clip):
    np.save(tmp_path / "a.npy", dev_clip[:12])
    r = _run(["train", "a.npy", "-o", "m", "--preset", "tiny", "--steps", "4",
              "--eval-every", "2", "--batch-size", "2", "--clip-len", "2"], tmp_path)
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr and "\x1b" not in r.stderr
    lines = r.stderr.splitlines()
    assert lines[0] == "1 segment(s), 1536 tokens, vocab 1024, frames 8x16; transformer -> m"
    assert [ln.split(":")[0] for ln in lines[1:3]] == ["step 2", "step 4"]
    assert lines[-1].startswith("wrote m (sha256 ")
    r = _run(["train", "a.npy", "-o", "q", "--preset", "tiny", "--steps", "2",
              "--eval-every", "2", "--batch-size", "2", "--clip-len", "2", "-q"], tmp_path)
    assert r.returncode == 0 and r.stderr == "" and r.stdout == ""


class _Tty(io.StringIO):
    def __init__(self, tty):
        super().__init__()
        self._tty = tty

    def isatty(self):
        return self._tty


def test_compile_notice_once_on_a_terminal_or_verbose(monkeypatch):
    from nacc.kernels.cpu import compile_notice as cn

    for tty, verbose, want in ((False, False, ""), (True, False, cn.MESSAGE + "\n"),
                               (False, True, cn.MESSAGE + "\n")):
        err = _Tty(tty)
        monkeypatch.setattr(sys, "stderr", err)
        monkeypatch.setattr(cn, "_shown", False)
        cn.enable(verbose)
        cn.show()
        cn.show()
        assert err.getvalue() == want
    cn.enable(False)
    assert cn.MESSAGE == "nacc: compiling kernels (first run only)..."


def test_compile_notice_fires_on_a_real_compile_only(monkeypatch):
    """numba's compile event (a cache miss) shows the line; a call of a compiled function
    does not."""
    import numba

    from nacc.kernels.cpu import compile_notice as cn

    cn.install()
    err = _Tty(True)
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(cn, "_shown", False)

    @numba.njit(cache=False)
    def f(x):
        return x + 1

    assert f(1) == 2
    assert err.getvalue() == cn.MESSAGE + "\n"
    monkeypatch.setattr(cn, "_shown", False)
    err.truncate(0)
    err.seek(0)
    assert f(2) == 3                   # already compiled: no event
    assert err.getvalue() == ""
