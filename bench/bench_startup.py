"""Whole-process time of ``nacc compress`` / ``nacc decompress`` against ``zpaq -m5``.

    .venv/bin/python bench/bench_startup.py [--clip tests/data/commavq_dev.npy]
        [--frames 300:600] [--runs 7] [--jit] [--nacc CMD]... [--pycache DIR]

Each tool runs as a fresh process on the same .npy (process start, imports and kernel start
included: what a user waits for), the runs of the tools interleaved so that a change in the
machine's load hits all of them alike; the table gives medians and the ratio to zpaq.  With
``--jit`` nacc also runs with ``NACC_AOT=0`` (the numba JIT kernels instead of their
ahead-of-time build, ``nacc.kernels.cpu.aot``).  ``bin/nacc`` starts through ``python3`` on
PATH (then re-executes the checkout's .venv python); where that is a pyenv shim it costs
~0.15 s more than the installed console script ``.venv/bin/nacc``, so both are timed.  zpaq is
skipped, with a line saying so, when it is not installed.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(cmd, env=None, cwd=None) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    dt = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"failed: {' '.join(cmd)}\n{r.stderr.decode(errors='replace')}")
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clip", default=os.path.join(ROOT, "tests", "data", "commavq_dev.npy"))
    ap.add_argument("--frames", default="", help="a:b, frames a..b-1 of the clip [all]")
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--jit", action="store_true", help="also time nacc with NACC_AOT=0")
    ap.add_argument("--nacc", action="append", default=None, metavar="CMD",
                    help="nacc command(s) to time [bin/nacc, and the installed console "
                         "script .venv/bin/nacc when present]")
    ap.add_argument("--pycache", default="", metavar="DIR",
                    help="let nacc's processes cache bytecode under DIR (PYTHONPYCACHEPREFIX; "
                         "for when PYTHONDONTWRITEBYTECODE is set here, as a user's install "
                         "would have its .pyc files)")
    a = ap.parse_args()
    if not a.nacc:
        a.nacc = [os.path.join(ROOT, "bin", "nacc")]
        installed = os.path.join(ROOT, ".venv", "bin", "nacc")
        if os.path.exists(installed):
            a.nacc.append(installed)

    arr = np.load(a.clip)
    if a.frames:
        lo, hi = (int(x) if x else None for x in a.frames.split(":"))
        arr = arr[lo:hi]
    zpaq = shutil.which("zpaq")
    with tempfile.TemporaryDirectory(prefix="nacc-startup-") as d:
        src = os.path.join(d, "clip.npy")
        np.save(src, arr)
        size = os.path.getsize(src)
        env_aot = dict(os.environ)
        env_aot.pop("NACC_AOT", None)
        if a.pycache:
            env_aot.pop("PYTHONDONTWRITEBYTECODE", None)
            env_aot["PYTHONPYCACHEPREFIX"] = os.path.abspath(a.pycache)
        elif os.environ.get("PYTHONDONTWRITEBYTECODE"):
            print("note: PYTHONDONTWRITEBYTECODE is set, so every nacc run compiles its own "
                  "modules from source (see --pycache)")
        env_jit = dict(env_aot, NACC_AOT="0")
        cmds = [(os.path.relpath(c, ROOT) if c.startswith(ROOT) else c, c) for c in a.nacc]
        variants = [(label, cmd, env_aot) for label, cmd in cmds]
        if a.jit:
            variants.append((f"{cmds[0][0]} NACC_AOT=0", cmds[0][1], env_jit))

        # one untimed round first: builds the AOT extension if needed, fills the OS cache
        for _, cmd, env in variants:
            _run([cmd, "compress", "-q", "-f", src, "-o", src + ".nacc"], env)
            _run([cmd, "decompress", "-q", "-f", src + ".nacc", "-o", src + ".out"], env)
        out = subprocess.run([sys.executable, "-m", "nacc.kernels.cpu.aot", "status"],
                             capture_output=True, text=True, cwd=ROOT, env=env_aot)
        print(f"AOT kernels: {out.stdout.strip() or out.stderr.strip()}")
        with open(src, "rb") as f1, open(src + ".out", "rb") as f2:
            assert f1.read() == f2.read(), "round trip differs"
        nacc_bytes = os.path.getsize(src + ".nacc")

        times: dict[str, list[float]] = {}
        zbytes = None
        if zpaq is None:
            print("zpaq: not installed (apt-get install zpaq); its columns are skipped")
        for _ in range(a.runs):
            for name, cmd, env in variants:
                times.setdefault(f"{name} compress", []).append(
                    _run([cmd, "compress", "-q", "-f", src, "-o", src + ".nacc"], env))
                times.setdefault(f"{name} decompress", []).append(
                    _run([cmd, "decompress", "-q", "-f", src + ".nacc", "-o", src + ".out"],
                         env))
            if zpaq:
                arc = os.path.join(d, "z.zpaq")
                if os.path.exists(arc):
                    os.unlink(arc)
                times.setdefault("zpaq -m5 compress", []).append(
                    _run([zpaq, "a", arc, "clip.npy", "-m5"], cwd=d))
                zbytes = os.path.getsize(arc)
                xdir = tempfile.mkdtemp(dir=d)
                times.setdefault("zpaq -m5 decompress", []).append(
                    _run([zpaq, "x", arc, "-to", xdir], cwd=d))
                shutil.rmtree(xdir)

    print(f"input: {a.clip}{' frames ' + a.frames if a.frames else ''}, {arr.shape}, "
          f"{size} bytes; nacc {nacc_bytes} bytes"
          + (f", zpaq -m5 {zbytes} bytes" if zbytes else "")
          + f"; {a.runs} runs each, medians")
    print(f"{'':36s} {'median s':>9s} {'min s':>7s} {'x zpaq':>7s}")
    for what in ("compress", "decompress"):
        ref = times.get(f"zpaq -m5 {what}")
        ref_med = statistics.median(ref) if ref else None
        for name in [n for n, _, _ in variants] + (["zpaq -m5"] if zpaq else []):
            ts = times[f"{name} {what}"]
            med = statistics.median(ts)
            ratio = f"{med / ref_med:7.2f}" if ref_med else "      -"
            print(f"{name + ' ' + what:36s} {med:9.3f} {min(ts):7.3f} {ratio}")


if __name__ == "__main__":
    main()
