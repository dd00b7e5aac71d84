"""``nacc submission --predictor gpt``: the zip carries no gpt weights; its decompress.py
rebuilds the model folder from the public checkpoint (a path or URL recorded at build time,
by default commaVQ's ``gpt2m/pytorch_model.bin``), checks the weights' hash against the
archive's, and decodes.  A tiny random checkpoint in the published layout stands in for
gpt2m; torch's zip checkpoints are read without torch (``nacc.gpt.torchfile``)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import ROOT
from nacc.errors import NaccError
from nacc.gpt.intref import GPTConfig

torch = pytest.importorskip("torch")

from gpt_models import tiny_checkpoint  # noqa: E402

# one layer, 7 positions per 2x3 frame: the default window of 20 frames fits 160 positions
CFG = GPTConfig(n_layer=1, d_model=16, n_head=2, d_ff=32, n_vocab=17, n_positions=160)
NAMES = ["x_0.npy", "x_1.npy", "x_2.npy"]


def trained_checkpoint(path: Path, clips, steps: int = 60) -> Path:
    """The tiny GPT trained briefly on ``clips`` (as the gpt predictor's first windows), so
    that it codes them better than the uniform table does."""
    from nacc.gpt import torch_ref as TR
    from nacc.gpt.policy import window_ids

    torch.manual_seed(0)
    model = TR.GPT(CFG)
    seqs = [torch.as_tensor(window_ids(c, CFG.vocab)) for c in clips]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(steps):
        loss = sum(torch.nn.functional.cross_entropy(model(s[None, :-1])[0], s[1:])
                   for s in seqs)
        opt.zero_grad()
        loss.backward()
        opt.step()
    TR.save_checkpoint(model, path)
    return path


@pytest.fixture(scope="module")
def gpt(tmp_path_factory):
    """A tiny trained checkpoint at repo/gpt2m/pytorch_model.bin, its imported model
    folder, another checkpoint, and 3 segments of 2x3 frames (V = 16)."""
    from nacc.gpt.importer import import_gpt

    d = tmp_path_factory.mktemp("gpt")
    (d / "repo" / "gpt2m").mkdir(parents=True)
    (d / "segs").mkdir()
    rng = np.random.default_rng(3)
    base = rng.integers(0, CFG.vocab, (1, 2, 3))
    clips = []
    for i, name in enumerate(NAMES):
        # one pattern with noise: a trained model codes it below 4 bits per token
        noise = rng.integers(0, CFG.vocab, (6 + i, 2, 3))
        clips.append(np.where(rng.random(noise.shape) < 0.8, base, noise).astype(np.int16))
        np.save(d / "segs" / name, clips[-1])
    ck = trained_checkpoint(d / "repo" / "gpt2m" / "pytorch_model.bin", clips)
    import_gpt(ck, d / "model", heads=CFG.n_head)
    tiny_checkpoint(d / "other.bin", CFG, seed=5)
    return d


def build(gpt, out, *extra, cwd=None):
    from nacc.cli import main

    args = ["submission", str(gpt / "segs"), "-o", str(out), "--predictor", "gpt",
            "--model", str(gpt / "model"), "--vocab", "16", *extra]
    old = os.getcwd()
    os.chdir(cwd or old)
    try:
        return CliRunner().invoke(main, args)
    finally:
        os.chdir(old)


def _config(zip_path) -> dict:
    script = zipfile.ZipFile(zip_path).read("decompress.py").decode()
    line = next(x for x in script.splitlines() if x.startswith("CONFIG = "))
    return eval(line.removeprefix("CONFIG = "))      # a dict literal written by repr()


def test_torch_zip_is_read_without_torch(tmp_path):
    """The reader of torch's zip format gives torch's own values (float32, float16,
    bfloat16, float64, a transposed view, a scalar) and refuses any other global."""
    import pickle

    from nacc.gpt.checkpoint import Checkpoint

    sd = {"a": torch.randn(3, 4), "t": torch.randn(4, 3).t(), "h": torch.randn(5).half(),
          "bf": torch.randn(5).bfloat16(), "d": torch.randn(2, 2).double()[:, 1],
          "s": torch.tensor(-1e4)}
    torch.save(sd, tmp_path / "a.bin")
    ck = Checkpoint(tmp_path / "a.bin")
    assert ck.names() == sorted(sd) and ck.kind == "torch" and not ck._torch
    for k, v in sd.items():
        assert ck.shape(k) == tuple(v.shape)
        np.testing.assert_array_equal(ck.get(k), v.double().numpy())

    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    with zipfile.ZipFile(tmp_path / "evil.bin", "w") as z:
        z.writestr("evil/data.pkl", pickle.dumps({"a": Evil()}, protocol=2))
    with pytest.raises(NaccError, match=r"global posix.system is not allowed"):
        Checkpoint(tmp_path / "evil.bin")


def test_import_needs_no_torch(gpt, tmp_path):
    """Importing gpt2m's file format in a process where torch is absent gives the same
    model folder (what decompress.py does on a machine without torch)."""
    script = ("import sys\nsys.modules['torch'] = None\n"
              "from nacc.gpt.importer import import_gpt\n"
              f"print(import_gpt({str(gpt / 'repo/gpt2m/pytorch_model.bin')!r}, "
              f"{str(tmp_path / 'm')!r}, heads={CFG.n_head}))\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    want = json.loads((gpt / "model" / "config.json").read_text())["sha256"]
    assert r.stdout.strip() == want


def test_obtain_model_checks_the_hash(gpt, tmp_path):
    from nacc.gpt.source import obtain_model, weights_digest

    want = weights_digest(gpt / "model")
    url = (gpt / "repo" / "gpt2m" / "pytorch_model.bin").as_uri()
    got = obtain_model(url, tmp_path / "a" / "model", want, CFG.n_head, CFG.act_bits)
    assert weights_digest(got) == want
    # a relative path is looked up in the working directory, then in the bases
    got = obtain_model("gpt2m/pytorch_model.bin", tmp_path / "b" / "model", want, CFG.n_head,
                       CFG.act_bits, bases=(gpt / "repo",))
    assert weights_digest(got) == want
    with pytest.raises(NaccError, match=r"other.bin: imports to a model of weights sha256 "
                                        r"[0-9a-f]{16}, the archive was coded with "
                                        f"{want.hex()[:16]}"):
        obtain_model(str(gpt / "other.bin"), tmp_path / "c" / "model", want, CFG.n_head,
                     CFG.act_bits)
    with pytest.raises(NaccError, match=r"gpt2m/pytorch_model.bin: gpt checkpoint not found "
                                        r"\(looked at "):
        obtain_model("gpt2m/pytorch_model.bin", tmp_path / "d" / "model", want, CFG.n_head,
                     CFG.act_bits, bases=(tmp_path,))


def test_build_refuses_a_checkpoint_that_is_not_the_model(gpt, tmp_path):
    r = build(gpt, tmp_path / "s.zip", "--checkpoint", str(gpt / "other.bin"))
    assert r.exit_code == 1 and "not the checkpoint the submission was built from" in r.output
    r = build(gpt, tmp_path / "s.zip", cwd=tmp_path)       # no gpt2m/ here
    assert r.exit_code == 1 and "gpt2m/pytorch_model.bin: gpt checkpoint not found" in r.output
    assert not (tmp_path / "s.zip").exists()
    from nacc.cli import main

    r = CliRunner().invoke(main, ["submission", str(gpt / "segs"), "-o", str(tmp_path / "s.zip"),
                                  "--predictor", "prevframe", "--checkpoint", "x.bin"])
    assert r.exit_code == 2 and "--checkpoint is for --predictor gpt" in r.output


@pytest.mark.slow
def test_submission_passes_the_protocol_with_a_checkpoint_path(gpt, tmp_path):
    """Built with --checkpoint PATH: no weights in the zip; bench/evaluate_submission.sh
    restores every segment byte for byte; a different file at that path is refused by
    decompress.py before it writes anything."""
    out = tmp_path / "sub.zip"
    ck = gpt / "repo" / "gpt2m" / "pytorch_model.bin"
    shutil_copy = tmp_path / "public" / "pytorch_model.bin"
    shutil_copy.parent.mkdir()
    shutil_copy.write_bytes(ck.read_bytes())
    r = build(gpt, out, "--checkpoint", str(shutil_copy))
    assert r.exit_code == 0, r.output
    assert "self-test passed" in r.output
    names = zipfile.ZipFile(out).namelist()
    assert not any("weights-" in n or n.startswith("nacc_src/model/") for n in names)
    assert "nacc_src/nacc/gpt/source.py" in names and "nacc_src/nacc/gpt/torchfile.py" in names
    cfg = _config(out)
    assert cfg["gpt"] == {"checkpoint": str(shutil_copy), "heads": 2, "act_bits": 8}
    assert "model" not in cfg["path_params"]
    from nacc import container

    header, blocks = container.read_archive(zipfile.ZipFile(out).read("submission.nacc"))
    assert header.predictor == "gpt" and len(blocks) == 3
    assert all(b.coding == container.CODED for b in blocks)   # the model decodes them
    env = dict(os.environ, EVAL_PYTHON=sys.executable, TMPDIR=str(tmp_path))
    env.pop("NUMBA_CACHE_DIR", None)
    r = subprocess.run(["bash", str(ROOT / "bench" / "evaluate_submission.sh"), str(out),
                        str(gpt / "segs")], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "3 file(s) byte-identical" in r.stderr
    assert "decompress.py: rebuilding the gpt model from " in r.stderr
    # another checkpoint at the recorded path: refused, nothing written
    tiny_checkpoint(shutil_copy, CFG, seed=5)
    r = subprocess.run(["bash", str(ROOT / "bench" / "evaluate_submission.sh"), str(out),
                        str(gpt / "segs")], capture_output=True, text=True, env=env)
    assert r.returncode == 1
    assert "not the checkpoint the submission was built from" in r.stderr
    assert "missing" not in r.stderr                 # decompress.py failed before comparing


@pytest.mark.slow
def test_submission_finds_gpt2m_like_commavq_evaluate_sh(gpt, tmp_path):
    """Built from the commaVQ repository's root without --checkpoint: decompress.py finds
    gpt2m/pytorch_model.bin as compression/evaluate.sh runs it (cwd the repository root,
    the zip unpacked below it), with torch absent."""
    out = tmp_path / "sub.zip"
    r = build(gpt, out, cwd=gpt / "repo")
    assert r.exit_code == 0, r.output
    assert _config(out)["gpt"]["checkpoint"] == "gpt2m/pytorch_model.bin"
    unpacked = gpt / "repo" / "compression_challenge_submission_decompressed"
    zipfile.ZipFile(out).extractall(unpacked)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHONPATH", "NACC_"))}
    env["OUTPUT_DIR"] = str(unpacked)
    no_torch = ("import runpy, sys\nsys.modules['torch'] = None\n"
                "runpy.run_path(sys.argv[1], run_name='__main__')\n")
    r = subprocess.run([sys.executable, "-c", no_torch, str(unpacked / "decompress.py")],
                       cwd=gpt / "repo", capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    for name in NAMES:
        assert (unpacked / name).read_bytes() == (gpt / "segs" / name).read_bytes()


@pytest.mark.slow
def test_bench_gpt(gpt):
    """``nacc bench --predictor gpt,prevframe --model DIR``: the model goes to gpt only, and
    gpt's row is the archive nacc writes with it."""
    import nacc
    from nacc.cli import main

    r = CliRunner().invoke(main, ["bench", str(gpt / "segs" / NAMES[0]), "--predictor",
                                  "gpt,prevframe", "--model", str(gpt / "model"), "--vocab",
                                  "16", "--against", "none", "-q", "--json",
                                  str(gpt / "bench.json")])
    assert r.exit_code == 0, r.output
    rows = {row["codec"]: row for row in json.loads((gpt / "bench.json").read_text())["rows"]}
    clip = np.load(gpt / "segs" / NAMES[0])
    size = len(nacc.compress(clip, predictor="gpt", model=str(gpt / "model"), vocab=16,
                             name=NAMES[0]))
    assert rows["nacc-gpt"]["bytes"] == size and rows["nacc-prevframe"]["bytes"] > 0
    r = CliRunner().invoke(main, ["bench", str(gpt / "segs" / NAMES[0]), "--predictor", "gpt",
                                  "--vocab", "16", "--against", "none", "-q"])
    assert r.exit_code == 2 and "needs --model" in r.output      # a usage error
