"""Inputs users have: webdataset shards (streamed), .npz, directories; bad ones are named."""
from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest

from conftest import cli_in_process

NAMES = [f"b0c9d2329ad1606b_2018-08-02--08-34-47_{i}.npy" for i in range(3)]


def npy_bytes(arr) -> bytes:
    b = io.BytesIO()
    np.save(b, arr)
    return b.getvalue()


def make_shard(path, members: list[tuple[str, bytes]], mode="w:gz"):
    with tarfile.open(path, mode) as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))


def shard_members(dev_clip, n=3, frames=20):
    out = []
    for i in range(n):
        key = f"{i:06d}"
        out.append((f"{key}.json", json.dumps({"file_name": NAMES[i]}).encode()))
        out.append((f"{key}.token.npy", npy_bytes(dev_clip[i * frames:(i + 1) * frames])))
    return out


def cli(*args, cwd):
    return cli_in_process(args, cwd)


@pytest.fixture
def shard(tmp_path, dev_clip):
    p = tmp_path / "data-0000.tar.gz"
    make_shard(p, shard_members(dev_clip))
    return p


def test_shard_compresses_to_one_archive_named_by_file_name(tmp_path, shard, dev_clip):
    r = cli("compress", "-q", "--predictor", "prevframe", shard.name, cwd=tmp_path)
    assert r.exit_code == 0, r.output
    archive = tmp_path / "data-0000.tar.gz.nacc"
    import nacc

    info = nacc.info(archive)
    assert info.names == NAMES and info.dtypes == ["<i2"] * 3
    r = cli("decompress", archive.name, "-o", "out", cwd=tmp_path)
    assert r.exit_code == 0, r.output
    for i, name in enumerate(NAMES):
        assert (tmp_path / "out" / name).read_bytes() == npy_bytes(dev_clip[i * 20:(i + 1) * 20])
    assert not any(p.name.endswith(".token.npy") for p in tmp_path.rglob("*"))  # streamed


def test_shard_without_json_and_plain_tar(tmp_path, dev_clip):
    p = tmp_path / "x.tar"
    make_shard(p, [("k1.token.npy", npy_bytes(dev_clip[:5]))], mode="w")
    from nacc import inputs

    (name, npy), = inputs.segments_of(str(p))
    assert name == "k1.npy" and np.array_equal(npy.array, dev_clip[:5])


def test_npz_members_keep_their_bytes(tmp_path, dev_clip):
    np.savez_compressed(tmp_path / "clips.npz", first=dev_clip[:6], second=dev_clip[6:15])
    r = cli("compress", "-q", "--predictor", "prevframe", "clips.npz", cwd=tmp_path)
    assert r.exit_code == 0, r.output
    r = cli("decompress", "clips.npz.nacc", "-o", "out", cwd=tmp_path)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "out" / "first.npy").read_bytes() == npy_bytes(dev_clip[:6])
    assert (tmp_path / "out" / "second.npy").read_bytes() == npy_bytes(dev_clip[6:15])


def _fails(r, *parts):
    assert r.exit_code == 1, r.output
    for part in parts:
        assert part in r.output, r.output


def test_corrupt_shard_member_is_named(tmp_path, dev_clip):
    members = shard_members(dev_clip)
    members[3] = (members[3][0], b"\x93NUMPY garbage")
    make_shard(tmp_path / "bad.tar.gz", members)
    r = cli("compress", "bad.tar.gz", cwd=tmp_path)
    _fails(r, "nacc: bad.tar.gz: member 000001.token.npy:")
    assert not (tmp_path / "bad.tar.gz.nacc").exists()


def test_truncated_shard(tmp_path, shard):
    data = shard.read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(data[: len(data) // 2])
    r = cli("compress", "cut.tar.gz", cwd=tmp_path)
    _fails(r, "nacc: cut.tar.gz: truncated shard (the gzip data ends early)")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.tar.gz", "data-0000.tar.gz"]


def test_shard_bad_json_and_unsafe_names(tmp_path, dev_clip):
    make_shard(tmp_path / "j.tar", [("k.json", b"{"), ("k.token.npy", npy_bytes(dev_clip[:2]))],
               mode="w")
    _fails(cli("compress", "j.tar", cwd=tmp_path), "nacc: j.tar: member k.json: bad JSON")
    make_shard(tmp_path / "u.tar", [("k.json", b'{"file_name": "../evil.npy"}'),
                                    ("k.token.npy", npy_bytes(dev_clip[:2]))], mode="w")
    _fails(cli("compress", "u.tar", cwd=tmp_path), "unsafe segment name '../evil.npy'")
    make_shard(tmp_path / "e.tar", [("readme.txt", b"hi")], mode="w")
    _fails(cli("compress", "e.tar", cwd=tmp_path), "shard holds no KEY.token.npy members")


def test_directory_segment_of_wrong_shape(tmp_path, dev_clip):
    d = tmp_path / "segs"
    d.mkdir()
    np.save(d / "a.npy", dev_clip[:5])
    np.save(d / "b.npy", dev_clip[:5, :4, :4])
    _fails(cli("compress", "segs", cwd=tmp_path),
           "nacc: segs: b.npy: shape (5, 4, 4) does not match (5, 8, 16) of a.npy")
    np.save(d / "b.npy", dev_clip[:5].ravel())
    _fails(cli("compress", "segs", cwd=tmp_path),
           "nacc: segs: b.npy: shape (640,) is not a token video")
    np.save(d / "b.npy", dev_clip[:5].astype(np.float32))
    _fails(cli("compress", "segs", cwd=tmp_path), "nacc: segs: b.npy: dtype float32")
    assert not (tmp_path / "segs.nacc").exists()


def test_bad_npz(tmp_path):
    (tmp_path / "x.npz").write_bytes(b"PK\x03\x04 not really")
    _fails(cli("compress", "x.npz", cwd=tmp_path), "nacc: x.npz: not a readable .npz")
