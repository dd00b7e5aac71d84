"""Read a GPT-2 checkpoint tensor by tensor: ``.safetensors`` (parsed here, memory-mapped) or
a ``torch.save`` file (``pytorch_model.bin``): in torch's zip format read without torch
(``nacc.gpt.torchfile``, memory-mapped), older formats with torch's weights-only loader.
``Checkpoint.get(name)`` returns one tensor as a fresh float64 numpy array, so that an import
holds about one tensor at a time beside the mapping.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nacc.errors import NaccError

_ST_DTYPES = {"F32": "<f4", "F16": "<f2", "F64": "<f8", "BF16": "bf16"}
MAX_HEADER = 1 << 26


class Checkpoint:
    """A read-only view of a checkpoint's named tensors."""

    def __init__(self, path):
        self.path = Path(path)
        if not self.path.is_file():
            raise NaccError(f"{self.path}: no such checkpoint file")
        with self.path.open("rb") as f:
            head = f.read(8)
        self.kind = "safetensors" if self.path.suffix == ".safetensors" else "torch"
        self._st: dict[str, tuple] = {}
        self._torch: dict = {}
        if self.kind == "safetensors":
            self._open_safetensors(head)
        elif head[:4] == b"PK\x03\x04":        # torch's zip format: no torch needed
            from nacc.gpt.torchfile import read_index

            self._st = read_index(self.path)
        else:
            self._open_torch()

    # -- safetensors: u64 header length, JSON header, raw little-endian data ---------------
    def _open_safetensors(self, head: bytes) -> None:
        size = self.path.stat().st_size
        if len(head) < 8:
            raise NaccError(f"{self.path}: not a safetensors file (too short)")
        n = int.from_bytes(head, "little")
        if n > min(MAX_HEADER, size - 8):
            raise NaccError(f"{self.path}: safetensors header length {n} is not plausible")
        with self.path.open("rb") as f:
            f.seek(8)
            try:
                header = json.loads(f.read(n))
            except (UnicodeDecodeError, json.JSONDecodeError) as e:
                raise NaccError(f"{self.path}: safetensors header is not JSON ({e})") from None
        data = np.memmap(self.path, np.uint8, mode="r", offset=8 + n, shape=(size - 8 - n,))
        for name, info in header.items():
            if name == "__metadata__":
                continue
            try:
                dt = _ST_DTYPES[info["dtype"]]
                shape = tuple(int(s) for s in info["shape"])
                a, b = (int(x) for x in info["data_offsets"])
            except (KeyError, TypeError, ValueError):
                raise NaccError(f"{self.path}: tensor {name!r}: unsupported or damaged "
                                f"entry {info!r}") from None
            item = 2 if dt == "bf16" else np.dtype(dt).itemsize
            if not 0 <= a <= b <= data.size or b - a != item * int(np.prod(shape)):
                raise NaccError(f"{self.path}: tensor {name!r}: offsets {a}..{b} do not fit "
                                f"shape {shape}")
            self._st[name] = (dt, shape, data[a:b])

    # -- torch.save files ------------------------------------------------------------------
    def _open_torch(self) -> None:
        try:
            import torch
        except ModuleNotFoundError:
            raise NaccError(f"{self.path}: reading a torch checkpoint needs torch "
                            "(or convert it to .safetensors)") from None
        import pickle
        import zipfile

        mmap = zipfile.is_zipfile(self.path)
        try:
            sd = torch.load(str(self.path), map_location="cpu", weights_only=True, mmap=mmap)
        except (RuntimeError, pickle.UnpicklingError, EOFError, ValueError) as e:
            raise NaccError(f"{self.path}: cannot read as a torch checkpoint "
                            f"(weights-only loader): {e}") from None
        if not isinstance(sd, dict):
            raise NaccError(f"{self.path}: the checkpoint holds a {type(sd).__name__}, "
                            "not a state dict")
        if "state_dict" in sd and isinstance(sd["state_dict"], dict):
            sd = sd["state_dict"]
        self._torch = {k: v for k, v in sd.items() if isinstance(v, torch.Tensor)}

    def names(self) -> list[str]:
        return sorted(self._torch or self._st)

    def shape(self, name: str) -> tuple[int, ...]:
        if name in self._st:
            return self._st[name][1]
        return tuple(self._torch[name].shape)

    def get(self, name: str) -> np.ndarray:
        """The tensor ``name`` as a float64 array (a copy)."""
        if name in self._st:
            dt, shape, raw = self._st[name]
            if dt == "bf16":
                u = np.frombuffer(raw, "<u2").astype(np.uint32) << 16
                return u.view(np.float32).astype(np.float64).reshape(shape)
            return np.frombuffer(raw, np.dtype(dt)).astype(np.float64).reshape(shape)
        return self._torch[name].detach().double().numpy()
