"""Side-by-side benchmark of the ``cm`` predictor against xz, zstd and zpaq.

    python bench/bench_cm.py [CLIP.npy] [--runs 3] [--copies 8] [--prior NAME]
    python bench/bench_cm.py --ablation [CLIP.npy]
    python bench/bench_cm.py --headroom [CLIP.npy]
    python bench/bench_cm.py --splits [CLIP.npy] [--check 1] [--param KEY=INT]...
    python bench/bench_cm.py --startup [CLIP.npy] [--runs 9] [--other CHECKOUT]...
    python bench/bench_cm.py --loop [CLIP.npy] [--rounds 5] --config NAME=KEY:INT,... ...

Everything runs in one invocation on the same input, so compare the ratios, not the absolute
times.  General-purpose codecs get the position-major int16 layout (tokens.reshape(-1,128).T)
that suits them best.  nacc runs as whole processes: ``bin/nacc`` (the CLI, default prior) and
a minimal worker (``--worker``, this file) that runs the cm predictor with the chosen prior
through the Python API; its archive holds only a tiny header and the rANS words.  Times are
medians of whole-process wall times (start-up included); peak RSS is the worker's maximum
resident set (from wait4).  Amortized times code ``--copies`` relabeled copies of the clip
(each through a different random code permutation, so no codec can deduplicate them) in one
process.  Installs nothing; a codec that is missing is skipped with a line that says so.

``--headroom`` measures what limits the rate on real data (see ``headroom``); ``--splits``
validates the prior recipe on frames it was not fitted on (see ``splits``).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEV = os.path.join(ROOT, "tests", "data", "commavq_dev.npy")
NACC = os.path.join(ROOT, "bin", "nacc")
PY = sys.executable
MAGIC = b"CMBW"


# -- worker: the cm predictor alone, as a whole process ------------------------------------
def worker(mode: str, src: list[str], dst: str, prior: str) -> None:
    sys.path.insert(0, ROOT)
    from nacc import coder
    from nacc.predictors import get

    if mode == "enc":
        with open(dst, "wb") as f:
            for path in src:
                tok = np.load(path)
                tok = tok.reshape(len(tok), 8, 16) if tok.ndim == 2 else tok
                pred = get("cm")(1024, tok.shape[1:], prior=prior)
                words = coder.encode_intervals(*pred.intervals(tok.astype(np.int32)), 24)
                f.write(MAGIC + struct.pack("<5I", *tok.shape, words.size, len(prior)))
                f.write(prior.encode() + words.astype("<u4").tobytes())
    else:
        data = open(src[0], "rb").read()
        off = 0
        k = 0
        while off < len(data):
            t, h, w, n, lp = struct.unpack_from("<5I", data, off + 4)
            off += 24
            pr = data[off:off + lp].decode()
            off += lp
            words = np.frombuffer(data, "<u4", n, off).astype(np.uint32)
            off += 4 * n
            out = get("cm")(1024, (h, w), prior=pr).decode(words, t)
            np.save(os.path.join(dst, f"out{k}.npy"), out.astype(np.int16))
            k += 1


# -- timing helpers ---------------------------------------------------------------------------
def run(cmd: list[str], stdout=None, cwd=None) -> tuple[float, int]:
    """(wall seconds, peak RSS KiB) of one process."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=stdout or subprocess.DEVNULL, stderr=subprocess.PIPE,
                         cwd=cwd)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    err = p.stderr.read().decode(errors="replace")
    p.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {err}")
    return wall, ru.ru_maxrss


def timed(make_cmds, runs: int):
    """make_cmds() -> list of (cmd, stdout path or None, cwd); median wall over runs."""
    walls, rss = [], 0
    for _ in range(runs):
        total = 0.0
        for cmd, out, cwd in make_cmds():
            if out:
                with open(out, "wb") as f:
                    w, r = run(cmd, f, cwd)
            else:
                w, r = run(cmd, None, cwd)
            if cmd[0] != "rm":                  # housekeeping, not timed
                total += w
                rss = max(rss, r)
        walls.append(total)
    return statistics.median(walls), rss


