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


def test_devclip_fingerprints_match_the_clip(dev_clip):
    """nacc/devclip-frames.u64 is the dev clip's frame fingerprints (nacc.fitted), one per
    frame and all distinct."""
    from nacc import fitted

    dev = fitted.dev_frames()
    np.testing.assert_array_equal(dev, fitted.fingerprints(dev_clip))
    assert len(set(dev.tolist())) == 600
    assert fitted.FITTED["the cm prior commavq-v5 (the default)"] == (0, 600)
    assert fitted.FITTED["the cm prior commavq-v4"] == (0, 450)


def test_bench_says_when_inputs_overlap_fitted_frames(tmp_path, dev_clip):
    """Frames 440-459 and 460-479, as two inputs: the report names the overlaps (the
    default prior saw all 40, commavq-v4 frames 440-449), marks them frame by frame, and the
    segment boundary; each general codec has one bits/token per segment.  Frames of no
    shipped fit (the clip with every token changed) raise no warning."""
    np.save(tmp_path / "a.npy", dev_clip[440:460])
    np.save(tmp_path / "b.npy", dev_clip[460:480])
    rep = compare.run_bench([str(tmp_path / "a.npy"), str(tmp_path / "b.npy")], ["lzma"],
                            ["uniform"])
    assert rep.boundaries == [0, 20]
    (what5, mask5), (what, mask) = rep.fitted
    assert what5 == "the cm prior commavq-v5 (the default)" and mask5 == [True] * 40
    assert what == "the cm prior commavq-v4"
    assert mask == [True] * 10 + [False] * 30
    assert ("WARNING: 10 of the 40 frames are training frames of the cm prior commavq-v4: "
            "rates there are not held-out rates (nacc.fitted)") in rep.text()
    assert ("WARNING: 40 of the 40 frames are training frames of the cm prior commavq-v5 "
            "(the default): rates there are not held-out rates (nacc.fitted)") in rep.text()
    lz = rep.rows[1].bits_per_frame
    assert len(set(lz[:20])) == 1 and len(set(lz[20:])) == 1 and lz[0] != lz[20]
    assert sum(lz) / 8 == pytest.approx(rep.rows[1].bytes)
    assert rep.as_json()["fitted"] == [{"what": what5, "frames": list(range(40))},
                                       {"what": what, "frames": list(range(10))}]
    np.save(tmp_path / "c.npy", (dev_clip[460:480].astype(np.int32) + 1) % 1024)
    held_out = compare.run_bench([str(tmp_path / "c.npy")], [], ["uniform"])
    assert held_out.fitted == [] and "WARNING" not in held_out.text()


def test_plot_tells_codecs_apart(tmp_path, dev_clip, monkeypatch):
    """Every general codec has its own line style and label; boundaries and fitted frames
    are drawn."""
    pytest.importorskip("matplotlib", reason="--plot needs the 'plot' extra (matplotlib)")
    np.save(tmp_path / "a.npy", dev_clip[440:460])
    np.save(tmp_path / "b.npy", dev_clip[460:480])
    rep = compare.run_bench([str(tmp_path / "a.npy"), str(tmp_path / "b.npy")],
                            ["lzma", "bz2", "zstd"], ["uniform"])
    plt = compare.pyplot()
    seen = {}
    real_close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig: seen.setdefault("fig", fig))
    compare.plot(rep, str(tmp_path / "p.png"))
    ax = seen["fig"].axes[0]
    labels = [ln.get_label() for ln in ax.get_lines()]
    general = [ln for ln in ax.get_lines() if ln.get_label().startswith(("lzma", "bz2", "zstd"))]
    assert len(general) == 3 and len({ln.get_linestyle() for ln in general}) == 3
    assert "segment boundary" in labels
    assert any(p.get_label().startswith("training frames of the cm prior commavq-v5")
               for p in ax.patches)
    real_close(seen["fig"])
