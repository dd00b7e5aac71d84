"""Training: seeded, reproducible on CPU, checkpointed, resumable; QAT then integer export.

Defaults (:class:`TrainConfig`) are a recipe for a fixed corpus of a few hundred thousand
tokens: fake quantization (QAT) for the whole run (``qat_frac`` = 1; a smaller value trains
in float with activation observers first), dropout, gradient clipping, SGD-like steps for
the head's per-code tables (``table_lr_mult``, ``table_eps``), a substitution table that
starts from the corpus's own pair statistics (``subst_init``, :func:`substitution_prior`:
the pairs of codes that replace each other, counted once per substitution; the mixture
head's kernel starts from a smoothed estimate of how a copied code changes,
:func:`kernel_start` of :func:`copy_counts`), and a *plateau*
learning-rate schedule: after a linear warm-up the rate stays constant and is halved
whenever ``plateau_patience`` validation evaluations in a row (every ``eval_every`` steps,
on held-out segments or frames) bring no new best; training stops once ``patience``
evaluations in a row brought none, or after ``steps``.  The weights of the best evaluation
are kept (optionally those of an exponential moving average, ``ema``).  Observers freeze for
the last 10% of ``steps``.  Batches are drawn from ``default_rng([seed, step])``, so a
resumed run sees the same batches as an uninterrupted one.  Instead of a fixed corpus,
training can draw every step's clips from new videos of a ``stream`` (e.g. synthetic ones,
``nacc.neural.synth``), which no model can memorise.  The result is exported to integers
(``nacc.training.export``) and its validation bits/token are measured with the integer
reference.  Progress is a bar on a terminal and one line per evaluation otherwise.
"""
from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import math
import signal
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from nacc.fileio import write_atomic
from nacc.neural import intref
from nacc.neural.config import ModelConfig
from nacc.training.export import export, save_model
from nacc.training.model import NeuralModel

SCHEDULES = ("plateau", "cosine")


@dataclasses.dataclass
class TrainConfig:
    steps: int = 3000        # at most; early stopping (patience) usually ends sooner
    batch_size: int = 8      # clips per step
    clip_len: int = 8        # frames per clip (context frames included)
    lr: float = 1e-3
    table_lr_mult: float = 100.0  # lr factor of the head's per-code tables (copy term,
                             # substitution); with table_eps, an SGD step of lr * mult / eps
    table_eps: float = 1e-3  # Adam eps of those tables: above the root mean square of a rare
                             # entry's gradient it makes their steps proportional to the
                             # evidence (SGD-like), so a pair seen once moves little (Adam's
                             # own eps, 1e-8, lets every entry move by about lr a step)
    weight_decay: float = 0.01
    qat_frac: float = 1.0    # final fraction of the steps with fake quantization
    seed: int = 0
    val_frac: float = 0.1
    device: str = "cpu"
    eval_every: int = 100
    ckpt_every: int = 100
    burn_in: int = 4         # lstm: frames of state warm-up before the loss counts
    keep_best: bool = True   # export the weights of the best validation evaluation
    patience: int = 6        # > 0: stop after this many evaluations without a new best
    schedule: str = "plateau"  # plateau: lr times plateau_factor after plateau_patience
                             # evaluations without a new best; cosine: decay over `steps`
    plateau_factor: float = 0.5
    plateau_patience: int = 2
    warmup: int = 100        # steps of linear warm-up (plateau schedule)
    dropout: float = 0.1     # on the frame features and the head's hidden layer
    subst_init: float = 1.0  # > 0: the substitution table starts at this times the
                             # corpus's pair statistics (substitution_prior), not at 0, and
                             # the mixture kernel at kernel_start(copy_counts) (any > 0)
    grad_clip: float = 1.0   # max gradient norm (0: off)
    ema: float = 0.0         # > 0: validate and export an exponential moving average of the
                             # weights with this decay per step

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {self.schedule!r} (known: {', '.join(SCHEDULES)})")


def split_corpus(videos, val_frac: float):
    """(train, val) lists of videos: whole videos when there are several, else the last
    ``val_frac`` of the frames of the single video (val may be empty when val_frac = 0)."""
    if val_frac <= 0:
        return list(videos), []
    if len(videos) >= 2:
        n_val = max(1, int(round(len(videos) * val_frac)))
        return list(videos[:-n_val]), list(videos[-n_val:])
    v = videos[0]
    n_val = max(1, int(round(len(v) * val_frac)))
    return [v[:-n_val]], [v[-n_val:]]


