"""Triton driver of the ``gpt`` predictor (kernels: ``jit/gpt.py``; spec: ``nacc.gpt.intref``).

``GptTriton(model, backend)`` holds the integer model on the device and runs it over lanes:

* ``feed(jobs, cache, head_rows)``: tokens of several lanes (a window's ids, or one or two
  ids of a KV-cache step) through every layer together, their keys and values appended to
  the lanes' caches (``KVCache``: one slot per lane); returns the logits rows asked for.
  A window fed at once and the same window fed token by token give identical logits;
* ``tables(z)`` / ``intervals(z, symbols)``: the spec's TABLE of logits rows, or the
  ``(start, freq)`` of known symbols.

On top of it, the predictor's paths with the context policy of ``nacc.gpt.policy``:
``video_tables`` / ``video_intervals`` (every window of every video is a lane of one batched
window pass) and ``decode_lanes`` (segments decoded together, one KV-cache step per token,
rANS on the host with ``nacc.coder.StepDecoder``).  ``GptDriver`` offers the same through
the Triton backend's driver interface (``new_state`` / ``intervals`` / ``decode`` /
``tables`` / ``peek`` / ``push`` on a ``LaneBatch``).

Only ``A = 8`` models run here (every product int8 x int8); others are refused.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from nacc.errors import NaccError
from nacc.gpt import intref
from nacc.gpt.policy import LaneFeed, coded_rows, window_ids, windows

from .base import Driver, register_driver
from .runtime import Backend, resolve

TABLES = 0
INTERVALS = 1


def _pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


class _Scratch(NamedTuple):
    """Device buffers of one feed's rows: ``qkv`` int32 [M, 3D], the quantized queries
    ``qq`` int8 [M, D] with scales ``mq``, ``eq`` int32 [M, H], the attention output ``o``
    int32 [M, D] and the MLP's hidden ``hid`` int32 [M, F]."""
    qkv: Any
    qq: Any
    mq: Any
    eq: Any
    o: Any
    hid: Any


class _Feed(NamedTuple):
    """Where one feed's rows go: each row's cache slot and position (int32 device vectors),
    the jobs' (first row, row count, first position, slot) vectors, the job count and the
    most rows of one job."""
    rslot: Any
    rpos: Any
    jobs: tuple
    n_jobs: int
    nmax: int


@dataclass
class KVCache:
    """Keys (quantized: ``kq`` int8, ``km``/``ke`` int32) and raw values (``v`` int32) of up to
    ``capacity`` positions per slot and layer; ``n[slot]`` the tokens fed so far."""
    kq: Any
    km: Any
    ke: Any
    v: Any
    n: np.ndarray

    @property
    def capacity(self) -> int:
        return int(self.km.shape[3])


