#!/usr/bin/env python3
"""nacc's fuzz suite: hostile and random inputs through the real command line.

    python tests/fuzz.py [--budget SECONDS] [--seed N] [--cases N] [--families a,b,...]
                         [--timeout S] [--mem-mb MB] [--save DIR] [--json FILE] [-q]

``make fuzz`` runs it for a fixed budget with a fixed seed; ``tests/test_fuzz_slice.py`` runs
a small slice of every family in ``make test``.  It lives in ``tests/`` because it is a test
(it passes or fails, and the slice test imports it), not a benchmark.

Families (each case is a list of CLI steps, judged by an oracle):

* ``damaged``: valid archives of every predictor and layout (single segment, several, solid
  groups, stored-uniform blocks, the golden archives of tests/golden) with one byte flipped,
  one bit flipped, a byte inserted or deleted, truncated, or garbage appended, through
  ``decompress``, ``test`` and ``info``: exit 1, ``nacc: FILE: message``, nothing written.
* ``hostile``: archives with correct checksums and hostile contents (huge token counts on a
  tiny payload, bad dtype strings, shapes whose product overflows, unsafe or duplicate member
  names, deep or huge JSON parameters, a model path naming a predictor, ...): ``decompress``
  and ``test`` exit 1 quickly with bounded memory and write nothing; ``info`` exits 0 or 1
  and prints no control characters.
* ``npyheader``: ``.npy`` files with crafted headers (shapes wrapping 2**64, negative, float
  or string dimensions, odd dtypes, bad lengths) through ``compress``: exit 1, or exit 0
  only for a valid integer token video whose archive restores the input byte for byte.
* ``badinput``: well-formed inputs nacc must refuse (float/bool/complex dtypes, 1-D, 4-D and
  empty arrays, ids out of range, frame-shape mismatches, compress onto its own input) ->
  exit 1; option errors (bad --frame-shape, --vocab, -k with --rm, ...) -> exit 2.
* ``shard``: commaVQ shards (.tar.gz, .tar) and .npz files with a byte flipped, truncated or
  garbage appended, through ``compress`` (sometimes with ``--rm``): exit 1 with the input
  untouched and nothing written, or exit 0 with an archive that restores exactly the
  original segments.
* ``roundtrip``: random small token videos (vocabularies 2..65536, every integer dtype and
  byte order, C and Fortran order, (T, H, W) and (T, N), several predictors, solid groups,
  several segments) compressed and decompressed: byte-identical, ``test`` exit 0.
* ``exec``: a sample of hostile archives through ``python -m nacc.cli`` as a real process
  (RLIMIT_AS, timeout, peak RSS from wait4).
* ``bombs``: inputs of at most 64 KB that expand without bound (bzip2, xz and gzip shards
  under any shard name, .npz with bzip2 or lzma members, sparse .npy files claiming GiBs):
  exit 1, nothing written, the input kept, never more than 1 GiB of peak RSS.
* ``oddfiles``: FIFOs, sockets and /dev/zero as inputs and outputs, a special file where
  an output folder's member goes, the archive as its own output with ``--rm``: exit 1, no
  hang, no special file replaced, nothing lost.
* ``models``: model folders whose config.json is a FIFO, huge, or holds NaN/Infinity,
  whose weights are a FIFO or huge: exit 1 quickly, a clean message.
* ``races``: two runs writing one ``-o`` at once (without ``-f``, with or without ``--rm``):
  exactly one succeeds, the archive restores its input, no input lost.
* ``kills``: SIGKILL or SIGTERM (to the process group, ``-T 2`` too) at a random moment,
  then a rerun with ``-f``: a signalled run never exits 0 nor leaves a partial output;
  after the rerun no temporary file is left and the archive restores the input.

These five run as real processes too (``run_steps``).  All other families run in a worker
process (``--worker``) that calls the CLI in process with
click's CliRunner (about 2 ms a case instead of a process start each); the worker runs under
RLIMIT_AS and every case under a timeout, so a hang or a runaway allocation is caught and the
worker restarted.  A case fails on a traceback, a hang, a crash, a wrong exit code, a message
not of the form ``nacc: FILE: message``, output left behind after a refusal, an input changed
or removed by a refused command, or a round-trip mismatch.

Figures: cases tried, rejected correctly, round trips exact, the peak RSS of the worker that
ran the hostile families (its ru_maxrss: the worst hostile archive's peak) and of the exec
children, and the longest time any hostile archive under 1 KB took to be refused.
Exit status 0 when every case passed, 1 otherwise (failure classes listed, first example of
each saved under ``--save``).
"""
from __future__ import annotations

import argparse
import contextlib
import gzip
import io
import json
import os
import pickle
import random
import re
import resource
import select
import shutil
import signal
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
import traceback
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FAMILIES = ("damaged", "hostile", "npyheader", "badinput", "shard", "roundtrip", "exec",
            "bombs", "oddfiles", "models", "races", "kills")
# relative cost of a case, to share a --cases count or a budget between families
WEIGHTS = {"damaged": 10, "hostile": 6, "npyheader": 4, "badinput": 2, "shard": 3,
           "roundtrip": 1.5, "exec": 0.05, "bombs": 0.03, "oddfiles": 0.03, "models": 0.02,
           "races": 0.02, "kills": 0.01}
MSG = re.compile(r"^nacc: (.+?): (.+)$")


# -- the worker: runs steps in process, under a memory limit -----------------------------
def _snapshot(root: Path) -> dict[str, bytes]:
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_symlink():
            out[p.relative_to(root).as_posix()] = b"<symlink>"
        elif p.is_file() and p.stat().st_size > 64 << 20:       # a sparse file of a case
            out[p.relative_to(root).as_posix()] = b"<%d bytes>" % p.stat().st_size
        elif p.is_file():
            out[p.relative_to(root).as_posix()] = p.read_bytes()
        elif p.is_dir() and not any(p.iterdir()):
            out[p.relative_to(root).as_posix() + "/"] = b""
    return out


def _run_step(argv: list[str]) -> dict:
    from click.testing import CliRunner

    from nacc.cli import main

    t0 = time.perf_counter()
    r = CliRunner().invoke(main, argv)
    dt = time.perf_counter() - t0
    tb = None
    if r.exception is not None and not isinstance(r.exception, SystemExit):
        tb = "".join(traceback.format_exception(*r.exc_info))
    return {"code": r.exit_code, "stdout": r.stdout_bytes, "stderr": r.stderr, "tb": tb,
            "time": dt}


def worker_main() -> None:
    """Read pickled cases from stdin, run them, write pickled observations to stdout."""
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr      # nothing else may write on the protocol pipe
    base = Path(tempfile.mkdtemp(prefix="nacc-fuzz-w-"))
    import nacc.cli  # noqa: F401  (warm imports before the first timed case)

    while True:
        head = inp.read(4)
        if len(head) < 4:
            break
        case = pickle.loads(inp.read(struct.unpack("<I", head)[0]))
        d = base / "case"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
        for rel, data in case["files"].items():
            (d / rel).parent.mkdir(parents=True, exist_ok=True)
            if rel.endswith("/"):
                (d / rel).mkdir(exist_ok=True)
            else:
                (d / rel).write_bytes(data)
        os.chdir(d)
        obs = []
        for argv in case["steps"]:
            o = _run_step(argv)
            o["files"] = _snapshot(d)
            o["maxrss_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            obs.append(o)
        os.chdir(base)
        blob = pickle.dumps(obs)
        out.write(struct.pack("<I", len(blob)) + blob)
        out.flush()
    shutil.rmtree(base, ignore_errors=True)


def _limits(mem_mb: int):
    def pre():
        os.setsid()
        lim = mem_mb << 20
        resource.setrlimit(resource.RLIMIT_AS, (lim, lim))
    return pre


def _child_env() -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1",
               PYTHONHASHSEED="0")
    env.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".venv" / "numba-cache"))
    env.pop("COLUMNS", None)
    return env