def sample_batch(rng, videos, b, clip_len, n_ctx, replace=True):
    """(x (B, L, H, W) long, loss mask (B, L) bool): ``b`` clips, from videos drawn in
    proportion to their length (each at most once unless ``replace``)."""
    lens = np.array([len(v) for v in videos], np.float64)
    L = int(min(clip_len, lens.min()))
    idx = rng.choice(len(videos), size=b, p=lens / lens.sum(), replace=replace)
    xs, ms = [], []
    for i in idx:
        v = videos[i]
        s = int(rng.integers(0, len(v) - L + 1))
        xs.append(v[s:s + L])
        m = np.ones(L, bool)
        if s > 0:
            m[:min(n_ctx, L - 1)] = False
        ms.append(m)
    return torch.from_numpy(np.stack(xs).astype(np.int64)), torch.from_numpy(np.stack(ms))


def context_frames(cfg: ModelConfig) -> int:
    """Frames a transformer needs before a frame to see all of its inputs: its window, and
    two frames for the motion counts of the previous frame."""
    return max(cfg.k_frames, 2 if cfg.motion_clamp > 0 else 0)


@torch.no_grad()
def float_bits(model: NeuralModel, videos, chunk: int = 64) -> float:
    """Bits/token of the torch model (whole videos, coding order context)."""
    model.eval()
    tot, n = 0.0, 0
    k = context_frames(model.cfg)
    for v in videos:
        x = torch.from_numpy(np.asarray(v, np.int64))[None].to(next(model.parameters()).device)
        if model.cfg.arch == "lstm":
            lo = model(x)
            tot += F.cross_entropy(lo.reshape(-1, lo.shape[-1]), x.reshape(-1),
                                   reduction="sum").item()
        else:
            for s in range(0, x.shape[1], chunk):
                a = max(0, s - k)
                lo = model(x[:, a:s + chunk])[:, s - a:]
                y = x[:, s:s + chunk]
                tot += F.cross_entropy(lo.reshape(-1, lo.shape[-1]), y.reshape(-1),
                                       reduction="sum").item()
        n += x.numel()
    model.train()
    return tot / max(n, 1) / math.log(2)


def int_bits(im, videos) -> float:
    bits = [intref.code_length_bits(im, v) for v in videos]
    return float(np.concatenate(bits).mean()) if bits else float("nan")


def _lr(tc: TrainConfig, step: int, scale: float = 1.0) -> float:
    """Learning rate of ``step``; ``scale``: the plateau schedule's current factor."""
    if tc.schedule == "plateau":
        warm = max(1, min(tc.warmup, tc.steps // 2))
        return tc.lr * scale * min(1.0, (step + 1) / warm)
    warm = max(1, tc.steps // 20)
    if step < warm:
        return tc.lr * (step + 1) / warm
    p = (step - warm) / max(1, tc.steps - warm)
    return tc.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * p)))


def _param_groups(model: NeuralModel, tc: TrainConfig):
    """Optimizer parameter groups: unless ``table_lr_mult`` = 1 and ``table_eps`` = 1e-8 the
    head's per-code tables (``cb``, ``sub``, the mixture kernel) get that ``lr_mult`` and
    ``eps``.  Adam moves every weight by about lr per step whatever its evidence, so an
    entry of the V x V table seen once in a fixed corpus moves as far as one seen a hundred
    times and the table memorises the corpus; a large eps makes the steps of such sparse
    entries proportional to their gradient (SGD), i.e. to the evidence.  The mixture kernel
    is a group of its own without weight decay: its logits are a row softmax, whose zero is
    not "no effect" -- decay would flatten every row towards uniform, moving the mass of
    copies that stay themselves to all V codes."""
    head = model.head
    plain = tc.table_lr_mult == 1.0 and tc.table_eps == 1e-8
    fast = {} if plain else {"lr_mult": tc.table_lr_mult, "eps": tc.table_eps}
    tables = [head.cb] if model.cfg.copy_bias else []
    if model.cfg.subst:
        tables.extend(head.sub.parameters())
    if plain:
        tables = []
    kernel = list(head.kern.parameters()) if model.cfg.mix_head else []
    if not tables and not kernel:
        return model.parameters()
    ids = {id(p) for p in tables + kernel}
    groups: list[dict[str, Any]] = [{"params": [p for p in model.parameters()
                                                if id(p) not in ids]}]
    if tables:
        groups.append({"params": tables, **fast})
    if kernel:
        groups.append({"params": kernel, "weight_decay": 0.0, **fast})
    return groups


