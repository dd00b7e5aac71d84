"""``nacc import-gpt``: checkpoint in the published layout -> model folder, deterministic
bytes from .bin and .safetensors alike, clear refusals, and the model folder's checks."""
from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from nacc.errors import NaccError
from nacc.gpt.importer import import_gpt
from nacc.gpt.modelfile import ModelError, load_model

torch = pytest.importorskip("torch")

from gpt_models import TINY, tiny_checkpoint  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def _command():
    """The click command (``nacc/cli/gpt.py``; loaded from its file while ``nacc.cli`` is
    still a module)."""
    try:
        from nacc.cli.gpt import import_gpt_command
    except ImportError:
        spec = importlib.util.spec_from_file_location("nacc_cli_gpt", ROOT / "nacc/cli/gpt.py")
        mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
        import_gpt_command = mod.import_gpt_command
    return import_gpt_command


def _digest(folder: Path) -> dict:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_import_is_deterministic_across_formats(tmp_path):
    tiny_checkpoint(tmp_path / "a.bin", buffers=True)
    tiny_checkpoint(tmp_path / "a.safetensors", kind="safetensors")
    h1 = import_gpt(tmp_path / "a.bin", tmp_path / "m1", heads=4)
    h2 = import_gpt(tmp_path / "a.bin", tmp_path / "m2", heads=4)
    h3 = import_gpt(tmp_path / "a.safetensors", tmp_path / "m3", heads=4)
    assert h1 == h2 == h3
    w = f"weights-{h1[:16]}.bin"
    assert _digest(tmp_path / "m1")[w] == _digest(tmp_path / "m3")[w] == h1
    model, digest = load_model(tmp_path / "m1")
    assert digest.hex() == h1 and model.cfg == TINY
    info = json.loads((tmp_path / "m1" / "config.json").read_text())
    assert info["format"] == "nacc-gpt-v1" and info["config"]["n_head"] == 4


def test_quantized_weights_follow_the_spec(tmp_path):
    from nacc.gpt import torch_ref as TR

    ck = tiny_checkpoint(tmp_path / "a.bin")
    import_gpt(ck, tmp_path / "m", heads=4)
    model, _ = load_model(tmp_path / "m")
    sd = TR.load_checkpoint(TINY, ck).state_dict()
    w = sd["transformer.h.1.mlp.c_fc.weight"].double().numpy()
    lay = model.layers[1]
    scale = lay.fc_m / 2.0 ** lay.fc_s
    assert np.all(np.abs(lay.fc_w * scale - w) <= scale / 2 + 1e-12)
    assert np.all(np.abs(lay.fc_w).max(0) == 127)
    assert np.array_equal(model.top.wte, np.rint(sd["transformer.wte.weight"].double().numpy()
                                                 * 65536).astype(np.int32))


def test_bad_checkpoints_are_refused(tmp_path):
    ck = tiny_checkpoint(tmp_path / "a.bin")
    with pytest.raises(NaccError, match="width 32 is not gpt2m's 1024: .* pass --heads"):
        import_gpt(ck, tmp_path / "m")
    with pytest.raises(NaccError, match="not a multiple of 5 heads"):
        import_gpt(ck, tmp_path / "m", heads=5)
    sd = torch.load(ck, weights_only=True)
    sd["transformer.h.1.mlp.c_proj.weight"] = torch.zeros(TINY.d_ff, 7)
    torch.save(sd, tmp_path / "b.bin")
    with pytest.raises(NaccError, match=r"'transformer.h.1.mlp.c_proj.weight' has shape "
                                        r"\(128, 7\).* has \(128, 32\)"):
        import_gpt(tmp_path / "b.bin", tmp_path / "m", heads=4)
    del sd["transformer.h.1.mlp.c_proj.weight"]
    torch.save(sd, tmp_path / "c.bin")
    with pytest.raises(NaccError, match="missing tensor 'transformer.h.1.mlp.c_proj.weight'"):
        import_gpt(tmp_path / "c.bin", tmp_path / "m", heads=4)
    (tmp_path / "d.bin").write_bytes(b"not a checkpoint")
    with pytest.raises(NaccError, match="cannot read as a torch checkpoint"):
        import_gpt(tmp_path / "d.bin", tmp_path / "m", heads=4)


def test_model_folder_refuses_tampering(tmp_path):
    import_gpt(tiny_checkpoint(tmp_path / "a.bin"), tmp_path / "m", heads=4)
    w = next((tmp_path / "m").glob("weights-*.bin"))
    data = bytearray(w.read_bytes())
    data[-5] ^= 1
    w.write_bytes(bytes(data))
    with pytest.raises(ModelError, match="do not match the sha256"):
        load_model(tmp_path / "m")
    with pytest.raises(ModelError, match="no config.json"):
        load_model(tmp_path)


def test_cli_command(tmp_path):
    from click.testing import CliRunner

    cmd = _command()
    ck = tiny_checkpoint(tmp_path / "a.bin")
    out = tmp_path / "model"
    r = CliRunner().invoke(cmd, [str(ck), "-o", str(out), "--heads", "4"])
    assert r.exit_code == 0, r.output
    assert "2 layers x 32, 4 heads" in r.output
    first = _digest(out)
    r = CliRunner().invoke(cmd, [str(ck), "-o", str(out), "--heads", "4"])
    assert r.exit_code == 1 and "already exists (use -f" in r.output
    r = CliRunner().invoke(cmd, [str(ck), "-o", str(out), "--heads", "4", "-f"])
    assert r.exit_code == 0 and _digest(out) == first
    r = CliRunner().invoke(cmd, [str(ck), "-o", str(tmp_path / "m2")])
    assert r.exit_code == 1 and "pass --heads" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin", "model"]
