"""Nothing lost, round 2 (issue 28): one test per way nacc lost data or resources.

Each test states the class it covers; the README's promises (no overwrite without ``-f``;
an input removed only once its archive restores it) are proved here and in test_inputs.
"""
from __future__ import annotations

import io
import os
import resource
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import weakref
import zipfile
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, cli_in_process
from nacc import codec, fileio, inputs, npyio
from nacc.errors import NaccError

sys.path.insert(0, str(Path(__file__).parent))
import fuzz

GIB = 1 << 30


def npy(arr) -> bytes:
    b = io.BytesIO()
    np.save(b, arr)
    return b.getvalue()


def clip(seed: int, frames: int = 3) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 1024, (frames, 8, 16)).astype(np.int16)


def cli(*args, cwd):
    return cli_in_process(list(args), cwd)


def run_nacc(args, cwd, stdin=None, timeout=120):
    """``python -m nacc.cli ARGS`` as a real process: (exit code, stderr, its own peak RSS
    in bytes, ``fuzz.measured``); under RLIMIT_AS of 4 GiB, so that a regression fails
    without starving the machine."""
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")

    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (4 * GIB, 4 * GIB))

    rss_file = str(cwd / ".." / f"rss-{os.getpid()}")
    p = subprocess.Popen(fuzz.measured(["-m", "nacc.cli", *args], rss_file), cwd=cwd, env=env,
                         preexec_fn=limit,
                         stdin=stdin if stdin is not None else subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    t = threading.Timer(timeout, p.kill)
    t.start()
    err = p.stderr.read() if p.stderr else b""
    p.wait()
    t.cancel()
    return p.returncode, err.decode("utf8", "replace"), fuzz.peak_rss_kb(rss_file) * 1024


def listing(d: Path) -> list[str]:
    return sorted(p.relative_to(d).as_posix() for p in d.rglob("*"))


# -- --rm and -o that delete data -------------------------------------------------------
def test_decompress_onto_its_own_archive_with_rm_keeps_it(tmp_path):
    (tmp_path / "a.npy").write_bytes(npy(clip(1)))
    assert cli("compress", "-q", "--predictor", "prevframe", "a.npy", cwd=tmp_path).exit_code == 0
    before = (tmp_path / "a.npy.nacc").read_bytes()
    r = cli("decompress", "a.npy.nacc", "-o", "a.npy.nacc", "-f", "--rm", cwd=tmp_path)
    assert r.exit_code == 1
    assert r.output == ("nacc: a.npy.nacc: output a.npy.nacc is an input of this command "
                        "(choose another -o)\n")
    assert (tmp_path / "a.npy.nacc").read_bytes() == before


def test_a_member_named_like_the_archive_does_not_replace_it(tmp_path):
    """A folder output whose member has the archive's own name (here ``out/a.npy``)."""
    d = tmp_path / "d"
    d.mkdir()
    (d / "a.npy").write_bytes(npy(clip(1)))
    (d / "b.npy").write_bytes(npy(clip(2)))
    (tmp_path / "out").mkdir()
    r = cli("compress", "-q", "--predictor", "prevframe", "d", "-o", "out/a.npy", cwd=tmp_path)
    assert r.exit_code == 0, r.output
    before = (tmp_path / "out" / "a.npy").read_bytes()
    r = cli("decompress", "out/a.npy", "-o", "out", "-f", "--rm", cwd=tmp_path)
    assert r.exit_code == 1
    assert r.output == ("nacc: out/a.npy: out/a.npy is an input of this command; refusing to "
                        "replace it\n")
    assert listing(tmp_path / "out") == ["a.npy"]
    assert (tmp_path / "out" / "a.npy").read_bytes() == before


def test_rm_keeps_an_npz_its_archive_does_not_restore(tmp_path):
    """README: an input is removed only once its archive restores it; an .npz's archive
    restores its members, not the .npz (the shard case: test_inputs)."""
    with zipfile.ZipFile(tmp_path / "x.npz", "w") as z:
        z.writestr("a.npy", npy(clip(1)))
    before = (tmp_path / "x.npz").read_bytes()
    r = cli("compress", "-q", "--rm", "--predictor", "prevframe", "x.npz", cwd=tmp_path)
    assert r.exit_code == 1
    assert "--rm: the archive restores the token arrays of x.npz" in r.output
    assert listing(tmp_path) == ["x.npz"] and (tmp_path / "x.npz").read_bytes() == before


def test_rm_removes_a_plain_npy_once_its_archive_restores_it(tmp_path):
    raw = npy(clip(3))
    (tmp_path / "a.npy").write_bytes(raw)
    r = cli("compress", "-q", "--rm", "--predictor", "prevframe", "a.npy", cwd=tmp_path)
    assert (r.exit_code, listing(tmp_path)) == (0, ["a.npy.nacc"])
    assert cli("decompress", "a.npy.nacc", cwd=tmp_path).exit_code == 0
    assert (tmp_path / "a.npy").read_bytes() == raw


def _writing_meanwhile(monkeypatch, action):
    """Make compress_segments run ``action()`` after its first chunk (while nacc writes)."""
    real = codec.compress_segments

    def wrapped(*a, **k):
        it = real(*a, **k)
        yield next(it)
        action()
        yield from it

    monkeypatch.setattr(codec, "compress_segments", wrapped)


def test_two_writers_on_one_output_cannot_both_succeed(tmp_path, monkeypatch):
    """The other run publishes out.nacc while this one writes it: without -f this one
    fails and keeps its input (--rm), and the other run's archive is intact."""
    (tmp_path / "a.npy").write_bytes(npy(clip(1)))
    _writing_meanwhile(monkeypatch, lambda: (tmp_path / "out.nacc").write_bytes(b"other run"))
    r = cli("compress", "-q", "--rm", "--predictor", "prevframe", "a.npy", "-o", "out.nacc",
            cwd=tmp_path)
    assert r.exit_code == 1
    assert r.output == "nacc: a.npy: out.nacc already exists (use -f to overwrite)\n"
    assert (tmp_path / "out.nacc").read_bytes() == b"other run"
    assert listing(tmp_path) == ["a.npy", "out.nacc"]


def test_the_rm_check_reads_only_the_archive_this_run_wrote(tmp_path):
    w: list = []
    dest = str(tmp_path / "x.nacc")
    fileio.write_atomic(dest, [b"mine"], False, written=w)
    assert fileio.read_written(dest, w[0]) == b"mine"
    (tmp_path / "other").write_bytes(b"theirs")
    os.replace(tmp_path / "other", dest)          # another run with -f
    with pytest.raises(NaccError, match="was replaced after nacc wrote it"):
        fileio.read_written(dest, w[0])
    fileio.unlink_written(dest, w[0])             # not ours: kept
    assert Path(dest).read_bytes() == b"theirs"


def test_rm_keeps_an_input_rewritten_while_it_was_compressed(tmp_path, monkeypatch):
    (tmp_path / "a.npy").write_bytes(npy(clip(1)))
    new = npy(clip(2))
    _writing_meanwhile(monkeypatch, lambda: (tmp_path / "a.npy").write_bytes(new))
    r = cli("compress", "-q", "--rm", "--predictor", "prevframe", "a.npy", cwd=tmp_path)
    assert r.exit_code == 1
    assert r.output == "nacc: a.npy: a.npy changed or was replaced while nacc read it; kept\n"
    assert (tmp_path / "a.npy").read_bytes() == new


# -- odd file types as outputs ----------------------------------------------------------
def test_o_fifo_with_f_is_written_into_not_replaced(tmp_path):
    raw = npy(clip(1))
    (tmp_path / "a.npy").write_bytes(raw)
    os.mkfifo(tmp_path / "pipe")
    got = []
    reader = threading.Thread(target=lambda: got.append((tmp_path / "pipe").read_bytes()),
                              daemon=True)
    reader.start()
    r = cli("compress", "-q", "--predictor", "prevframe", "a.npy", "-o", "pipe", "-f",
            cwd=tmp_path)
    reader.join(30)
    assert r.exit_code == 0, r.output
    assert stat.S_ISFIFO(os.lstat(tmp_path / "pipe").st_mode)
    assert got and got[0][:4] == b"\x89NAC"


@pytest.mark.parametrize("where", ["file", "member"])
def test_a_socket_or_fifo_target_is_refused_even_with_f(tmp_path, where):
    (tmp_path / "a.npy").write_bytes(npy(clip(1)))
    if where == "file":
        s = socket.socket(socket.AF_UNIX)
        s.bind(str(tmp_path / "sock"))
        r = cli("compress", "-q", "--predictor", "prevframe", "a.npy", "-o", "sock", "-f",
                cwd=tmp_path)
        s.close()
        assert r.output == ("nacc: a.npy: sock exists and is not a regular file (nacc "
                            "replaces only regular files)\n")
        assert stat.S_ISSOCK(os.lstat(tmp_path / "sock").st_mode)
    else:
        (tmp_path / "b.npy").write_bytes(npy(clip(2)))
        cli("compress", "-q", "--predictor", "prevframe", "a.npy", "b.npy", "-o", "ab.nacc",
            cwd=tmp_path)
        (tmp_path / "ab").mkdir()
        os.mkfifo(tmp_path / "ab" / "b.npy")
        r = cli("decompress", "ab.nacc", "-f", cwd=tmp_path)
        assert r.output == ("nacc: ab.nacc: ab/b.npy exists and is not a regular file (nacc "
                            "replaces only regular files)\n")
        assert stat.S_ISFIFO(os.lstat(tmp_path / "ab" / "b.npy").st_mode)
        assert listing(tmp_path / "ab") == ["b.npy"]
    assert r.exit_code == 1


# -- bombs and unbounded reads: at most 64 KB in, never more than 1 GiB held -------------
@pytest.mark.parametrize("kind,name,mib", [("bzip2", "bomb.tar.gz", 1536),
                                           ("xz", "bomb.tar", 384)])
def test_a_shard_bomb_is_refused_with_bounded_memory(tmp_path, kind, name, mib):
    blob = fuzz.shard_bomb(kind, mib)
    assert len(blob) <= fuzz.BOMB_MAX_INPUT
    (tmp_path / name).write_bytes(blob)
    code, err, rss = run_nacc(["compress", name], tmp_path)
    assert code == 1
    assert f"nacc: {name}: the {kind} data expands to more than {64 << 20} bytes" in err
    assert rss < GIB, rss
    assert listing(tmp_path) == [name]


def test_an_npz_with_a_bzip2_member_is_refused(tmp_path):
    (tmp_path / "b.npz").write_bytes(fuzz.npz_bomb(zipfile.ZIP_BZIP2, 16))
    r = cli("compress", "b.npz", cwd=tmp_path)
    assert r.exit_code == 1
    assert r.output == ("nacc: b.npz: member a.npy: compression method 12 (numpy writes only "
                        "stored or deflated members)\n")


def test_npz_members_share_one_budget(tmp_path, monkeypatch):
    monkeypatch.setattr(inputs, "BUDGET_FLOOR", 2000)
    monkeypatch.setattr(inputs, "BUDGET_RATIO", 1)
    with zipfile.ZipFile(tmp_path / "m.npz", "w", zipfile.ZIP_DEFLATED) as z:
        for k in range(3):
            z.writestr(f"a{k}.npy", npy(np.zeros((4, 8, 16), np.int16)))
    with pytest.raises(NaccError, match="the .npz expands to more than 2000 bytes"):
        inputs.npz_file(tmp_path / "m.npz")


@pytest.mark.parametrize("how", ["dev-zero", "stdin-zero", "sparse"])
def test_endless_or_sparse_inputs_are_refused_before_they_are_read(tmp_path, how):
    if how == "sparse":
        head = npyio.canonical_prefix("<i2", False, (GIB // 256, 128))
        with open(tmp_path / "s.npy", "wb") as f:      # a valid header, 1 GiB of holes
            f.write(head)
            f.truncate(len(head) + GIB)
        code, err, rss = run_nacc(["compress", "s.npy"], tmp_path)
        assert f"nacc: s.npy: a sparse file ({GIB + len(head)} bytes, " in err
    elif how == "dev-zero":
        code, err, rss = run_nacc(["compress", "/dev/zero", "-o", "z.nacc"], tmp_path)
        assert err.endswith("nacc: /dev/zero: not a .npy file (bad magic)\n")
    else:
        with open("/dev/zero", "rb") as z:
            code, err, rss = run_nacc(["compress", "-", "-o", "z.nacc"], tmp_path, stdin=z)
        assert err.endswith("nacc: -: not a .npy file (bad magic)\n")
    assert code == 1 and rss < 512 << 20, rss


def test_decompress_reads_only_the_magic_of_dev_zero(tmp_path):
    code, err, rss = run_nacc(["decompress", "/dev/zero", "-o", "z"], tmp_path)
    assert (code, err) == (1, "nacc: /dev/zero: not a nacc archive (bad magic)\n")
    assert rss < 512 << 20


# -- model folders ----------------------------------------------------------------------
_model_folder = fuzz.model_folder


def _in_time(fn, seconds=20):
    """fn() in this process, failing (not hanging) after ``seconds``."""
    def alarm(*_):
        raise TimeoutError("hangs")
    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        return fn()
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def test_a_fifo_config_does_not_hang_the_model_path_of_an_archive(tmp_path):
    from nacc.predictors import cm

    m = _model_folder(tmp_path, None)
    with pytest.raises(NaccError, match="config.json is not a regular file"):
        _in_time(lambda: cm._neural(1024, (8, 16), str(m)))


@pytest.mark.parametrize("config,msg", [
    (b'{"arch": "lstm", "frame_shape": [8, Infinity]}', "not JSON (ValueError: Infinity is not"),
    (b'{"arch": "lstm", "x": NaN}', "not JSON (ValueError: NaN is not"),
    (b" " * ((1 << 20) + 1), "more than the 1048576 a model config may have"),
])
def test_bad_or_huge_configs_are_refused_not_a_traceback(tmp_path, config, msg):
    from nacc.neural import modelfile

    m = _model_folder(tmp_path, config)
    with pytest.raises(NaccError, match=msg.replace("(", r"\(")):
        modelfile.load_model(m)


def test_huge_weights_are_refused_before_they_are_read(tmp_path, monkeypatch):
    w = tmp_path / "w.npz"
    with open(w, "wb") as f:
        f.truncate(fileio.MAX_MODEL_FILE_BYTES + 1)
    with pytest.raises(NaccError, match="more than the 268435456 a weights file may have"):
        fileio.read_regular(w, fileio.MAX_MODEL_FILE_BYTES, "weights file")


# -- dead workers and signals -----------------------------------------------------------
def _die(run, batch):
    os.kill(os.getpid(), signal.SIGKILL)       # what the out-of-memory killer does


def _mask(run, batch):
    return signal.pthread_sigmask(signal.SIG_BLOCK, [])


def test_a_killed_worker_is_one_clear_error():
    with pytest.raises(NaccError, match=r"a worker process died \(killed by a signal, out of "
                                        r"memory\?\); try fewer -T than 2"):
        list(codec._map(_die, None, [[0], [1], [2]], 2))


def test_a_killed_worker_does_not_blame_the_archive(tmp_path, monkeypatch):
    for k in range(4):
        (tmp_path / f"s{k}.npy").write_bytes(npy(clip(k)))
    r = cli("compress", "-q", "--predictor", "prevframe", "-o", "x.nacc",
            *(f"s{k}.npy" for k in range(4)), cwd=tmp_path)
    assert r.exit_code == 0
    monkeypatch.setattr(codec, "_decode_batch", _die)
    monkeypatch.setattr(codec, "_lane_size", lambda pred, lanes: 1)
    r = cli("decompress", "-T", "2", "x.nacc", "-o", "out", cwd=tmp_path)
    assert r.exit_code == 1
    assert r.output == ("nacc: x.nacc: a worker process died (killed by a signal, out of "
                        "memory?); try fewer -T than 2\n")
    assert not (tmp_path / "out").exists()


def test_workers_start_with_signals_unblocked_and_the_parent_restores_its_mask():
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])
    masks = list(codec._map(_mask, None, [[0], [1]], 2))
    assert all(signal.SIGTERM not in m and signal.SIGINT not in m for m in masks)
    assert signal.pthread_sigmask(signal.SIG_BLOCK, []) == before


def _signal_in_a_weakref_callback():
    """SIGTERM whose handler runs inside a weakref callback, where Python prints and
    drops the SystemExit it raises (what happened while -T N imported and forked)."""
    class Obj:
        pass

    def cb(_):
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):
            pass

    o = Obj()
    ref = weakref.ref(o, cb)
    del o
    return ref


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("what", ["file", "folder"])
def test_a_swallowed_sigterm_still_stops_the_write(tmp_path, what):
    def chunks():
        yield b"a"
        _signal_in_a_weakref_callback()
        yield b"b"

    with pytest.raises(SystemExit) as e:
        if what == "file":
            fileio.write_atomic(str(tmp_path / "x"), chunks(), False)
        else:
            fileio.write_folder(tmp_path / "d", ["a", "b"],
                                zip(["a", "b"], chunks()), False)
    assert e.value.code == 128 + signal.SIGTERM
    assert listing(tmp_path) == []