def _prev_sources(v: np.ndarray) -> np.ndarray:
    """(T, H, W) int64 copy source of every token of ``v`` (int64 (T, H, W)): the previous
    frame's token at the frame's best shift (of PREV_CANDIDATES, the one under which most
    tokens equal their source); -1 in frame 0, off the frame, and in frames where fewer
    than a quarter of the tokens equal their source."""
    from nacc.neural.config import PREV_CANDIDATES

    t_n, h, w = v.shape
    src = np.full_like(v, -1)
    if t_n > 1:
        prev = np.pad(v[:-1], ((0, 0), (1, 1), (1, 1)), constant_values=-1)
        shifts = np.stack([prev[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
                           for dy, dx in PREV_CANDIDATES])  # (9, T-1, H, W)
        hits = (shifts == v[None, 1:]).sum((2, 3))  # (9, T-1)
        best = np.take_along_axis(shifts, hits.argmax(0)[None, :, None, None], 0)[0]
        best[hits.max(0) * 4 < h * w] = -1
        src[1:] = best
    return src


def substitution_counts(videos, vocab: int) -> np.ndarray:
    """(V, V) int64, symmetric, zero diagonal: how often codes ``a != b`` meet as (copy
    source, token) in ``videos``.  The sources of a token are its previous-frame source
    (:func:`_prev_sources`) and, where the token is not that source (a pair copied on from
    frame to frame counts once), its left and upper neighbours."""
    n = np.zeros(vocab * vocab, np.int64)
    for v in videos:
        v = np.asarray(v, np.int64)
        src = _prev_sources(v)
        new = src != v
        pairs = [(src, v, new), (v[:, :, :-1], v[:, :, 1:], new[:, :, 1:]),
                 (v[:, :-1, :], v[:, 1:, :], new[:, 1:, :])]
        for a, b, at in pairs:
            keep = at & (a >= 0) & (a != b)
            n += np.bincount(a[keep] * vocab + b[keep], minlength=vocab * vocab)
    square = n.reshape(vocab, vocab)
    return square + square.T


def substitution_prior(counts: np.ndarray, z: float = 2.0) -> np.ndarray:
    """(V, V) float32 initial substitution table from :func:`substitution_counts`: for the
    pairs met clearly more often than if codes met independently (``n - E > z (sqrt(E) +
    1)``, ``E``: that independent count), the smoothed log ratio ``log((n + 1) / (E + 1))``;
    0 elsewhere.  Symmetric; only the starting point of training."""
    c = counts.astype(np.float64)
    r = c.sum(1)
    e = np.outer(r, r) / max(r.sum(), 1.0)
    out = np.log((c + 1.0) / (e + 1.0))
    out[c - e <= z * (np.sqrt(e) + 1.0)] = 0.0
    np.fill_diagonal(out, 0.0)
    return out.astype(np.float32)


def copy_counts(videos, vocab: int) -> np.ndarray:
    """(V, V) int64 ``n[a, b]``: how often a token ``b`` has the previous-frame source
    ``a`` (:func:`_prev_sources`) in ``videos``, counting the tokens that equal their source
    (the diagonal) and those that differ from it and from their left and upper neighbours
    (a token equal to a neighbour was more likely copied from it than substituted)."""
    n = np.zeros(vocab * vocab, np.int64)
    for v in videos:
        v = np.asarray(v, np.int64)
        src = _prev_sources(v)
        left = np.pad(v, ((0, 0), (0, 0), (1, 0)), constant_values=-1)[:, :, :-1]
        up = np.pad(v, ((0, 0), (1, 0), (0, 0)), constant_values=-1)[:, :-1, :]
        keep = (src >= 0) & ((v == src) | ((v != left) & (v != up)))
        n += np.bincount(src[keep] * vocab + v[keep], minlength=vocab * vocab)
    return n.reshape(vocab, vocab)


KERNEL_STAY = 7.0    # kernel logits without corpus statistics: a copied code stays itself
KERNEL_OTHER = -4.0  # (diagonal) over any other code
KERNEL_DISCOUNT = 0.4  # counts a seen pair gives up to the back-off (absolute discounting)
KERNEL_HOP = 0.9     # share of the back-off through a common neighbour (two substitutions)


def kernel_start(counts, vocab: int) -> np.ndarray:
    """(V, V) float32 symmetric starting logits of the mixture head's kernel, from
    :func:`copy_counts` ``n`` (None: KERNEL_STAY on the diagonal, KERNEL_OTHER elsewhere).

    A smoothed estimate of how a copied code changes, whose row softmax is ``K[c, v]``:
    the diagonal logit is ``log(n[c, c] + 1)``; off it ``log M[c, v]`` with ``M`` the
    symmetric substitution counts ``S = (n + n^T) / 2`` (zero diagonal), each seen pair
    discounted by KERNEL_DISCOUNT, plus the back-off: row ``c`` gives ``b_c =
    KERNEL_DISCOUNT * (seen pairs of c) + 1`` counts to the other codes, KERNEL_HOP of it
    in proportion to the two-step substitution ``R R`` (``R``: ``S`` with rows normalized;
    zero diagonal) and the rest uniformly; the back-off matrix enters symmetrized.  So
    pairs never seen but joined through a common neighbour get mass, the way similar codes
    cluster, and a rare code backs off to the codes its neighbours meet.  Only the
    starting point of training."""
    if counts is None:
        out = np.full((vocab, vocab), KERNEL_OTHER, np.float32)
        np.fill_diagonal(out, KERNEL_STAY)
        return out
    n = np.asarray(counts, np.float64)
    s = 0.5 * (n + n.T)
    np.fill_diagonal(s, 0.0)
    tot = s.sum(1)
    r = s / np.where(tot > 0, tot, 1.0)[:, None]
    hop = r @ r
    np.fill_diagonal(hop, 0.0)
    hop_tot = hop.sum(1)
    hop /= np.maximum(hop_tot, 1e-30)[:, None]
    share = np.where(hop_tot > 0, KERNEL_HOP, 0.0)[:, None]  # no two-step path: uniform
    back = (KERNEL_DISCOUNT * (s > 0).sum(1) + 1.0)[:, None] * (
        share * hop + (1.0 - share) / max(vocab - 1, 1))
    np.fill_diagonal(back, 0.0)
    m = np.maximum(s - KERNEL_DISCOUNT, 0.0) + 0.5 * (back + back.T)
    np.fill_diagonal(m, 1.0)
    out = np.log(m)
    np.fill_diagonal(out, np.log(np.diag(n) + 1.0))
    return out.astype(np.float32)


class _EMA:
    """Exponential moving average of a model's parameters (buffers stay the live ones)."""

    def __init__(self, model, decay: float):
        self.decay = decay
        self.params = [p.detach().clone() for p in model.parameters()]

    def update(self, model):
        with torch.no_grad():
            torch._foreach_lerp_(self.params, [p.detach() for p in model.parameters()],
                                 1.0 - self.decay)

    def swap(self, model):
        """Exchange the model's parameters with the averaged ones (call twice to undo)."""
        with torch.no_grad():
            for p, q in zip(model.parameters(), self.params):
                t = p.detach().clone()
                p.copy_(q)
                q.copy_(t)


def checkpoint_path(out) -> Path:
    """Where training into the model folder ``out`` keeps its checkpoint: the file
    ``OUT.ckpt`` beside the folder, so that the folder holds only what inference needs."""
    out = Path(out)
    return out.with_name(out.name + ".ckpt")


def _save_checkpoint(state: dict, path: Path) -> None:
    """``torch.save`` of ``state`` to ``path``, whole or not at all: the bytes go to a
    temporary file beside it that then replaces the old checkpoint (``fileio.write_atomic``),
    so a crash or a full disk while saving leaves the previous checkpoint readable."""
    buf = io.BytesIO()
    torch.save(state, buf)
    write_atomic(str(path), [buf.getvalue()], force=True)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during ``train``: raised after the step that was running finished and the
    checkpoint (``path``, None without one) was saved, so ``resume`` continues from it."""

    def __init__(self, step: int, path: Path | None):
        super().__init__(f"interrupted after step {step}")
        self.step, self.path = step, path


class _SigintFlag:
    hit = False


@contextlib.contextmanager
def _sigint_deferred():
    """Within: the first Ctrl-C (SIGINT) only sets ``.hit`` (the loop saves and stops at the
    end of its step); a second one interrupts at once.  Outside the main thread, or where
    SIGINT is ignored, nothing changes."""
    flag = _SigintFlag()
    try:
        old = signal.getsignal(signal.SIGINT)
        if old is signal.SIG_IGN or old is None:
            raise ValueError

        def handler(signum, frame):
            flag.hit = True
            signal.signal(signal.SIGINT, old)

        signal.signal(signal.SIGINT, handler)
    except ValueError:          # not the main thread
        yield flag
        return
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, old)


def train(cfg: ModelConfig, videos, tc: TrainConfig, out=None, resume: bool = False,
          quiet: bool = False, log=print, stop_at: int | None = None, stream=None,
          checkpoint=None):
    """Train on ``videos`` (list of int arrays (T, H, W)); returns (torch model, IntModel,
    stats dict).  Writes the exported model folder ``out`` if given, and checkpoints to
    ``checkpoint`` (default ``checkpoint_path(out)``); Ctrl-C (SIGINT) finishes the step,
    saves a checkpoint and raises ``Interrupted``.
    ``stop_at``: stop after that many steps as if interrupted (for tests of ``resume``).
    ``stream``: a function ``step -> list of at least batch_size videos``, deterministic in
    ``step``; each step's clips then come from its own videos (one clip per video), and all
    of ``videos`` validate (``val_frac`` is ignored)."""
    from tqdm import tqdm

    torch.manual_seed(tc.seed)
    train_v, val_v = split_corpus(videos, tc.val_frac) if stream is None else (None, list(videos))
    model = NeuralModel(cfg).to(tc.device)
    model.set_dropout(tc.dropout)
    prior = None
    if cfg.subst and tc.subst_init and train_v:
        prior = substitution_prior(substitution_counts(train_v, cfg.vocab))
    if cfg.subst and prior is not None:
        with torch.no_grad():
            model.head.sub.weight.copy_(torch.from_numpy(prior) * tc.subst_init)
            # gates start small and open (about 1/2 per slot) so that the table acts at once
            gate = model.head.sg
            assert gate.bias is not None
            gate.weight.mul_(0.1)
            gate.bias.fill_(0.5)
    if cfg.mix_head:
        counts = copy_counts(train_v, cfg.vocab) if tc.subst_init and train_v else None
        with torch.no_grad():
            model.head.kern.weight.copy_(torch.from_numpy(kernel_start(counts, cfg.vocab)))
    opt = torch.optim.AdamW(_param_groups(model, tc), lr=tc.lr, weight_decay=tc.weight_decay)
    ema = _EMA(model, tc.ema) if tc.ema > 0 else None
    step0 = 0
    stats: dict[str, Any] = {"val_bits_float": None}
    best = None
    lr_scale, since_drop = 1.0, 0  # plateau schedule: current factor, evaluations since
    out = Path(out) if out else None
    ckpt = Path(checkpoint) if checkpoint else (checkpoint_path(out) if out else None)
    if resume and ckpt is not None and ckpt.is_file():
        st = torch.load(ckpt, map_location=tc.device, weights_only=True)
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["opt"])
        step0 = int(st["step"])
        lr_scale, since_drop = float(st.get("lr_scale", 1.0)), int(st.get("since_drop", 0))
        if ema is not None and "ema" in st:
            ema.params = [t.to(tc.device) for t in st["ema"]]
        if "best_model" in st:
            best = (float(st["best_val"]), int(st["best_step"]), st["best_model"])
    qat_start = int(tc.steps * (1 - tc.qat_frac))
    n_ctx = context_frames(cfg) if cfg.arch == "transformer" else tc.burn_in
    # a bar only on a terminal: on a pipe or a log file, one line per evaluation instead
    tty = sys.stderr.isatty()
    bar = tqdm(range(step0, tc.steps), disable=quiet or not tty, desc=f"train {cfg.arch}",
               unit="step", initial=step0, total=tc.steps)
    t0 = time.time()
    n_tok = 0
    with _sigint_deferred() as sigint:
        for step in bar:
            model.set_qat(step >= qat_start)
            # observers: one step in 4 (max-abs is not free), frozen for the last 10%
            model.set_observe(step < int(0.9 * tc.steps) and step % 4 == 0)
            for g in opt.param_groups:
                g["lr"] = _lr(tc, step, lr_scale) * g.get("lr_mult", 1.0)
            rng = np.random.default_rng([tc.seed, step])
            torch.manual_seed(int(rng.integers(2**62)))  # dropout: same masks after a resume
            if stream is None:
                x, m = sample_batch(rng, train_v, tc.batch_size, tc.clip_len, n_ctx)
            else:
                x, m = sample_batch(rng, stream(step), tc.batch_size, tc.clip_len, n_ctx,
                                    replace=False)
            x, m = x.to(tc.device), m.to(tc.device)
            lo = model(x)
            per = F.cross_entropy(lo.reshape(-1, cfg.vocab), x.reshape(-1), reduction="none")
            wm = m[:, :, None, None].expand_as(x).reshape(-1).float()
            loss = (per * wm).sum() / wm.sum()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            if tc.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
            opt.step()
            if ema is not None:
                ema.update(model)
            n_tok += int(m.sum()) * x.shape[2] * x.shape[3]
            post = {"loss_bits": f"{loss.item() / math.log(2):.3f}"}
            last = step + 1 == tc.steps
            stale = False
            if val_v and ((step + 1) % tc.eval_every == 0 or last):
                if ema is not None:
                    ema.swap(model)
                vb = float_bits(model, val_v)
                post["val_bits"] = f"{vb:.3f}"
                # keep the best validated weights, among those trained with fake quantization
                if step >= qat_start and (best is None or vb < best[0]):
                    best = (vb, step + 1, copy.deepcopy(model.state_dict()))
                    since_drop = 0
                elif step >= qat_start:
                    since_drop += 1
                    if tc.schedule == "plateau" and since_drop >= tc.plateau_patience:
                        lr_scale *= tc.plateau_factor
                        since_drop = 0
                if ema is not None:
                    ema.swap(model)
                stale = (tc.patience > 0 and best is not None
                         and step + 1 - best[1] >= tc.patience * tc.eval_every)
                if not quiet and not tty:
                    log(f"step {step + 1}: loss {post['loss_bits']} val {vb:.4f} bits/token, "
                        f"best {best[0]:.4f} at {best[1]}, lr {_lr(tc, step, lr_scale):.2e}"
                        if best else f"step {step + 1}: val {vb:.4f} bits/token")
            bar.set_postfix(post)
            stop = sigint.hit       # read once: the checkpoint below is that of this step
            if ckpt is not None and ((step + 1) % tc.ckpt_every == 0 or last or stale
                                     or stop):
                ckpt.parent.mkdir(parents=True, exist_ok=True)
                st = {"model": model.state_dict(), "opt": opt.state_dict(), "step": step + 1,
                      "config": cfg.to_json(), "lr_scale": lr_scale, "since_drop": since_drop}
                if ema is not None:
                    st["ema"] = ema.params
                if best is not None:
                    st.update(best_val=best[0], best_step=best[1], best_model=best[2])
                _save_checkpoint(st, ckpt)
            if stop:
                raise Interrupted(step + 1, ckpt)
            if stop_at is not None and step + 1 >= stop_at:
                return model, None, stats
            if stale:
                stats["stopped_at"] = step + 1
                break
    stats["train_seconds"] = time.time() - t0
    stats["train_tokens_seen"] = n_tok
    model.set_qat(True)
    if best is not None and tc.keep_best:
        model.load_state_dict(best[2])
        stats["best_step"] = best[1]
    elif ema is not None:
        ema.swap(model)
    model.eval()
    if val_v:
        stats["val_bits_float"] = float_bits(model, val_v)
    im = export(model.cpu())
    if val_v:
        stats["val_bits_int"] = int_bits(im, val_v)
        if not quiet:
            log(f"validation bits/token: float(QAT) {stats['val_bits_float']:.4f}  "
                f"integer {stats['val_bits_int']:.4f}")
    if out is not None:
        digest = save_model(im, out, {"train": dataclasses.asdict(tc),
                                      "stats": {k: v for k, v in stats.items()}})
        stats["sha256"] = digest
    return model, im, stats