class GptTriton:
    """The integer gpt model on a Triton backend (``backend``: a ``Backend`` or a device
    string: "cuda", "cuda:N", "interpret")."""

    def __init__(self, model: intref.Model, backend: Backend | str = "cuda"):
        import torch

        if isinstance(backend, str):
            b = resolve(backend)
            if b is None:
                raise NaccError(f"gpt on Triton: {backend!r} is not a Triton device")
            backend = b
        cfg = model.cfg
        if cfg.act_bits != 8:
            raise NaccError(f"gpt on the GPU needs a model imported with 8 activation bits "
                            f"(this one has {cfg.act_bits}); use --device cpu")
        self.cfg = cfg
        self.backend = backend
        self.dev = backend.device
        self.k = backend.kernels.gpt
        self.gpu = backend.flavor == "cuda"

        def t(a):
            return torch.from_numpy(np.ascontiguousarray(a)).to(self.dev)

        self.top = {f: t(getattr(model.top, f)) for f in intref.Top._fields}
        self.layers = [{f: t(getattr(lay, f)) for f in intref.Layer._fields}
                       for lay in model.layers]
        self.ea = t(model.tables.exp_att)
        self.et = t(model.tables.exp_tab)
        self.gt = t(model.tables.gelu)
        self.att_m, self.att_s = intref.att_scale(cfg)
        self.bdh = max(32, _pow2(cfg.d_head))

    # -- caches -------------------------------------------------------------------------
    def new_cache(self, slots: int, capacity: int | None = None) -> KVCache:
        import torch

        c = self.cfg
        p = c.n_positions if capacity is None else min(int(capacity), c.n_positions)
        shape = (int(slots), c.n_layer, c.n_head, p)
        return KVCache(torch.zeros((*shape, c.d_head), dtype=torch.int8, device=self.dev),
                       torch.zeros(shape, dtype=torch.int32, device=self.dev),
                       torch.zeros(shape, dtype=torch.int32, device=self.dev),
                       torch.zeros((*shape, c.d_head), dtype=torch.int32, device=self.dev),
                       np.zeros(int(slots), np.int64))

    @staticmethod
    def cache_bytes(cfg: intref.GPTConfig, capacity: int) -> int:
        """Device bytes of one slot's cache."""
        return cfg.n_layer * cfg.n_head * capacity * (5 * cfg.d_head + 8)

    # -- launches -----------------------------------------------------------------------
    def _lin(self, q, mu, eu, lay: dict, name: str, out, epi: int) -> None:
        m, k = q.shape
        n = lay[f"{name}_w"].shape[1]
        bm = 16 if (m <= 16 or not self.gpu) else 64
        bn = 32 if not self.gpu else 128
        bk = 32 if not self.gpu else 64
        grid = (triton_cdiv(m, bm), triton_cdiv(n, bn))
        self.k.lin_kernel[grid](q, mu, eu, lay[f"{name}_w"], lay[f"{name}_m"], lay[f"{name}_s"],
                                lay[f"{name}_b"], self.gt, out, m, n, k, A=8, EPI=epi,
                                BM=bm, BN=bn, BK=bk)

    def _quant(self, u):
        import torch

        m, k = u.shape
        q = torch.empty((m, k), dtype=torch.int8, device=self.dev)
        mu = torch.empty(m, dtype=torch.int32, device=self.dev)
        eu = torch.empty_like(mu)
        br = 4 if self.gpu else 16
        self.k.quant_kernel[(triton_cdiv(m, br),)](u, q, mu, eu, m, k, A=8, BR=br,
                                                   BK=min(1024, _pow2(k)))
        return q, mu, eu

    def _ln_quant(self, x, g, b):
        import torch

        m, d = x.shape
        q = torch.empty((m, d), dtype=torch.int8, device=self.dev)
        mu = torch.empty(m, dtype=torch.int32, device=self.dev)
        eu = torch.empty_like(mu)
        br = 4 if self.gpu else 16
        self.k.ln_quant_kernel[(triton_cdiv(m, br),)](x, g, b, q, mu, eu, m, d, self.cfg.eps,
                                                      A=8, BR=br, BD=_pow2(d))
        return q, mu, eu

    def _head(self, x):
        import torch

        top = self.top
        q, mu, eu = self._ln_quant(x, top["lnf_g"], top["lnf_b"])
        z = torch.empty((x.shape[0], self.cfg.n_vocab), dtype=torch.int32, device=self.dev)
        self._lin(q, mu, eu, {f"head_{s}": top[f"head_{s}"] for s in "wmsb"}, "head", z, 0)
        return z

    # -- the model ----------------------------------------------------------------------
    def feed(self, jobs: Sequence[tuple[int, np.ndarray]], cache: KVCache,
             head_rows: Sequence[Sequence[int] | None] | None = None):
        """Run ``ids`` of each ``(slot, ids)`` job (distinct slots) at that slot's next
        positions; returns the logits (int32 [rows, NV], on the device) of each job's
        ``head_rows`` (default: all its rows), jobs in order."""
        import torch

        cfg = self.cfg
        d, h = cfg.d_model, cfg.n_head
        ids_l, rslot, rpos, jrow, jn, jpos, jslot, sel = [], [], [], [], [], [], [], []
        r = 0
        for k, (slot, ids) in enumerate(jobs):
            ids = np.asarray(ids, np.int64).reshape(-1)
            p0 = int(cache.n[slot])
            if p0 + len(ids) > cache.capacity:
                raise ValueError(f"window of {p0 + len(ids)} positions exceeds the cache's "
                                 f"{cache.capacity}")
            if ids.size and (ids.min() < 0 or ids.max() >= cfg.n_vocab):
                raise ValueError("token id outside the model's vocabulary")
            ids_l.append(ids)
            rslot.append(np.full(len(ids), slot, np.int64))
            rpos.append(np.arange(p0, p0 + len(ids), dtype=np.int64))
            jrow.append(r)
            jn.append(len(ids))
            jpos.append(p0)
            jslot.append(slot)
            hr = None if head_rows is None else head_rows[k]
            sel.append(r + (np.arange(len(ids)) if hr is None else np.asarray(hr, np.int64)))
            r += len(ids)
        m = r
        if m == 0:
            return torch.zeros((0, cfg.n_vocab), dtype=torch.int32, device=self.dev)

        if len({slot for slot, _ in jobs}) != len(jobs):
            raise ValueError("two jobs of one feed share a cache slot")
        # every index vector in one host-to-device copy (int32), then views of it, each
        # starting 16-byte aligned (Triton specializes kernels on pointer alignment)
        parts: list[np.ndarray] = [np.concatenate(ids_l), np.concatenate(rpos),
                                   np.concatenate(rslot), np.concatenate(sel),
                                   *(np.asarray(a, np.int64) for a in (jrow, jn, jpos, jslot))]
        lens = [len(a) for a in parts]
        pad = [-n % 4 + n for n in lens]
        host = np.zeros(sum(pad), np.int32)
        offs = [int(o) for o in np.concatenate([[0], np.cumsum(pad)])]
        for a, o0, n in zip(parts, offs, lens):
            host[o0:o0 + n] = a
        flat = torch.from_numpy(host).to(self.dev)
        ids_t, rpos_t, rslot_t, sel_t, jrow_t, jn_t, jpos_t, jslot_t = (
            flat[o0:o0 + n] for o0, n in zip(offs, lens))
        x = (self.top["wte"][ids_t.long()].to(torch.int64)
             + self.top["wpe"][rpos_t.long()].to(torch.int64)).contiguous()
        mq = torch.empty((m, h), dtype=torch.int32, device=self.dev)
        buf = _Scratch(torch.empty((m, 3 * d), dtype=torch.int32, device=self.dev),
                       torch.empty((m, d), dtype=torch.int8, device=self.dev), mq,
                       torch.empty_like(mq), torch.empty((m, d), dtype=torch.int32,
                                                         device=self.dev),
                       torch.empty((m, cfg.d_ff), dtype=torch.int32, device=self.dev))
        feed = _Feed(rslot_t, rpos_t, (jrow_t, jn_t, jpos_t, jslot_t), len(jn), max(jn))
        with self._on_device():
            self._layers(x, buf, cache, feed)
            z = self._head(x[sel_t.long()].contiguous())
        for (slot, _), n in zip(jobs, jn):
            cache.n[slot] += n
        return z

    def _on_device(self):
        import contextlib

        if not self.gpu:
            return contextlib.nullcontext()
        import torch

        return torch.cuda.device(torch.device(self.dev))

    def _layers(self, x, buf: _Scratch, cache: KVCache, feed: _Feed) -> None:
        """Every layer over the rows of ``x`` (int64 [M, D], updated in place)."""
        qkv, qq, mq, eq, o, hid = buf
        rslot_t, rpos_t, jt, n_jobs, nmax = feed
        cfg = self.cfg
        m = x.shape[0]
        d, h, dh = cfg.d_model, cfg.n_head, cfg.d_head
        bq = 16 if (nmax <= 16 or not self.gpu) else 64
        bkey = 32 if not self.gpu else 64
        p = cache.capacity
        for li, lay in enumerate(self.layers):
            q, mu, eu = self._ln_quant(x, lay["ln1_g"], lay["ln1_b"])
            self._lin(q, mu, eu, lay, "attn", qkv, 0)
            self.k.qkv_kernel[(m,)](qkv, rslot_t, rpos_t, qq, mq, eq, cache.kq, cache.km,
                                    cache.ke, cache.v, li, cfg.n_layer, h, p, d, dh,
                                    A=8, BH=_pow2(h), BDH=_pow2(dh))
            self.k.attention_kernel[(n_jobs, h, triton_cdiv(nmax, bq))](
                qq, mq, eq, cache.kq, cache.km, cache.ke, cache.v, self.ea, o, *jt, li,
                cfg.n_layer, h, p, d, dh, len(self.ea), self.att_m, self.att_s,
                A=8, BQ=bq, BKEY=bkey, BDH=self.bdh)
            q, mu, eu = self._quant(o)
            self._lin(q, mu, eu, lay, "proj", x, 1)
            q, mu, eu = self._ln_quant(x, lay["ln2_g"], lay["ln2_b"])
            self._lin(q, mu, eu, lay, "fc", hid, 2)
            q, mu, eu = self._quant(hid)
            self._lin(q, mu, eu, lay, "out", x, 1)

    def _table_launch(self, z, mode: int, symbols=None):
        import torch

        rows = z.shape[0]
        v = self.cfg.vocab
        d32 = torch.zeros(1, dtype=torch.int32, device=self.dev)
        if mode == TABLES:
            tab = torch.empty((rows, v), dtype=torch.int32, device=self.dev)
            out: tuple = (tab, d32, d32)
            sym = d32
        else:
            start = torch.empty(rows, dtype=torch.int32, device=self.dev)
            out = (d32, start, torch.empty_like(start))
            sym = symbols
        if rows:
            self.k.table_kernel[(rows,)](z, self.et, sym, *out, self.cfg.n_vocab, v,
                                         len(self.et), MODE=mode, BV=_pow2(v))
        return out

    def tables(self, z):
        """TABLE (int32 [rows, V], device) of logits rows ``z``."""
        return self._table_launch(z, TABLES)[0]

    def intervals(self, z, symbols):
        """``(start, freq)`` int32 device tensors of the known ``symbols`` (int32 [rows],
        device) under the tables of ``z``."""
        return self._table_launch(z, INTERVALS, symbols)[1:]


