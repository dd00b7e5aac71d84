"""Driver of the neural kernels (``transformer``, ``lstm``; kernels in ``jit/neural.py``).

It implements the ``Driver`` operations of ``nacc.kernels.triton.base`` for a batch of
lanes (``LaneBatch``: flat tokens, per-lane offsets), so ``TritonPredictor`` and the lane
runner (batches sized to the GPU memory, split in halves on out-of-memory) work unchanged.

The model is packed once: the token tables of ``nacc.kernels.cpu.neural_lanes`` (computed
exactly on the host: keys and values of every token, the embedding parts of every LIN input)
and the int8 weight matrices, copied to the device.  A launch sequence then follows the spec
of ``nacc.neural.intref`` on *jobs* (lane, frame t):

* frame pass: the transformer for many jobs at once (any frames whose previous frames are
  known), the lstm one frame index at a time over the lanes still running (its state
  carries), both as LIN / LN / attention / cell kernels;
* head: the hidden layer, the output product (l2 | cp [| sg] [| mix]) and the table kernel
  (TABLE, or the mixture table of ``mix_head`` models), over all
  positions of the jobs when encoding, one position of every running lane per step when
  decoding (the rANS step is inside the table kernel; the next position's head reads the
  token it wrote).

Every integer equals the CPU's, so tables and bytes do not depend on the batch, the lanes in
it, the chunking or the device.  Glue between kernels (gathering the previous frames of a
job, the motion counts of a frame) is exact torch integer indexing.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from nacc.neural.config import HEAD_NEIGHBOURS, MOTION_ROW, PREV_CANDIDATES

from .base import Driver, LaneBatch, pow2, register_driver
from .jit import DECODE, INTERVALS, TABLES

HEAD_ROWS_CUDA = 1 << 15          # head rows per encode chunk on a GPU
HEAD_ROWS_INTERPRET = 256


class HeadOut(NamedTuple):
    """Where a head launch writes: full tables (TABLES), intervals of ``batch``'s tokens
    (INTERVALS) or decoded tokens of ``batch``'s words (DECODE)."""
    tab: Any = None
    batch: Any = None        # LaneBatch (INTERVALS, DECODE)
    start: Any = None
    freq: Any = None


