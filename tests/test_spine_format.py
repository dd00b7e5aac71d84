"""Round trips, the container format, damage detection and golden archives."""
from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import golden_bytes, regenerating_golden
from nacc import api, codec, container, npyio
from nacc.errors import NaccError

GOLDEN = Path(__file__).parent / "golden"


# -- round trips ---------------------------------------------------------------------------
@st.composite
def token_arrays(draw):
    vocab = draw(st.sampled_from([2, 3, 64, 1024, 2048, 65536]))
    dtype = draw(st.sampled_from(["<i2", "<i4", "<i8", "<u2", ">i4"]))
    if dtype in ("<i2",) and vocab > 32768:
        vocab = 32768
    t = draw(st.integers(1, 4))
    h = draw(st.integers(1, 4))
    w = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    arr = rng.integers(0, vocab, size=(t, h, w))
    arr.flat[0] = 0
    arr.flat[-1] = vocab - 1
    flat = draw(st.booleans())
    arr = arr.reshape(t, h * w) if flat else arr
    fortran = draw(st.booleans())
    out = arr.astype(np.dtype(dtype))
    return (np.asfortranarray(out) if fortran else out), vocab


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(token_arrays(), st.sampled_from(["uniform", "prevframe"]))
def test_round_trip_random_arrays(data, predictor):
    arr, vocab = data
    raw = npyio.save_bytes(arr)
    npy = npyio.parse_npy(raw, "x")
    opts = codec.Options(predictor, (), vocab, None)
    archive = b"".join(codec.compress_segments([("x.npy", npy)], opts))
    (name, restored), = codec.decompress_archive(archive)
    assert name == "x.npy" and restored == raw


def test_real_clip_round_trip_is_byte_identical(dev_clip):
    raw = Path(__file__).parent.joinpath("data", "commavq_dev.npy").read_bytes()
    npy = npyio.parse_npy(raw, "dev")
    archive = b"".join(codec.compress_segments([("commavq_dev.npy", npy)], codec.Options()))
    (_, restored), = codec.decompress_archive(archive)
    assert restored == raw


def test_non_canonical_npy_header_is_kept_verbatim():
    arr = np.arange(12, dtype=np.int16).reshape(3, 4)
    raw = npyio.save_bytes(arr)
    # same header with extra spaces (what an old writer might produce), still valid npy
    hlen = struct.unpack("<H", raw[8:10])[0]
    header = raw[10:10 + hlen].rstrip(b"\n") + b" " * 64 + b"\n"
    odd = raw[:8] + struct.pack("<H", len(header)) + header + raw[10 + hlen:]
    np.testing.assert_array_equal(np.load(io.BytesIO(odd)), arr)
    opts = codec.Options("prevframe", (), 16, None)
    archive = b"".join(codec.compress_segments([("o.npy", npyio.parse_npy(odd, "o"))], opts))
    assert list(codec.decompress_archive(archive))[0][1] == odd


def test_threads_do_not_change_the_bytes(dev_clip):
    segs = [(f"s{i}.npy", npyio.from_array(dev_clip[i * 20:(i + 1) * 20])) for i in range(3)]
    opts = codec.Options("prevframe")
    one = b"".join(codec.compress_segments(segs, opts, threads=1))
    two = b"".join(codec.compress_segments(segs, opts, threads=2))
    assert one == two
    assert [d for _, d in codec.decompress_archive(one, threads=2)] == \
        [npyio.npy_bytes(s) for _, s in segs]


def test_segments_decode_independently(dev_clip):
    segs = [(f"s{i}.npy", npyio.from_array(dev_clip[i * 7:(i + 1) * 7])) for i in range(3)]
    archive = b"".join(codec.compress_segments(segs, codec.Options("prevframe")))
    header, pos = container.read_header(archive)
    offsets = [pos]
    for _ in range(3):
        _, pos = container.read_block(archive, pos, header)
        offsets.append(pos)
    block, _ = container.read_block(archive, offsets[2], header)  # the third, alone
    assert codec.decode_block(block, header) == [("s2.npy", npyio.npy_bytes(segs[2][1]))]


