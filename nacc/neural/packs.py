"""The integer model's weights as typed, named packs: the one representation that the
exporter writes, the loader reads, and the numpy reference, the numba kernels and the Triton
drivers consume.

A pack is a ``typing.NamedTuple`` whose fields are integer numpy arrays (or packs); a layer
stack is a tuple of layer packs.  Field names are the weight names, defined here once; the
meaning of each array is the integer spec of ``nacc.neural.intref``.  Parts a config leaves
off are ``None`` (``Head.cb`` without ``copy_bias``, ``sg``/``sub`` without ``subst``,
``mix``/``ker`` without ``mix_head``).

In a model folder (format ``nacc-int-v3``) every array is stored under the path of its
field, e.g. ``head.l1.w`` or ``transformer.layers.0.q.w`` (``flatten`` / ``unflatten``).
Folders of the formats before packs (``nacc-int-v1``, ``nacc-int-v2``: stacked per-layer
arrays under older names) are read by ``from_v2``.
"""
from __future__ import annotations

import typing
from typing import NamedTuple, Union

import numpy as np

Array = np.ndarray


class Lin(NamedTuple):
    """LIN of the spec: ``clamp8(rq(W x + b, M, S))``."""
    w: Array                 # int8 (N, K)
    b: Array                 # int32 (N,)
    m: Array                 # int32 (N,) multipliers in [0, 2**31)
    s: Array                 # int32 (N,) shifts in 1..62


class Norm(NamedTuple):
    """LN of the spec (gain in units of 2**-16, bias)."""
    g: Array                 # int32 (D,)
    b: Array                 # int32 (D,)


class Requant(NamedTuple):
    """One requantization ``rq(a, M, S)`` (0-d arrays)."""
    m: Array
    s: Array


class Subst(NamedTuple):
    """The head's substitution table ``SUB`` (``subst``)."""
    w: Array                 # int8 (V, V): SUB[v, c]
    m: Array                 # int32 (V,)
    s: Array                 # int32 (V,)


class Head(NamedTuple):
    """The token head (both architectures)."""
    emb: Array               # int8 (V+1, head_emb): EH, pad id last
    l1: Lin                  # hidden layer: (head_hidden, D + 6 head_emb + 18 [+ 22])
    act: Array               # int32 (256,) LUT after l1
    l2: Lin                  # logits (V, head_hidden)
    cp: Lin                  # copy bonus per candidate slot (15, head_hidden)
    exp_logit: Array         # int32 EXP of TABLE
    cb: Array | None = None  # int32 (V,) per-code copy term (copy_bias)
    sg: Lin | None = None    # substitution gates (15, head_hidden) (subst)
    sub: Subst | None = None
    mix: Lin | None = None   # mixture logits (16, head_hidden) (mix_head)
    ker: Array | None = None  # uint32 (V, V) mixture kernel (mix_head)


class TfLayer(NamedTuple):
    """One transformer layer of the frame-level pass."""
    ln1: Norm
    q: Lin
    k: Lin
    v: Lin
    att: Requant             # of the attention scores
    bt: Array                # int32 (heads, K) position biases
    by: Array                # int32 (heads, 2r+1)
    bx: Array                # int32 (heads, 2r+1)
    o: Lin
    add1: Array              # int32 (2,) residual ADD factors
    ln2: Norm
    f1: Lin
    act: Array               # int32 (256,) GELU LUT
    f2: Lin
    add2: Array              # int32 (2,)


class Transformer(NamedTuple):
    """The transformer frame-level pass."""
    emb_q: Array             # int8 (V+1, emb): EQ
    emb_ctx: Array           # int8 (V+1, emb): EC
    row: Array               # int8 (H, pos_emb)
    col: Array               # int8 (W, pos_emb)
    inp: Lin                 # input LIN of EQ ++ ROW ++ COL
    layers: tuple[TfLayer, ...]
    lnf: Norm
    exp_att: Array           # int32 EXPA


class LSTM(NamedTuple):
    """The lstm frame-level pass."""
    emb: Array               # int8 (V+1, emb): EC
    gates: Lin               # (4 D, n_window emb + D)
    sig: Array               # int32 (256,) SIG LUT
    tanh: Array              # int32 (256,) TANH LUT


class Weights(NamedTuple):
    """All weights of a model: the token head and the frame-level pass."""
    head: Head
    frame: Transformer | LSTM


FRAME_NAMES = {"transformer": Transformer, "lstm": LSTM}


def frame_name(frame) -> str:
    """The folder prefix of a frame pack (``transformer`` or ``lstm``)."""
    return "transformer" if isinstance(frame, Transformer) else "lstm"


