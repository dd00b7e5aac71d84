"""Float GPT-2 checkpoint (the published commaVQ layout) -> integer ``gpt`` model folder.

``import_gpt(checkpoint, folder, heads=None, act_bits=8)`` reads the checkpoint one tensor
at a time (``nacc.gpt.checkpoint``), quantizes it as ``nacc.gpt.intref`` specifies and
streams it into the weights file, so the peak memory is the mapped checkpoint plus a few
tensors.  Only elementwise IEEE float64 operations (division, ``rint``, ``frexp``, ``max``)
turn floats into integers, so the same checkpoint gives the same folder bytes on any machine.

The sizes come from the tensors' shapes, all of which must agree with one GPT-2
(``n_layer`` blocks numbered from 0, width, MLP width, vocabulary, positions); the head
count is not in a checkpoint: ``heads`` (default 16, gpt2m's, only for width 1024).
"""
from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from nacc.errors import NaccError
from nacc.gpt.checkpoint import Checkpoint
from nacc.gpt.intref import I32MAX, GPTConfig, make_tables, scale_bits
from nacc.gpt.modelfile import check_config, save_model

GPT2M_WIDTH = 1024
GPT2M_HEADS = 16
IGNORED = (".attn.bias", ".attn.masked_bias")   # causal-mask buffers of older GPT-2 files
EPS = 1e-5


def expected(cfg: GPTConfig) -> dict[str, tuple[int, ...]]:
    d, f, nv, n_pos = cfg.d_model, cfg.d_ff, cfg.n_vocab, cfg.n_positions
    out = {"transformer.wte.weight": (nv, d), "transformer.wpe.weight": (n_pos, d),
           "transformer.ln_f.weight": (d,), "transformer.ln_f.bias": (d,),
           "lm_head.weight": (nv, d)}
    for i in range(cfg.n_layer):
        p = f"transformer.h.{i}."
        for ln in ("ln_1", "ln_2"):
            out[p + ln + ".weight"] = (d,)
            out[p + ln + ".bias"] = (d,)
        for nm, k, n in (("attn.c_attn", d, 3 * d), ("attn.c_proj", d, d),
                         ("mlp.c_fc", d, f), ("mlp.c_proj", f, d)):
            out[p + nm + ".weight"] = (k, n)
            out[p + nm + ".bias"] = (n,)
    return out


def read_config(ck: Checkpoint, heads: int | None, act_bits: int) -> GPTConfig:
    """The config of a checkpoint, every tensor's shape checked against it."""
    names = set(ck.names())
    where = str(ck.path)
    for need in ("transformer.wte.weight", "transformer.wpe.weight",
                 "transformer.h.0.mlp.c_fc.weight"):
        if need not in names:
            raise NaccError(f"{where}: not a GPT-2 checkpoint in the Hugging Face layout "
                            f"(no tensor {need!r})")
    nv, d = ck.shape("transformer.wte.weight")
    n_pos = ck.shape("transformer.wpe.weight")[0]
    f = ck.shape("transformer.h.0.mlp.c_fc.weight")[1]
    layers = {int(m.group(1)) for n in names if (m := re.match(r"transformer\.h\.(\d+)\.", n))}
    n_layer = len(layers)
    if layers != set(range(n_layer)):
        raise NaccError(f"{where}: blocks {sorted(layers)} are not numbered 0..{n_layer - 1}")
    if heads is None:
        if d != GPT2M_WIDTH:
            raise NaccError(f"{where}: width {d} is not gpt2m's {GPT2M_WIDTH}: the head count "
                            "is not stored in a checkpoint, pass --heads")
        heads = GPT2M_HEADS
    cfg = GPTConfig(n_layer=n_layer, d_model=int(d), n_head=int(heads), d_ff=int(f),
                    n_vocab=int(nv), n_positions=int(n_pos), act_bits=int(act_bits),
                    eps=int(np.rint(EPS * 2.0**32)))
    try:
        check_config(cfg, where)
    except NaccError as e:
        raise NaccError(str(e)) from None
    want = expected(cfg)
    for name, shp in want.items():
        if name not in names:
            raise NaccError(f"{where}: missing tensor {name!r} (a {n_layer}-layer GPT-2 of "
                            f"width {d} has it)")
        if tuple(ck.shape(name)) != shp:
            raise NaccError(f"{where}: tensor {name!r} has shape {tuple(ck.shape(name))}, a "
                            f"GPT-2 of width {d}, MLP {f}, vocabulary {nv} and {n_pos} "
                            f"positions has {shp}")
    extra = sorted(n for n in names - set(want) if not n.endswith(IGNORED))
    if extra:
        raise NaccError(f"{where}: unexpected tensors {extra[:5]} (not the GPT-2 layout)")
    return cfg