# -- bad input -----------------------------------------------------------------------------
@pytest.mark.parametrize("arr,msg", [
    (np.array([[0, 1024]], np.int16), "token id 1024 >= vocabulary size 1024"),
    (np.array([[0, -1]], np.int16), "negative token id -1"),
    (np.zeros((2, 3), np.float32), "not an integer type"),
    (np.zeros((0, 8, 16), np.int16), "empty array"),
    (np.zeros(5, np.int16), "has 1 dimensions"),
    (np.zeros((2, 2, 2, 2), np.int16), "has 4 dimensions"),
])
def test_bad_arrays_are_refused(arr, msg):
    with pytest.raises(NaccError, match=msg):
        api.compress(arr, predictor="uniform")


def test_object_and_non_npy_inputs_are_refused():
    buf = io.BytesIO()
    np.save(buf, np.array([[1, 2]], dtype=object), allow_pickle=True)
    with pytest.raises(NaccError, match="object arrays"):
        npyio.parse_npy(buf.getvalue(), "obj.npy")
    with pytest.raises(NaccError, match="not a .npy file"):
        npyio.parse_npy(b"hello", "x.npy")
    with pytest.raises(NaccError, match="data is"):
        npyio.parse_npy(npyio.save_bytes(np.zeros((3, 4), np.int16))[:-1], "t.npy")


def _small_archive(small_clip) -> bytes:
    return api.compress(small_clip[:2, :2, :4], predictor="prevframe", name="a.npy")


def test_every_single_byte_change_is_detected(small_clip):
    archive = _small_archive(small_clip)
    assert len(archive) < 200
    for i in range(len(archive)):
        for flip in (0x01, 0x80, 0xFF):
            bad = bytearray(archive)
            bad[i] ^= flip
            with pytest.raises(NaccError):
                list(codec.decompress_archive(bytes(bad)))


def test_every_truncation_and_extension_is_detected(small_clip):
    archive = _small_archive(small_clip)
    for n in range(len(archive)):
        with pytest.raises(NaccError):
            list(codec.decompress_archive(archive[:n]))
    with pytest.raises(NaccError, match="trailing"):
        list(codec.decompress_archive(archive + b"\0"))


def _with_header(predictor="prevframe", version=container.VERSION, precision=24, n_seg=1):
    h = container.Header(predictor, {}, b"", precision, n_seg)
    raw = container.pack_header(h)
    return raw[:4] + bytes([version]) + raw[5:]


def test_magic_version_predictor_errors(small_clip):
    archive = _small_archive(small_clip)
    _, pos = container.read_header(archive)
    body = archive[pos:]
    with pytest.raises(NaccError, match="bad magic"):
        list(codec.decompress_archive(b"PK\x03\x04" + archive[4:]))
    with pytest.raises(NaccError, match="unsupported archive version 9"):
        list(codec.decompress_archive(_with_header(version=9) + body))
    with pytest.raises(NaccError, match="unknown predictor 'zz'"):
        list(codec.decompress_archive(_with_header("zz") + body))


