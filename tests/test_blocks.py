"""Blocks of format v2: solid groups (``--solid-group N``) and the uniform floor."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import cli_in_process
from nacc import api, codec, container, npyio
from nacc.errors import NaccError


def _segs(arrays, prefix="s"):
    return [(f"{prefix}{i}.npy", npyio.from_array(a)) for i, a in enumerate(arrays)]


def _archive(segments, **opts) -> bytes:
    return b"".join(codec.compress_segments(segments, codec.Options(**opts)))


# -- the worst-case floor: never more than the uniform code --------------------------------
@pytest.mark.parametrize("vocab,predictor", [(1024, "cm"), (37, "cm"), (37, "prevframe")])
def test_random_tokens_cost_exactly_the_uniform_code(vocab, predictor):
    """On random tokens the predictor would expand; the block is stored with the uniform
    table, so the archive differs from a ``uniform`` archive only by its header."""
    tokens = np.random.default_rng(vocab).integers(0, vocab, (40, 8, 16), dtype=np.int16)
    segs = _segs([tokens])
    mine = _archive(segs, predictor=predictor, vocab=vocab)
    base = _archive(segs, predictor="uniform", vocab=vocab)
    h_mine, (b_mine,) = container.read_archive(mine)
    h_base, (b_base,) = container.read_archive(base)
    assert b_mine.coding == container.UNIFORM and b_base.coding == container.CODED
    assert np.array_equal(b_mine.words, b_base.words)
    header_len = [container.read_header(a)[1] for a in (mine, base)]
    assert len(mine) - header_len[0] == len(base) - header_len[1]
    assert list(codec.decompress_archive(mine)) == [("s0.npy", npyio.npy_bytes(segs[0][1]))]


def test_random_commavq_clip_keeps_rate_above_0_99():
    tokens = np.random.default_rng(1).integers(0, 1024, (600, 8, 16), dtype=np.int16)
    archive = _archive(_segs([tokens]))
    assert tokens.size * 10 / 8 / len(archive) >= 0.998     # 96,000 payload bytes + 116
    (_, data), = codec.decompress_archive(archive)
    assert np.array_equal(npyio.parse_npy(data, "x").array, tokens)


def test_real_tokens_stay_coded_by_the_predictor(dev_clip):
    _, (block,) = container.read_archive(_archive(_segs([dev_clip[:20]])))
    assert block.coding == container.CODED


# -- solid groups ---------------------------------------------------------------------------
def test_plan_blocks_groups_runs_of_one_frame_shape(monkeypatch):
    shapes = [(4, 8, 16)] * 3 + [(4, 4, 4)] + [(4, 8, 16)] * 2
    segs = _segs([np.zeros(s, np.int16) for s in shapes])
    assert codec.plan_blocks(segs, codec.Options(solid=2)) == [[0, 1], [2], [3], [4, 5]]
    assert codec.plan_blocks(segs, codec.Options(solid=9)) == [[0, 1, 2], [3], [4, 5]]
    assert codec.plan_blocks(segs, codec.Options()) == [[k] for k in range(6)]
    monkeypatch.setattr(container, "MAX_TOKENS", 2 * 4 * 128)
    assert codec.plan_blocks(segs, codec.Options(solid=9)) == [[0, 1], [2], [3], [4, 5]]
    with pytest.raises(NaccError, match="solid group size 0"):
        codec.plan_blocks(segs, codec.Options(solid=0))


def test_solid_group_round_trips_and_codes_smaller(dev_clip):
    # frames 450-599 (real tokens; the default prior commavq-v5 saw them, as every dev frame)
    parts = _segs([dev_clip[450 + 30 * i:480 + 30 * i] for i in range(5)])
    alone = _archive(parts)
    solid = _archive(parts, solid=5)
    expect = [(n, npyio.npy_bytes(s)) for n, s in parts]
    assert list(codec.decompress_archive(solid)) == expect
    assert list(codec.decompress_archive(alone)) == expect
    header, blocks = container.read_archive(solid)
    assert (header.n_segments, header.n_blocks, len(blocks)) == (5, 1, 1)
    # the state carried across members pays: at least 3% smaller on real tokens
    assert len(solid) < 0.97 * len(alone)
    # a solid group codes exactly like the concatenated clip (one token video)
    whole = _archive(_segs([dev_clip[450:600]]))
    _, (one,) = container.read_archive(whole)
    assert np.array_equal(blocks[0].words, one.words)


def test_solid_bytes_do_not_depend_on_threads_and_decode_by_name(dev_clip):
    parts = _segs([dev_clip[10 * i:10 * i + 10] for i in range(5)], "p")
    opts = codec.Options("prevframe", solid=2)
    one = b"".join(codec.compress_segments(parts, opts, threads=1))
    two = b"".join(codec.compress_segments(parts, opts, threads=2))
    assert one == two
    assert [len(b.segments) for b in container.read_archive(one)[1]] == [2, 2, 1]
    arc = api.open(one)
    for name, npy in reversed(parts):      # members of a group in any order
        assert arc.read_bytes(name) == npyio.npy_bytes(npy)
    assert api.info(one).names == [n for n, _ in parts]


def test_every_single_byte_change_of_a_solid_archive_is_detected(small_clip):
    parts = _segs([small_clip[:2, :2, :4], small_clip[2:3, :2, :4]])
    archive = _archive(parts, predictor="prevframe", solid=2)
    assert len(archive) < 200
    for i in range(len(archive)):
        bad = bytearray(archive)
        bad[i] ^= 0x41
        with pytest.raises(NaccError):
            list(codec.decompress_archive(bytes(bad)))


def test_block_and_segment_counts_must_agree(small_clip):
    parts = _segs([small_clip[:2, :2, :4], small_clip[2:3, :2, :4]])
    archive = _archive(parts, predictor="prevframe")
    header, pos = container.read_header(archive)

    def forged(n_segments, n_blocks):
        return container.pack_header(container.Header(
            header.predictor, header.params, header.model_hash, header.precision,
            n_segments, n_blocks)) + archive[pos:]

    with pytest.raises(NaccError, match="blocks hold 2 segments, the header says 3"):
        container.read_archive(forged(3, 2))
    with pytest.raises(NaccError, match="block count = 2 exceeds the limit 1"):
        container.read_archive(forged(1, 2))
    with pytest.raises(NaccError, match="trailing bytes"):
        container.read_archive(forged(1, 1))


def test_cli_solid_group(tmp_path, dev_clip):
    d = tmp_path / "clips"
    d.mkdir()
    for i in range(4):
        np.save(d / f"c{i}.npy", dev_clip[20 * i:20 * i + 20])
    r = cli_in_process(["compress", "-q", "--solid-group", "3", "--predictor", "prevframe",
                        "clips"], tmp_path)
    assert r.exit_code == 0, r.output
    info = cli_in_process(["info", "clips.nacc"], tmp_path)
    assert "4 segment(s) in 2 block(s)" in info.output
    assert "solid group of 3 segments" in info.output
    assert "    c2.npy: <i2 (20, 8, 16)" in info.output
    r = cli_in_process(["decompress", "-q", "clips.nacc", "-o", "out"], tmp_path)
    assert r.exit_code == 0, r.output
    for i in range(4):
        assert (tmp_path / "out" / f"c{i}.npy").read_bytes() == (d / f"c{i}.npy").read_bytes()
    bad = cli_in_process(["compress", "--solid-group", "0", "clips"], tmp_path)
    assert bad.exit_code == 2 and "--solid-group" in bad.output
