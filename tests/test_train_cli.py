"""`nacc train` and the neural predictors on a machine without torch, train's progress
output in pipes, and the one-line notice when kernels compile (nacc.kernels.cpu.compile_notice)."""
from __future__ import annotations

import io
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

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


# -- nacc train as safe as compress ----------------------------------------------------------
TINY = ["--preset", "tiny", "--steps", "2", "--eval-every", "2", "--batch-size", "2",
        "--clip-len", "2", "-q"]


def test_train_refuses_bad_data_before_training(tmp_path, dev_clip):
    from conftest import cli_in_process

    np.save(tmp_path / "f.npy", dev_clip[:6].astype(np.float32))
    np.save(tmp_path / "big.npy", dev_clip[:6] + 2000)
    np.save(tmp_path / "one.npy", dev_clip[:1])
    np.save(tmp_path / "short.npy", dev_clip[:2])
    np.save(tmp_path / "w.npy", dev_clip[:6].reshape(6, 128)[:, :100])
    cases = [
        ("f.npy", "nacc: f.npy: dtype float32 is not an integer type; token ids are integers"),
        ("big.npy", "nacc: big.npy: token id 3012 >= vocabulary size 1024 (set --vocab)"),
        ("one.npy", "nacc: one.npy: 1 frame(s): a training segment needs at least 2"),
        ("missing.npy", "nacc: missing.npy: No such file or directory"),
        ("short.npy", "nacc: train: one segment of 2 frames: 1 go to validation (--val-frac "
                      "0.1), fewer than 2 are left to train on (give more frames, more "
                      "segments, or --val-frac 0)"),
    ]
    for name, msg in cases:
        r = cli_in_process(["train", name, "-o", "m", *TINY], tmp_path)
        assert (r.exit_code, r.output) == (1, msg + "\n"), name
    r = cli_in_process(["train", "w.npy", "-o", "m", "--frame-shape", "8x16", *TINY], tmp_path)
    assert (r.exit_code, r.output) == (1, "nacc: w.npy: --frame-shape 8x16 (128 tokens) does "
                                          "not fit frames of 100 tokens (shape (6, 100))\n")
    assert not (tmp_path / "m").exists() and not (tmp_path / "m.ckpt").exists()


@pytest.mark.slow     # two short trainings: > 10 s
def test_train_frames_like_compress_and_never_overwrites(tmp_path, dev_clip):
    """A (T, 128) array trains on 8x16 frames (as compress reads it); OUT is not replaced
    without -f; the folder holds only config and weights, the checkpoint is OUT.ckpt."""
    from conftest import cli_in_process

    np.save(tmp_path / "wide.npy", dev_clip[:12].reshape(12, 128))
    r = cli_in_process(["train", "wide.npy", "-o", "m", *TINY[:-1]], tmp_path)
    assert r.exit_code == 0, r.output
    assert "1 segment(s), 1536 tokens, vocab 1024, frames 8x16; transformer -> m\n" in r.output
    assert json.loads((tmp_path / "m" / "config.json").read_text())["frame_shape"] == [8, 16]
    first = sorted(p.name for p in (tmp_path / "m").iterdir())
    assert first[0] == "config.json" and first[1].startswith("weights-") and len(first) == 2
    assert (tmp_path / "m.ckpt").is_file()
    before = {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()}
    r = cli_in_process(["train", "wide.npy", "-o", "m", *TINY], tmp_path)
    assert (r.exit_code, r.output) == (1, "nacc: m: already exists (use -f to overwrite)\n")
    assert {p.name: p.read_bytes() for p in (tmp_path / "m").iterdir()} == before
    shutil.rmtree(tmp_path / "m")
    r = cli_in_process(["train", "wide.npy", "-o", "m", *TINY], tmp_path)
    assert (r.exit_code, r.output) == (1, "nacc: m.ckpt: a checkpoint of an earlier run "
                                          "exists: --resume continues from it, -f starts over\n")
    r = cli_in_process(["train", "wide.npy", "-o", "m", "-f", "--seed", "1", *TINY], tmp_path)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m", "m.ckpt", "wide.npy"]


def test_train_ctrl_c_says_how_to_resume(tmp_path, dev_clip, monkeypatch):
    from conftest import cli_in_process
    from nacc.training import train as nt

    def interrupted(*a, checkpoint=None, **k):
        raise nt.Interrupted(7, checkpoint)

    monkeypatch.setattr(nt, "train", interrupted)
    np.save(tmp_path / "a.npy", dev_clip[:12])
    r = cli_in_process(["train", "a.npy", "-o", "m", *TINY], tmp_path)
    assert r.exit_code == 130
    assert r.output == ("nacc: train: interrupted after step 7; checkpoint saved to m.ckpt: run "
                        "the same command with --resume to continue\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy"]      # no partial folder


def test_sigint_saves_a_checkpoint_that_resumes_exactly(tmp_path):
    """The first SIGINT lets the step finish, saves the checkpoint and raises Interrupted;
    resuming from it gives the model of an uninterrupted run, bit for bit."""
    import os
    import signal

    import pytest

    from nacc.neural import synth
    from nacc.neural.config import make_config
    from nacc.training.train import Interrupted, TrainConfig, checkpoint_path, train

    cfg = make_config("lstm", 32, (3, 4), preset="tiny")
    vids = synth.corpus(2, (10, 3, 4), 3, synth.SynthConfig(vocab=32))
    tc = TrainConfig(steps=6, batch_size=2, clip_len=4, eval_every=2, ckpt_every=100)
    _, _, a = train(cfg, vids, tc, out=tmp_path / "a", quiet=True)
    assert sorted(p.name for p in (tmp_path / "a").iterdir())[0] == "config.json"
    assert not (tmp_path / "a" / "checkpoint.pt").exists()

    def log(line):
        if line.startswith("step 2:"):
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(Interrupted) as e:
        train(cfg, vids, tc, out=tmp_path / "b", log=log)
    assert e.value.step == 2 and e.value.path == checkpoint_path(tmp_path / "b")
    assert e.value.path == tmp_path / "b.ckpt" and e.value.path.is_file()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    _, _, b = train(cfg, vids, tc, out=tmp_path / "b", quiet=True, resume=True)
    assert b["sha256"] == a["sha256"]


def test_checkpoint_save_is_whole_or_nothing(tmp_path, monkeypatch):
    """A checkpoint save that fails while publishing (e.g. a full disk) leaves the previous
    checkpoint byte-identical and no temporary file beside it; a save that succeeds replaces
    it with exactly what torch.save wrote."""
    import errno

    torch = pytest.importorskip("torch")
    from nacc import fileio
    from nacc.training import train as nt

    path = tmp_path / "m.ckpt"
    nt._save_checkpoint({"step": 1}, path)
    old = path.read_bytes()
    assert torch.load(io.BytesIO(old))["step"] == 1

    def full_disk(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(fileio, "publish", full_disk)
        with pytest.raises(OSError):
            nt._save_checkpoint({"step": 2, "big": torch.zeros(1000)}, path)
    assert path.read_bytes() == old
    assert [p.name for p in tmp_path.iterdir()] == ["m.ckpt"]
    nt._save_checkpoint({"step": 3}, path)
    assert torch.load(io.BytesIO(path.read_bytes()))["step"] == 3