def test_hostile_header_is_an_error_not_an_allocation():
    seg = container.Segment("h.npy", "<i2", False, (10**12 // 128, 128), (8, 16), 1024, 0)
    block = container.Block(container.CODED, (seg,), np.zeros(1, np.uint32))
    archive = _with_header() + container.pack_block(block, 2)   # v3 would not pad 10**12
    with pytest.raises(NaccError, match="exceeds the limit"):
        list(codec.decompress_archive(archive))
    many = container.pack_header(container.Header("prevframe", {}, b"", 24, 10**9))
    with pytest.raises(NaccError, match="segment count"):
        list(codec.decompress_archive(many))


def test_model_hash_mismatch_is_refused(small_clip):
    archive = _small_archive(small_clip)
    header, pos = container.read_header(archive)
    forged = container.pack_header(container.Header(
        header.predictor, header.params, b"\x01" * 32, header.precision, 1)) + archive[pos:]
    with pytest.raises(NaccError, match="model"):
        list(codec.decompress_archive(forged))


# -- golden archives -----------------------------------------------------------------------
def golden_cases(dev_clip):
    """name -> (segments, options) of every committed golden archive of today's format."""
    clip = np.ascontiguousarray(dev_clip[:12])
    one = [("clip.npy", npyio.from_array(clip))]
    parts = [(f"part{i}.npy", npyio.from_array(clip[4 * i:4 * i + 4])) for i in range(3)]
    noise = np.random.default_rng(5).integers(0, 37, (6, 5, 6), dtype=np.int64)
    cases = {
        "uniform-dev12": (one, codec.Options("uniform")),
        "prevframe-dev12": (one, codec.Options("prevframe")),
        "prevframe-v37-flat": ([("flat.npy", npyio.from_array(
            np.arange(3 * 30, dtype=np.uint16).reshape(3, 30) % 37))],
            codec.Options("prevframe", (), 37, (5, 6))),
        "prevframe-dev12-solid2": (parts, codec.Options("prevframe", solid=2)),
        "prevframe-v37-noise-stored": ([("noise.npy", npyio.from_array(noise))],
                                       codec.Options("prevframe", (), 37)),
        "cm-dev12": (one, codec.Options("cm", (("prior", "commavq-v2"),))),
        "cm-dev12-solid3": (parts, codec.Options("cm", (("prior", "commavq-v2"),), solid=3)),
        "cm-v3-dev12": (one, codec.Options("cm", (("prior", "commavq-v3"),))),
        "cm-v4-dev12": (one, codec.Options("cm", (("prior", "commavq-v4"),))),
        "cm-v5-dev12": (one, codec.Options("cm")),
        "prevframe-zeros12-padded": ([("zeros.npy", npyio.from_array(np.zeros_like(clip)))],
                                     codec.Options("prevframe")),
    }
    stored = sorted(p.stem for p in GOLDEN.glob("*.nacc"))
    assert regenerating_golden() or sorted(cases) == stored, \
        "every golden archive has a case, and every case a golden archive"
    return cases


def test_golden_archives_keep_decoding(dev_clip):
    """Committed archives decode to the same bytes, and today's encoder writes the same
    archive. Regenerate on purpose only: NACC_REGEN_GOLDEN=1 pytest tests/test_spine_format.py
    (a format change bumps container.VERSION and keeps the old goldens in golden/vN/)."""
    for name, (segments, opts) in golden_cases(dev_clip).items():
        path = GOLDEN / f"{name}.nacc"
        fresh = b"".join(codec.compress_segments(segments, opts))
        if regenerating_golden() and path.is_file() and path.read_bytes()[4] != fresh[4]:
            pytest.fail(f"{path} is version {path.read_bytes()[4]}: move it to "
                        f"golden/v{path.read_bytes()[4]}/ before regenerating")
        stored = golden_bytes(path, fresh)
        assert stored[4] == container.VERSION
        assert list(codec.decompress_archive(stored)) == \
            [(n, npyio.npy_bytes(s)) for n, s in segments], name
        assert fresh == stored, f"{name}: encoder output changed (bump the format version?)"


V2_GOLDEN = {   # golden/v2/ archive -> the golden case it was written from by format version 2
    "cm-dev12": "cm-dev12", "cm-dev12-solid3": "cm-dev12-solid3", "cm-v3-dev12": "cm-v3-dev12",
    "cm-v4-dev12": "cm-v4-dev12", "prevframe-dev12": "prevframe-dev12",
    "prevframe-dev12-solid2": "prevframe-dev12-solid2",
    "prevframe-v37-flat": "prevframe-v37-flat",
    "prevframe-v37-noise-stored": "prevframe-v37-noise-stored", "uniform-dev12": "uniform-dev12",
}


@pytest.mark.parametrize("name", sorted(V2_GOLDEN))
def test_version_2_archives_keep_decoding(name, dev_clip):
    """Archives written by format version 2 (golden/v2/, no pad) decode to their exact
    inputs, and re-packing their blocks as version 2 gives the same bytes."""
    stored = (GOLDEN / "v2" / f"{name}.nacc").read_bytes()
    assert stored[4] == 2
    segments, _ = golden_cases(dev_clip)[V2_GOLDEN[name]]
    assert list(codec.decompress_archive(stored)) == \
        [(n, npyio.npy_bytes(s)) for n, s in segments]
    header, blocks = container.read_archive(stored)
    assert header.version == 2
    assert container.pack_header(header) + b"".join(
        container.pack_block(b, 2) for b in blocks) == stored


def test_old_goldens_meet_the_payload_floor():
    """The floor that versions 1 and 2 must meet too: every old golden block with words is
    at least min_payload bytes, by a margin (the least ratio of payload to floor)."""
    ratios = []
    for p in sorted(GOLDEN.glob("v[12]/*.nacc")):
        _, blocks = container.read_archive(p.read_bytes())
        ratios += [4 * len(b.words) / container.min_payload(b.n_tokens, b.vocab)
                   for b in blocks if len(b.words)]
    assert len(ratios) == 14 and min(ratios) > 2, ratios


V1_GOLDEN = {   # archive -> segment name, frames of the dev clip or a formula, written by v1
    "uniform-dev12": "uniform-dev12.npy",
    "prevframe-dev12": "prevframe-dev12.npy",
    "prevframe-v37-flat": "prevframe-v37-flat.npy",
    "cm-dev12": "cm-dev12.npy",
}


@pytest.mark.parametrize("name", sorted(V1_GOLDEN))
def test_version_1_archives_keep_decoding(name, dev_clip):
    """Archives written by format version 1 (golden/v1/) decode to their exact inputs."""
    stored = (GOLDEN / "v1" / f"{name}.nacc").read_bytes()
    assert stored[4] == 1
    if name.startswith("prevframe-v37"):
        arr = np.arange(3 * 30, dtype=np.uint16).reshape(3, 30) % 37
    else:
        arr = np.ascontiguousarray(dev_clip[:12])
    assert list(codec.decompress_archive(stored)) == \
        [(V1_GOLDEN[name], npyio.npy_bytes(npyio.from_array(arr)))]
    header, blocks = container.read_archive(stored)
    assert header.n_blocks is None and [len(b.segments) for b in blocks] == [1]


def test_varints_round_trip():
    for n in (0, 1, 127, 128, 300, 2**32, 2**63):
        r = container._Reader(container._varint(n), "t")
        assert r.varint(2**64, "n") == n and r.done()


def test_crc_covers_payload(small_clip):
    archive = bytearray(_small_archive(small_clip))
    archive[-5] ^= 1  # last payload byte
    with pytest.raises(NaccError, match="payload checksum"):
        list(codec.decompress_archive(bytes(archive)))


def test_golden_regeneration_switch(tmp_path, monkeypatch):
    """Only NACC_REGEN_GOLDEN=1 rewrites goldens; a missing golden fails otherwise."""
    from conftest import golden_json, regenerating_golden

    path, entries = tmp_path / "g.bin", tmp_path / "g.json"
    for value in ("0", "", "true", "yes", "2"):
        monkeypatch.setenv("NACC_REGEN_GOLDEN", value)
        assert not regenerating_golden()
        with pytest.raises(pytest.fail.Exception, match="g.bin is missing"):
            golden_bytes(path, b"new")
        with pytest.raises(pytest.fail.Exception, match="g.json is missing"):
            golden_json(entries, "k", 1)
        assert not path.exists() and not entries.exists()
    monkeypatch.setenv("NACC_REGEN_GOLDEN", "1")
    assert golden_bytes(path, b"new") == b"new" and path.read_bytes() == b"new"
    assert golden_json(entries, "b", 2) == 2 and golden_json(entries, "a", [1]) == [1]
    assert entries.read_text() == '{\n "a": [\n  1\n ],\n "b": 2\n}\n'
    monkeypatch.delenv("NACC_REGEN_GOLDEN")
    assert golden_bytes(path, b"other") == b"new"
    assert golden_json(entries, "b", 3) == 2 and golden_json(entries, "c", 3) is None