class Worker:
    """A ``--worker`` process; ``run`` returns its observations or ('hang'|'crash', text)."""

    def __init__(self, mem_mb: int):
        self.mem_mb = mem_mb
        self.proc = None
        self.start()

    def start(self):
        self.proc = subprocess.Popen([sys.executable, __file__, "--worker"], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                     env=_child_env(), preexec_fn=_limits(self.mem_mb))
        self.restarts = getattr(self, "restarts", -1) + 1

    def kill(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()

    def maxrss_kb(self) -> int:
        return self._rss

    _rss = 0

    def run(self, files: dict, steps: list, timeout: float):
        blob = pickle.dumps({"files": files, "steps": steps})
        try:
            self.proc.stdin.write(struct.pack("<I", len(blob)) + blob)
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        buf = b""
        need = 4
        while len(buf) < need:
            left = deadline - time.monotonic()
            if left <= 0:
                self.kill()
                self.start()
                return ("hang", f"no answer in {timeout:.0f} s")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                rc = self.proc.wait()
                self.start()
                return ("crash", f"worker died (status {rc}; RLIMIT_AS {self.mem_mb} MB)")
            buf += chunk
            if len(buf) >= 4 and need == 4:
                need = 4 + struct.unpack("<I", buf[:4])[0]
        obs = pickle.loads(buf[4:need])
        self._rss = max(self._rss, max(o["maxrss_kb"] for o in obs))
        return obs


# -- archive bytes, written by hand (the fuzzer must not share nacc's writer) -------------
def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def string(s) -> bytes:
    b = s.encode("utf8", "surrogatepass") if isinstance(s, str) else s
    return varint(len(b)) + b


def framed(body: bytes) -> bytes:
    return varint(len(body)) + body + struct.pack("<I", zlib.crc32(body))


def header(predictor="uniform", params="{}", model_hash=b"", precision=24, n_segments=1,
           n_blocks=1, version=2) -> bytes:
    body = (string(predictor) + string(params) + string(model_hash) + bytes([precision])
            + varint(n_segments) + (varint(n_blocks) if version >= 2 else b""))
    return b"\x89NAC" + bytes([version]) + framed(body)


def member(name="a.npy", descr="<i2", fortran=0, shape=(1, 1, 2), prefix=None, crc=1) -> bytes:
    b = string(name) + string(descr) + bytes([fortran]) + varint(len(shape))
    b += b"".join(varint(d) for d in shape)
    b += b"\x00" if prefix is None else b"\x01" + string(prefix)
    return b + struct.pack("<I", crc)


def block(members: list[bytes], frame=(1, 2), vocab=1024, coding=0, words=(1, 2),
          n_words=None, pad: bytes | None = None) -> bytes:
    """A block; ``pad`` (version 3) is appended as a varint length and its bytes."""
    body = (bytes([coding]) + varint(frame[0]) + varint(frame[1]) + varint(vocab)
            + varint(len(members)) + b"".join(members)
            + varint(len(words) if n_words is None else n_words))
    payload = struct.pack(f"<{len(words)}I", *words)
    out = framed(body) + payload + struct.pack("<I", zlib.crc32(payload))
    return out if pad is None else out + varint(len(pad)) + pad


# -- cases -----------------------------------------------------------------------------
@dataclass
class Case:
    family: str
    what: str                                   # a short description, for reports
    files: dict[str, bytes]                     # relative path -> bytes (``dir/``: folder)
    steps: list[list[str]]
    judge: Callable[[list[dict]], list[str]]    # observations -> failure classes
    hostile_size: int | None = None             # bytes of a hostile archive, for figures
    exec_: bool = False                         # run as a real process (family exec)
    meta: dict = field(default_factory=dict)
    setup: Callable[[Path], None] | None = None  # makes special files in the case folder
    parallel: int = 0                           # the first N steps run at once
    signal: tuple[int, float] | None = None     # (signal, delay) sent to the first step


def _tb_class(tb: str) -> str:
    lines = [ln for ln in tb.strip().splitlines() if ln.strip()]
    where = ""
    for ln in lines:
        m = re.match(r'\s*File "(.+?)", line (\d+), in (\S+)', ln)
        if m and "/nacc/" in m.group(1):
            where = f" at {m.group(1).split('/nacc/')[-1]}:{m.group(3)}"
    last = lines[-1] if lines else "?"
    exc = last.split(":")[0]
    return f"traceback {exc}{where}"


def msg_problems(o: dict, inputs: list[str]) -> list[str]:
    """The stderr of a refused command: ``nacc: FILE: message`` lines, FILE an input."""
    if o["tb"]:
        return [_tb_class(o["tb"])]
    err = [ln for ln in o["stderr"].splitlines() if ln.strip()]
    if not err:
        return ["refused without a message"]
    if any(ln.startswith("Traceback") for ln in err):
        return ["traceback text on stderr"]
    bad = []
    m = MSG.match(err[-1])
    if not m:
        bad.append("message not 'nacc: FILE: message'")
    else:
        where, text = m.groups()
        if inputs and where not in inputs:
            bad.append("message names no input")
        if text.startswith(where + ":") or text.startswith(os.path.basename(where) + ":"):
            bad.append("message repeats the file name")
    return bad


def expect_refused(o: dict, before: dict, inputs: list[str], stdout_empty: bool = True
                   ) -> list[str]:
    """A data error: exit 1, a clean message, no files changed, (no stdout)."""
    if o["tb"]:
        return [_tb_class(o["tb"])]
    bad = []
    if o["code"] != 1:
        bad.append(f"exit {o['code']} (want 1)")
    bad += msg_problems(o, inputs) if o["code"] == 1 else []
    if o["files"] != before:
        new = sorted(set(o["files"]) - set(before))
        gone = sorted(set(before) - set(o["files"]))
        changed = sorted(k for k in before if k in o["files"] and o["files"][k] != before[k])
        if gone or changed:
            bad.append("input changed or removed by a refused command")
        if new:
            tmp = any(n.endswith(".tmp") for n in new)
            bad.append("temporary file left behind" if tmp else "partial output left behind")
    if stdout_empty and o["stdout"]:
        bad.append("output on stdout after a refusal")
    return bad


def expect_usage(o: dict, before: dict) -> list[str]:
    if o["tb"]:
        return [_tb_class(o["tb"])]
    bad = [] if o["code"] == 2 else [f"usage error gave exit {o['code']} (want 2)"]
    if o["files"] != before:
        bad.append("files changed by a usage error")
    return bad


def _with_dirs(files: dict) -> dict:
    """``files`` plus the empty ``out/`` folder every case gets."""
    return {**files, "out/": b""}


# -- valid archives to damage ----------------------------------------------------------
class Corpus:
    """Valid archives (built once per run with nacc's API) and the arrays they hold."""

    def __init__(self, seed: int):
        import numpy as np

        import nacc

        rng = np.random.default_rng(seed)
        dev = np.load(ROOT / "tests" / "data" / "commavq_dev.npy")
        self.archives: list[tuple[str, bytes, dict[str, bytes]]] = []

        def npy(a):
            b = io.BytesIO()
            np.save(b, a)
            return b.getvalue()

        def add(what, segs, **kw):
            blob = nacc.compress_segments(segs, **kw)
            self.archives.append((what, blob, {n: npy(a) for n, a in segs.items()}))

        add("uniform 1 seg", {"a.npy": dev[:2]}, predictor="uniform")
        add("prevframe 1 seg", {"a.npy": dev[:3]}, predictor="prevframe")
        add("cm prior=none 1 seg", {"a.npy": dev[:2]}, predictor="cm", prior="none")
        add("cm default 1 seg", {"a.npy": dev[:2]}, predictor="cm")
        add("prevframe 3 segs", {"x/a.npy": dev[:2], "x/b.npy": dev[2:4], "c.npy": dev[4:5]},
            predictor="prevframe")
        add("prevframe solid 2", {"a.npy": dev[:2], "b.npy": dev[2:3], "c.npy": dev[3:4]},
            predictor="prevframe", solid=2)
        noise = rng.integers(0, 16, (3, 2, 5)).astype(np.uint8)
        add("stored uniform V=16", {"n.npy": noise}, predictor="prevframe", vocab=16)
        add("uniform (T, N) V=3", {"t.npy": rng.integers(0, 3, (4, 6)).astype(">i4")},
            predictor="uniform", vocab=3)
        for p in sorted((ROOT / "tests" / "golden").rglob("*.nacc")):
            if p.stat().st_size <= 64 << 10:
                self.archives.append((f"golden {p.relative_to(ROOT / 'tests' / 'golden')}",
                                      p.read_bytes(), {}))


def _flip(rng: random.Random, b: bytearray, mode: str) -> str:
    """Damage one byte of ``b`` in place: xor it with a random non-zero byte (``byte``) or
    flip one of its bits (``bit``); returns the description."""
    i = rng.randrange(len(b))
    if mode == "byte":
        b[i] ^= rng.randrange(1, 256)
        return f"byte {i} xor"
    b[i] ^= 1 << rng.randrange(8)
    return f"bit flip at byte {i}"


def damaged_cases(rng: random.Random, corpus: Corpus):
    modes = ("byte", "bit", "insert", "delete", "truncate", "append")
    while True:
        what, blob, segs = rng.choice(corpus.archives)
        mode = rng.choice(modes)
        b = bytearray(blob)
        if mode in ("byte", "bit"):
            desc = _flip(rng, b, mode)
        elif mode == "insert":
            i = rng.randrange(len(b) + 1)
            b[i:i] = bytes([rng.randrange(256)])
            desc = f"byte inserted at {i}"
        elif mode == "delete":
            i = rng.randrange(len(b))
            del b[i]
            desc = f"byte {i} deleted"
        elif mode == "truncate":
            n = rng.randrange(len(b))
            del b[n:]
            desc = f"truncated to {n}"
        else:
            g = bytes(rng.randrange(256) for _ in range(rng.choice((1, 2, 4, 7, 64))))
            if rng.random() < 0.3:
                g = blob[:len(g)]      # the start of another archive
            b += g
            desc = f"{len(g)} bytes appended"
        cmd = rng.choice(("decompress", "test", "info"))
        multi = len(segs) > 1 or "segs" in what or "solid" in what
        argv = {"decompress": ["decompress", "in/x.nacc", "-o", "out/x" if multi else "out/x.npy"],
                "test": ["test", "in/x.nacc"], "info": ["info", "in/x.nacc"]}[cmd]
        files = _with_dirs({"in/x.nacc": bytes(b)})

        def judge(obs, files=files):
            return expect_refused(obs[0], files_snapshot(files), ["in/x.nacc"])

        yield Case("damaged", f"{what}: {desc}, {cmd}", files, [argv], judge)


def files_snapshot(files: dict) -> dict:
    """What the worker's snapshot of a fresh case folder holding ``files`` looks like."""
    out = {}
    dirs = {k[:-1] for k in files if k.endswith("/")}
    for k, v in files.items():
        if not k.endswith("/"):
            out[k] = v
    for dname in dirs:
        if not any(k.startswith(dname + "/") for k in files if not k.endswith("/")):
            out[dname + "/"] = b""
    return dict(sorted(out.items()))


# -- hostile archives ------------------------------------------------------------------
DESCRS = ("<i2", "<u2", "|u1", "|i1", "<i4", ">i8", "<u8", "garbage", "", "<f8", "|O", "<U5",
          "|b1", "<c16", "|V8", "<M8[s]", "[('a', '<i4')]", "<i2\x00", "i2", "int16", "<i16",
          "<f2", "|S3", "(2,)<i4", "\u00e9")
NAMES = ("a.npy", "b/c.npy", "../up.npy", "/abs.npy", "a\x00b.npy", "\x1b[31mred.npy", "",
         ".", "a/../../x.npy", "c:\\x.npy", "x" * 300 + ".npy", "dir/", "a\nb.npy",
         "decompress.py", "\u202eevil.npy")


def _hostile_params(rng: random.Random) -> tuple[str, str, bytes]:
    """predictor name, params JSON text, model hash."""
    kind = rng.randrange(12)
    if kind == 0:
        return "cm", "[" * rng.choice((100, 1000, 100000)) + "]" * rng.choice((0, 100000)), b""
    if kind == 1:
        return "cm", '{"prior": ' + "[" * 50000 + "]" * 50000 + "}", b""
    if kind == 2:
        return rng.choice(("cm", "prevframe")), '{"x": 1' + "0" * rng.choice((400, 5000)) + "}", b""
    if kind == 3:
        return "cm", json.dumps({"prior": rng.choice(("bogus", "../../etc/passwd", "", 5,
                                                      None, [1], "none/../x"))}), b""
    if kind == 4:
        return rng.choice(("transformer", "lstm", "cm")), json.dumps(
            {"model": rng.choice(("cm", "mymodel", "/nonexistent", "", ".", "..", "models",
                                  "models/cm-prior", 7, None))}), bytes(32)
    if kind == 5:
        return rng.choice(("nosuch", "", "x" * 1000, "Uniform", "base", "__init__")), "{}", b""
    if kind == 6:
        return "uniform", rng.choice(('{"a": 1e999}', '{"a": NaN}', '{"a": -Infinity}',
                                      '"str"', "[]", "null", '{"a": "\\ud800"}')), b""
    if kind == 7:
        return "prevframe", json.dumps({"unknown": 1}), b""
    return rng.choice(("uniform", "prevframe", "cm")), \
        rng.choice(("{}", '{"prior":"none"}')), b""


def hostile_cases(rng: random.Random):
    big = (1 << 28, 1 << 24, 1 << 20, 1 << 32, (1 << 63) + 5, 1 << 64, 0, 3)
    while True:
        pred, params, mhash = _hostile_params(rng)
        if pred == "cm" and params in ("{}", '{"prior":"none"}') and not mhash:
            params = rng.choice(("{}", '{"prior":"none"}'))
        kind = rng.randrange(10)
        vocab = rng.choice((2, 16, 1024, 65536, 0, 1, 65537, 1 << 40))
        frame = rng.choice(((1, 2), (8, 16), (0, 4), (1, 1 << 28), (1 << 14, 1 << 14), (3, 5)))
        coding = rng.choice((0, 0, 1, 1, 2))
        prec = rng.choice((24, 24, 1, 12, 0, 25, 255))
        words = tuple(rng.randrange(1 << 32) for _ in range(rng.choice((0, 1, 2, 3, 8))))
        n_words = None if rng.random() < 0.8 else rng.choice((0, 1 << 20, 1 << 40))
        shapes = (tuple(rng.choice(big) for _ in range(rng.randrange(1, 5))),
                  (1 << 32, 1 << 32), (1 << 28, 1 << 28, 1 << 28), (0, 8, 16), (1, 8, 16),
                  (2, 4), (1 << 24, 1, 1), (1 << 28,), (), (1,) * 8, (3, 0, 0))
        shape = rng.choice(shapes)
        descr = rng.choice(DESCRS)
        prefix = None
        if rng.random() < 0.15:
            prefix = rng.choice((b"", b"\x93NUMPY\x01\x00" + bytes(50), os.urandom(20),
                                 b"x" * 3000))
        if kind <= 1:
            # a tiny archive claiming a huge segment (the resource bugs)
            t = rng.choice((1 << 24, 1 << 20, 1 << 28, 1 << 16))
            shape, frame, descr = (t, 1, 1), (1, 1), rng.choice(("<i2", "|u1", "<i4"))
            vocab = rng.choice((2, 1024, 65536))
            coding = rng.choice((0, 1))
        if kind == 2:
            names = [rng.choice(NAMES) for _ in range(rng.randrange(1, 4))]
        elif kind == 3:
            names = rng.choice((["a.npy", "a.npy"], ["a", "a/b.npy"], ["a/b.npy", "a"],
                                ["x/a.npy", "x/a.npy", "y.npy"]))
        else:
            names = ["a.npy"]
        n_seg = len(names)
        solid = rng.random() < 0.3
        r = rng.random()
        version = 3 if r < 0.6 else 2 if r < 0.9 else 1
        pad = None
        if version == 3:
            # the pad the floor asks for (when it is small), or a wrong one
            n_tok = 1
            for d in shape:
                n_tok *= d
            n_tok *= len(names) if solid else 1
            bits = max(1, (max(vocab, 2) - 1).bit_length())
            want = max(0, -(-n_tok * bits // 48) - 4 * len(words))
            choice = rng.random()
            if choice < 0.6 and want <= 1 << 16:
                pad = bytes(want)
            elif choice < 0.7 and 0 < want <= 1 << 16:
                pad = bytes(want - 1) + b"\x01"
            else:
                pad = bytes(rng.choice((0, 1, max(0, want - 1), want + 1)) if want <= 1 << 16
                            else rng.choice((0, 1, 64)))
        if solid:
            blocks = [block([member(n, descr, rng.choice((0, 0, 1, 2)), shape, prefix,
                                    rng.randrange(1, 1 << 32)) for n in names],
                            frame, vocab, coding, words, n_words, pad)]
        else:
            blocks = [block([member(n, descr, 0, shape, prefix, rng.randrange(1, 1 << 32))],
                            frame, vocab, coding, words, n_words, pad) for n in names]
        n_blocks = len(blocks)
        if rng.random() < 0.1:
            n_seg, n_blocks = rng.choice(((n_seg + 1, n_blocks), (n_seg, n_blocks + 1), (0, 0),
                                          (1 << 20, 1)))
        if version == 1:
            # v1 segment: name descr fortran ndim dims fh fw vocab prefix crc n_words
            segs = []
            for n in names:
                body = (string(n) + string(descr) + b"\x00" + varint(len(shape))
                        + b"".join(varint(d) for d in shape) + varint(frame[0])
                        + varint(frame[1]) + varint(vocab) + b"\x00"
                        + struct.pack("<I", rng.randrange(1, 1 << 32))
                        + varint(len(words) if n_words is None else n_words))
                payload = struct.pack(f"<{len(words)}I", *words)
                segs.append(framed(body) + payload + struct.pack("<I", zlib.crc32(payload)))
            blocks = segs
        blob = header(pred, params, mhash, prec, n_seg, n_blocks, version) + b"".join(blocks)
        cmd = rng.choice(("decompress", "decompress", "test", "info"))
        argv = {"decompress": ["decompress", "in/x.nacc", "-o", rng.choice(("out/x.npy", "out/x"))],
                "test": ["test", "in/x.nacc"], "info": ["info", "in/x.nacc"]}[cmd]
        files = _with_dirs({"in/x.nacc": blob})
        desc = (f"{pred} {params[:40]!r} P={prec} v{version} vocab={vocab} frame={frame} "
                f"coding={coding} shape={shape} descr={descr!r} names={names!r} "
                f"n_words={n_words} words={len(words)} solid={solid} "
                f"pad={None if pad is None else len(pad)}, {cmd}")

        def judge(obs, files=files, cmd=cmd):
            o = obs[0]
            if cmd == "info":
                if o["tb"]:
                    return [_tb_class(o["tb"])]
                bad = [] if o["code"] in (0, 1) else [f"info exit {o['code']}"]
                if o["code"] == 1:
                    bad += msg_problems(o, ["in/x.nacc"])
                if any(c < 0x20 and c != 0x0A or c == 0x7F or 0x80 <= c < 0xA0
                       for c in o["stdout"].decode("utf8", "replace").encode("latin1", "replace")
                       ) or "\x1b" in o["stdout"].decode("utf8", "replace") \
                        or "\u202e" in o["stdout"].decode("utf8", "replace"):
                    bad.append("info prints control characters from the archive")
                if o["files"] != files_snapshot(files):
                    bad.append("info changed files")
                return bad
            return expect_refused(o, files_snapshot(files), ["in/x.nacc"])

        yield Case("hostile", desc, files, [argv], judge, hostile_size=len(blob))


# -- hostile .npy headers ----------------------------------------------------------------
def _npy(header_text: str, data: bytes, version: int = 1, hlen: int | None = None,
         magic: bytes = b"\x93NUMPY") -> bytes:
    h = header_text.encode("latin1" if version < 3 else "utf8", "replace")
    if version == 1:
        ln = struct.pack("<H", (len(h) if hlen is None else hlen) & 0xFFFF)
    else:
        ln = struct.pack("<I", (len(h) if hlen is None else hlen) & 0xFFFFFFFF)
    return magic + bytes([version, 0]) + ln + h + data


def npyheader_cases(rng: random.Random):
    import numpy as np

    shapes = ("(4294967296, 4294967296)", "(-1, 8, 16)", "(2.5, 8)", "('a', 8)", "(None, 8)",
              "(2, 8, 16)", "(1, 128)", "(18446744073709551616, 1)", "(3037000500, 3037000500)",
              "(0, 8, 16)", "(2,)", "()", "(1, 1, 1, 1, 1)", "[2, 3]", "(True, 2)", "((2,), 2)",
              "(2, 3)", "(9223372036854775807, 2)", "(1" + ", 1" * 40 + ")", "2")
    descrs = ("'<i2'", "'<u2'", "'|u1'", "'>i4'", "'<f8'", "'garbage'", "'|O'", "'<U2'",
              "[('a', '<i2')]", "'<i2' + 'x'", "5", "'|b1'", "'<c8'", "'<i16'", "'V2'",
              "'<m8'", "'S2'")
    while True:
        shape = rng.choice(shapes)
        descr = rng.choice(descrs)
        fortran = rng.choice(("False", "False", "True", "1", "'no'", "None"))
        kind = rng.randrange(8)
        if kind == 0:
            text = rng.choice(("{}", "[]", "__import__('os').system('true')", "{'descr': '<i2'}",
                               "{'descr': '<i2', 'fortran_order': False, 'shape': (1, 2), 'x': 1}",
                               "{" * 500 + "}" * 500, "(" * 200 + ")" * 200, "\xff\xfe", "",
                               "{'descr': '<i2', 'fortran_order': False, 'shape': (1, 2),"
                               " 'shape': (2, 2)}"))
        else:
            text = f"{{'descr': {descr}, 'fortran_order': {fortran}, 'shape': {shape}, }}"
        text += " " * rng.randrange(0, 64) + "\n"
        # data: what the header asks for when that is small, else a few bytes
        nbytes = rng.choice((0, 2, 4, 8, 16, 64, 512))
        try:
            dims = eval(shape, {}, {})
            n = 1
            for d in (dims if isinstance(dims, (tuple, list)) else (dims,)):
                n *= int(d)
            item = np.dtype(eval(descr, {}, {})).itemsize
            if 0 <= n * item <= 4096 and rng.random() < 0.6:
                nbytes = n * item + rng.choice((0, 0, 0, 1, -1))
        except Exception:  # noqa: BLE001 - any invalid header: keep the random size
            pass
        data = bytes(rng.randrange(0, 3) for _ in range(max(0, nbytes)))
        version = rng.choice((1, 1, 1, 2, 3, 4, 0))
        hlen = None if rng.random() < 0.85 else rng.choice((0, 1, 65535, 1 << 31))
        magic = b"\x93NUMPY" if rng.random() < 0.95 else rng.choice((b"\x93NUMPX", b"PK\x03\x04xy"))
        raw = _npy(text, data, version, hlen, magic)
        if rng.random() < 0.05:
            raw = raw[:rng.randrange(len(raw))]
        cmd = rng.choice(("compress", "compress", "verify"))
        pred = rng.choice(("uniform", "prevframe"))
        name = rng.choice(("x.npy", "junk.npy"))
        argv = (["compress", f"in/{name}", "-o", "out/x.nacc", "--predictor", pred]
                if cmd == "compress" else ["verify", f"in/{name}", "--predictor", pred])
        steps = [argv]
        if cmd == "compress":
            steps.append(["decompress", "out/x.nacc", "-o", "out/y.npy"])
        files = _with_dirs({f"in/{name}": raw})

        def judge(obs, files=files, cmd=cmd, raw=raw, name=name):
            o = obs[0]
            if o["tb"]:
                return [_tb_class(o["tb"])]
            before = files_snapshot(files)
            if o["code"] == 1:
                return expect_refused(o, before, [f"in/{name}"], stdout_empty=cmd != "verify")
            if o["code"] != 0:
                return [f"exit {o['code']} (want 0 or 1)"]
            # accepted: it must be a valid integer token video, restored byte for byte
            try:
                arr = np.load(io.BytesIO(raw), allow_pickle=False)
                ok = arr.dtype.kind in "iu" and arr.ndim in (2, 3) and arr.size > 0
            except Exception:  # noqa: BLE001 - numpy cannot read it either
                ok = False
            if not ok:
                return ["accepted a .npy that is not an integer token video"]
            if cmd == "verify":
                return []
            o2 = obs[1]
            if o2["tb"]:
                return [_tb_class(o2["tb"])]
            if o2["code"] != 0 or o2["files"].get("out/y.npy") != raw:
                return ["npy round trip not byte-identical"]
            return []

        yield Case("npyheader", f"header {text.strip()[:90]!r} v{version} hlen={hlen} "
                   f"{len(data)} data bytes, {cmd}", files, steps, judge)


# -- well-formed bad inputs and usage errors ---------------------------------------------
def badinput_cases(rng: random.Random):
    import numpy as np

    def npy(a):
        b = io.BytesIO()
        np.save(b, a)
        return b.getvalue()

    while True:
        kind = rng.randrange(14)
        steps, usage, exact_ok = None, False, False
        rng.randrange(4)           # kept: the seeds' case sequences stay as they were
        base = np.zeros((3, 2, 4), np.int16)
        extra: list[str] = []
        files = {}
        if kind == 0:
            a = rng.choice((base.astype(np.float64), base.astype(np.float32), base.astype(bool),
                            base.astype(np.complex64), base.astype(np.float16),
                            np.array([["ab"]]), base.astype("M8[s]"), base.astype("m8[s]")))
        elif kind == 1:
            a = rng.choice((np.zeros(5, np.int16), np.zeros((2, 2, 2, 2), np.int16),
                            np.zeros((0, 8, 16), np.int16), np.zeros((3, 0), np.int16),
                            np.zeros((), np.int16), np.zeros((2, 0, 4), np.uint8)))
        elif kind == 2:
            a = base.copy()
            a[rng.randrange(3), 0, 0] = rng.choice((1024, 5000, 32767))
        elif kind == 3:
            a = base.copy()
            a[0, 1, 2] = -rng.choice((1, 5, 32768))
        elif kind == 4:
            a = np.zeros((4, 120), np.int16)
            extra = ["--frame-shape", rng.choice(("7x15", "8x16", "13x9", "1x119", "121x1"))]
        elif kind == 5:
            a = np.zeros((2, 8, 16), np.int16)
            extra = ["--frame-shape", rng.choice(("7x15", "16x16", "4x4"))]
        # 6-9: options the predictor refuses are usage errors (exit 2, said once), but for a
        # model folder that does not load (exit 1, the folder named)
        elif kind == 6:
            a = np.zeros((3, 5), np.uint8)
            usage = True
            extra = ["--vocab", "4", "--predictor", rng.choice(("transformer", "lstm"))]
        elif kind == 7:
            a = np.zeros((3, 5), np.uint8)
            usage = True
            extra = ["--predictor", rng.choice(("nosuch", "Uniform", "base", "cm,uniform"))]
        elif kind == 8:
            a = np.zeros((3, 5), np.uint8)
            usage = True
            extra = ["--predictor", "cm", "--param", rng.choice(("prior=bogus", "prior=../x",
                                                                  "nope=1", "prior="))]
        elif kind == 9:
            a = np.zeros((3, 5), np.uint8)
            model = rng.choice(("nosuch", "in", "models"))
            usage = model != "in"           # not a folder, nor a name of the zoo
            extra = ["--predictor", "cm", "--model", model]
        elif kind == 10:   # compress onto its own input
            a = np.zeros((2, 3), np.uint8) + 1
            files = {"in/x.npy": npy(a)}
            steps = [["compress", "in/x.npy", "-o", "in/x.npy", "-f", "--predictor", "uniform"]]
        elif kind == 11:   # usage errors
            a = np.zeros((2, 3), np.uint8)
            usage = True
            extra = rng.choice((["--frame-shape", "0x3"], ["--frame-shape", "abc"],
                                ["--frame-shape", "8x"], ["--vocab", "1"], ["--vocab", "65537"],
                                ["-k", "--rm"], ["-T", "0"], ["--nosuch"], ["--param", "novalue"],
                                ["--solid-group", "0"], ["--device", "tpu"]))
        elif kind == 12:   # usage errors of other commands
            a = np.zeros((2, 3), np.uint8)
            usage = True
            steps = [rng.choice((["decompress", "in/x.npy", "in/x.npy", "-o", "out/y"],
                                 ["info"], ["test"], ["decompress"], ["nosuchcmd"],
                                 ["compress"], ["test", "in/x.npy", "-T", "-1"]))]
            files = {"in/x.npy": npy(a)}
        else:              # junk files and missing files
            a = None
            files = {"in/junk.npy": rng.choice((b"", b"junk", b"\x93NUMPY", os.urandom(40)))}
            steps = [rng.choice((["compress", "in/junk.npy", "-o", "out/x.nacc"],
                                 ["compress", "in/missing.npy", "-o", "out/x.nacc"],
                                 ["decompress", "in/junk.npy", "-o", "out/x.npy"],
                                 ["test", "in/junk.npy"], ["info", "in/junk.npy"],
                                 ["decompress", "in/missing.nacc", "-o", "out/x.npy"]))]
        if not files:
            files = {"in/x.npy": npy(a)}
        if steps is None:
            steps = [["compress", "in/x.npy", "-o", "out/x.nacc", *extra]]
            if kind in (4, 5):
                exact_ok = True
                steps.append(["decompress", "out/x.nacc", "-o", "out/y.npy"])
        files = _with_dirs(files)
        inputs = sorted(k for k in files if k.startswith("in/") and not k.endswith("/"))
        inputs += [a for a in steps[0] if a.startswith("in/") and a not in inputs]
        if kind == 9:
            inputs.append("in")             # the model folder the message names

        def judge(obs, files=files, usage=usage, exact_ok=exact_ok, inputs=inputs):
            o = obs[0]
            before = files_snapshot(files)
            if usage:
                return expect_usage(o, before)
            if exact_ok and o["code"] == 0 and not o["tb"]:
                o2 = obs[1]
                if o2["code"] != 0 or o2["files"].get("out/y.npy") != files["in/x.npy"]:
                    return ["accepted --frame-shape but the round trip is not exact"]
                return []
            return expect_refused(o, before, inputs)

        yield Case("badinput", f"kind {kind}: {' '.join(steps[0])} "
                   f"({'' if a is None else f'{a.dtype} {a.shape}'})", files, steps, judge)


# -- damaged shards --------------------------------------------------------------------
def _shard_sources(rng: random.Random):
    import numpy as np

    n = rng.randrange(1, 4)
    segs = {}
    for i in range(n):
        a = np.random.default_rng(rng.randrange(1 << 30)).integers(
            0, 1024, (rng.randrange(1, 4), 8, 16)).astype(np.int16)
        b = io.BytesIO()
        np.save(b, a)
        segs[f"seg{i}_2018-08-02--08-34-47_{i}.npy"] = b.getvalue()
    return segs


def _make_container(kind: str, segs: dict[str, bytes], rng: random.Random) -> bytes:
    out = io.BytesIO()
    if kind == "npz":
        with zipfile.ZipFile(out, "w", rng.choice((zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED))) as z:
            for name, raw in segs.items():
                z.writestr(name, raw)
        return out.getvalue()
    mode = "w:gz" if kind in ("tar.gz", "tgz") else "w"
    with tarfile.open(fileobj=out, mode=mode, format=tarfile.USTAR_FORMAT) as t:
        for i, (name, raw) in enumerate(segs.items()):
            for mname, data in ((f"{i:06d}.json", json.dumps({"file_name": name}).encode()),
                                (f"{i:06d}.token.npy", raw)):
                info = tarfile.TarInfo(mname)
                info.size = len(data)
                info.mtime = 0
                t.addfile(info, io.BytesIO(data))
    blob = out.getvalue()
    if mode == "w:gz":
        # deterministic gzip: rewrite with mtime 0
        blob = gzip.compress(gzip.decompress(blob), 6, mtime=0)
    return blob


# -- bombs: inputs of at most 64 KB that expand without bound --------------------------
BOMB_MAX_INPUT = 64 << 10
_ZEROS_8M: dict[str, bytes] = {}


def _zero_stream(kind: str) -> bytes:
    """One compressed stream of 8 MiB of zero bytes (made once: bz2 takes ~0.5 s)."""
    import bz2
    import lzma

    if kind not in _ZEROS_8M:
        z = bytes(8 << 20)
        _ZEROS_8M[kind] = {"bzip2": lambda: bz2.compress(z, 9), "xz": lambda: lzma.compress(z),
                           "gzip": lambda: gzip.compress(z, 9, mtime=0)}[kind]()
    return _ZEROS_8M[kind]


def shard_bomb(kind: str, mib: int, name: str = "000000.token.npy", npy_header: bool = True
               ) -> bytes:
    """A tar of one member ``name`` of ``mib`` MiB (a valid .npy header of int16 zeros when
    ``npy_header``, then zeros) compressed by ``kind`` (bzip2, xz, gzip) as concatenated
    streams of 8 MiB of zeros: a few KB that expand to ``mib`` MiB and more."""
    import bz2
    import lzma

    size = mib << 20
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = 0
    head = info.tobuf(tarfile.USTAR_FORMAT)
    if npy_header:
        from nacc import npyio

        n_items = (size - 128) // 2
        prefix = npyio.canonical_prefix("<i2", False, (n_items // 128, 128))
        head += prefix
        size = len(prefix) + (n_items // 128) * 128 * 2
    comp = {"bzip2": lambda b: bz2.compress(b, 9), "xz": lzma.compress,
            "gzip": lambda b: gzip.compress(b, 9, mtime=0)}[kind]
    first = head + bytes(-len(head) % 512)      # header and padding to a tar block
    streams = [comp(first)]
    left = size + (-size % 512) + 1024 - (len(first) - 512)   # data, padding, end marker
    streams += [_zero_stream(kind)] * (left // (8 << 20))
    streams.append(comp(bytes(left % (8 << 20))))
    return b"".join(streams)


def npz_bomb(method: int, mib: int) -> bytes:
    """An .npz of one member ``a.npy`` (int16 zeros, ``mib`` MiB) compressed by zipfile's
    ``method`` (bzip2 or lzma: what numpy never writes)."""
    import numpy as np

    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as z:
        with z.open("a.npy", "w", force_zip64=True) as f:
            np.lib.format.write_array_header_1_0(
                f, {"descr": "<i2", "fortran_order": False, "shape": ((mib << 19) // 128, 128)})
            zero = bytes(1 << 20)
            for _ in range(mib):
                f.write(zero)
    return out.getvalue()


def _tar_segments(blob: bytes) -> dict[str, bytes] | None:
    """What a plain commaVQ ``.tar`` holds as read by Python's tarfile (its headers carry a
    checksum, its data none): each ``k.json``'s ``file_name`` (``k.npy`` when the JSON has
    none, nacc.inputs' rule) -> the bytes of ``k.token.npy``; None when tarfile or the JSON
    refuses it."""
    try:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:") as t:
            data = {m.name: t.extractfile(m).read() for m in t.getmembers() if m.isfile()}
        out = {}
        for name, raw in data.items():
            if name.endswith(".json"):
                key = name[:-len(".json")]
                meta = json.loads(raw.decode("utf8"))
                file_name = meta.get("file_name") if isinstance(meta, dict) else None
                out[file_name or f"{key}.npy"] = data[key + ".token.npy"]
        return out
    except Exception:  # noqa: BLE001 (any refusal: the oracle's exception is not accepted)
        return None


def shard_cases(rng: random.Random):
    while True:
        kind = rng.choice(("tar.gz", "tar.gz", "tar", "npz", "tgz"))
        segs = _shard_sources(rng)
        blob = bytearray(_make_container(kind, segs, rng))
        mode = rng.choice(("byte", "byte", "truncate", "append", "bit"))
        if mode in ("byte", "bit"):
            desc = _flip(rng, blob, mode) + f" of {len(blob)}"
        elif mode == "truncate":
            n = rng.randrange(len(blob))
            desc = f"truncated to {n} of {len(blob)}"
            del blob[n:]
        else:
            g = os.urandom(rng.choice((1, 10, 512)))
            blob += g
            desc = f"{len(g)} bytes appended"
        src = f"in/data-0000.{kind}"
        rm = rng.random() < 0.3
        # out/data-0000.KIND.nacc decompresses into the folder out/data-0000/, whatever
        # the number of segments
        argv = ["compress", src, "-o", f"out/data-0000.{kind}.nacc", "--predictor",
                rng.choice(("uniform", "prevframe"))] + (["--rm"] if rm else [])
        files = _with_dirs({src: bytes(blob)})
        steps = [argv, ["decompress", f"out/data-0000.{kind}.nacc"]]

        def judge(obs, files=files, segs=segs, src=src, rm=rm, kind=kind):
            o = obs[0]
            if o["tb"]:
                return [_tb_class(o["tb"])]
            if o["code"] == 1:
                return expect_refused(o, files_snapshot(files), [src])
            if o["code"] != 0:
                return [f"exit {o['code']} (want 0 or 1)"]
            o2 = obs[1]
            if o2["tb"]:
                return ["accepted a damaged shard; its archive then fails: " + _tb_class(o2["tb"])]
            got = {k[len("out/data-0000/"):]: v for k, v in o2["files"].items()
                   if k.startswith("out/data-0000/")}
            if o2["code"] == 0 and kind == "tar" and got == _tar_segments(files[src]):
                # a plain tar has no data checksum (like a plain .npy): damage inside a
                # member's data is unseen, and what was read must round-trip exactly
                return []
            if o2["code"] != 0 or got != segs:
                lost = "segments lost or renamed" if set(got) != set(segs) else "wrong tokens"
                bad = [f"damaged shard accepted: {lost}"]
                if rm and src not in o["files"]:
                    bad.append("--rm removed a damaged input")
                return bad
            return []

        yield Case("shard", f"{kind} ({len(segs)} segs): {desc}{' --rm' if rm else ''}", files,
                   steps, judge)


# -- round trips -----------------------------------------------------------------------
def roundtrip_cases(rng: random.Random):
    import numpy as np

    vocabs = (2, 3, 16, 255, 256, 257, 1000, 1024, 4096, 65535, 65536)
    while True:
        vocab = rng.choice(vocabs)
        pred = rng.choice(("uniform", "prevframe", "prevframe", "cm-none", "cm-none", "cm"))
        dt = [d for d in ("|u1", "|i1", "<i2", ">i2", "<u2", ">u2", "<i4", ">u4", "<i8", ">i8",
                          "<u8") if np.iinfo(np.dtype(d)).max >= vocab - 1]
        n_seg = rng.choice((1, 1, 1, 2, 3))
        fs = (rng.randrange(1, 6), rng.randrange(1, 9))
        if pred == "cm" or rng.random() < 0.1:
            fs, vocab, dt = (8, 16), 1024, ["<i2", "<u2", "<i4"]
        flat = rng.random() < 0.3
        frame_opt = []
        segs = {}
        g = np.random.default_rng(rng.randrange(1 << 30))
        for i in range(n_seg):
            t = rng.randrange(1, 5)
            content = rng.randrange(4)
            if content == 0:
                a = g.integers(0, vocab, (t, *fs))
            elif content == 1:
                a = np.full((t, *fs), rng.choice((0, vocab - 1)))
            elif content == 2:
                a = np.repeat(g.integers(0, vocab, (1, *fs)), t, axis=0)
                a[g.random(a.shape) < 0.2] = vocab - 1
            else:
                a = g.choice([0, vocab - 1, vocab // 2], (t, *fs))
            a = a.astype(rng.choice(dt))
            if flat:
                a = a.reshape(t, fs[0] * fs[1])
                if fs[0] * fs[1] != 128 and fs[0] != 1:
                    frame_opt = ["--frame-shape", f"{fs[0]}x{fs[1]}"]
            if rng.random() < 0.2:
                a = np.asfortranarray(a)
            b = io.BytesIO()
            np.save(b, a)
            segs[f"s{i}.npy" if n_seg > 1 else "x.npy"] = b.getvalue()
        popt = {"uniform": ["--predictor", "uniform"], "prevframe": ["--predictor", "prevframe"],
                "cm-none": ["--predictor", "cm", "--param", "prior=none"],
                "cm": ["--predictor", "cm"]}[pred]
        opts = popt + ["--vocab", str(vocab)] + frame_opt
        if n_seg > 1 and rng.random() < 0.5:
            opts += ["--solid-group", str(rng.choice((2, 3, 8)))]
        if n_seg == 1:
            files = _with_dirs({"in/x.npy": segs["x.npy"]})
            steps = [["compress", "in/x.npy", "-o", "out/x.npy.nacc", *opts],
                     ["decompress", "out/x.npy.nacc", "-o", "out/y.npy"],
                     ["test", "out/x.npy.nacc"]][:3 if rng.random() < 0.3 else 2]
        else:
            files = _with_dirs({f"in/d/{n}": v for n, v in segs.items()})
            steps = [["compress", "in/d", "-o", "out/d.nacc", *opts],
                     ["decompress", "out/d.nacc", "-o", "out/y"],
                     ["test", "out/d.nacc"]][:3 if rng.random() < 0.3 else 2]

        def judge(obs, segs=segs, n_seg=n_seg):
            for k, o in enumerate(obs):
                if o["tb"]:
                    return [f"round trip step {k}: " + _tb_class(o["tb"])]
                if o["code"] != 0:
                    return [f"round trip step {k} ({['compress', 'decompress', 'test'][k]}) "
                            f"exit {o['code']}"]
            f = obs[1]["files"]
            got = ({"x.npy": f.get("out/y.npy")} if n_seg == 1 else
                   {k[len("out/y/"):]: v for k, v in f.items() if k.startswith("out/y/")})
            return [] if got == segs else ["round trip mismatch"]

        desc = (f"{pred} V={vocab} frames {fs} {'flat ' if flat else ''}{n_seg} seg(s) "
                f"{' '.join(opts)}")
        yield Case("roundtrip", desc, files, steps, judge)


# -- exec: hostile archives through a real process ----------------------------------------
def crafted_corpus() -> list[tuple[str, bytes]]:
    """Hand-made hostile archives for the known resource and parser bugs (small, valid CRCs)."""
    out = []
    big = 1 << 24
    out.append(("uniform block claiming 2^24 tokens, 2 words",
                header("uniform") + block([member("a.npy", "<i2", 0, (big, 1, 1))], (1, 1),
                                          1024, 0, (1, 2))))
    out.append(("stored block claiming 2^28 tokens",
                header("prevframe") + block([member("a.npy", "|u1", 0, (1 << 28, 1, 1))], (1, 1),
                                            2, 1, (7,))))
    out.append(("cm block claiming 2^22 tokens",
                header("cm", '{"prior":"none"}') + block([member("a.npy", "<i2", 0,
                                                                 (1 << 22, 1, 1))],
                                                         (1, 1), 1024, 0, (3, 4))))
    out.append(("dtype 'garbage'", header("uniform") + block([member("a.npy", "garbage")])))
    out.append(("dtype <f8", header("uniform") + block([member("a.npy", "<f8")])))
    out.append(("dtype <U1000000 on 2^20 tokens",
                header("uniform") + block([member("a.npy", "<U1000000", 0, (1 << 20, 1, 1))],
                                          (1, 1), 2, 1, (1,))))
    out.append(("shape product wraps int64 to 0",
                header("uniform") + block([member("a.npy", "<i2", 0, (1 << 28, 1 << 28, 1 << 8))],
                                          (1, 1), 2, 1, ())))
    out.append(("deeply nested params", header("cm", "[" * 100000) + block([member()])))
    out.append(("huge number in params", header("uniform", '{"a":1' + "0" * 5000 + "}")
                + block([member()])))
    out.append(("model path 'cm'", header("cm", '{"model":"cm","prior":"none"}', bytes(32))
                + block([member()])))
    out.append(("duplicate names", header("uniform", "{}", b"", 24, 2, 2)
                + block([member("a.npy")]) + block([member("a.npy")])))
    out.append(("member a and a/b.npy", header("uniform", "{}", b"", 24, 2, 2)
                + block([member("a")]) + block([member("a/b.npy")])))
    out.append(("NUL in a name", header("uniform") + block([member("a\x00b.npy")])))
    out.append(("escape codes in a name", header("uniform") + block([member("\x1b[2Jx.npy")])))
    return out


def exec_cases(rng: random.Random):
    corpus = crafted_corpus()
    k = 0
    while True:
        what, blob = corpus[k % len(corpus)]
        cmd = ("decompress", "test", "info")[(k // len(corpus)) % 3]
        k += 1
        argv = {"decompress": ["decompress", "in/x.nacc", "-o", "out/x"],
                "test": ["test", "in/x.nacc"], "info": ["info", "in/x.nacc"]}[cmd]
        files = _with_dirs({"in/x.nacc": blob})

        def judge(obs, files=files, cmd=cmd):
            o = obs[0]
            if cmd == "info":
                if o["tb"]:
                    return [_tb_class(o["tb"])]
                return [] if o["code"] in (0, 1) else [f"info exit {o['code']}"]
            return expect_refused(o, files_snapshot(files), ["in/x.nacc"])

        yield Case("exec", f"{what}, {cmd}", files, [argv], judge, hostile_size=len(blob),
                   exec_=True)


def run_exec(case: Case, timeout: float, mem_mb: int) -> list[dict] | tuple[str, str]:
    """One case through ``python -m nacc.cli`` as a real process; peak RSS from wait4."""
    d = _case_dir(case)
    try:
        obs = []
        for argv in case.steps:
            t0 = time.perf_counter()
            p = subprocess.Popen([sys.executable, "-m", "nacc.cli", *argv], cwd=d,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_child_env(),
                                 preexec_fn=_limits(mem_mb))
            try:
                out, err = p.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.communicate()
                return ("hang", f"no exit in {timeout:.0f} s")
            _, status, ru = os.wait4(p.pid, 0) if p.returncode is None else (0, 0, None)
            rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss if ru is None \
                else ru.ru_maxrss
            err_s = err.decode("utf8", "replace")
            tb = err_s if "Traceback (most recent call last)" in err_s else None
            if p.returncode < 0:
                return ("crash", f"killed by signal {-p.returncode} (RLIMIT_AS {mem_mb} MB)")
            obs.append({"code": p.returncode, "stdout": out, "stderr": err_s, "tb": tb,
                        "time": time.perf_counter() - t0, "files": _snapshot(d),
                        "maxrss_kb": rss})
        return obs
    finally:
        shutil.rmtree(d, ignore_errors=True)


# -- nothing lost (issue 28): bombs, odd file types, model folders, races, kills ---------
RSS_LIMIT_KB = 1 << 20          # no input of at most 64 KB may make nacc hold more (1 GiB)
_NPZ_BOMBS: dict[tuple[int, int], bytes] = {}


# Linux counts the RSS a process had when it forked into its child's peak (fork copies the
# peak, exec keeps it): a child of a big process (pytest, after many tests) looks big.  So
# every measured command is started by a small wrapper, a fresh process whose child's peak
# is its own; the wrapper writes that peak (wait4, KB) to the file argv[1], then ends as its
# child did.  Signals to the group reach both; the wrapper outlives SIGTERM and SIGHUP.
_WRAP = """import os, signal, sys
for s in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
    signal.signal(s, lambda *a: None)
pid = os.fork()
if pid == 0:
    os.execv(sys.executable, [sys.executable, *sys.argv[2:]])
while True:
    try:
        _, status, ru = os.wait4(pid, 0)
        break
    except InterruptedError:
        pass
with open(sys.argv[1], "w") as f:
    f.write(str(ru.ru_maxrss))
code = os.waitstatus_to_exitcode(status)
if code < 0:
    signal.signal(-code, signal.SIG_DFL)
    os.kill(os.getpid(), -code)
sys.exit(code)
"""


def measured(argv: list[str], rss_file: str) -> list[str]:
    """The command line that runs ``python ARGV`` under ``_WRAP`` (peak RSS to rss_file)."""
    return [sys.executable, "-c", _WRAP, rss_file, *argv]


def peak_rss_kb(rss_file: str) -> int:
    """What ``_WRAP`` wrote (0 when it was killed before writing)."""
    try:
        with open(rss_file) as f:
            return int(f.read() or 0)
    except (OSError, ValueError):
        return 0
    finally:
        with contextlib.suppress(OSError):
            os.unlink(rss_file)


def _spawn(argv: list[str], d: Path, mem_mb: int) -> subprocess.Popen:
    """``python -m nacc.cli ARGV`` in ``d``; its stdout and stderr go to files outside
    ``d`` (``_reap`` reads them), so that the process is reaped by ``os.wait4`` alone."""
    out = tempfile.TemporaryFile()
    err = tempfile.TemporaryFile()
    fd, rss_file = tempfile.mkstemp(prefix="nacc-fuzz-rss-")
    os.close(fd)
    p = subprocess.Popen(measured(["-m", "nacc.cli", *argv], rss_file), cwd=d,
                         stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=_child_env(),
                         preexec_fn=_limits(mem_mb))
    p.outputs = (out, err, rss_file)  # type: ignore[attr-defined]
    return p


def _reap(p: subprocess.Popen, d: Path, timeout: float, t0: float) -> dict:
    """Wait for ``p`` (killing its group after ``timeout``): its observation, with
    ``code`` negative for a signal, ``hang`` set when it had to be killed, and its own
    peak RSS (from wait4)."""
    hang = False
    end = time.monotonic() + timeout
    while True:
        pid, status, ru = os.wait4(p.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > end:
            hang = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            _, status, ru = os.wait4(p.pid, 0)
            break
        time.sleep(0.01)
    p.returncode = os.waitstatus_to_exitcode(status)
    out_f, err_f, rss_file = p.outputs  # type: ignore[attr-defined]
    rss = peak_rss_kb(rss_file)
    outs = []
    for f in (out_f, err_f):
        f.seek(0)
        outs.append(f.read())
        f.close()
    out, err = outs
    err_s = err.decode("utf8", "replace")
    return {"code": p.returncode, "stdout": out, "stderr": err_s, "hang": hang,
            "tb": err_s if "Traceback (most recent call last)" in err_s else None,
            "time": time.perf_counter() - t0, "files": _snapshot(d), "maxrss_kb": rss,
            "hidden": sorted(n for n in os.listdir(d) if ".nacc-" in n and n.endswith(".tmp"))}


def _case_dir(case: Case) -> Path:
    d = Path(tempfile.mkdtemp(prefix="nacc-fuzz-x-"))
    for rel, data in case.files.items():
        (d / rel).parent.mkdir(parents=True, exist_ok=True)
        if rel.endswith("/"):
            (d / rel).mkdir(exist_ok=True)
        else:
            (d / rel).write_bytes(data)
    if case.setup is not None:
        case.setup(d)
    return d


def run_steps(case: Case, timeout: float, mem_mb: int) -> list[dict] | tuple[str, str]:
    """The steps of ``case`` as real processes, one after the other (``case.parallel``
    first ones at once, ``case.signal`` sent to the first after a delay); None-safe
    cleanup of the case folder."""
    d = _case_dir(case)
    try:
        obs: list[dict] = []
        t0 = time.perf_counter()
        k = max(1, case.parallel)
        procs = [_spawn(a, d, mem_mb) for a in case.steps[:k]]
        if case.signal is not None:
            sig, delay = case.signal
            time.sleep(delay)
            # still running (an exited child stays waitable: WNOWAIT)
            running = os.waitid(os.P_PID, procs[0].pid,
                                os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
            if running:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(procs[0].pid, sig)
            case.meta["signalled_while_running"] = running
        obs += [_reap(p, d, timeout, t0) for p in procs]
        for argv in case.steps[k:]:
            obs.append(_reap(_spawn(argv, d, mem_mb), d, timeout, time.perf_counter()))
        if any(o["hang"] for o in obs):
            return ("hang", f"no exit in {timeout:.0f} s")
        return obs
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _clip_npy(rng: random.Random, frames: int | None = None) -> bytes:
    import numpy as np

    a = np.random.default_rng(rng.randrange(1 << 30)).integers(
        0, 1024, (frames or rng.randrange(1, 5), 8, 16)).astype(np.int16)
    b = io.BytesIO()
    np.save(b, a)
    return b.getvalue()


def _held_too_much(o: dict) -> list[str]:
    return [f"held {o['maxrss_kb'] >> 10} MB (more than 1 GiB)"] \
        if o["maxrss_kb"] > RSS_LIMIT_KB else []


def bomb_cases(rng: random.Random):
    """Inputs of at most 64 KB that expand without bound: shards compressed with bzip2, xz
    or gzip under any shard name, .npz with bzip2 or lzma members, .npy headers claiming
    gigabytes (a sparse file), through compress (sometimes with --rm): exit 1 (or 0 with a
    correct archive), never more than 1 GiB held."""
    while True:
        kind = rng.choice(("shard", "shard", "npz", "sparse"))
        setup = None
        if kind == "shard":
            comp = rng.choice(("bzip2", "xz", "gzip"))
            cap = {"bzip2": 2047, "xz": 400, "gzip": 60}[comp]
            mib = rng.randrange(32, cap)
            name = "in/b" + rng.choice((".tar.gz", ".tar", ".tgz"))
            blob = shard_bomb(comp, mib, rng.choice(("000000.token.npy", "000000.cls",
                                                     "000000.token.npy")),
                              npy_header=rng.random() < 0.8)
            what = f"{comp} shard bomb of {mib} MiB as {name}"
        elif kind == "npz":
            method = rng.choice((zipfile.ZIP_BZIP2, zipfile.ZIP_LZMA))
            mib = rng.choice((4, 8))
            if (method, mib) not in _NPZ_BOMBS:
                _NPZ_BOMBS[method, mib] = npz_bomb(method, mib)
            name, blob = "in/b.npz", _NPZ_BOMBS[method, mib]
            what = f".npz with a method-{method} member of {mib} MiB"
        else:
            gib = rng.choice((1, 3, 16))
            name, blob = "in/b.npy", _npy(f"{{'descr': '<i2', 'fortran_order': False, "
                                          f"'shape': ({(gib << 30) // 256}, 128), }}", b"")

            def setup(d, gib=gib, name=name):
                with open(d / name, "r+b") as f:
                    f.truncate(rng.choice((gib << 30, (gib << 30) + 128)))
            what = f"sparse .npy claiming {gib} GiB"
        if len(blob) > BOMB_MAX_INPUT:
            continue
        argv = ["compress", name, "-o", "out/b.nacc", "--predictor", "uniform"] \
            + (["--rm"] if rng.random() < 0.3 else [])
        files = _with_dirs({name: blob, "out/": b""})
        snap = files_snapshot(files)

        def judge(obs, snap=snap, name=name, sparse=setup is not None):
            o = obs[0]
            bad = _held_too_much(o)
            if sparse:           # the snapshot reads files: compare the listing only
                o = dict(o, files={k: snap.get(k) for k in o["files"]})
            return bad + expect_refused(o, snap, [name])

        yield Case("bombs", what, files, [argv], judge, hostile_size=len(blob), exec_=True,
                   setup=setup)


def _mkfifo(rel: str):
    return lambda d: os.mkfifo(d / rel)


def _mksock(rel: str):
    def make(d):
        import socket

        s = socket.socket(socket.AF_UNIX)
        s.bind(str(d / rel))
        s.close()
    return make


def _special_kept(d_files: dict, rels: list[str]) -> list[str]:
    return [f"special file {r} replaced by a regular file" for r in rels if r in d_files]


def oddfile_cases(rng: random.Random):
    """FIFOs (no writer), sockets, /dev/zero and the archive itself where nacc reads or
    writes: as inputs of compress, decompress, test and info, as -o with -f, as a member's
    place in an output folder, the archive as its own output with --rm: exit 1, a clean
    message, no special file replaced, the input kept, no hang."""
    while True:
        kind = rng.choice(("fifo-in", "zero-in", "sock-out", "fifo-member", "self-out",
                           "self-member"))
        npy_ = _clip_npy(rng)
        files: dict = {"a.npy": npy_}
        special: list[str] = []
        setup = None
        if kind == "fifo-in":
            cmd = rng.choice(("compress", "decompress", "test", "info"))
            name = "p.npy" if cmd == "compress" else "p.nacc"
            setup, special = _mkfifo(name), [name]
            steps = [[cmd, name] + (["-o", "out.x"] if cmd != "test" and cmd != "info" else [])]
        elif kind == "zero-in":
            cmd = rng.choice(("compress", "decompress", "test", "info"))
            steps = [[cmd, "/dev/zero"] + (["-o", "out.x"] if cmd in ("compress",
                                                                       "decompress") else [])]
        elif kind == "sock-out":
            setup, special = _mksock("s"), ["s"]
            steps = [["compress", "a.npy", "-o", "s", "-f", "--predictor", "uniform"]]
        elif kind == "fifo-member":
            make = _mkfifo("ab/b.npy") if rng.random() < 0.5 else _mksock("ab/b.npy")

            def setup(d, make=make):
                (d / "ab").mkdir()
                make(d)
            special = ["ab/b.npy"]
            files["b.npy"] = _clip_npy(rng)
            steps = [["compress", "a.npy", "b.npy", "-o", "ab.nacc", "--predictor", "uniform"],
                     ["decompress", "ab.nacc", "-f"]]
        elif kind == "self-out":
            steps = [["compress", "a.npy", "--predictor", "uniform"],
                     ["decompress", "a.npy.nacc", "-o", "a.npy.nacc", "-f", "--rm"]]
        else:
            files["d/a.npy"], files["d/b.npy"] = npy_, _clip_npy(rng)
            files["out/"] = b""
            steps = [["compress", "d", "-o", "out/a.npy", "--predictor", "uniform"],
                     ["decompress", "out/a.npy", "-o", "out", "-f", "--rm"]]
        files = _with_dirs(files)

        def judge(obs, special=special, steps=steps, files=files):
            o = obs[-1]
            if len(obs) > 1 and obs[0]["code"] != 0:
                return [f"setup step exit {obs[0]['code']}: {obs[0]['stderr'][-200:]}"]
            before = obs[-2]["files"] if len(obs) > 1 else files_snapshot(files)
            src = steps[-1][1]
            return expect_refused(o, before, [src]) + _special_kept(o["files"], special)

        yield Case("oddfiles", f"{kind}: {' '.join(steps[-1])}", files, steps, judge,
                   exec_=True, setup=setup)


def _model_config(rng: random.Random) -> tuple[str, bytes | None, str]:
    bad = rng.choice(("fifo", "inf", "nan", "huge", "fifo-weights", "huge-weights"))
    cfg = {"arch": "lstm", "format": "nacc-int-v2", "frame_shape": [8, 16],
           "weights": "weights-0000000000000000.npz", "sha256": "0" * 64}
    text = json.dumps(cfg)
    if bad == "inf":
        text = text.replace("[8, 16]", "[8, Infinity]")
    elif bad == "nan":
        text = text.replace('"lstm"', '"lstm", "x": NaN')
    return bad, None if bad == "fifo" else text.encode(), cfg["weights"]


def model_folder(root: Path, config: bytes | None) -> Path:
    """``root/m`` with ``config`` as its config.json (None: a FIFO there)."""
    m = root / "m"
    m.mkdir()
    if config is None:
        os.mkfifo(m / "config.json")
    else:
        (m / "config.json").write_bytes(config)
    return m


def model_cases(rng: random.Random):
    """Model folders that must not hang or crash nacc: config.json a FIFO, huge (sparse),
    with NaN or Infinity; weights a FIFO or huge; through --model with the cm and lstm
    predictors: exit 1 with a clean message, quickly."""
    while True:
        bad, cfg, weights = _model_config(rng)

        def setup(d, bad=bad, cfg=cfg, weights=weights):
            m = model_folder(d, cfg)
            if bad == "huge":
                with open(m / "config.json", "r+b") as f:
                    f.truncate(3 << 30)
            if bad == "fifo-weights":
                os.mkfifo(m / weights)
            elif bad == "huge-weights":
                with open(m / weights, "wb") as f:
                    f.truncate(8 << 30)
        pred = rng.choice(("cm", "lstm"))
        argv = ["compress", "a.npy", "--predictor", pred, "--model", "m"]
        files = {"a.npy": _clip_npy(rng)}
        snap = files_snapshot(files)

        def judge(obs, snap=snap, weights=weights):
            o = obs[0]
            # a bad --model is said once, naming the model's file (before any input is read)
            return _held_too_much(o) + expect_refused(
                dict(o, files={k: v for k, v in o["files"].items() if not k.startswith("m/")}),
                snap, ["a.npy", "m", "m/config.json", f"m/{weights}"])

        yield Case("models", f"{bad} model folder, --predictor {pred}", files, [argv], judge,
                   exec_=True, setup=setup)


def race_cases(rng: random.Random):
    """Two runs writing one -o at once (without -f, sometimes with --rm): at most one
    succeeds; whatever is published decodes to the input of a run that succeeded; an input
    is gone only if the archive restores it."""
    while True:
        a, b = _clip_npy(rng), _clip_npy(rng)
        rm = rng.random() < 0.6
        pred = ["--predictor", rng.choice(("uniform", "prevframe"))]
        steps = [["compress", "a.npy", "-o", "x.nacc", *pred] + (["--rm"] if rm else []),
                 ["compress", "b.npy", "-o", "x.nacc", *pred] + (["--rm"] if rm else []),
                 ["decompress", "x.nacc", "-c"]]
        files = {"a.npy": a, "b.npy": b}

        def judge(obs, files=files):
            bad = [_tb_class(o["tb"]) for o in obs[:2] if o["tb"]]
            ok = [k for k in (0, 1) if obs[k]["code"] == 0]
            if len(ok) != 1:
                return bad + [f"{len(ok)} of two writers of one output succeeded"]
            restored = obs[2]["stdout"]
            src = ("a.npy", "b.npy")[ok[0]]
            if restored != files[src]:
                bad.append("the archive does not restore the input of the run that succeeded")
            final = obs[2]["files"]
            for name, data in files.items():
                if name not in final and data != restored:
                    bad.append("an input removed that the archive does not restore")
            return bad

        yield Case("races", f"two writers of x.nacc{' --rm' if rm else ''}", files, steps,
                   judge, exec_=True, parallel=2)


def kill_cases(rng: random.Random):
    """compress (sometimes -T 2) sent SIGKILL or SIGTERM (to its process group) at a random
    moment, then compress -f again: a signalled run never exits 0 and never leaves a
    partial output; after the second run no temporary file is left and the archive
    restores the input."""
    while True:
        n = rng.randrange(2, 6)
        files = {f"d/s{k}.npy": _clip_npy(rng, rng.randrange(20, 60)) for k in range(n)}
        sig = rng.choice((signal.SIGKILL, signal.SIGTERM, signal.SIGTERM))
        threads = rng.choice(("1", "2", "2"))
        base = ["compress", "d", "-o", "x.nacc", "-T", threads, "--predictor", "cm"]
        steps = [base, base + ["-f"], ["decompress", "x.nacc", "-o", "y"]]
        delay = rng.uniform(0.3, 3.0)

        def judge(obs, files=files, sig=sig, case_meta=None):
            first, second, third = obs
            bad = [_tb_class(o["tb"]) for o in obs if o["tb"] and sig != signal.SIGTERM]
            if first["code"] == 0 and first.get("signalled"):
                bad.append("a signalled run exited 0")
            if first["code"] != 0 and "x.nacc" in first["files"] \
                    and first["files"]["x.nacc"] != second["files"].get("x.nacc"):
                bad.append("partial output after a signal")   # (a complete one may stay)
            if second["code"] != 0 or third["code"] != 0:
                bad.append(f"the rerun failed: {second['stderr'][-200:]}{third['stderr'][-200:]}")
            if second["hidden"] or third["hidden"]:
                bad.append("temporary files left after the rerun")
            got = {k[2:]: v for k, v in third["files"].items() if k.startswith("y/")}
            want = {k[2:]: v for k, v in files.items()}
            if third["code"] == 0 and got != want:
                bad.append("the rerun's archive does not restore the input")
            return bad

        c = Case("kills", f"{signal.Signals(sig).name} after {delay:.2f} s, -T {threads}",
                 _with_dirs(files), steps, judge, exec_=True, signal=(sig, delay))
        yield c


def _mark_signalled(case: Case, obs):
    if not isinstance(obs, tuple) and case.signal is not None and obs:
        obs[0]["signalled"] = bool(case.meta.get("signalled_while_running"))
    return obs


# -- the driver ------------------------------------------------------------------------
HOSTILE = ("damaged", "hostile", "exec")
GENERATORS = {"damaged": damaged_cases, "hostile": hostile_cases, "npyheader": npyheader_cases,
              "badinput": badinput_cases, "shard": shard_cases, "roundtrip": roundtrip_cases,
              "exec": exec_cases, "bombs": bomb_cases, "oddfiles": oddfile_cases,
              "models": model_cases, "races": race_cases, "kills": kill_cases}


@dataclass
class Stats:
    tried: dict = field(default_factory=dict)
    passed: dict = field(default_factory=dict)
    refused_ok: int = 0
    roundtrips_exact: int = 0
    failures: dict = field(default_factory=dict)    # (family, class) -> [count, first]
    slowest_small: tuple = (0.0, "")                # (seconds, case) hostile < 1 KB refused
    hostile_rss_kb: int = 0
    exec_rss_kb: tuple = (0, "")
    restarts: int = 0

    def as_dict(self) -> dict:
        return {"tried": sum(self.tried.values()), "tried_by_family": self.tried,
                "passed_by_family": self.passed, "rejected_correctly": self.refused_ok,
                "roundtrips_exact": self.roundtrips_exact,
                "failures": {f"{f}: {c}": {"count": n, "first": ex}
                             for (f, c), (n, ex) in sorted(self.failures.items())},
                "slowest_hostile_under_1kb_s": round(self.slowest_small[0], 4),
                "slowest_hostile_under_1kb": self.slowest_small[1],
                "hostile_worker_peak_rss_mb": round(self.hostile_rss_kb / 1024, 1),
                "exec_peak_rss_mb": round(self.exec_rss_kb[0] / 1024, 1),
                "exec_peak_rss_case": self.exec_rss_kb[1], "worker_restarts": self.restarts}


def _save(save: Path, fam: str, cls: str, case: Case, seed: int, index: int) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{fam}-{cls}")[:80].strip("-")
    d = save / slug
    if d.exists():
        return str(d)
    for rel, data in case.files.items():
        if rel.endswith("/"):
            (d / rel).mkdir(parents=True, exist_ok=True)
        else:
            (d / rel).parent.mkdir(parents=True, exist_ok=True)
            (d / rel).write_bytes(data)
    (d / "CASE.txt").write_text(f"family {fam}, seed {seed}, case {index}\n{case.what}\n"
                                f"failure: {cls}\nsteps (run from this folder):\n"
                                + "".join(f"  nacc {' '.join(map(repr, s))}\n" for s in case.steps))
    return str(d)


def run(families=FAMILIES, seed: int = 1, cases: int | None = None, budget: float | None = 180,
        timeout: float = 10.0, mem_mb: int = 4096, save: Path | None = None,
        log=None, hostile_timeout: float = 5.0) -> Stats:
    """Run the families (cases split by WEIGHTS) until ``cases`` are done or ``budget``
    seconds pass; returns the figures.  A step of a hostile family (damaged, hostile,
    exec) that runs past ``hostile_timeout`` seconds is a hang, of any other past
    ``timeout``."""
    log = log or (lambda s: None)
    st = Stats()
    need_corpus = "damaged" in families
    corpus = Corpus(seed) if need_corpus else None
    gens = {}
    for fam in families:
        rng = random.Random(f"{seed}-{fam}")
        gens[fam] = GENERATORS[fam](rng, corpus) if fam == "damaged" else GENERATORS[fam](rng)
        st.tried[fam] = st.passed[fam] = 0
    total_w = sum(WEIGHTS[f] for f in families)
    quota = ({f: max(1, round(cases * WEIGHTS[f] / total_w)) for f in families}
             if cases else None)
    # one worker for the hostile families (its peak RSS is a figure), one for the rest
    hostile_w = Worker(mem_mb) if {"hostile", "damaged"} & set(families) else None
    other_w = Worker(mem_mb) if set(families) - {"hostile", "damaged", "exec"} else None
    t_start = time.monotonic()
    credit = {f: 0.0 for f in families}
    index = 0
    try:
        while True:
            live = [f for f in families if quota is None or st.tried[f] < quota[f]]
            if not live or (budget is not None and time.monotonic() - t_start > budget):
                break
            # weighted round robin: the family furthest behind its share goes next
            fam = min(live, key=lambda f: (credit[f], f))
            credit[fam] += 1.0 / WEIGHTS[fam]
            case = next(gens[fam])
            index += 1
            per_step = hostile_timeout if fam in HOSTILE else timeout
            limit = per_step * len(case.steps)
            if case.exec_ and fam != "exec":
                obs = _mark_signalled(case, run_steps(case, per_step + 3.0, mem_mb))
            elif case.exec_:
                obs = run_exec(case, per_step + 3.0, mem_mb)   # + the process start
            else:
                w = hostile_w if fam in ("hostile", "damaged") else other_w
                obs = w.run(case.files, case.steps, limit)
            st.tried[fam] += 1
            if isinstance(obs, tuple):
                problems = [obs[0] + (" (RLIMIT_AS)" if obs[0] == "crash" else "")]
            else:
                problems = case.judge(obs)
            if problems:
                for cls in problems:
                    key = (fam, cls)
                    if key not in st.failures:
                        where = _save(save, fam, cls, case, seed, index) if save else ""
                        st.failures[key] = [0, f"{case.what}" + (f" [saved: {where}]"
                                                                 if where else "")]
                        log(f"FAIL {fam}: {cls}: {case.what}")
                    st.failures[key][0] += 1
                continue
            st.passed[fam] += 1
            if fam == "roundtrip":
                st.roundtrips_exact += 1
            elif fam in ("npyheader", "shard", "badinput") and obs[0]["code"] in (1, 2):
                st.refused_ok += 1
            elif fam in ("bombs", "oddfiles", "models") and obs[-1]["code"] == 1:
                st.refused_ok += 1
            elif fam in ("damaged", "hostile", "exec") and obs[0]["code"] == 1:
                st.refused_ok += 1
                if case.hostile_size is not None and case.hostile_size < 1024 \
                        and obs[0]["time"] > st.slowest_small[0]:
                    st.slowest_small = (obs[0]["time"], case.what)
            if case.exec_ and obs[0]["maxrss_kb"] > st.exec_rss_kb[0]:
                st.exec_rss_kb = (obs[0]["maxrss_kb"], case.what)
    finally:
        for w in (hostile_w, other_w):
            if w:
                st.restarts += w.restarts
                if w is hostile_w:
                    st.hostile_rss_kb = w.maxrss_kb()
                w.kill()
    return st


def report(st: Stats, elapsed: float) -> str:
    d = st.as_dict()
    lines = [f"nacc fuzz: {d['tried']} cases in {elapsed:.0f} s, "
             f"{sum(st.passed.values())} passed, {d['rejected_correctly']} rejected correctly, "
             f"{d['roundtrips_exact']} round trips exact"]
    for f in st.tried:
        lines.append(f"  {f:10s} {st.tried[f]:6d} tried, {st.passed[f]:6d} passed")
    lines.append(f"  peak RSS of the hostile-archive worker (worst case): "
                 f"{d['hostile_worker_peak_rss_mb']} MB; of a real `nacc` process (exec, "
                 f"bombs, oddfiles, models, races, kills): {d['exec_peak_rss_mb']} MB "
                 f"({d['exec_peak_rss_case']})")
    lines.append(f"  longest refusal of a hostile archive under 1 KB: "
                 f"{d['slowest_hostile_under_1kb_s']:.3f} s ({d['slowest_hostile_under_1kb']})")
    if st.restarts:
        lines.append(f"  worker restarts (hangs or crashes): {st.restarts}")
    if st.failures:
        lines.append(f"FAILED: {len(st.failures)} failure classes")
        for (f, c), (n, ex) in sorted(st.failures.items()):
            lines.append(f"  [{f}] {c}: {n} case(s); first: {ex[:300]}")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--budget", type=float, default=180, help="seconds (default 180)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--cases", type=int, default=None, help="stop after this many cases")
    ap.add_argument("--families", default=",".join(FAMILIES))
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per step (hang)")
    ap.add_argument("--hostile-timeout", type=float, default=5.0,
                    help="seconds per step of the damaged, hostile and exec families")
    ap.add_argument("--mem-mb", type=int, default=4096, help="RLIMIT_AS of every child")
    ap.add_argument("--save", type=Path, default=None, help="folder for failing cases")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here")
    ap.add_argument("-q", "--quiet", action="store_true")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        worker_main()
        return 0
    fams = tuple(f for f in a.families.split(",") if f)
    unknown = set(fams) - set(FAMILIES)
    if unknown:
        ap.error(f"unknown families {sorted(unknown)}; choose from {','.join(FAMILIES)}")
    t0 = time.monotonic()
    log = (lambda s: None) if a.quiet else (lambda s: print(s, file=sys.stderr, flush=True))
    st = run(fams, a.seed, a.cases, a.budget, a.timeout, a.mem_mb, a.save, log, a.hostile_timeout)
    print(report(st, time.monotonic() - t0))
    if a.json:
        a.json.write_text(json.dumps(st.as_dict(), indent=1) + "\n")
    return 1 if st.failures else 0


if __name__ == "__main__":
    sys.exit(main())
