"""Hostile and damaged archives (issue 12): refused at parse time with ``nacc: FILE:
message`` and exit 1, quickly, writing nothing; folder output all or nothing."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import cli_in_process
from nacc import codec, container, npyio
from nacc.errors import NaccError

HERE = Path(__file__).parent
CORPUS = HERE / "hostile" / "archives"
sys.path.insert(0, str(HERE / "hostile"))
import make_archives  # noqa: E402

EXPECTED = {
    "abs-name": "unsafe segment name '/tmp/x.npy': absolute name",
    "claims-2e24-tokens": "16777216 tokens claimed, but 2 payload words hold at most 1839902",
    "claims-2e28-tokens": "268435456 tokens claimed, but 0 payload words hold at most 1048576",
    "cm-model-nul": "not a model folder",
    "dotdot-name": "unsafe segment name 'a/../../x.npy': empty, '.' or '..' part in name",
    "dotted-predictor": "predictor name '..base' is not a registry name",
    "dup-names": "damaged archive: segment name 'a.npy' used twice",
    "empty-name": "unsafe segment name '': empty name",
    "escape-name": "unsafe segment name '\\x1b[31mred.npy': character '\\x1b' in name",
    "file-and-folder": "segment name 'a/b.npy' is both a file and a folder",
    "float-dtype": "dtype '<f8' is not an integer dtype",
    "garbage-dtype": "dtype 'garbage' is not an integer dtype",
    "huge-dtype": "dtype '<V3000000000' is not an integer dtype",
    "huge-number-params": "predictor params are not JSON",
    "many-free-blocks": "1048576 tokens (10 bits each) claimed in 1 payload words, under the "
                        "floor of 6120 bytes (min_payload of their fixed-width size)",
    "v2-vocab2-2e28-tokens": "268435456 tokens (1 bits each) claimed in 2 payload words, under "
                             "the floor of 132072 bytes",
    "v2-122m-tokens": "121386147 tokens (10 bits each) claimed in 230 payload words, under the "
                      "floor of 593706 bytes",
    "v2-v65536-tail": "1048576 tokens (16 bits each) claimed in 2 payload words, under the "
                      "floor of 9192 bytes",
    "v3-short-pad": "damaged archive: block: pad of 0 bytes, but 1536 tokens in 0 words need 320",
    "v3-long-pad": "damaged archive: block: pad length = 321 exceeds the limit 320",
    "v3-nonzero-pad": "damaged archive: block: pad bytes are not zero",
    "nested-params": "predictor params are not JSON",
    "nul-name": "unsafe segment name 'a\\x00b.npy': character '\\x00' in name",
    "wrap-shape": "shape (65536, 65536, 65536, 65536) is not a video of 8x16 frames",
    "zero-shape": "shape (0, 8, 16) is not a video of 8x16 frames",
}


def test_corpus_is_what_the_generator_writes():
    stored = {p.stem: p.read_bytes() for p in CORPUS.glob("*.nacc")}
    assert stored == make_archives.cases()
    assert sorted(stored) == sorted(EXPECTED)
    assert all(len(b) < 1024 for k, b in stored.items() if k != "nested-params"
               and k != "huge-number-params")


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("command", ["decompress", "test", "info"])
def test_hostile_archive_is_refused_cleanly(tmp_path, name, command):
    src = tmp_path / f"{name}.nacc"
    src.write_bytes((CORPUS / f"{name}.nacc").read_bytes())
    t0 = time.perf_counter()
    r = cli_in_process([command, src.name], tmp_path)
    assert time.perf_counter() - t0 < 1.0
    assert "\x1b" not in r.output and "\x00" not in r.output
    if command == "info" and name == "cm-model-nul":     # info reads headers only
        assert r.exit_code == 0 and "'model': 'm\\x00x'" in r.output, r.output
        return
    assert r.exit_code == 1, r.output
    lines = r.output.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"nacc: {src.name}: "), r.output
    assert EXPECTED[name] in lines[0]
    assert "\x1b" not in r.output and "\x00" not in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [src.name]


# -- folder output -------------------------------------------------------------------------
def _multi(names, tokens):
    segs = [(n, npyio.from_array(tokens[2 * i:2 * i + 2])) for i, n in enumerate(names)]
    return b"".join(codec.compress_segments(segs, codec.Options("prevframe"))), segs


def test_a_failure_part_way_leaves_nothing(tmp_path, dev_clip, monkeypatch):
    archive, segs = _multi(["a.npy", "sub/b.npy", "c.npy"], dev_clip)
    (tmp_path / "x.nacc").write_bytes(archive)
    real = codec.restore_npy
    calls = []

    def failing(seg, tokens):            # the third segment fails to decode
        calls.append(seg.name)
        if seg.name == "c.npy":
            raise NaccError("segment 'c.npy': decoded data checksum mismatch")
        return real(seg, tokens)

    monkeypatch.setattr(codec, "restore_npy", failing)
    r = cli_in_process(["decompress", "x.nacc", "-o", "out/deep"], tmp_path)
    assert r.exit_code == 1
    assert r.output == "nacc: x.nacc: segment 'c.npy': decoded data checksum mismatch\n"
    assert calls == ["a.npy", "sub/b.npy", "c.npy"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.nacc"]
    monkeypatch.setattr(codec, "restore_npy", real)
    r = cli_in_process(["decompress", "x.nacc", "-o", "out/deep"], tmp_path)
    assert r.exit_code == 0, r.output
    for name, npy in segs:
        assert (tmp_path / "out/deep" / name).read_bytes() == npyio.npy_bytes(npy)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["deep"]


def test_name_too_long_leaves_nothing(tmp_path, dev_clip):
    archive, _ = _multi(["a.npy", "b" * 300 + ".npy"], dev_clip)
    (tmp_path / "x.nacc").write_bytes(archive)
    r = cli_in_process(["decompress", "x.nacc", "-o", "out"], tmp_path)
    assert (r.exit_code, r.output) == (1, "nacc: x.nacc: File name too long\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.nacc"]


def test_existing_folder_merge_and_clash(tmp_path, dev_clip):
    archive, segs = _multi(["a.npy", "sub/b.npy"], dev_clip)
    (tmp_path / "x.nacc").write_bytes(archive)
    out = tmp_path / "out"
    (out / "sub").mkdir(parents=True)
    (out / "keep.txt").write_text("mine")
    (out / "sub" / "b.npy").write_bytes(b"old")
    r = cli_in_process(["decompress", "x.nacc", "-o", "out"], tmp_path)
    assert (r.exit_code, r.output) == (1, "nacc: x.nacc: out/sub/b.npy already exists "
                                          "(use -f to overwrite)\n")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == ["keep.txt", "sub",
                                                                       "sub/b.npy"]
    r = cli_in_process(["decompress", "-f", "x.nacc", "-o", "out"], tmp_path)
    assert r.exit_code == 0, r.output
    assert (out / "sub" / "b.npy").read_bytes() == npyio.npy_bytes(segs[1][1])
    assert (out / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "x.nacc"]


def test_a_symlink_in_the_output_folder_is_not_followed(tmp_path, dev_clip):
    archive, _ = _multi(["a.npy", "sub/b.npy"], dev_clip)
    (tmp_path / "x.nacc").write_bytes(archive)
    outside = tmp_path / "outside"
    outside.mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "sub").symlink_to(outside)
    r = cli_in_process(["decompress", "-f", "x.nacc", "-o", "out"], tmp_path)
    assert (r.exit_code, r.output) == (1, "nacc: x.nacc: out/sub is a symlink or a file; "
                                          "refusing to write through it\n")
    assert list(outside.iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["sub"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "outside", "x.nacc"]


def test_writer_refuses_names_the_reader_refuses(dev_clip):
    for names, msg in ((["a", "a/b.npy"], "segment name 'a/b.npy' is both a file and a folder"),
                       (["\x1b.npy"], "unsafe segment name '\\x1b.npy': character '\\x1b'")):
        segs = [(n, npyio.from_array(dev_clip[:2])) for n in names]
        with pytest.raises(NaccError) as e:
            b"".join(codec.compress_segments(segs, codec.Options("prevframe")))
        assert msg in str(e.value)


# -- payload floor -------------------------------------------------------------------------
def test_floor_holds_for_the_likeliest_symbol():
    """The bound of container.floor_tokens against real rANS streams of the likeliest
    possible token (frequency 2**24 - (V - 1), laid out last so that no tail is free)."""
    from nacc.kernels.cpu import rans

    for v in (2, 37, 1024):
        for n in (10, 100_000, 3_000_000):
            f = (1 << 24) - (v - 1)
            w = len(rans.encode(np.full(n, v - 1, np.uint32), np.full(n, f, np.uint32), 24))
            assert n <= container.floor_tokens(w, v, container.CODED)
    assert container.floor_tokens(9, 1024, container.CODED) == 4493799
    assert container.floor_tokens(0, 1024, container.CODED) == 0
    assert container.floor_tokens(2, 1024, container.UNIFORM) == 17 + 33


def test_a_constant_video_codes_to_no_words_and_is_padded_to_the_floor():
    """A constant video codes to no rANS words; version 3 pads it to min_payload (1 KiB for
    its first 6:1 of 10-bit tokens, 1/256 of the rest) and decodes it without the predictor,
    at any length."""
    x = np.zeros((9000, 8, 16), np.int16)               # 1,152,000 tokens
    segs = [("z.npy", npyio.from_array(x))]
    archive = b"".join(codec.compress_segments(segs, codec.Options("prevframe")))
    _, (block,) = container.read_archive(archive)
    assert len(block.words) == 0
    assert container.min_payload(1152000, 1024) == 1024 + (11520000 - 49152 + 2047) // 2048
    assert container.min_payload(1152000, 1024) == 6625
    assert len(archive) == 64 + 2 + 6625                 # the 64 bytes of v2, pad_len, pad
    (_, data), = codec.decompress_archive(archive)
    assert data == npyio.npy_bytes(segs[0][1])


def test_the_floor_bounds_tokens_per_archive_byte():
    """min_payload in numbers: 1/MAX_RATIO of fixed-width bits up to FLOOR_HEAD bytes and
    1/LONG_RATIO beyond, rounded up; an archive of B <= FLOOR_HEAD bytes holds fewer than
    8 * MAX_RATIO * B / token_bits tokens whatever its words, and the floor is subadditive."""
    assert (container.MAX_RATIO, container.FLOOR_HEAD, container.LONG_RATIO) == (6, 1024, 256)
    assert [container.token_bits(v) for v in (2, 3, 16, 17, 1024, 1025, 65536)] == \
        [1, 2, 4, 5, 10, 11, 16]
    assert [container.min_payload(n, 1024) for n in (0, 1, 4, 5, 1536, 4915, 4916, 4917)] == \
        [0, 1, 1, 2, 320, 1024, 1025, 1025]
    assert container.min_payload(153600, 1024) == 1750     # a still commaVQ segment
    assert container.min_payload(1 << 28, 2) == 132072
    for n in (1, 4915, 4916, 10 ** 6):
        for m in (1, 4915, 4916, 10 ** 6):
            assert (container.min_payload(n, 1024) + container.min_payload(m, 1024)
                    >= container.min_payload(n + m, 1024))
    assert [container.pad_bytes(1536, 1024, w) for w in (0, 79, 80, 500)] == [320, 4, 0, 0]
    for w, n in ((0, 1), (3, 17), (100, 1000)):
        seg = container.Segment("a.npy", "<i2", False, (n, 1, 1), (1, 1), 1024, 0)
        packed = container.pack_block(container.Block(container.CODED, (seg,),
                                                      np.zeros(w, np.uint32)))
        assert len(packed) >= container.min_payload(n, 1024)


# -- models --------------------------------------------------------------------------------
def test_cm_model_folder_naming_cm_is_an_error(tmp_path):
    from nacc.predictors import base

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "config.json").write_text('{"arch": "cm"}')
    with pytest.raises(NaccError, match="config arch 'cm' is not a neural model"):
        base.build("cm", 1024, (8, 16), {"model": str(tmp_path / "m")})


def test_broken_priors_json_is_an_error(tmp_path, monkeypatch):
    from nacc.predictors import cm

    (tmp_path / "priors.json").write_text('{"priors": {"p": {"vocab": 1024, "tree": 5}}}')
    monkeypatch.setattr(cm, "PRIOR_DIR", str(tmp_path))
    with pytest.raises(NaccError, match="malformed entry for prior 'p'"):
        cm.load_prior("p", 1024)
    (tmp_path / "priors.json").write_text("{")
    with pytest.raises(NaccError, match="priors.json: not JSON"):
        cm.load_prior("p", 1024)


def test_missing_model_folder_hints_at_model_option(tmp_path, dev_clip):
    header = container.Header("transformer", {"model": "mymodel"}, b"\x00" * 32, 24, 1, 1)
    seg = container.Segment("a.npy", "<i2", False, (2, 8, 16), (8, 16), 1024, 0)
    archive = container.pack_header(header) + container.pack_block(
        container.Block(container.CODED, (seg,), np.zeros(3, np.uint32)))
    (tmp_path / "a.npy.nacc").write_bytes(archive)
    r = cli_in_process(["decompress", "a.npy.nacc"], tmp_path)
    assert r.exit_code == 1
    assert r.output == ("nacc: a.npy.nacc: mymodel: no config.json (not a model folder) "
                        "(the archive names the model folder 'mymodel' as given when it was "
                        "compressed, and no model of the zoo has its hash; pass --model "
                        "FOLDER)\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.npy.nacc"]


# -- signals -------------------------------------------------------------------------------
def test_sigterm_during_compress_leaves_no_tmp(tmp_path, dev_clip):
    np.save(tmp_path / "c.npy", np.tile(dev_clip[:100], (20, 1, 1)))
    code = ("import sys, time; from nacc import fileio\n"
            "def slow():\n    yield b'x'\n    print('ready', flush=True)\n    time.sleep(60)\n"
            "    yield b'y'\n"
            "fileio.write_atomic(sys.argv[1], slow(), False)\n")
    env = dict(os.environ, PYTHONPATH=str(HERE.parent))
    p = subprocess.Popen([sys.executable, "-c", code, "out.nacc"], cwd=tmp_path, env=env,
                         stdout=subprocess.PIPE)
    assert p.stdout.readline() == b"ready\n"
    assert any(n.name.endswith(".tmp") for n in tmp_path.iterdir())
    p.send_signal(signal.SIGTERM)
    assert p.wait(30) == 128 + signal.SIGTERM
    assert sorted(n.name for n in tmp_path.iterdir()) == ["c.npy"]
