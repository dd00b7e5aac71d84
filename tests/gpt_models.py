"""Tiny GPT-2 checkpoints in the published layout, for the gpt tests (torch needed)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from nacc.gpt.intref import GPTConfig

TINY = GPTConfig(n_layer=2, d_model=32, n_head=4, d_ff=128, n_vocab=17, n_positions=80)


def tiny_checkpoint(path: Path, cfg: GPTConfig = TINY, seed: int = 0, scale: float = 1.0,
                    buffers: bool = False, kind: str = "bin") -> Path:
    """A random GPT of ``cfg`` saved at ``path`` (weights drawn wider than GPT-2's init so
    that the integer path sees non-trivial activations)."""
    import torch

    from nacc.gpt import torch_ref as TR

    torch.manual_seed(seed)
    m = TR.GPT(cfg)
    with torch.no_grad():
        for name, p in m.named_parameters():
            if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")):
                p.copy_(1 + 0.2 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.05 * torch.randn_like(p))
            else:
                p.mul_(scale)
    if kind == "bin":
        TR.save_checkpoint(m, path, buffers=buffers)
    else:
        TR.save_safetensors(m, path)
    return path


def clip(cfg: GPTConfig, n_frames: int, frame_shape=(2, 3), seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.integers(0, cfg.vocab, (n_frames, *frame_shape)).astype(np.int32)