def _fixed(a: np.ndarray, what: str) -> np.ndarray:
    """rint(a * 2**16) as int32 (NaccError when a value does not fit)."""
    v = np.rint(a * 65536.0)
    if v.size and np.abs(v).max() > I32MAX:
        raise NaccError(f"{what}: a value of magnitude {np.abs(a).max():.4g} does not fit the "
                        "16-bit fixed point of int32")
    return v.astype(np.int32)


def quantize_linear(w: np.ndarray, b: np.ndarray | None, what: str, act_bits: int):
    """``(w int8 [K, N], m, s, b int32 [N])`` of a float ``x @ w + b`` (``w`` [K, N])."""
    amax = np.abs(w).max(axis=0)
    m, s = scale_bits(amax / 127.0)
    if np.any(s[m > 0] < 21 - act_bits):
        raise NaccError(f"{what}: a weight of magnitude {amax.max():.4g} is beyond the integer "
                        "spec's range")
    scale = np.where(m > 0, m.astype(np.float64) / np.exp2(s.astype(np.float64)), 1.0)
    q = np.clip(np.rint(w / scale), -127, 127).astype(np.int8)
    bias = np.zeros(w.shape[1]) if b is None else b
    return q, m.astype(np.int32), s.astype(np.int32), _fixed(bias, what + ".bias")


def _arrays(ck: Checkpoint, cfg: GPTConfig, tables) -> Iterator[np.ndarray]:
    g = ck.get
    a = cfg.act_bits
    yield _fixed(g("transformer.wte.weight"), "transformer.wte.weight")
    yield _fixed(g("transformer.wpe.weight"), "transformer.wpe.weight")
    yield _fixed(g("transformer.ln_f.weight"), "transformer.ln_f.weight")
    yield _fixed(g("transformer.ln_f.bias"), "transformer.ln_f.bias")
    yield from quantize_linear(np.ascontiguousarray(g("lm_head.weight").T), None,
                               "lm_head.weight", a)
    for i in range(cfg.n_layer):
        p = f"transformer.h.{i}."
        yield _fixed(g(p + "ln_1.weight"), p + "ln_1.weight")
        yield _fixed(g(p + "ln_1.bias"), p + "ln_1.bias")
        for nm in ("attn.c_attn", "attn.c_proj"):
            yield from quantize_linear(g(p + nm + ".weight"), g(p + nm + ".bias"), p + nm, a)
        yield _fixed(g(p + "ln_2.weight"), p + "ln_2.weight")
        yield _fixed(g(p + "ln_2.bias"), p + "ln_2.bias")
        for nm in ("mlp.c_fc", "mlp.c_proj"):
            yield from quantize_linear(g(p + nm + ".weight"), g(p + nm + ".bias"), p + nm, a)
    yield from tables


def import_gpt(checkpoint, folder, heads: int | None = None, act_bits: int = 8) -> str:
    """Import ``checkpoint`` into the model folder ``folder``; returns the weights' sha256."""
    ck = Checkpoint(checkpoint)
    cfg = read_config(ck, heads, act_bits)
    tables = make_tables()
    source = {"checkpoint": Path(checkpoint).name, "kind": ck.kind}
    return save_model(folder, cfg, tables, _arrays(ck, cfg, tables), source)
