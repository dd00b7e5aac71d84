"""``nacc bench``: every codec on the same input, checked, side by side; outputs as asked."""
from __future__ import annotations

import builtins
import json
import lzma

import numpy as np
import pytest
from click.testing import CliRunner

from nacc import compare
from nacc.cli import main


@pytest.fixture
def clip(tmp_path, dev_clip):
    p = tmp_path / "clip.npy"
    np.save(p, dev_clip[:40])
    return p


def test_bench_table_json_markdown(tmp_path, clip):
    r = CliRunner().invoke(main, ["bench", str(clip), "--predictor", "prevframe,uniform",
                                  "--against", "xz,lzma,zstd,bz2", "-q",
                                  "--json", str(tmp_path / "b.json"),
                                  "--markdown", str(tmp_path / "b.md")])
    assert r.exit_code == 0, r.output
    assert "commaVQ baseline layout" in r.output and "reshaped to (-1, 128)" in r.output
    for label in ("nacc prevframe", "nacc uniform", "xz -9e", "lzma", "zstd", "bz2"):
        assert label in r.output
    d = json.loads((tmp_path / "b.json").read_text())
    rows = {row["codec"]: row for row in d["rows"]}
    assert d["n_tokens"] == 40 * 128 and d["reference"] == "nacc prevframe"
    assert rows["nacc-prevframe"]["encode_vs_nacc"] == 1.0
    # nacc's row is the whole archive, as `nacc compress` writes it
    import nacc

    assert rows["nacc-prevframe"]["bytes"] == len(nacc.compress(
        np.load(clip), predictor="prevframe", name="clip.npy"))
    # the lzma row is exactly commaVQ's baseline compress.py
    tokens = np.load(clip).astype(np.int16).reshape(-1, 128).T.ravel().tobytes()
    assert rows["lzma"]["bytes"] == len(lzma.compress(tokens))
    for row in d["rows"]:
        assert row["rate"] == pytest.approx(row["tokens"] * 10 / 8 / row["bytes"])
    md = (tmp_path / "b.md").read_text()
    assert md.startswith("| codec | bytes | rate | bits/token |") and "| nacc uniform |" in md


def test_missing_codec_is_skipped_with_a_line(monkeypatch, clip):
    real_import = builtins.__import__

    def no_brotli(name, *a, **k):
        if name == "brotli":
            raise ImportError(name)
        return real_import(name, *a, **k)

    monkeypatch.setattr(builtins, "__import__", no_brotli)
    monkeypatch.setattr(compare.shutil, "which", lambda prog: None)
    r = CliRunner().invoke(main, ["bench", str(clip), "--predictor", "uniform", "-q",
                                  "--against", "brotli,zpaq,xz"])
    assert r.exit_code == 0, r.output
    assert "brotli: skipped (neither the brotli module nor brotli is installed)" in r.output
    assert "zpaq: skipped (the zpaq program is not installed)" in r.output
    assert "xz -9e (Python lzma)" in r.output      # falls back to the binding


def test_plot(tmp_path, clip):
    pytest.importorskip("matplotlib", reason="--plot needs the 'plot' extra (matplotlib)")
    out = tmp_path / "b.png"
    r = CliRunner().invoke(main, ["bench", str(clip), "--predictor", "prevframe", "-q",
                                  "--against", "lzma", "--plot", str(out)])
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 20000


def test_code_lengths_match_archive(clip):
    rep = compare.run_bench([str(clip)], [], ["prevframe"], want_bits=True)
    row = rep.rows[0]
    ideal = sum(row.bits_per_frame) / 8
    assert len(row.bits_per_frame) == 40 and np.asarray(rep.heatmap).shape == (8, 16)
    assert ideal <= row.bytes <= ideal * 1.01 + 200       # rANS is within 1% + header


def test_bench_errors(tmp_path, clip):
    r = CliRunner().invoke(main, ["bench", str(clip), "--against", "gzip9"])
    assert r.exit_code == 2 and "unknown codec 'gzip9'" in r.output
    (tmp_path / "bad.npy").write_bytes(b"nope")
    r = CliRunner().invoke(main, ["bench", str(tmp_path / "bad.npy"), "-q"])
    assert r.exit_code == 1 and f"nacc: {tmp_path / 'bad.npy'}: " in r.output


def test_bench_frame_shape_option(clip):
    r = CliRunner().invoke(main, ["bench", str(clip), "--frame-shape", "8x", "--against",
                                  "none", "-q"])
    assert r.exit_code == 2
    assert "Invalid value for '--frame-shape': '8x' is not HxW, e.g. 8x16" in r.output
    r = CliRunner().invoke(main, ["bench", str(clip), "--frame-shape", "0x16", "--against",
                                  "none", "-q"])
    assert r.exit_code == 2 and "'0x16' is not HxW" in r.output


def test_parse_frame_shape():
    from nacc.codec import parse_frame_shape

    assert parse_frame_shape("8x16") == (8, 16)
    assert parse_frame_shape("2X3") == (2, 3)
    assert parse_frame_shape(None) is None
    for bad in ("8", "8x16x1", "ax2", "-1x4", ""):
        with pytest.raises(ValueError, match=f"^{bad!r} is not HxW, e.g. 8x16$"):
            parse_frame_shape(bad)