_ENGINES: dict = {}       # the last model put on a device (predictors of one model share it)


def engine_for(model: intref.Model, backend: Backend | str) -> GptTriton:
    """``GptTriton(model, backend)``, reused while the same model object and backend ask."""
    key = (id(model), str(backend))
    hit = _ENGINES.get(key)
    if hit is None or hit[0] is not model:
        _ENGINES.clear()
        _ENGINES[key] = hit = (model, GptTriton(model, backend))
    return hit[1]


def triton_cdiv(a: int, b: int) -> int:
    return max(1, (int(a) + b - 1) // b)


# -- the predictor's paths ---------------------------------------------------------------
class GptLanes:
    """The ``gpt`` predictor (``nacc.predictors.gpt.GPT``: model, window, stride, frame
    shape) on a Triton backend; ``lanes``: windows / segments per batched pass."""

    def __init__(self, pred, backend: Backend | str = "cuda", lanes: int = 16):
        pred._check_shape()
        self.pred = pred
        self.eng = engine_for(pred.model, backend)
        self.lanes = max(1, int(lanes))
        self.fs = pred.frame_size
        self.cap = pred.window * (self.fs + 1)

    def _window_jobs(self, videos):
        """(video index, window, ids, coded rows) of every window of every video (``ids``
        the window's whole sequence: the pass feeds all but the last)."""
        bos = self.pred.cfg.vocab
        out = []
        for vi, v in enumerate(videos):
            video = self.pred.video(v)
            for win in windows(len(video), self.pred.window, self.pred.stride):
                ids = window_ids(video[win.start:win.end], bos)
                out.append((vi, win, ids, coded_rows(win, self.fs)))
        return out

    def _run_windows(self, videos, mode: int):
        import torch

        jobs = self._window_jobs(videos)
        parts: list[list] = [[] for _ in videos]
        cache = self.eng.new_cache(min(self.lanes, max(1, len(jobs))), self.cap)
        for b0 in range(0, len(jobs), self.lanes):
            batch = jobs[b0:b0 + self.lanes]
            cache.n[:] = 0
            z = self.eng.feed([(k, ids[:-1]) for k, (_, _, ids, _) in enumerate(batch)], cache,
                              [rows for *_, rows in batch])
            if mode == TABLES:
                tab = self.eng.tables(z)
            else:
                syms = np.concatenate([ids[rows + 1] for _, _, ids, rows in batch])
                st, fr = self.eng.intervals(z, torch.from_numpy(syms.astype(np.int32))
                                            .to(self.eng.dev))
                tab = torch.stack([st, fr], 1)
            r = 0
            for vi, _, _, rows in batch:
                parts[vi].append(tab[r:r + len(rows)])
                r += len(rows)
        return parts

    def video_tables(self, videos) -> list[np.ndarray]:
        """Every token's table (int32 [T * H * W, V]) of each video, window passes batched."""
        v = self.pred.vocab
        return [torch_cat_host(p, (0, v)) for p in self._run_windows(videos, TABLES)]

    def video_intervals(self, videos) -> list[tuple[np.ndarray, np.ndarray]]:
        """``(start, freq)`` uint32 of every token of each video."""
        out = []
        for p in self._run_windows(videos, INTERVALS):
            a = torch_cat_host(p, (0, 2))
            out.append((a[:, 0].astype(np.uint32), a[:, 1].astype(np.uint32)))
        return out

    def decode_lanes(self, jobs: Sequence[tuple[np.ndarray, int]]) -> list[np.ndarray]:
        """Decode segments ``(words, n_frames)`` together, ``lanes`` at a time: each step
        feeds every unfinished lane's next ids (a window's context, or the last token) and
        decodes one token per lane from its table."""
        out: list[np.ndarray] = []
        for b0 in range(0, len(jobs), self.lanes):
            out.extend(self._decode_batch(jobs[b0:b0 + self.lanes]))
        return out

    def _decode_batch(self, jobs) -> list[np.ndarray]:
        from nacc.coder import StepDecoder

        pred = self.pred
        cache = self.eng.new_cache(max(1, len(jobs)), self.cap)
        lanes = [_Lane(pred, cache, k) for k in range(len(jobs))]
        decs = [StepDecoder(w, pred.precision) for w, _ in jobs]
        outs = [np.empty(int(n) * self.fs, np.int32) for _, n in jobs]
        todo = [k for k, o in enumerate(outs) if o.size]
        t = 0
        while todo:
            feeds = [lanes[k].job() for k in todo]
            z = self.eng.feed([(k, ids) for k, (ids, _) in zip(todo, feeds)], cache,
                              [[len(ids) - 1] for ids, _ in feeds])
            tabs = self.eng.tables(z).cpu().numpy()
            for row, k in enumerate(todo):
                s = decs[k].decode(tabs[row])
                outs[k][t] = s
                lanes[k].push(int(s))
            t += 1
            todo = [k for k in todo if t < outs[k].size]
        return [o.reshape(-1, *pred.frame_shape) for o in outs]


def torch_cat_host(parts: list, empty_shape: tuple[int, int]) -> np.ndarray:
    import torch

    if not parts:
        return np.zeros(empty_shape, np.int32)
    return torch.cat(parts).cpu().numpy()


class _Lane:
    """Decode state of one segment in cache slot ``slot``: what it feeds
    (``nacc.gpt.policy.LaneFeed``; a new window empties the slot)."""

    def __init__(self, pred, cache: KVCache, slot: int):
        self.feed = LaneFeed(pred.frame_shape, pred.window, pred.stride, pred.cfg.vocab)
        self.cache = cache
        self.slot = slot

    def job(self) -> tuple[np.ndarray, int]:
        """The ids to feed (the last one's logits give the next token's table)."""
        ids, restart = self.feed.next_ids()
        if restart:
            self.cache.n[self.slot] = 0
        return ids, self.slot

    def push(self, symbol: int) -> None:
        self.feed.push(symbol)


# -- the backend's driver interface (``nacc.kernels.triton.base.Driver`` on branch pack) ----
@register_driver("gpt")
class GptDriver(Driver):
    """``gpt`` through the Triton driver interface: lanes are a ``LaneBatch``'s segments
    (flat tokens of whole frames).  The state of a lane batch is its stepper lane (``peek``
    / ``push`` on lane 0); the other operations need none."""

    def __init__(self, pred, backend: Backend, lanes: int | None = None):
        super().__init__(pred, backend)
        self.run = GptLanes(pred, backend, lanes or (16 if backend.flavor == "cuda" else 4))

    def state_bytes_per_lane(self) -> int:
        return GptTriton.cache_bytes(self.pred.cfg, self.run.cap)

    def new_state(self, n_lanes: int):
        return {"cache": None, "lane": None, "tab": None}

    def _videos(self, batch) -> list[np.ndarray]:
        return [t.reshape(-1, *self.pred.frame_shape) for t in batch.token_arrays()]

    def intervals(self, batch, state):
        import torch

        iv = self.run.video_intervals(self._videos(batch))
        start = np.concatenate([s for s, _ in iv]) if iv else np.zeros(0, np.uint32)
        freq = np.concatenate([f for _, f in iv]) if iv else np.zeros(0, np.uint32)
        n = max(1, start.size)
        dev = self.backend.device
        s_t = torch.zeros(n, dtype=torch.int32, device=dev)
        f_t = torch.zeros(n, dtype=torch.int32, device=dev)
        s_t[:start.size] = torch.from_numpy(start.view(np.int32)).to(dev)
        f_t[:freq.size] = torch.from_numpy(freq.view(np.int32)).to(dev)
        return s_t, f_t

    def tables(self, batch, state, i0: int, i1: int):
        import torch

        tabs = self.run.video_tables(self._videos(batch))
        out = np.stack([t[i0:i1] for t in tabs]) if tabs else np.zeros((0, i1 - i0,
                                                                          self.pred.vocab))
        return torch.from_numpy(np.ascontiguousarray(out, np.int32)).to(self.backend.device)

    def decode(self, batch, state) -> None:
        import torch

        words = batch.words.cpu().numpy()
        woff = batch.woff.cpu().numpy().astype(np.int64)
        ends = np.append(woff[1:], len(words))
        fs = self.pred.frame_size
        jobs = [(words[s:e].astype(np.uint32), int(n) // fs)
                for s, e, n in zip(woff, ends, batch.lengths)]
        toks = self.run.decode_lanes(jobs)
        flat = np.concatenate([t.ravel() for t in toks]) if toks else np.zeros(0, np.int32)
        batch.tok[:flat.size] = torch.from_numpy(flat.astype(np.int32)).to(batch.tok.device)

    def peek(self, batch, state, i: int):
        if state["lane"] is None:
            state["cache"] = self.run.eng.new_cache(1, self.run.cap)
            state["lane"] = _Lane(self.pred, state["cache"], 0)
        if state["tab"] is None:
            ids, slot = state["lane"].job()
            z = self.run.eng.feed([(slot, ids)], state["cache"], [[len(ids) - 1]])
            state["tab"] = self.run.eng.tables(z)[0]
        return state["tab"]

    def push(self, batch, state, i: int) -> None:
        if state["tab"] is None:
            self.peek(batch, state, i)
        state["lane"].push(int(batch.tok[i].item()))
        state["tab"] = None


# -- compile check (``nacc.kernels.triton.compile_check``) ---------------------------------
def compile_variants(cfg: intref.GPTConfig | None = None) -> list[tuple]:
    """Variants (as ``compile_check.variants()``) of every gpt launch ``GptTriton`` makes on
    a GPU for ``cfg`` (default: gpt2m's shape): pass them as ``compile_all(extra=...)``."""
    c = cfg or intref.GPTConfig(n_layer=24, d_model=1024, n_head=16, d_ff=4096,
                                n_vocab=1025, n_positions=2580)
    out: list[tuple] = []
    i32, i8, i64 = "*i32", "*i8", "*i64"
    opts: dict = {}
    for br in (4,):
        out.append((f"gpt ln_quant_kernel BR={br}", ("gpt", "ln_quant_kernel"),
                    {"x_ptr": i64, "g_ptr": i32, "b_ptr": i32, "q_ptr": i8, "mu_ptr": i32,
                     "eu_ptr": i32, "M": "i32", "D": "i32", "EPS": "i32", "A": "constexpr",
                     "BR": "constexpr", "BD": "constexpr"},
                    {"A": 8, "BR": br, "BD": _pow2(c.d_model)}, opts))
        out.append((f"gpt quant_kernel BR={br}", ("gpt", "quant_kernel"),
                    {"u_ptr": i32, "q_ptr": i8, "mu_ptr": i32, "eu_ptr": i32, "M": "i32",
                     "K": "i32", "A": "constexpr", "BR": "constexpr", "BK": "constexpr"},
                    {"A": 8, "BR": br, "BK": 1024}, opts))
    for epi in (0, 1, 2):
        for bm in (16, 64):
            out.append((f"gpt lin_kernel EPI={epi} BM={bm}", ("gpt", "lin_kernel"),
                        {"q_ptr": i8, "mu_ptr": i32, "eu_ptr": i32, "w_ptr": i8, "m_ptr": i32,
                         "s_ptr": i32, "b_ptr": i32, "gt_ptr": i32,
                         "out_ptr": i64 if epi == 1 else i32, "M": "i32", "N": "i32",
                         "K": "i32", "A": "constexpr", "EPI": "constexpr", "BM": "constexpr",
                         "BN": "constexpr", "BK": "constexpr"},
                        {"A": 8, "EPI": epi, "BM": bm, "BN": 128, "BK": 64}, opts))
    out.append(("gpt qkv_kernel", ("gpt", "qkv_kernel"),
                {"qkv_ptr": i32, "rslot_ptr": i32, "rpos_ptr": i32, "qq_ptr": i8,
                 "mq_ptr": i32, "eq_ptr": i32, "kq_ptr": i8, "km_ptr": i32, "ke_ptr": i32,
                 "v_ptr": i32, "layer": "i32", "NL": "i32", "H": "i32", "P": "i32", "D": "i32",
                 "DH": "i32", "A": "constexpr", "BH": "constexpr", "BDH": "constexpr"},
                {"A": 8, "BH": _pow2(c.n_head), "BDH": _pow2(c.d_head)}, opts))
    for bq in (16, 64):
        out.append((f"gpt attention_kernel BQ={bq}", ("gpt", "attention_kernel"),
                    {"qq_ptr": i8, "mq_ptr": i32, "eq_ptr": i32, "kq_ptr": i8, "km_ptr": i32,
                     "ke_ptr": i32, "v_ptr": i32, "ea_ptr": i32, "o_ptr": i32,
                     "jrow_ptr": i32, "jn_ptr": i32, "jpos_ptr": i32, "jslot_ptr": i32,
                     "layer": "i32", "NL": "i32", "H": "i32", "P": "i32", "D": "i32",
                     "DH": "i32", "LENA": "i32", "att_m": "i32", "att_s": "i32",
                     "A": "constexpr", "BQ": "constexpr", "BKEY": "constexpr",
                     "BDH": "constexpr"},
                    {"A": 8, "BQ": bq, "BKEY": 64, "BDH": max(32, _pow2(c.d_head))}, opts))
    for mode in (TABLES, INTERVALS):
        out.append((f"gpt table_kernel MODE={mode}", ("gpt", "table_kernel"),
                    {"z_ptr": i32, "et_ptr": i32, "sym_ptr": i32, "tab_ptr": i32,
                     "start_ptr": i32, "freq_ptr": i32, "NV": "i32", "V": "i32",
                     "LENT": "i32", "MODE": "constexpr", "BV": "constexpr"},
                    {"MODE": mode, "BV": _pow2(c.vocab)}, opts))
    return out