# ----------------------------------------------------------------------------- folder names
def flatten(w: Weights, leaf: type | None = None) -> dict:
    """Every array of ``w`` under its field path (``head.l1.w``, ``transformer.layers.0.q.w``);
    ``None`` parts are left out.  ``leaf``: a further type taken as a leaf as it is (a pack
    of shapes, ``nacc.neural.modelfile.expected_shapes``)."""
    out: dict = {}

    def walk(x, path):
        if x is None:
            return
        if leaf is not None and isinstance(x, leaf):
            out[path] = x
        elif isinstance(x, (np.ndarray, np.generic)):
            out[path] = np.asarray(x)
        elif hasattr(x, "_fields"):
            for name in x._fields:
                walk(getattr(x, name), f"{path}.{name}")
        else:                                   # a layer stack
            for i, item in enumerate(x):
                walk(item, f"{path}.{i}")

    walk(w.head, "head")
    walk(w.frame, frame_name(w.frame))
    return out


class MissingWeight(KeyError):
    """``unflatten``: a required array is absent (``args[0]``: its name)."""


def _read(tp, arrays: dict, path: str):
    """The value of type ``tp`` stored under ``path`` in ``arrays``."""
    origin = typing.get_origin(tp)
    if origin is Union or type(tp).__name__ == "UnionType":
        inner = [t for t in typing.get_args(tp) if t is not type(None)][0]
        if not any(k == path or k.startswith(path + ".") for k in arrays):
            return None
        return _read(inner, arrays, path)
    if origin is tuple:                         # tuple[Layer, ...]: indices 0, 1, ... present
        item = typing.get_args(tp)[0]
        out: list = []
        while any(k.startswith(f"{path}.{len(out)}.") for k in arrays):
            out.append(_read(item, arrays, f"{path}.{len(out)}"))
        return tuple(out)
    if isinstance(tp, type) and issubclass(tp, tuple) and hasattr(tp, "_fields"):
        hints = typing.get_type_hints(tp)
        return tp(*(_read(hints[f], arrays, f"{path}.{f}") for f in tp._fields))
    if path not in arrays:
        raise MissingWeight(path)
    return np.asarray(arrays[path])


def unflatten(arch: str, arrays: dict) -> Weights:
    """``Weights`` of an ``arch`` model from arrays named by ``flatten``; ``MissingWeight``
    names the first required array that is absent."""
    return Weights(_read(Head, arrays, "head"), _read(FRAME_NAMES[arch], arrays, arch))


# ----------------------------------------------------------------------------- old folders
def from_v2(cfg, arrays: dict) -> Weights:
    """``Weights`` from the arrays of a folder of format ``nacc-int-v1`` / ``nacc-int-v2``
    (layer arrays stacked on a first axis, older names); ``MissingWeight`` names an absent
    array by its old name."""
    def get(name):
        if name not in arrays:
            raise MissingWeight(name)
        return np.asarray(arrays[name])

    def lin(name, layer=None):
        parts = [get(f"{name}.{k}") for k in "wbms"]
        return Lin(*(p if layer is None else np.asarray(p[layer]) for p in parts))

    def at(name, layer):
        return np.asarray(get(name)[layer])

    head = Head(
        emb=get("head.emb"), l1=lin("head.l1"), act=get("head.act"), l2=lin("head.l2"),
        cp=lin("head.cp"), exp_logit=get("exp_logit"),
        cb=get("head.cb") if cfg.copy_bias else None,
        sg=lin("head.sg") if cfg.subst else None,
        sub=Subst(get("head.sub.w"), get("head.sub.m"), get("head.sub.s")) if cfg.subst
        else None,
        mix=lin("head.mix") if cfg.mix_head else None,
        ker=get("head.ker") if cfg.mix_head else None)
    frame: Transformer | LSTM
    if cfg.arch == "transformer":
        layers = tuple(TfLayer(
            ln1=Norm(at("tf.ln1.g", l), at("tf.ln1.b", l)), q=lin("tf.q", l),
            k=lin("tf.k", l), v=lin("tf.v", l),
            att=Requant(at("tf.att.m", l), at("tf.att.s", l)),
            bt=at("tf.bt", l), by=at("tf.by", l), bx=at("tf.bx", l), o=lin("tf.o", l),
            add1=at("tf.add1", l), ln2=Norm(at("tf.ln2.g", l), at("tf.ln2.b", l)),
            f1=lin("tf.f1", l), act=at("tf.act", l), f2=lin("tf.f2", l),
            add2=at("tf.add2", l)) for l in range(len(get("tf.att.m"))))
        frame = Transformer(
            emb_q=get("tf.emb_q"), emb_ctx=get("tf.emb_ctx"), row=get("tf.row"),
            col=get("tf.col"), inp=lin("tf.in"), layers=layers,
            lnf=Norm(get("tf.lnf.g"), get("tf.lnf.b")), exp_att=get("exp_att"))
    else:
        frame = LSTM(emb=get("ls.emb"), gates=lin("ls.gates"), sig=get("ls.sig"),
                     tanh=get("ls.tanh"))
    return Weights(head, frame)


def stacked(layers: tuple, field: str) -> Array:
    """The arrays of a dotted ``field`` path (``q.w``) of every layer, stacked on a first
    axis (what the per-token kernels index by layer)."""
    def one(layer):
        x = layer
        for part in field.split("."):
            x = getattr(x, part)
        return np.asarray(x)
    return np.stack([one(layer) for layer in layers])