def verify(outdir: str, npys: list[str], name: str) -> None:
    """The decoded token arrays equal the inputs (raises otherwise)."""
    for k, src in enumerate(npys):
        cands = [os.path.join(outdir, os.path.basename(src)), os.path.join(outdir, f"out{k}.npy")]
        got = [c for c in cands if os.path.exists(c)]
        if not got or not np.array_equal(np.load(got[0]), np.load(src)):
            raise RuntimeError(f"{name}: round trip failed for {src}")


def codecs(prior: str):
    """name -> (available, enc(in_raw, in_npys, out) -> cmds, dec(arc, outdir) -> cmds)."""
    def have(x):
        return shutil.which(x) is not None

    def xz_enc(raw, npys, out):
        return [(["xz", "-9e", "-T1", "-k", "-c"] + raw, out, None)]

    def zstd_enc(raw, npys, out):
        return [(["zstd", "--ultra", "-22", "-q", "-c"] + raw, out, None)]

    def zpaq_enc(raw, npys, out):
        return [(["rm", "-f", out], None, None), (["zpaq", "a", out] + raw + ["-m5"], None, None)]

    def nacc_enc(raw, npys, out):
        return [([NACC, "compress", "-q", "-f", "-o", out, "--predictor", "cm"] + npys, None, None)]

    def worker_enc(raw, npys, out):
        return [([PY, os.path.abspath(__file__), "--worker", "enc", "--prior", prior, out]
                 + npys, None, None)]

    def xz_dec(arc, d):
        return [(["xz", "-d", "-c", arc], os.path.join(d, "o.raw"), None)]

    def zstd_dec(arc, d):
        return [(["zstd", "-d", "-q", "-c", arc], os.path.join(d, "o.raw"), None)]

    def zpaq_dec(arc, d):
        z = os.path.join(d, "zpaq-out")           # fresh every run: zpaq skips existing files
        return [(["rm", "-rf", z], None, None), (["zpaq", "x", arc, "-to", z], None, None)]

    def nacc_dec(arc, d):
        out = d if "amortized" in arc else os.path.join(d, "single0.npy")
        return [([NACC, "decompress", "-q", "-f", "-o", out, arc], None, None)]

    def worker_dec(arc, d):
        return [([PY, os.path.abspath(__file__), "--worker", "dec", "--prior", prior, d, arc],
                 None, None)]

    return {
        "xz -9e": (have("xz"), xz_enc, xz_dec),
        "zstd -22": (have("zstd"), zstd_enc, zstd_dec),
        "zpaq -m5": (have("zpaq"), zpaq_enc, zpaq_dec),
        "nacc cm (CLI)": (os.path.exists(NACC), nacc_enc, nacc_dec),
        f"nacc cm worker prior={prior}": (True, worker_enc, worker_dec),
    }


