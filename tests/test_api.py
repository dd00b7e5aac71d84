"""The Python API: the README's examples run as written, and the API agrees with the CLI."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import numpy as np
import pytest

from conftest import ROOT

FENCE = re.compile(r"^```python\n(.*?)^```", re.S | re.M)


def _section(text: str, title: str) -> str:
    """The body of the markdown section ``title`` (any level) up to the next of its level."""
    m = re.search(rf"^(#+) {title}\s*$(.*?)(?=^\1 |\Z)", text, re.S | re.M)
    assert m, f"no {title!r} section"
    return m.group(2)


def api_examples() -> list[str]:
    """The fenced ```python blocks of README.md's "Python API" section (the test fails when
    the section or its examples disappear)."""
    return FENCE.findall(_section((ROOT / "README.md").read_text(), "Python API"))


def test_readme_examples_run(monkeypatch):
    section = _section((ROOT / "README.md").read_text(), "Python API")
    blocks = api_examples()
    # every fence of the section is a ```python block, and each is one of ``blocks``
    fences = re.findall(r"^```(.*)$", section, re.M)
    assert len(fences) % 2 == 0 and fences[1::2] == [""] * (len(fences) // 2), fences
    assert blocks and fences[0::2] == ["python"] * len(blocks), fences
    # the API's module docstring shows the same section, to the letter
    import nacc
    from nacc import api

    assert _section(api.__doc__ or "", "Python API").strip() == section.strip()
    # the examples use only public names of nacc
    used = set(re.findall(r"\bnacc\.(\w+)", "\n".join(blocks)))
    assert used and used <= set(nacc.__all__), used - set(nacc.__all__)
    monkeypatch.chdir(ROOT)          # the examples use repo-relative paths
    namespace: dict = {"__name__": "__readme__"}
    ran = 0
    for i, block in enumerate(blocks):
        exec(compile(block, f"README.md python block {i + 1}", "exec"), namespace)
        ran += 1
    assert ran == len(fences) // 2


def test_import_is_cheap():
    code = ("import sys, nacc; bad = [m for m in ('numba', 'torch', 'nacc.codec') "
            "if m in sys.modules]; assert not bad, bad; nacc.compress; "
            "assert 'nacc.api' in sys.modules")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


def test_api_matches_cli(tmp_path, dev_clip):
    from click.testing import CliRunner

    import nacc
    from nacc.cli import main

    clip = np.ascontiguousarray(dev_clip[:12])
    np.save(tmp_path / "clip.npy", clip)
    r = CliRunner().invoke(main, ["compress", "--predictor", "prevframe", "-q",
                                  str(tmp_path / "clip.npy")])
    assert r.exit_code == 0, r.output
    cli_bytes = (tmp_path / "clip.npy.nacc").read_bytes()
    assert nacc.compress(clip, predictor="prevframe", name="clip.npy") == cli_bytes
    restored = nacc.decompress(tmp_path / "clip.npy.nacc")
    assert restored.dtype == np.int16 and np.array_equal(restored, clip)
    with nacc.open(cli_bytes) as a:
        assert a.names == ["clip.npy"] and a.predictor == "prevframe"
        assert a.read_bytes("clip.npy") == (tmp_path / "clip.npy").read_bytes()
        with pytest.raises(KeyError, match="no segment"):
            a["nope.npy"]


def test_api_errors(tmp_path, small_clip):
    import nacc
    from nacc.errors import NaccError

    blob = nacc.compress_segments([("a.npy", small_clip), ("b.npy", small_clip)],
                                  predictor="uniform")
    with pytest.raises(NaccError, match="2 segments"):
        nacc.decompress(blob)
    with pytest.raises(NaccError, match="share a name"):
        nacc.compress_segments([("a.npy", small_clip), ("a.npy", small_clip)])
    with pytest.raises(NaccError, match="unsafe segment name"):
        nacc.compress_segments({"../x.npy": small_clip})
    with pytest.raises(NaccError, match="bad magic"):
        nacc.open(b"not an archive")
    path = tmp_path / "x.nacc"
    assert nacc.compress_to(path, small_clip, predictor="uniform") == path.stat().st_size
    with pytest.raises(NaccError, match="already exists"):
        nacc.compress_to(path, small_clip, predictor="uniform")
    assert nacc.info(path).names == ["x.npy"]