# -- SIGKILL leaves temporaries a later run removes -------------------------------------
def test_temporaries_of_killed_writers_are_removed_by_the_next_write(tmp_path):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = os.getppid()
    stale = [f".a.npy.nacc.nacc-{dead.pid}-x1y2.tmp", f".out.nacc-{dead.pid}-abc.tmp"]
    (tmp_path / stale[0]).write_bytes(b"half an archive")
    (tmp_path / stale[1]).mkdir()
    (tmp_path / stale[1] / "a.npy").write_bytes(b"half a folder")
    live = f".b.nacc-{alive}-x1y2.tmp"
    (tmp_path / live).write_bytes(b"a live writer's")
    (tmp_path / "a.npy").write_bytes(npy(clip(1)))
    r = cli("compress", "-q", "--predictor", "prevframe", "a.npy", cwd=tmp_path)
    assert r.exit_code == 0, r.output
    assert listing(tmp_path) == sorted([live, "a.npy", "a.npy.nacc"])


def test_a_sigkilled_compress_leaves_nothing_after_the_next_run(tmp_path):
    (tmp_path / "a.npy").write_bytes(npy(clip(1, frames=60)))
    script = ("import sys, time\nfrom nacc import fileio\n"
              "def slow():\n    yield b'x'\n    time.sleep(60)\n"
              "fileio.write_atomic('a.npy.nacc', slow(), False)\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    p = subprocess.Popen([sys.executable, "-c", script], cwd=tmp_path, env=env)
    for _ in range(200):
        if any(n.startswith(".a.npy.nacc.") for n in os.listdir(tmp_path)):
            break
        time.sleep(0.05)
    p.kill()
    p.wait()
    assert any(n.startswith(".a.npy.nacc.nacc-") for n in os.listdir(tmp_path))
    r = cli("compress", "-q", "--predictor", "prevframe", "a.npy", cwd=tmp_path)
    assert r.exit_code == 0, r.output
    assert listing(tmp_path) == ["a.npy", "a.npy.nacc"]
