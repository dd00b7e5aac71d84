"""The CLI's ``--device`` and model checks where no GPU can be used, and the dry run of the
one GPU check (``bench/gpu_check.sh --dry-run``): exit codes, exact messages, nothing
written, inputs untouched."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT, cli_in_process, cli_without

# nacc's CLI with triton made absent (as on a machine where it is not installed)
NO_TRITON = cli_without("triton")


def _env():
    return {"PYTHONPATH": str(ROOT), "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1",
            "NUMBA_CACHE_DIR": str(ROOT / ".venv" / "numba-cache")}


def _files(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
def clip(tmp_path, dev_clip):
    np.save(tmp_path / "a.npy", dev_clip[:3])
    return tmp_path / "a.npy"


def _no_gpu():
    from nacc.kernels.triton.runtime import cuda_available

    return not cuda_available()


@pytest.mark.skipif(not _no_gpu(), reason="a CUDA GPU is present")
def test_device_cuda_without_gpu_exit_1(tmp_path, clip):
    before = clip.read_bytes()
    r = cli_in_process(["compress", "a.npy", "--device", "cuda", "-o", "a.nacc"], tmp_path)
    assert r.exit_code == 1
    assert r.output == ("nacc: a.npy: --device cuda: no CUDA GPU is available to torch "
                        "(use --device cpu or auto)\n")
    assert _files(tmp_path) == ["a.npy"] and clip.read_bytes() == before
    # decompress too: an archive written on the CPU, asked to decode on the GPU
    assert cli_in_process(["compress", "a.npy", "-o", "a.nacc", "-q"], tmp_path).exit_code == 0
    r = cli_in_process(["decompress", "a.nacc", "--device", "cuda", "-o", "b.npy"], tmp_path)
    assert r.exit_code == 1
    assert r.output == ("nacc: a.nacc: --device cuda: no CUDA GPU is available to torch "
                        "(use --device cpu or auto)\n")
    assert _files(tmp_path) == ["a.nacc", "a.npy"]


def test_device_cuda_without_triton_exit_1(tmp_path, clip):
    before = clip.read_bytes()
    r = subprocess.run([sys.executable, "-c", NO_TRITON, "compress", "a.npy", "--device",
                        "cuda", "-o", "a.nacc"], cwd=tmp_path, capture_output=True, text=True,
                       env=_env())
    assert r.returncode == 1, r.stderr
    assert r.stderr == ("nacc: a.npy: --device cuda: torch and triton are not installed "
                        "(pip install 'nacc[gpu]')\n")
    assert r.stdout == ""
    assert _files(tmp_path) == ["a.npy"] and clip.read_bytes() == before
    # auto without triton computes on the CPU: the CPU's bytes
    r = subprocess.run([sys.executable, "-c", NO_TRITON, "compress", "a.npy", "--device",
                        "auto", "-o", "auto.nacc", "-q"], cwd=tmp_path, capture_output=True,
                       text=True, env=_env())
    assert r.returncode == 0, r.stderr
    assert cli_in_process(["compress", "a.npy", "-o", "cpu.nacc", "-q"], tmp_path).exit_code == 0
    assert (tmp_path / "auto.nacc").read_bytes() == (tmp_path / "cpu.nacc").read_bytes()


def test_device_usage_error_exit_2(tmp_path, clip):
    r = cli_in_process(["compress", "a.npy", "--device", "tpu"], tmp_path)
    assert r.exit_code == 2
    assert "Invalid value for '--device'" in r.output
    assert _files(tmp_path) == ["a.npy"]


@pytest.mark.parametrize("arch", ["transformer", "lstm"])
def test_device_model_weights_not_matching_hash_refused(tmp_path, clip, arch):
    """A model folder whose weights file was altered is refused, on every device: exit 1, the
    file named, nothing written."""
    src = ROOT / "models" / f"commavq-dev-{arch}"
    bad = tmp_path / "bad"
    shutil.copytree(src, bad)
    info = json.loads((bad / "config.json").read_text())
    w = bad / info["weights"]
    data = bytearray(w.read_bytes())
    data[len(data) // 2] ^= 1
    w.write_bytes(bytes(data))
    got = __import__("hashlib").sha256(bytes(data)).hexdigest()[:16]
    for device in ("cpu", "auto"):
        r = cli_in_process(["compress", "a.npy", "--predictor", arch, "--model", "bad",
                            "--device", device, "-o", "a.nacc"], tmp_path)
        assert r.exit_code == 1, r.output
        # said once, before any input is read, naming the weights file
        assert r.output.startswith(f"nacc: {w.relative_to(tmp_path)}: sha256 {got}... "
                                   "does not match"), r.output
        assert r.output.count("\n") == 1
        assert _files(tmp_path) == ["a.npy", "bad"]
    # an archive written with the good model, decoded with the altered one: refused too
    assert cli_in_process(["compress", "a.npy", "--predictor", arch, "--model", str(src),
                           "-o", "a.nacc", "-q"], tmp_path).exit_code == 0
    r = cli_in_process(["decompress", "a.nacc", "--model", "bad", "-o", "b.npy"], tmp_path)
    assert r.exit_code == 1 and "does not match" in r.output, r.output
    assert _files(tmp_path) == ["a.nacc", "a.npy", "bad"]


@pytest.mark.slow
def test_gpu_check_dry_run(tmp_path):
    """bench/gpu_check.sh --dry-run (the interpreter, tiny sizes; two predictors to keep it
    short: uniform and the transformer) passes every step and reports byte-identical round
    trips and one segments/s table."""
    if shutil.which("bash") is None:
        pytest.skip("needs bash")
    out = tmp_path / "out"
    # without the gpt step (NACC_GPU_CHECK_GPT=0): its kernels are checked against the
    # reference by tests/test_triton_gpt.py, and its dry run alone takes minutes
    env = {**_env(), "OUT": str(out), "PY": sys.executable,
           "NACC_GPU_CHECK_PREDICTORS": "uniform,transformer", "NACC_GPU_CHECK_GPT": "0"}
    r = subprocess.run(["bash", str(ROOT / "bench" / "gpu_check.sh"), "--dry-run"],
                       cwd=tmp_path, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert r.stdout.rstrip().endswith("gpu_check: all steps passed")
    summary = (out / "gpu_check_summary.txt").read_text().splitlines()
    assert summary[0].startswith("gpu_check DRY RUN (interpreter, tiny sizes)")
    passes = [s.split(" (")[0] for s in summary if s.startswith(("PASS", "FAIL"))]
    assert passes == ["PASS 1. Triton tests on interpret",
                      "PASS 2. round trips CPU <-> interpret, every predictor",
                      "PASS 3. CLI --device auto <-> cpu",
                      "PASS 4. segments/s on interpret beside the CPU"]
    assert "    ALL IDENTICAL: 20 checks" in summary
    assert "    ALL IDENTICAL: CLI round trips" in summary
    trips = json.loads((out / "gpu_roundtrip.json").read_text())["checks"]
    assert len(trips) == 20 and all(c["ok"] for c in trips)
    assert {c["predictor"] for c in trips} == {"uniform", "transformer"}
    assert {c["input"] for c in trips} == {"clip", "3 segments"}
    bench = json.loads((out / "bench_gpu.json").read_text())["results"]
    gpu_rows = [(b["predictor"], b["batch"], b["identical"]) for b in bench if "batch" in b]
    assert gpu_rows == [(p, n, True) for p in ("uniform", "transformer") for n in (1, 2, 3)]
    table = summary[summary.index(next(s for s in summary if s.startswith("device:"))) + 1:]
    assert table[0].split() == ["predictor", "path", "batch", "encode", "seg/s", "decode",
                                "seg/s", "enc/CPU1", "dec/CPU1", "GPU", "MiB", "result"]
    assert len(table) == 2 + 2 * (1 + 3)