def bench(clip: np.ndarray, runs: int, copies: int, prior: str, work: str) -> None:
    tok = clip.reshape(len(clip), 8, 16) if clip.ndim == 2 else clip
    n_tok = tok.size
    rng = np.random.default_rng(0)
    sets = {}
    for label, n in (("single", 1), ("amortized", copies)):
        raws, npys = [], []
        for k in range(n):
            t = tok if (label == "single" or k == 0) else rng.permutation(1024)[tok]
            raw = os.path.join(work, f"{label}{k}.raw")
            np.ascontiguousarray(t.reshape(-1, 128).T).astype(np.int16).tofile(raw)
            npy = os.path.join(work, f"{label}{k}.npy")
            np.save(npy, t.astype(np.int16))
            raws.append(raw)
            npys.append(npy)
        sets[label] = (raws, npys, n * n_tok)
    print(f"clip {tok.shape}, {n_tok} tokens; runs={runs}; amortized = {copies} relabeled copies "
          f"in one process")
    hdr = f"{'codec':34s} {'set':9s} {'bytes':>9s} {'rate':>7s} {'bits/tok':>8s} " \
          f"{'enc s':>7s} {'dec s':>7s} {'enc/zpaq':>8s} {'dec/zpaq':>8s} {'peak RSS':>9s}"
    print(hdr)
    results = {}
    for name, (ok, enc, dec) in codecs(prior).items():
        if not ok:
            print(f"{name:34s} skipped: not installed")
            continue
        for label, (raws, npys, ntot) in sets.items():
            arc = os.path.join(work, f"arc-{label}-{name.split()[0]}-{len(results)}")
            if not name.startswith("nacc"):
                arc += ".bin"
            else:
                arc += ".nacc"
            t_enc, rss_e = timed(lambda e=enc, r=raws, n=npys, a=arc: e(r, n, a), runs)
            size = os.path.getsize(arc)
            outdir = tempfile.mkdtemp(dir=work)
            t_dec, rss_d = timed(lambda d=dec, a=arc, o=outdir: d(a, o), runs)
            if name.startswith("nacc"):
                verify(outdir, npys, name)
            results[(name, label)] = (size, t_enc, t_dec, max(rss_e, rss_d), ntot)
    for label in sets:
        z = results.get(("zpaq -m5", label))
        for (name, lab), (size, te, td, rss, ntot) in results.items():
            if lab != label:
                continue
            rate = ntot * 10 / 8 / size
            re = f"{te / z[1]:8.2f}" if z else f"{'-':>8s}"
            rd = f"{td / z[2]:8.2f}" if z else f"{'-':>8s}"
            print(f"{name:34s} {label:9s} {size:9d} {rate:7.3f} {8 * size / ntot:8.3f} "
                  f"{te:7.3f} {td:7.3f} {re} {rd} {rss / 1024:7.1f}MB")


def ablation(clip: np.ndarray) -> None:
    """Rate on frames 300-599 coded cold as their own clip (priors fitted on 0-299) and on all
    frames cold, as components are added (the production kernel with masks); then the priors
    fitted on 0-299 and 0-449 on frames 450-599, which neither saw."""
    sys.path.insert(0, ROOT)
    from nacc import coder
    from nacc.kernels.cpu import cm as K
    from nacc.predictors import cm as C

    tok = (clip.reshape(len(clip), 8, 16) if clip.ndim == 2 else clip).astype(np.int32)
    held = np.ascontiguousarray(tok[300:])
    ident = np.arange(1024, dtype=np.int64)
    tree, _, _ = C.load_prior("commavq-tree-v1", 1024)
    _, warm_id, _ = C.load_prior("commavq-warm-v1", 1024)
    _, warm_tree, _ = C.load_prior("commavq-v2", 1024)
    _, warm_all, _ = C.load_prior("commavq-v3", 1024)
    # tree contexts: 0 order-0, 1 a, 2 pos, 3 a2, 4 a3, 5 leaf(a)>>3, 6 leaf(a)>>5
    steps = [
        ("order-0 counters + mixer",
         dict(ctx_mask=0b1, cand_mask=0, copy=0, apm_weight=0), ident, None),
        ("+ prev-frame contexts a,a2,a3",
         dict(ctx_mask=0b11011, cand_mask=0, copy=0, apm_weight=0), ident, None),
        ("+ position context",
         dict(ctx_mask=0b11111, cand_mask=0, copy=0, apm_weight=0), ident, None),
        ("+ match models (a,l,u,b)", dict(ctx_mask=0b11111, copy=0, apm_weight=0), ident, None),
        ("+ copy node", dict(ctx_mask=0b11111, apm_weight=0), ident, None),
        ("+ APM/SSE", dict(ctx_mask=0b11111), ident, None),
        ("+ leaf-cluster contexts (= cm, prior none)", dict(), ident, None),
        ("+ warm-start prior (commavq-warm-v1)", dict(), ident, warm_id),
        ("tree prior instead (commavq-tree-v1)", dict(), tree, None),
        ("+ warm-start prior (commavq-v2)", dict(), tree, warm_tree),
        ("+ every context's counters (commavq-v3)", dict(), tree, warm_all),
    ]
    print(f"{'model':46s} {'held-out 300-599':>17s} {'bits/tok':>8s} {'all 600 cold':>13s}")
    for name, kw, perm, warm in steps:
        rates = []
        for x in (held, tok):
            if x is tok and (warm is not None or perm is not ident):
                rates.append(None)      # a prior fitted on 0-299 saw part of this clip
                continue
            cfg = C.make_cfg(1024, (8, 16), **kw)
            s, f = K.enc_pass(x.ravel(), cfg, perm, K.new_state(cfg, warm), K.TABLES)
            words = coder.encode_intervals(s, f, 24)
            rates.append(x.size * 10 / 8 / words.nbytes)
        allr = f"{rates[1]:13.4f}" if rates[1] else f"{'(saw 0-299)':>13s}"
        print(f"{name:46s} {rates[0]:17.4f} {10 / rates[0]:8.3f} {allr}")
    late = np.ascontiguousarray(tok[450:])
    print(f"\n{'prior (frames 450-599, never seen by either)':46s} {'rate':>17s} {'bits/tok':>8s}")
    cfg = C.make_cfg(1024, (8, 16))
    for name in ("commavq-v3", "commavq-v4"):
        perm, warm, _ = C.load_prior(name, 1024)
        s, f = K.enc_pass(late.ravel(), cfg, perm, K.new_state(cfg, warm), K.TABLES)
        rate = late.size * 10 / 8 / coder.encode_intervals(s, f, 24).nbytes
        label = f"{name} (fitted on 0-{299 if name == 'commavq-v3' else 449})"
        print(f"{label:46s} {rate:17.4f} {10 / rate:8.3f}")


