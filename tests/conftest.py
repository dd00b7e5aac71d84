"""Shared fixtures: the real dev clip shipped in the repo, small clips cut from it, and the
one switch that regenerates golden files (``golden_bytes`` / ``golden_json``)."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import NoReturn

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
DEV_CLIP = ROOT / "tests" / "data" / "commavq_dev.npy"
DEV_CLIP_SHA256 = "a17646d962d3a94587da9d4a427c2ddfb9fc53d93ccf71cea7c3d17cbfaf9431"
NACC = [sys.executable, "-m", "nacc.cli"]
REGEN_GOLDEN = "NACC_REGEN_GOLDEN"     # set to exactly "1" to rewrite golden files on purpose

os.environ.setdefault("NUMBA_CACHE_DIR", str(ROOT / ".venv" / "numba-cache"))


def cli_in_process(args, cwd):
    """Run the CLI in this process (fast) from ``cwd``; the result's output holds stdout
    and stderr."""
    from click.testing import CliRunner

    from nacc.cli import main

    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(main, [str(a) for a in args])
    finally:
        os.chdir(old)


def cli_without(module: str) -> str:
    """A ``python -c`` script that runs nacc's CLI (arguments from its argv) with ``module``
    and its submodules made absent, as on a machine where it is not installed."""
    return f"""
import sys
class _Absent:
    def find_spec(self, name, path=None, target=None):
        if name == {module!r} or name.startswith({module + "."!r}):
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
sys.meta_path.insert(0, _Absent())
from nacc.cli import main
sys.argv = ["nacc", *sys.argv[1:]]
main()
"""


@pytest.fixture(scope="session")
def dev_clip() -> np.ndarray:
    """The real commaVQ clip: int16 (600, 8, 16)."""
    return np.load(DEV_CLIP)


@pytest.fixture(scope="session")
def small_clip(dev_clip) -> np.ndarray:
    """Frames 0-9 of the real clip."""
    return np.ascontiguousarray(dev_clip[:10])


def repeating_clips(vocab: int, frame_shape, seed: int, lengths) -> list[np.ndarray]:
    """int32 token videos of the given lengths with different contents; each frame keeps
    about half the tokens of the previous one, so previous-frame contexts are exercised."""
    rng = np.random.default_rng(seed)
    out = []
    for t in lengths:
        v = rng.integers(0, vocab, (t, *frame_shape)).astype(np.int32)
        for f in range(1, t):
            keep = rng.random(frame_shape) < 0.5
            v[f][keep] = v[f - 1][keep]
        out.append(v)
    return out


# -- golden files ---------------------------------------------------------------------------
def regenerating_golden() -> bool:
    """True only when ``NACC_REGEN_GOLDEN`` is exactly "1" (any other value, "0" included,
    checks the committed files)."""
    return os.environ.get(REGEN_GOLDEN) == "1"


def _missing(path: Path) -> NoReturn:
    test_file = os.environ.get("PYTEST_CURRENT_TEST", "").split("::")[0]
    pytest.fail(f"golden file {path} is missing; regenerate on purpose: "
                f"{REGEN_GOLDEN}=1 pytest {test_file}")


def golden_bytes(path: Path, fresh: bytes) -> bytes:
    """The committed golden file ``path``; when regenerating, ``fresh`` is written there
    first.  A missing file fails the test: goldens are never created silently."""
    if regenerating_golden():
        path.write_bytes(fresh)
    if not path.is_file():
        _missing(path)
    return path.read_bytes()


def golden_json(path: Path, key: str, value, indent: int = 1):
    """The entry ``key`` of the golden JSON object in ``path`` (None when it has none); when
    regenerating, ``value`` is stored under ``key`` first (the other entries are kept).  A
    missing file fails the test."""
    stored = json.loads(path.read_text()) if path.is_file() else None
    if regenerating_golden():
        stored = dict(stored or {}, **{key: value})
        path.write_text(json.dumps(stored, indent=indent, sort_keys=True) + "\n")
    if stored is None:
        _missing(path)
    return stored.get(key)


# -- test tiers -----------------------------------------------------------------------------
# ``make check`` runs ``-m "not slow"``; ``make test`` runs everything.  Tests in files this
# list covers are marked slow here (their files belong to other work); elsewhere a slow test
# carries ``@pytest.mark.slow`` itself.  An entry is a test file or a node id prefix, chosen
# from measured durations (``pytest --durations=0`` per file, numba cache warm).
SLOW_TESTS = (
    "tests/test_triton.py",              # Triton interpreter: 89 s warm
    "tests/test_triton_neural.py",       # Triton interpreter: 157 s
    "tests/test_ray.py",                 # starts a Ray cluster: 23 s
    "tests/test_aot.py",                 # builds the AOT module: 21 s warm, 128 s cold
    "tests/test_submission.py::test_evaluate_flow_on_real_segments",   # 23 s
    "tests/test_lanes.py::test_neural_archive_without_torch",          # subprocess: 4.3 s
    # subprocesses and whole-command runs, 3.5-18 s each (durations of the fast tier on a
    # 2-core machine at load 4; the tier is meant to take under 2 minutes with make check)
    "tests/test_train_cli.py::test_train_progress_in_a_pipe_is_plain_lines",
    "tests/test_train_cli.py::test_neural_coding_without_torch",
    "tests/test_submission.py::test_decompress_py_writes_all_or_nothing_with_the_cli_modes",
    "tests/test_submission.py::test_self_test_output_is_reported",
    "tests/test_submission.py::test_models_outside_the_package_are_packed",
    "tests/test_device_cli.py::test_device_cuda_without_triton_exit_1",
    "tests/test_hostile_archives.py::test_a_constant_video_codes_to_no_words_and_is_padded_to_the_floor",
    "tests/test_bench.py::test_plot",
)


def _listed(nodeid: str, entry: str) -> bool:
    if entry.endswith(".py"):
        return nodeid.startswith(entry + "::")
    return nodeid == entry or nodeid.startswith(entry + "[")


# The longest files (one run of the whole suite, 2026-12-06), run first: ``make test`` hands
# whole files to its 2 processes in collection order, and a long file started last would
# leave one process working alone at the end.  Order inside a file is kept.
LONG_FILES = (
    "tests/test_submission.py", "tests/test_device_cli.py", "tests/test_triton.py",
    "tests/test_triton_neural.py", "tests/test_triton_gpt.py", "tests/test_gpt_submission.py",
    "tests/test_spine_cli.py", "tests/test_ray.py", "tests/test_fuzz_slice.py",
    "tests/test_hostile_inputs.py", "tests/test_aot.py",
)


def pytest_collection_modifyitems(config, items):
    """Mark the SLOW_TESTS items slow; an entry that matches no test of a collected file is
    an error (a renamed test must not move to the fast tier unnoticed).  Then the
    LONG_FILES first, in that order (a stable sort: the rest keep theirs)."""
    rank = {f: k for k, f in enumerate(LONG_FILES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))
    files = {item.nodeid.split("::")[0] for item in items}
    used = set()
    for item in items:
        for entry in SLOW_TESTS:
            if _listed(item.nodeid, entry):
                item.add_marker(pytest.mark.slow)
                used.add(entry)
    stale = [e for e in SLOW_TESTS if e.split("::")[0] in files and e not in used]
    if stale:
        raise pytest.UsageError("tests/conftest.py SLOW_TESTS lists tests that do not exist: "
                                + ", ".join(stale))
