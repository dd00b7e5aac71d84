"""The command line: zstd-like behaviour, exit codes, messages, nothing lost."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import NACC, ROOT


def run(*args, cwd, stdin=None):
    return subprocess.run([*NACC, *map(str, args)], cwd=cwd, input=stdin, capture_output=True,
                          env=_env())


def _env():
    import os

    env = dict(os.environ)
    env["PYTHONPATH"] = str(ROOT)
    return env


def digest(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


@pytest.fixture
def clip_file(tmp_path, dev_clip):
    p = tmp_path / "clip.npy"
    np.save(p, dev_clip[:30])
    return p


@pytest.mark.slow     # subprocess CLI runs: > 3 s
def test_compress_decompress_like_zstd(tmp_path, clip_file):
    before = digest(clip_file)
    r = run("compress", "-q", "--predictor", "prevframe", clip_file.name, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr == b"" and r.stdout == b""
    archive = tmp_path / "clip.npy.nacc"
    assert archive.exists() and digest(clip_file) == before
    # refuses to overwrite, input untouched, nothing else written
    r = run("compress", "--predictor", "prevframe", clip_file.name, cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr.decode().strip() == \
        "nacc: clip.npy: clip.npy.nacc already exists (use -f to overwrite)"
    clip_file.rename(tmp_path / "orig.npy")
    r = run("decompress", archive.name, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert digest(tmp_path / "clip.npy") == before
    r = run("decompress", archive.name, cwd=tmp_path)
    assert r.returncode == 1 and b"already exists" in r.stderr
    r = run("decompress", "-f", archive.name, cwd=tmp_path)
    assert r.returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.npy", "clip.npy.nacc", "orig.npy"]


@pytest.mark.slow     # subprocess CLI runs: > 3 s
def test_stdin_stdout_and_test_info(tmp_path, clip_file):
    raw = clip_file.read_bytes()
    r = run("compress", "--predictor", "prevframe", "-", cwd=tmp_path, stdin=raw)
    assert r.returncode == 0, r.stderr
    r2 = run("decompress", "-c", "-", cwd=tmp_path, stdin=r.stdout)
    assert r2.returncode == 0 and r2.stdout == raw
    (tmp_path / "s.nacc").write_bytes(r.stdout)
    assert run("test", "s.nacc", cwd=tmp_path).returncode == 0
    info = run("info", "s.nacc", cwd=tmp_path)
    assert info.returncode == 0 and b"predictor prevframe" in info.stdout
    assert b"(30, 8, 16)" in info.stdout


def test_verify_reports_rate(tmp_path, clip_file):
    r = run("verify", "--predictor", "uniform", clip_file.name, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    line = r.stdout.decode()
    assert line.startswith("clip.npy: OK uniform rate 0.9856, 10.1458 bits/token, 4870 bytes")
    assert line.endswith(", 3840 tokens\n")


def test_errors_name_the_file_and_exit_1(tmp_path):
    np.save(tmp_path / "f.npy", np.zeros((3, 4), np.float32))
    np.save(tmp_path / "big.npy", np.full((2, 8, 16), 5000, np.int16))
    (tmp_path / "junk.nacc").write_bytes(b"not an archive")
    cases = [
        (("compress", "f.npy"), "nacc: f.npy: dtype float32 is not an integer type"),
        (("compress", "big.npy"), "nacc: big.npy: token id 5000 >= vocabulary size 1024"),
        (("compress", "missing.npy"), "nacc: missing.npy: No such file or directory"),
        (("decompress", "junk.nacc"), "nacc: junk.nacc: not a nacc archive (bad magic)"),
        (("test", "junk.nacc"), "nacc: junk.nacc: not a nacc archive (bad magic)"),
    ]
    for args, msg in cases:
        r = run(*args, cwd=tmp_path)
        assert r.returncode == 1, args
        assert r.stderr.decode().startswith(msg), (args, r.stderr)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.npy", "f.npy", "junk.nacc"]
    # --vocab makes the big tokens legal
    assert run("compress", "-q", "--vocab", "8192", "big.npy", cwd=tmp_path).returncode == 0


def test_usage_errors_exit_2(tmp_path):
    assert run("compress", cwd=tmp_path).returncode == 2
    assert run("compress", "--frame-shape", "8by16", "x.npy", cwd=tmp_path).returncode == 2
    assert run("nonsense", cwd=tmp_path).returncode == 2
    # a predictor that does not exist is the user's choice, not the data's (test_ux_cli)
    r = run("compress", "--predictor", "zz", "x.npy", cwd=tmp_path)
    assert r.returncode == 2 and b"Invalid value for '--predictor': unknown predictor 'zz'" \
        in r.stderr


@pytest.mark.slow     # subprocess CLI runs: > 3 s
def test_decompress_needs_known_suffix(tmp_path, clip_file):
    run("compress", "-q", "--predictor", "prevframe", "-o", "out.bin", clip_file.name,
        cwd=tmp_path)
    r = run("decompress", "out.bin", cwd=tmp_path)
    assert r.returncode == 1 and b"unknown suffix" in r.stderr
    r = run("decompress", "out.bin", "-o", "back.npy", cwd=tmp_path)
    assert r.returncode == 0 and (tmp_path / "back.npy").read_bytes() == clip_file.read_bytes()


@pytest.mark.slow     # subprocess CLI runs: > 3 s
def test_directory_and_many_inputs_make_one_archive(tmp_path, dev_clip):
    d = tmp_path / "segs"
    (d / "sub").mkdir(parents=True)
    np.save(d / "a.npy", dev_clip[:5])
    np.save(d / "sub" / "b.npy", dev_clip[5:9])
    r = run("compress", "-q", "--predictor", "prevframe", "segs", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run("decompress", "segs.nacc", "-o", "out", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    for rel in ("a.npy", "sub/b.npy"):
        assert (tmp_path / "out" / rel).read_bytes() == (d / rel).read_bytes()
    r = run("compress", "-q", "--predictor", "prevframe", "-T", "2", "-o", "two.nacc",
            "segs/a.npy", "segs/sub/b.npy", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r1 = run("compress", "-q", "--predictor", "prevframe", "-T", "1", "-o", "one.nacc",
             "segs/a.npy", "segs/sub/b.npy", cwd=tmp_path)
    assert r1.returncode == 0
    assert (tmp_path / "two.nacc").read_bytes() == (tmp_path / "one.nacc").read_bytes()


def test_rm_removes_input_only_after_success(tmp_path, clip_file):
    r = run("compress", "-q", "--rm", "--predictor", "prevframe", clip_file.name, cwd=tmp_path)
    assert r.returncode == 0 and not clip_file.exists()


def test_refuses_binary_to_a_terminal(monkeypatch):
    from nacc import fileio
    from nacc.errors import NaccError

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    with pytest.raises(NaccError, match="terminal"):
        fileio.write_atomic("-", [b"x"], force=False)


def test_failed_write_leaves_nothing(tmp_path):
    from nacc import fileio

    def chunks():
        yield b"abc"
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        fileio.write_atomic(str(tmp_path / "out.nacc"), chunks(), force=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow     # subprocess CLI runs: > 3 s
def test_npz_archive_decompresses_into_a_folder_of_its_stem(tmp_path, dev_clip):
    np.savez(tmp_path / "pair.npz", first=dev_clip[:3], second=dev_clip[3:5])
    r = run("compress", "-q", "--predictor", "prevframe", "pair.npz", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    r = run("decompress", "pair.npz.nacc", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    np.testing.assert_array_equal(np.load(tmp_path / "pair" / "first.npy"), dev_clip[:3])
    np.testing.assert_array_equal(np.load(tmp_path / "pair" / "second.npy"), dev_clip[3:5])
    assert (tmp_path / "pair.npz").exists()


def test_outputs_get_ordinary_permissions(tmp_path, clip_file):
    import os
    import stat

    run("compress", "-q", "--predictor", "prevframe", clip_file.name, cwd=tmp_path)
    mode = stat.S_IMODE(os.stat(tmp_path / "clip.npy.nacc").st_mode)
    mask = os.umask(0)
    os.umask(mask)
    assert mode == 0o666 & ~mask


def test_predictor_params_reach_the_archive(tmp_path, clip_file):
    r = run("compress", "-q", "--param", "prior=none", clip_file.name, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    info = run("info", "clip.npy.nacc", cwd=tmp_path).stdout.decode()
    assert "predictor cm {'prior': 'none'}" in info
    r = run("compress", "-f", "--param", "prior=nope", clip_file.name, cwd=tmp_path)
    assert r.returncode == 2 and b"Invalid value for '--param': cm prior 'nope' not found" \
        in r.stderr
    # an integer parameter is read as one (the archive records it as a JSON integer)
    r = run("compress", "-f", "-q", "--param", "prior=none", "--param", "check=1",
            clip_file.name, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    info = run("info", "clip.npy.nacc", cwd=tmp_path).stdout.decode()
    assert "predictor cm {'check': 1, 'prior': 'none'}" in info


def test_missing_model_is_a_clear_error(tmp_path, clip_file):
    r = run("compress", "--predictor", "transformer", clip_file.name, cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.decode().strip().endswith(
        "Error: Invalid value for '--model': predictor 'transformer': missing a required "
        "argument: 'model' (needs --model)")
    r = run("compress", "--predictor", "lstm", "--model", "no/where", clip_file.name,
            cwd=tmp_path)
    assert r.returncode == 1
    assert r.stderr == b"nacc: no/where: no config.json (not a model folder)\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.npy"]


@pytest.mark.parametrize("command", ["compress", "submission", "train"])
def test_vocab_option_bound_is_the_container_limit(command, monkeypatch):
    """Every --vocab is checked against container.MAX_VOCAB (one definition): the limit
    passes, one above it is a usage error naming the range."""
    from click.testing import CliRunner

    from nacc import cli, container
    from nacc.cli import common

    def at_limit(value):
        return common.VOCAB.convert(value, None, None)

    assert at_limit(str(container.MAX_VOCAB)) == container.MAX_VOCAB
    monkeypatch.setattr(container, "MAX_VOCAB", 300)
    r = CliRunner().invoke(cli.main, [command, "x.npy", "--vocab", "301"])
    assert r.exit_code == 2
    assert "Invalid value for '--vocab': 301 is not in the range 2<=x<=300." in r.output
