"""The float32 reference of commaVQ's GPT (GPT-2 layout), for training and measurement only.

The module names give a ``state_dict`` in exactly the published Hugging Face GPT-2 layout:
``transformer.wte.weight`` [NV, D], ``transformer.wpe.weight`` [NP, D],
``transformer.h.{i}.ln_1``/``ln_2`` (``weight``, ``bias``), ``attn.c_attn``, ``attn.c_proj``,
``mlp.c_fc``, ``mlp.c_proj`` (Conv1D: ``weight`` stored [in, out], ``bias``),
``transformer.ln_f``, ``lm_head.weight`` [NV, D] (untied, no bias).  Pre-LayerNorm blocks,
causal attention, GELU in its tanh form, LayerNorm eps 1e-5: the architecture of commaVQ's
``utils/gpt.py``.  This module imports torch; nothing on the coding path imports it.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as TF

from nacc.gpt.intref import GPTConfig


class Conv1D(nn.Module):
    """``x @ weight + bias`` with ``weight`` stored [in, out] (GPT-2's Conv1D)."""

    def __init__(self, n_in: int, n_out: int):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_in, n_out) * 0.02)
        self.bias = nn.Parameter(torch.zeros(n_out))

    def forward(self, x):
        return x @ self.weight + self.bias


class Attention(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.h = cfg.n_head
        self.c_attn = Conv1D(cfg.d_model, 3 * cfg.d_model)
        self.c_proj = Conv1D(cfg.d_model, cfg.d_model)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.c_attn(x).split(d, dim=2)
        q, k, v = (y.view(b, t, self.h, d // self.h).transpose(1, 2) for y in (q, k, v))
        y = TF.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.c_proj(y.transpose(1, 2).reshape(b, t, d))


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.c_fc = Conv1D(cfg.d_model, cfg.d_ff)
        self.c_proj = Conv1D(cfg.d_ff, cfg.d_model)

    def forward(self, x):
        return self.c_proj(TF.gelu(self.c_fc(x), approximate="tanh"))


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.d_model, eps=1e-5)
        self.attn = Attention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.d_model, eps=1e-5)
        self.mlp = MLP(cfg)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig):
        super().__init__()
        self.cfg = cfg
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(cfg.n_vocab, cfg.d_model),
            wpe=nn.Embedding(cfg.n_positions, cfg.d_model),
            h=nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)]),
            ln_f=nn.LayerNorm(cfg.d_model, eps=1e-5)))
        self.lm_head = nn.Linear(cfg.d_model, cfg.n_vocab, bias=False)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):   # GPT-2's scaled init of residual outputs
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.n_layer))
            elif name.endswith(("wte.weight", "wpe.weight", "lm_head.weight")):
                nn.init.normal_(p, std=0.02)

    def forward(self, ids):
        t = ids.shape[1]
        tr = self.transformer
        x = tr.wte(ids) + tr.wpe(torch.arange(t, device=ids.device))
        for block in tr.h:
            x = block(x)
        return self.lm_head(tr.ln_f(x))


def save_checkpoint(model: GPT, path, buffers: bool = False) -> None:
    """``torch.save`` of the state dict in the published layout (fp32); ``buffers`` adds the
    ``attn.bias``/``attn.masked_bias`` buffers older GPT-2 checkpoints carry."""
    sd = {k: v.detach().float().contiguous() for k, v in model.state_dict().items()}
    if buffers:
        n = model.cfg.n_positions
        for i in range(model.cfg.n_layer):
            sd[f"transformer.h.{i}.attn.bias"] = torch.tril(torch.ones(n, n)).view(1, 1, n, n)
            sd[f"transformer.h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    torch.save(sd, str(path))


def load_checkpoint(cfg: GPTConfig, path) -> GPT:
    model = GPT(cfg)
    sd = torch.load(str(path), map_location="cpu", weights_only=True)
    sd = {k: v for k, v in sd.items() if not k.endswith((".attn.bias", ".attn.masked_bias"))}
    model.load_state_dict(sd)
    return model.eval()


@torch.no_grad()
def code_bits(model: GPT, windows) -> np.ndarray:
    """Ideal code length in bits (float64 per token) of the coded tokens of each window:
    ``windows`` yields ``(ids, rows, targets)`` (a window's id sequence, the positions whose
    output predicts a coded token, those tokens); the softmax runs over the codes (BOS
    excluded)."""
    v = model.cfg.vocab
    out = []
    for ids, rows, targets in windows:
        logits = model(torch.as_tensor(np.asarray(ids, np.int64))[None])[0, rows, :v]
        lp = torch.log_softmax(logits.double(), dim=-1)
        out.append(-lp[torch.arange(len(rows)), torch.as_tensor(targets)].numpy() / math.log(2))
    return np.concatenate(out) if out else np.zeros(0)


def save_safetensors(model: GPT, path) -> None:
    """The state dict as a ``.safetensors`` file (written here: header JSON + raw fp32)."""
    import json

    sd = {k: v.detach().float().contiguous().numpy() for k, v in model.state_dict().items()}
    header = {}
    off = 0
    for k in sorted(sd):
        n = sd[k].nbytes
        header[k] = {"dtype": "F32", "shape": list(sd[k].shape), "data_offsets": [off, off + n]}
        off += n
    hb = json.dumps(header, separators=(",", ":")).encode()
    hb += b" " * (-len(hb) % 8)
    with Path(path).open("wb") as f:
        f.write(len(hb).to_bytes(8, "little"))
        f.write(hb)
        for k in sorted(sd):
            f.write(sd[k].tobytes())