def headroom(clip: np.ndarray, first: int = 450, recent: int = 16) -> None:
    """What limits the rate on frames ``first``.. of the clip (coded as a clip of their own):

    1. the prior recipe of ``commavq-v4`` (code tree and warm state, counts capped) fitted on
       frames 0..F-1 for growing F: how the rate grows with the real data a prior sees;
    2. where the bits go under the shipped default prior: copies of the previous frame,
       values seen at the same position in the ``recent`` frames before it, and values new
       at the position;
    3. a bound on better code trees: the tree fitted on the measured frames themselves (an
       oracle that no shipped prior can be), with the same warm-state recipe.
    Rates are ideal (from the coded intervals), within 0.01% of the archive's words."""
    sys.path.insert(0, ROOT)
    from nacc.kernels.cpu import cm as K
    from nacc.predictors import cm as C
    from nacc.predictors import get
    from nacc.training import cm_prior as F

    tok = (clip.reshape(len(clip), 8, 16) if clip.ndim == 2 else clip).astype(np.int32)
    test = np.ascontiguousarray(tok[first:])
    cfg = C.make_cfg(1024, (8, 16))

    def bits(perm, fit_frames):
        warm = None if fit_frames is None else F.fit_warm(fit_frames, perm, F.ALL_KINDS,
                                                          F.V4_COUNT_CAP)
        _, f = K.enc_pass(test.ravel(), cfg, perm, K.new_state(cfg, warm), K.TABLES)
        return 24 - np.log2(f.astype(np.float64))

    print(f"1. prior recipe fitted on frames 0..F-1, measured on frames {first}-{len(tok) - 1}")
    print(f"{'F':>5s} {'rate':>7s} {'bits/tok':>8s}")
    for n_fit in sorted({0, first // 3, 2 * first // 3, first}):
        perm = F.fit_leaf_order(tok[:n_fit]) if n_fit else np.arange(1024)
        b = bits(perm, tok[:n_fit] if n_fit else None).mean()
        print(f"{n_fit:5d} {10 / b:7.4f} {b:8.3f}")
    recipe = 10 / b                                      # the last row: fitted on 0..first-1

    pred = get("cm")(1024, (8, 16))
    _, f = pred.intervals(test)
    b = (pred.precision - np.log2(f.astype(np.float64))).reshape(test.shape)
    copy = np.zeros(test.shape, bool)
    copy[1:] = test[1:] == test[:-1]                     # the clip of its own has no frame -1
    seen = np.zeros(test.shape, bool)
    for k in range(2, recent + 1):                       # frames t-2 .. t-recent of the clip
        seen[k:] |= test[k:] == test[:-k]
    seen &= ~copy
    new = ~copy & ~seen
    print(f"\n2. where the bits go, default prior {pred.prior}, frames {first}-{len(tok) - 1}")
    print(f"{'tokens':44s} {'share':>6s} {'bits/tok':>8s} {'of bits':>7s}")
    for name, m in (("copy of the previous frame", copy),
                    (f"seen at the position in t-2..t-{recent}", seen),
                    ("new at the position", new)):
        print(f"{name:44s} {m.mean():6.3f} {b[m].mean():8.3f} {b[m].sum() / b.sum():7.3f}")
    print(f"{'all':44s} {1:6.3f} {b.mean():8.3f} {1:7.3f}")

    print(f"\n3. code tree bound, warm state fitted on frames 0-{first - 1}")
    print(f"{f'tree fitted on frames 0-{first - 1} (the recipe)':48s} rate {recipe:.4f}")
    for name, perm in ((f"tree fitted on frames 0-{len(tok) - 1} (oracle)", F.fit_leaf_order(tok)),
                       (f"tree fitted on frames {first}-{len(tok) - 1} only (oracle)",
                        F.fit_leaf_order(test))):
        r = 10 / bits(perm, tok[:first]).mean()
        print(f"{name:48s} rate {r:.4f}")


SPLITS = ((range(0, 450), range(450, 600)), (range(150, 600), range(0, 150)),
          (range(0, 300), range(300, 600)), (range(300, 600), range(0, 300)))


def splits(clip: np.ndarray, cfg_kw: dict | None = None) -> None:
    """The prior recipe of ``commavq-v4``/``v5`` (``nacc.training.cm_prior.fit_recipe``) fitted
    on some frames of the clip and measured on the others (coded as a clip of their own), with
    the rate of the same frames coded cold (no prior).  Rates from the archive words' bytes."""
    sys.path.insert(0, ROOT)
    from nacc import coder
    from nacc.kernels.cpu import cm as K
    from nacc.predictors import cm as C
    from nacc.training import cm_prior as F

    tok = (clip.reshape(len(clip), 8, 16) if clip.ndim == 2 else clip).astype(np.int32)
    cfg = C.make_cfg(1024, (8, 16), **(cfg_kw or {}))

    def rate(x, perm, warm):
        flat, seg = C.coding_order(cfg, x)
        s, f = K.enc_pass(flat, seg, perm, K.new_state(seg, warm), K.TABLES)
        return x.size * 10 / 8 / coder.encode_intervals(s, f, 24).nbytes

    print(f"{'fitted on':>10s} {'measured':>9s} {'cold':>7s} {'recipe':>7s} {'gain':>6s}")
    for fit, meas in SPLITS:
        x = np.ascontiguousarray(tok[meas.start:meas.stop])
        perm, warm = F.fit_recipe(tok[fit.start:fit.stop], F.V4_COUNT_CAP, cfg_kw)
        cold = rate(x, np.arange(1024), None)
        warm_r = rate(x, perm, warm)
        print(f"{fit.start:4d}-{fit.stop - 1:<5d} {meas.start:3d}-{meas.stop - 1:<5d} "
              f"{cold:7.4f} {warm_r:7.4f} {warm_r / cold - 1:+6.1%}", flush=True)


def loop_times(clip: np.ndarray, rounds: int, configs: list[str]) -> None:
    """CPU time per token of the numba kernels enc_pass / dec_pass (cold, no prior) for each
    config (NAME=KEY:INT,...: keywords of cm's make_cfg; NAME= alone is today's default), run
    side by side in one process, rounds interleaved; medians, and ratios to the first."""
    sys.path.insert(0, ROOT)
    from nacc import coder
    from nacc.kernels.cpu import cm as K
    from nacc.predictors import cm as C

    flat = np.ascontiguousarray(clip, np.int32).ravel()
    ident = np.arange(1024)
    cfgs = []
    for arg in configs:
        name, _, spec = arg.partition("=")
        kw = {k: int(v) for k, v in (it.split(":") for it in filter(None, spec.split(",")))}
        cfgs.append((name, C.make_cfg(1024, (8, 16), **kw)))
    times: dict[str, tuple[list[float], list[float]]] = {n: ([], []) for n, _ in cfgs}
    for r in range(rounds + 1):                 # round 0 compiles
        for name, cfg in cfgs:
            t0 = time.process_time()
            s, f = K.enc_pass(flat, cfg, ident, K.new_state(cfg), K.TABLES)
            t1 = time.process_time()
            words = coder.encode_intervals(s, f, 24)
            t2 = time.process_time()
            out = K.dec_pass(words, flat.size, cfg, ident, ident, K.new_state(cfg), K.TABLES)
            t3 = time.process_time()
            if not np.array_equal(out, flat):
                raise RuntimeError(f"{name}: round trip failed")
            if r:
                times[name][0].append((t1 - t0) / flat.size * 1e6)
                times[name][1].append((t3 - t2) / flat.size * 1e6)
    base = [statistics.median(x) for x in times[cfgs[0][0]]]
    print(f"{'config':12s} {'enc us/tok':>10s} {'dec us/tok':>10s} {'enc ratio':>9s} "
          f"{'dec ratio':>9s}  (CPU-time medians of {rounds})")
    for name, _ in cfgs:
        e, d = (statistics.median(x) for x in times[name])
        print(f"{name:12s} {e:10.2f} {d:10.2f} {e / base[0]:9.3f} {d / base[1]:9.3f}")


def startup(clip_path: str, runs: int, others: list[str]) -> None:
    """Whole-process decode of a clip, one thread: ``python -m nacc.cli decompress`` of this
    checkout (default predictor and prior) and of each checkout in ``others`` (each decodes
    its own archive of the clip), and ``zpaq -m5 -threads 1``.  Runs interleaved; medians of
    wall and CPU (user + sys) seconds, and their ratio to zpaq's.  Bytecode is cached under the
    work folder (``PYTHONPYCACHEPREFIX``), as an installed package has its .pyc files."""
    zpaq = shutil.which("zpaq")
    with tempfile.TemporaryDirectory(prefix="bench_cm_start_") as work:
        src = os.path.join(work, "clip.npy")
        np.save(src, np.load(clip_path))
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env.update(OMP_NUM_THREADS="1", NUMBA_NUM_THREADS="1")
        cmds = {}
        for k, root in enumerate([ROOT, *others]):
            e = dict(env, PYTHONPATH=root, PYTHONPYCACHEPREFIX=os.path.join(work, f"pyc{k}"))
            arc = os.path.join(work, f"a{k}.nacc")
            subprocess.run([PY, "-m", "nacc.cli", "compress", "-q", "-f", src, "-o", arc],
                           cwd=root, env=e, check=True)
            out = os.path.join(work, f"out{k}.npy")
            label = f"nacc {os.path.relpath(root, os.path.dirname(ROOT))}"
            cmds[f"{label} ({os.path.getsize(arc)} B)"] = (
                [PY, "-m", "nacc.cli", "decompress", "-q", "-f", arc, "-o", out], root, e)
        if zpaq:
            arc = os.path.join(work, "z.zpaq")
            subprocess.run([zpaq, "a", arc, "clip.npy", "-m5", "-threads", "1"], cwd=work,
                           check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            zdir = os.path.join(work, "zx")
            cmds[f"zpaq -m5 -threads 1 ({os.path.getsize(arc)} B)"] = (
                [zpaq, "x", arc, "-threads", "1", "-force", "-to", zdir], work, env)
        else:
            print("zpaq: not installed (apt-get install zpaq); skipped")
        times: dict[str, list[tuple[float, float]]] = {k: [] for k in cmds}
        for r in range(runs + 1):               # the first round is untimed (OS cache)
            for name, (cmd, cwd, e) in cmds.items():
                if zpaq and cmd[0] == zpaq:
                    shutil.rmtree(zdir, ignore_errors=True)   # zpaq skips existing files
                t0 = time.perf_counter()
                p = subprocess.Popen(cmd, cwd=cwd, env=e, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
                _, status, ru = os.wait4(p.pid, 0)
                if status != 0:
                    raise SystemExit(f"failed: {' '.join(cmd)}")
                if r:
                    times[name].append((time.perf_counter() - t0, ru.ru_utime + ru.ru_stime))
    z = next((statistics.median(v) for k, v in times.items() if k.startswith("zpaq")), None)
    zw = statistics.median(w for w, _ in times[next(k for k in times if k.startswith("zpaq"))]) \
        if z is not None else None
    zc = statistics.median(c for _, c in times[next(k for k in times if k.startswith("zpaq"))]) \
        if z is not None else None
    print(f"decode {clip_path}, {runs} runs interleaved, medians")
    print(f"{'':48s} {'wall s':>7s} {'cpu s':>7s} {'wall/zpaq':>9s} {'cpu/zpaq':>8s}")
    for name, v in times.items():
        w = statistics.median(x for x, _ in v)
        c = statistics.median(x for _, x in v)
        rw = f"{w / zw:9.2f}" if zw else f"{'-':>9s}"
        rc = f"{c / zc:8.2f}" if zc else f"{'-':>8s}"
        print(f"{name:48s} {w:7.3f} {c:7.3f} {rw} {rc}")


def _mode_parser(flag: str) -> argparse.ArgumentParser:
    """The options of the mode ``flag``: the flag itself and the clip (default: the dev clip)."""
    ap = argparse.ArgumentParser()
    ap.add_argument(flag, action="store_true")
    ap.add_argument("clip", nargs="?", default=DEV)
    return ap


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--startup":
        ap = _mode_parser("--startup")
        ap.add_argument("--runs", type=int, default=9)
        ap.add_argument("--other", action="append", default=[], metavar="CHECKOUT",
                        help="another nacc checkout to time alongside (e.g. the base commit)")
        a = ap.parse_args()
        startup(a.clip, a.runs, a.other)
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--splits":
        ap = _mode_parser("--splits")
        ap.add_argument("--check", type=int, default=0, help="checked buckets (cm's check)")
        ap.add_argument("--param", action="append", default=[], metavar="KEY=INT",
                        help="a keyword of make_cfg, e.g. order=1, xctx=255, mix2=1, htb=26")
        a = ap.parse_args()
        kw = {"check": a.check}
        for item in a.param:
            k, _, v = item.partition("=")
            kw[k.strip()] = int(v)
        splits(np.load(a.clip), kw)
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--loop":
        ap = _mode_parser("--loop")
        ap.add_argument("--rounds", type=int, default=5)
        ap.add_argument("--config", action="append", default=[], metavar="NAME=KEY:INT,...",
                        help="a cm config to time (the first is the reference; NAME= alone: "
                             "today's default)")
        a = ap.parse_args()
        loop_times(np.load(a.clip), a.rounds, a.config or ["default="])
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--ablation":
        ablation(np.load(sys.argv[2] if len(sys.argv) > 2 else DEV))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--headroom":
        headroom(np.load(sys.argv[2] if len(sys.argv) > 2 else DEV))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        ap = argparse.ArgumentParser()
        ap.add_argument("--worker", choices=["enc", "dec"])
        ap.add_argument("--prior", default="none")
        ap.add_argument("dst")
        ap.add_argument("src", nargs="+")
        a = ap.parse_args()
        if a.worker == "enc":
            worker("enc", a.src, a.dst, a.prior)
        else:
            worker("dec", a.src, a.dst, a.prior)
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("clip", nargs="?", default=DEV)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--copies", type=int, default=8)
    ap.add_argument("--prior", default="commavq-tree-v1")
    a = ap.parse_args()
    clip = np.load(a.clip)
    with tempfile.TemporaryDirectory(prefix="bench_cm_") as work:
        # warm the numba cache once so that no timed run includes compilation
        subprocess.run([PY, os.path.abspath(__file__), "--worker", "enc", "--prior", a.prior,
                        os.path.join(work, "warm.bin"), a.clip], check=True)
        bench(clip, a.runs, a.copies, a.prior, work)


if __name__ == "__main__":
    main()
