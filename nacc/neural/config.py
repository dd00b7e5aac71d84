"""Model configuration: one dataclass, serialised as ``config.json`` in a model folder."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

ARCHS = ("transformer", "lstm")

# neighbours of the current frame seen by the token head, (dy, dx), all causal
LOGIT_CLAMP = 1 << 24     # the head's logits are clamped to [-LOGIT_CLAMP, LOGIT_CLAMP]
HEAD_NEIGHBOURS = ((0, -1), (-1, -1), (-1, 0), (-1, 1), (0, -2), (-2, 0))
# copy candidates of the head: the neighbours above, then the previous frame's 3x3 window
PREV_CANDIDATES = tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1))
N_SLOTS = len(HEAD_NEIGHBOURS) + len(PREV_CANDIDATES)
# motion evidence of the head: for the left and the upper neighbour (in this order) and each
# shift of PREV_CANDIDATES, whether the neighbour equals the previous frame's token at the
# same shift from the neighbour's position
MATCH_NEIGHBOURS = ((0, -1), (-1, 0))
N_MATCH = len(MATCH_NEIGHBOURS) * len(PREV_CANDIDATES)
# motion counts of the head (when ModelConfig.motion_clamp > 0): for the current frame so
# far and for the whole previous frame, per shift of PREV_CANDIDATES the deficit to the
# best shift's match count, then the best count and the non-matching rest
N_MOTION = 2 * (len(PREV_CANDIDATES) + 2)
# the kernels' motion row of a token, from which those counts come: for the current frame so
# far and the previous frame, the match count of each shift of PREV_CANDIDATES, then the
# number of tokens counted (cur_0..8, n_cur, prv_0..8, n_prv)
MOTION_ROW = 2 * (len(PREV_CANDIDATES) + 1)
# bound of the head's per-code copy term (ModelConfig.copy_bias), in logit units
COPY_BIAS_MAX = 1 << 20
# mix_head: fixed-point bits of the mixture's fresh part and kernel (the intref spec)
MIX_BITS = 22


@dataclasses.dataclass
class ModelConfig:
    arch: str
    vocab: int
    frame_shape: tuple[int, int]
    # frame-level pass
    k_frames: int = 2          # previous frames seen (transformer window; lstm input window)
    radius: int = 2            # spatial window radius in previous frames: (2r+1)^2 positions
    d_model: int = 64          # width of the frame-level features F
    emb: int = 32              # embedding width of context tokens
    n_layers: int = 2          # transformer layers
    n_heads: int = 4
    d_ff: int = 128
    pos_emb: int = 16          # row / column embedding width (transformer query)
    # token-level head
    head_emb: int = 16
    head_hidden: int = 256
    motion_clamp: int = 0      # > 0: motion count features for the head, clamped to this
    subst: bool = False        # learned substitution table: gated bonus rows per candidate
    subst_tied: bool = True    # the substitution table is tied symmetric (SUB[a, b] = SUB[b, a])
    subst_emb: int = 0         # > 0: the table is trained as full + a rank-subst_emb product of
                               # per-code embeddings (shared across codes); exported as one table
    copy_bias: bool = False    # learned per-code term added with every candidate's copy bonus
    copy_max: bool = False     # a code in several candidate slots gets the largest bonus,
                               # not the sum
    mix_head: bool = False     # the table is a mixture: the logits' softmax ("fresh") and
                               # one learned V x V kernel row per candidate slot, with
                               # weights from the hidden layer (one per slot, pad slots off)
    # integer export
    precision: int = 24
    logit_frac: int = 6        # logits are integers in units of 2**-logit_frac nats
    logit_range: float = 20.0  # nats covered by the exp table
    att_frac: int = 5          # attention scores in units of 2**-att_frac
    att_range: float = 16.0

    def __post_init__(self):
        if self.arch not in ARCHS:
            raise ValueError(f"unknown arch {self.arch!r} (known: {', '.join(ARCHS)})")
        self.frame_shape = tuple(int(s) for s in self.frame_shape)

    @property
    def pad(self) -> int:
        """Token id used for positions outside the video (before frame 0, off the frame)."""
        return self.vocab

    @property
    def n_motion(self) -> int:
        """Width of the head's motion count input (0 when off)."""
        return N_MOTION if self.motion_clamp > 0 else 0

    @property
    def n_window(self) -> int:
        return self.k_frames * (2 * self.radius + 1) ** 2

    def window_offsets(self):
        """(dt, dy, dx) of the frame-level window, dt >= 1, in a fixed order."""
        r = self.radius
        return [(dt, dy, dx) for dt in range(1, self.k_frames + 1)
                for dy in range(-r, r + 1) for dx in range(-r, r + 1)]

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["frame_shape"] = list(self.frame_shape)
        return d

    @classmethod
    def from_json(cls, d: dict) -> ModelConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    def save(self, path: Path, extra: dict | None = None) -> None:
        d = self.to_json()
        if extra:
            d.update(extra)
        Path(path).write_text(json.dumps(d, indent=2, sort_keys=True) + "\n")


# the head options that nacc train turns on by default (a preset may leave them off)
# (the mixture head replaces the gated substitution logits: its kernel does that job)
DEFAULT_HEAD = dict(motion_clamp=12, subst=False, subst_tied=True, subst_emb=16, copy_bias=True,
                    copy_max=True, mix_head=True)

PRESETS = {
    "transformer": dict(k_frames=2, radius=2, d_model=64, emb=32, n_layers=2, n_heads=4,
                        d_ff=128, head_emb=16, head_hidden=128, **DEFAULT_HEAD),
    "lstm": dict(k_frames=2, radius=1, d_model=96, emb=24, head_emb=16, head_hidden=128,
                 **DEFAULT_HEAD),
    "tiny": dict(k_frames=1, radius=1, d_model=16, emb=8, n_layers=1, n_heads=2, d_ff=16,
                 pos_emb=4, head_emb=4, head_hidden=16),
}


def make_config(arch: str, vocab: int, frame_shape, preset: str | None = None, **over):
    kw: dict[str, Any] = dict(PRESETS[preset or arch])
    kw.update(over)
    return ModelConfig(arch=arch, vocab=vocab, frame_shape=tuple(frame_shape), **kw)