@register_driver("transformer", "lstm")
class NeuralDriver(Driver):
    """One neural model on one backend (see the module docstring)."""

    def __init__(self, pred, backend):
        super().__init__(pred, backend)
        import torch

        from nacc.kernels.cpu.neural_lanes import pack_head, pack_lstm, pack_transformer

        self.torch = torch
        pred._check_shape()          # NaccError: the model's frame shape is not the data's
        m = pred.im
        self.cfg = cfg = m.cfg
        self.arch = cfg.arch
        self.h, self.w = cfg.frame_shape
        self.hw = self.h * self.w
        self.kf = cfg.k_frames
        self.pad = cfg.pad
        self.d = cfg.d_model
        dev = backend.device
        self.dev = dev
        cuda = backend.flavor == "cuda"
        self.head_rows = HEAD_ROWS_CUDA if cuda else HEAD_ROWS_INTERPRET

        def t(a, dt=np.int32):
            return torch.from_numpy(np.ascontiguousarray(np.asarray(a).astype(dt))).to(dev)

        def on_dev(pack):      # a kernel pack of neural_lanes: its arrays as int32 tensors
            return type(pack)(*(t(x) if isinstance(x, np.ndarray) else x for x in pack))

        def w8(gemm):          # a neural_lanes Gemm holds W.T as exact floats
            return t(np.rint(gemm.w).T, np.int8)

        def lin(g):
            gemm, b, mm, ss = g
            return (w8(gemm), t(b), t(mm), t(ss))

        hd = pack_head(m)
        self.hid = hd.b1.shape[0]
        self.head_f = (w8(hd.f), t(hd.b1))
        self.hp = on_dev(hd.hidden)        # the same packs as the CPU kernels', on device
        self.tp = on_dev(hd.tables)
        self.out_w = w8(hd.out)
        self.nev = hd.hidden.ev_w.shape[0]
        self.nout = hd.tables.out_b.shape[0]
        self.mclamp = hd.hidden.mclamp
        self.nbo = t(np.array(HEAD_NEIGHBOURS).ravel())
        cand = list(HEAD_NEIGHBOURS) + list(PREV_CANDIDATES) + [(0, 0)]
        self.cdy = t([c[0] for c in cand])
        self.cdx = t([c[1] for c in cand])
        if self.arch == "transformer":
            tp = pack_transformer(m)
            self.q_tok, self.q_pos = t(tp.q_tok), t(tp.q_pos)
            self.in_b = t(np.zeros(self.d))
            self.in_m, self.in_s = t(tp.in_m), t(tp.in_s)
            n_l = len(tp.q)
            self.layers = []
            for l in range(n_l):
                self.layers.append(dict(
                    ln1=(t(tp.ln1g[l]), t(tp.ln1b[l])), ln2=(t(tp.ln2g[l]), t(tp.ln2b[l])),
                    q=lin(tp.q[l]), o=lin(tp.o[l]), f1=lin(tp.f1[l]), f2=lin(tp.f2[l]),
                    kt=t(np.rint(tp.kt_f[l]), np.int8), vt=t(tp.vt_i[l], np.int8),
                    att=(int(tp.att_m[l]), int(tp.att_s[l])), bt=t(tp.bt[l]), by=t(tp.by[l]),
                    bx=t(tp.bx[l]), act=t(tp.act[l]), add1=tuple(int(x) for x in tp.add1[l]),
                    add2=tuple(int(x) for x in tp.add2[l])))
            self.exp_att = t(tp.exp_att)
            self.lnf = (t(tp.lnfg), t(tp.lnfb))
        else:
            lp = pack_lstm(m)
            self.gate_tab = t(lp.gate_tab)
            self.gates = (w8(lp.h), t(lp.g_b), t(lp.g_m), t(lp.g_s))
            self.sig, self.tanh = t(lp.sig), t(lp.tanh)

    # -- launch helpers -----------------------------------------------------------------
    def _lin(self, x, w, b, m, s, out, n=None, add=None, lut=None, res=None, a=(0, 0)):
        """LIN of rows ``x`` (int8 [M, K], or None: K = 0 and ``add`` alone) -> int32
        accumulators (out 0) or int8 (out 1 requant, 2 + LUT, 3 + residual ADD)."""
        torch = self.torch
        rows = (x if x is not None else add).shape[0]
        n = w.shape[0] if w is not None else n
        k = x.shape[1] if x is not None else 0
        y = torch.empty((rows, n), dtype=torch.int32 if out == 0 else torch.int8,
                        device=self.dev)
        if rows == 0:
            return y
        bm, bn, bk = 64, max(32, min(128, pow2(n))), max(32, min(128, pow2(k)))
        d8 = self._dummy("int8")
        d32 = self._dummy()
        grid = (-(-rows // bm), -(-n // bn))
        self._run(self.k.neural.lin_kernel, grid,
                  x if x is not None else d8, w if w is not None else d8,
                  add if add is not None else d32, b, m if m is not None else d32,
                  s if s is not None else d32, lut if lut is not None else d32,
                  res if res is not None else d8, y, rows, n, k, int(a[0]), int(a[1]),
                  HAS_ADD=add is not None, OUT=out, BM=bm, BN=bn, BK=bk)
        return y

    def _ln(self, x, gb):
        y = self.torch.empty_like(x)
        rows, d = x.shape
        if rows:
            self._run(self.k.neural.layer_norm_kernel, (-(-rows // 16),), x, gb[0], gb[1], y,
                      rows, d, BR=16, BD=max(16, pow2(d)))
        return y

    def _context(self, vid, jobs):
        """int32 [J, K, H*W]: frames t-1..t-K of each job (lane, t) (pad id before 0)."""
        torch = self.torch
        dts = torch.arange(1, self.kf + 1, device=self.dev)
        tt = jobs[:, 1:2] - dts[None, :]
        ctx = vid[jobs[:, 0:1], tt.clamp(min=0)].reshape(len(jobs), self.kf, self.hw)
        return torch.where((tt >= 0)[:, :, None], ctx, self.pad).to(torch.int32).contiguous()

    def _attention(self, qv, ctx, lay):
        o = self.torch.empty_like(qv)
        n_j = ctx.shape[0]
        nh = self.cfg.n_heads
        dh = self.d // nh
        bq = max(16, min(64, pow2(self.hw)))
        bkey = max(32, min(256, pow2(self.kf * self.hw)))
        self._run(self.k.neural.attention_kernel, (n_j, nh, -(-self.hw // bq)),
                  qv, ctx, lay["kt"], lay["vt"], lay["bt"], lay["by"], lay["bx"],
                  self.exp_att, o, self.hw, self.w, self.d, dh, self.kf, self.cfg.radius,
                  int(self.exp_att.numel()), lay["att"][0], lay["att"][1],
                  BQ=bq, BKEY=bkey, BDH=max(32, pow2(dh)))
        return o

    def _fpart(self, feats):
        """F part of head.l1 plus its bias: int32 [rows, hidden]."""
        w, b = self.head_f
        return self._lin(feats, w, b, None, None, 0)

    def _tf_fpart(self, vid, jobs):
        """Transformer frame pass of jobs (lane, t) whose previous frames are in ``vid``."""
        if len(jobs) == 0:
            return self.torch.empty((0, self.hid), dtype=self.torch.int32, device=self.dev)
        ctx = self._context(vid, jobs)
        add = (self.q_tok[ctx[:, 0, :].long()] + self.q_pos[None]).reshape(-1, self.d)
        s = self._lin(None, None, self.in_b, self.in_m, self.in_s, 1, n=self.d,
                      add=add.to(self.torch.int32).contiguous())
        for lay in self.layers:
            a = self._ln(s, lay["ln1"])
            qv = self._lin(a, *lay["q"], 1)
            o = self._attention(qv, ctx, lay)
            s = self._lin(o, *lay["o"], 3, res=s, a=lay["add1"])
            a = self._ln(s, lay["ln2"])
            u = self._lin(a, *lay["f1"], 2, lut=lay["act"])
            s = self._lin(u, *lay["f2"], 3, res=s, a=lay["add2"])
        return self._fpart(self._ln(s, self.lnf))

    def _lstm_step(self, vid, jobs, hs, cs):
        """One lstm step for jobs of one frame index: ``hs`` int8 / ``cs`` int32 [J*H*W, D]
        are the lanes' states (updated in place); returns the F part."""
        ctx = self._context(vid, jobs)
        hacc = self._lin(hs, *self.gates[:2], None, None, 0)
        rows = hs.shape[0]
        if rows:
            self._run(self.k.neural.lstm_cell_kernel, (-(-rows // 16),), ctx, self.gate_tab,
                      hacc, self.gates[2], self.gates[3], self.sig, self.tanh, hs, cs, rows,
                      self.hw, self.w, self.d, self.kf, self.cfg.radius, self.pad,
                      BR=16, BD=max(16, pow2(self.d)))
        return self._fpart(hs)

    def _motion_rows(self, vid, jobs):
        """int32 [J, H*W, MOTION_ROW]: motion rows (cur_0..8, n_cur, prv_0..8, n_prv) of every
        position of each job's frame, as the spec counts them."""
        torch = self.torch
        n_j = len(jobs)
        lanes, t = jobs[:, 0], jobs[:, 1]

        def hits(tt):
            cur = vid[lanes, tt.clamp(min=0)]
            prv = torch.nn.functional.pad(vid[lanes, (tt - 1).clamp(min=0)], (1, 1, 1, 1),
                                          value=-1)
            hs = [cur == prv[:, 1 + dy:1 + dy + self.h, 1 + dx:1 + dx + self.w]
                  for dy, dx in PREV_CANDIDATES]
            hit = torch.stack(hs, -1).reshape(n_j, self.hw, -1) & (tt >= 1)[:, None, None]
            return hit.to(torch.int32)

        hc, hp = hits(t), hits(t - 1)
        cur = torch.cumsum(hc, 1, dtype=torch.int32) - hc
        n_cur = torch.arange(self.hw, device=self.dev, dtype=torch.int32)
        prv = hp.sum(1, dtype=torch.int32)[:, None, :].expand(-1, self.hw, -1)
        n_prv = torch.where(t >= 2, self.hw, 0).to(torch.int32)
        return torch.cat([cur, n_cur[None, :, None].expand(n_j, -1, 1), prv,
                          n_prv[:, None, None].expand(-1, self.hw, 1)], -1).contiguous()

    def _head(self, vid, jobs, fpart, span, mode, mot=None, mot_by_lane=False,
              out: HeadOut | None = None):
        """The head over positions ``span = (p0, n_p)``, p0..p0+n_p-1, of each job (rows
        job * n_p + r), writing to ``out``."""
        torch = self.torch
        p0, n_p = span
        rows = len(jobs) * n_p
        if rows == 0:
            return
        d32 = self._dummy()
        d64 = self._dummy("int64")
        _, t_n, h, w = vid.shape
        mot = mot if mot is not None else d32
        out = HeadOut() if out is None else out
        hp, tp, batch = self.hp, self.tp, out.batch
        u = torch.empty((rows, self.hid), dtype=torch.int8, device=self.dev)
        self._run(self.k.neural.head_hidden_kernel, (rows,), vid, jobs, fpart, mot, self.nbo,
                  hp.nb_tab, hp.ev_w, hp.m1, hp.s1, hp.act, u, p0, n_p, t_n, h, w,
                  self.vocab, self.hid, self.nev, self.mclamp, MOT_BY_LANE=mot_by_lane,
                  BH=max(16, pow2(self.hid)))
        zf = self._lin(u, self.out_w, tp.out_b, None, None, 0)
        dec = mode == DECODE
        self._run(self.k.neural.head_table_kernel, (rows,), zf, vid, jobs, self.cdy, self.cdx,
                  tp.out_m, tp.out_s, tp.sub_t, tp.sub_m, tp.sub_s, tp.cbias, tp.exp, tp.ker,
                  out.tab if out.tab is not None else d32,
                  batch.toff if mode == INTERVALS else d64,
                  out.start if out.start is not None else d32,
                  out.freq if out.freq is not None else d32,
                  batch.words if dec else d64, batch.woff if dec else d64,
                  batch.rst if dec else d64, batch.rpos if dec else d64, mot,
                  p0, n_p, t_n, h, w, self.vocab, self.nout, int(tp.exp.numel()),
                  self.precision, self.shift, self.mclamp,
                  MODE=mode, SUBST=tp.subst, COPY_MAX=tp.copy_max, MIX=tp.mix,
                  BV=max(16, self.bv))

    # -- lanes ----------------------------------------------------------------------------
    def _videos(self, batch: LaneBatch, frames=None):
        """int32 [lanes, T_max, H, W] of the batch's tokens (zeros past each lane's end)."""
        torch = self.torch
        frames = [int(n) // self.hw for n in batch.lengths] if frames is None else frames
        vid = torch.zeros((batch.n_lanes, max(1, max(frames, default=1)), self.h, self.w),
                          dtype=torch.int32, device=self.dev)
        off = batch.offsets
        for b, n in enumerate(frames):
            if n:
                vid[b, :n] = batch.tok[off[b]:off[b] + n * self.hw].reshape(n, self.h, self.w)
        return vid

    def _jobs(self, pairs):
        return self.torch.tensor(np.asarray(pairs, np.int64).reshape(-1, 2), device=self.dev)

    def _frames(self, vid, frames):
        """``(jobs, fpart)`` covering every frame of every lane, each lane's frames in
        order (the lstm one frame index at a time; the transformer in chunks of jobs)."""
        torch = self.torch
        if self.arch == "lstm":
            hs = torch.zeros((len(frames), self.hw, self.d), dtype=torch.int8, device=self.dev)
            cs = torch.zeros((len(frames), self.hw, self.d), dtype=torch.int32, device=self.dev)
            for t in range(max(frames, default=0)):
                lanes = [b for b, n in enumerate(frames) if n > t]
                jobs = self._jobs([(b, t) for b in lanes])
                idx = jobs[:, 0]
                h_a = hs[idx].reshape(-1, self.d).contiguous()
                c_a = cs[idx].reshape(-1, self.d).contiguous()
                fpart = self._lstm_step(vid, jobs, h_a, c_a)
                hs[idx] = h_a.reshape(-1, self.hw, self.d)
                cs[idx] = c_a.reshape(-1, self.hw, self.d)
                yield jobs, fpart
            return
        per = max(1, self.head_rows // self.hw)
        pairs = [(b, t) for b, n in enumerate(frames) for t in range(n)]
        for i in range(0, len(pairs), per):
            jobs = self._jobs(pairs[i:i + per])
            yield jobs, self._tf_fpart(vid, jobs)

    def state_bytes_per_lane(self) -> int:
        return self.hw * self.d * 5 if self.arch == "lstm" else 0

    def new_state(self, n_lanes: int):
        return {"t": -1}

    def intervals(self, batch: LaneBatch, state):
        torch = self.torch
        n = max(1, int(batch.lengths.sum()))
        start = torch.empty(n, dtype=torch.int32, device=self.dev)
        freq = torch.empty_like(start)
        frames = [int(x) // self.hw for x in batch.lengths]
        vid = self._videos(batch, frames)
        per = max(1, self.head_rows // self.hw)
        for jobs, fpart in self._frames(vid, frames):
            for i in range(0, len(jobs), per):
                jb = jobs[i:i + per]
                mot = self._motion_rows(vid, jb) if self.mclamp > 0 else None
                self._head(vid, jb, fpart[i * self.hw:(i + per) * self.hw], (0, self.hw),
                           INTERVALS, mot=mot, out=HeadOut(batch=batch, start=start, freq=freq))
        return start, freq

    def decode(self, batch: LaneBatch, state):
        torch = self.torch
        frames = [int(x) // self.hw for x in batch.lengths]
        vid = torch.zeros((batch.n_lanes, max(1, max(frames, default=1)), self.h, self.w),
                          dtype=torch.int32, device=self.dev)
        mot = torch.zeros((batch.n_lanes, MOTION_ROW), dtype=torch.int32, device=self.dev)
        for jobs, fpart in self._decode_frames(vid, frames):
            if self.mclamp > 0:          # motion_start of the spec
                idx = jobs[:, 0]
                t = int(jobs[0, 1])
                row = mot[idx]
                row[:, 10:19] = row[:, 0:9]
                row[:, 0:10] = 0
                row[:, 19] = self.hw if t >= 2 else 0
                mot[idx] = row
            for p in range(self.hw):
                self._head(vid, jobs, fpart, (p, 1), DECODE, mot=mot, mot_by_lane=True,
                           out=HeadOut(batch=batch))
        off = batch.offsets
        for b, n in enumerate(frames):
            if n:
                batch.tok[off[b]:off[b] + n * self.hw] = vid[b, :n].reshape(-1)

    def _decode_frames(self, vid, frames):
        """``(jobs, fpart)`` of frame t of every lane still running, t = 0, 1, ...; the
        caller decodes frame t (into ``vid``) before asking for the next."""
        if self.arch == "lstm":
            yield from self._frames(vid, frames)
            return
        for t in range(max(frames, default=0)):
            jobs = self._jobs([(b, t) for b, n in enumerate(frames) if n > t])
            yield jobs, self._tf_fpart(vid, jobs)

    def tables(self, batch: LaneBatch, state, i0: int, i1: int):
        """Full tables of tokens [i0, i1) (within one frame) of lane 0, from the tokens of
        ``batch.tok`` before them; ``state`` caches the frame pass of the current frame."""
        torch = self.torch
        t, p0 = divmod(int(i0), self.hw)
        n_p = int(i1) - int(i0)
        if p0 + n_p > self.hw:
            raise ValueError("tables: tokens of one frame at a time")
        need = (t + 1) * self.hw
        flat = torch.zeros(need, dtype=torch.int32, device=self.dev)
        m = min(need, batch.tok.numel(), int(batch.lengths[0]))
        flat[:m] = batch.tok[:m]
        vid = flat.reshape(1, t + 1, self.h, self.w)
        jobs = self._jobs([(0, t)])
        if state.get("t") != t:
            if self.arch == "lstm":
                if "hs" not in state or state["t"] != t - 1:   # replay the recurrence to t
                    state["hs"] = torch.zeros((self.hw, self.d), dtype=torch.int8,
                                              device=self.dev)
                    state["cs"] = torch.zeros((self.hw, self.d), dtype=torch.int32,
                                              device=self.dev)
                    for tt in range(t):
                        self._lstm_step(vid, self._jobs([(0, tt)]), state["hs"], state["cs"])
                state["fpart"] = self._lstm_step(vid, jobs, state["hs"], state["cs"])
            else:
                state["fpart"] = self._tf_fpart(vid, jobs)
            state["t"] = t
        mot = self._motion_rows(vid, jobs)[:, p0:p0 + n_p].contiguous() if self.mclamp else None
        out = torch.empty((1, n_p, self.vocab), dtype=torch.int32, device=self.dev)
        self._head(vid, jobs, state["fpart"], (p0, n_p), TABLES, mot=mot, out=HeadOut(out))
        return out

    def peek(self, batch, state, i):
        return self.tables(batch, state, i, i + 1)[0, 0]

    def push(self, batch, state, i):
        pass
