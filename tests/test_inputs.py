"""Inputs users have: webdataset shards (streamed), .npz, directories; bad ones are named."""
from __future__ import annotations

import io
import json
import tarfile

import numpy as np
import pytest

from conftest import cli_in_process
from nacc.errors import NaccError

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


# -- integrity: what a shard may and may not be ------------------------------------------------
def _tar_bytes(members, fmt=tarfile.USTAR_FORMAT) -> bytes:
    b = io.BytesIO()
    with tarfile.open(fileobj=b, mode="w", format=fmt) as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return b.getvalue()


def _names_and_bytes(path):
    from nacc import inputs

    return [(n, s.prefix + s.data) for n, s in inputs.segments_of(str(path))]


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
@pytest.mark.parametrize("pack", ["tar", "gz", "gz-two-streams", "bz2", "xz"])
def test_shard_formats_are_read_exactly(tmp_path, dev_clip, fmt, pack):
    import bz2
    import gzip
    import lzma

    deep = "d" * 120 + "/" + "k" * 120                 # a long name: GNU or pax extension
    members = shard_members(dev_clip, n=2, frames=4)
    if fmt != tarfile.USTAR_FORMAT:
        members.append((f"{deep}.json", json.dumps({"file_name": "long.npy"}).encode()))
        members.append((f"{deep}.token.npy", npy_bytes(dev_clip[50:53])))
    raw = _tar_bytes(members, fmt)
    data = {"tar": lambda: raw, "gz": lambda: gzip.compress(raw),
            "gz-two-streams": lambda: gzip.compress(raw[:3000]) + gzip.compress(raw[3000:]),
            "bz2": lambda: bz2.compress(raw), "xz": lambda: lzma.compress(raw)}[pack]()
    p = tmp_path / "s.tar"
    p.write_bytes(data)
    got = _names_and_bytes(p)
    want = [(NAMES[0], npy_bytes(dev_clip[:4])), (NAMES[1], npy_bytes(dev_clip[4:8]))]
    if fmt != tarfile.USTAR_FORMAT:
        want.append(("long.npy", npy_bytes(dev_clip[50:53])))
    assert got == want


@pytest.mark.parametrize("cut", ["header", "data", "marker", "gzip-trailer"])
def test_truncated_shard_at_each_place_is_refused(tmp_path, dev_clip, cut):
    import gzip

    members = shard_members(dev_clip, n=3, frames=4)
    raw = _tar_bytes(members)
    offsets = []
    with tarfile.open(fileobj=io.BytesIO(raw)) as t:
        offsets = [(m.offset, m.offset_data, m.size) for m in t]
    end = offsets[-1][1] + offsets[-1][2] + (-offsets[-1][2] % 512)
    at = {"header": offsets[4][0] + 100, "data": offsets[3][1] + 300, "marker": end + 512,
          "gzip-trailer": None}[cut]
    if at is None:
        data = gzip.compress(raw)[:-4]                 # the length field of the trailer
    else:
        data = gzip.compress(raw[:at])                 # a whole gzip stream of a cut tar
    (tmp_path / "c.tar.gz").write_bytes(data)
    r = cli("compress", "c.tar.gz", cwd=tmp_path)
    msg = {"header": f"truncated shard (it ends inside a tar header at tar byte {at})",
           "data": f"truncated shard (it ends inside member 000001.token.npy at tar byte {at})",
           "marker": f"truncated shard (it ends inside the end-of-archive marker at tar byte "
                     f"{end + 512})",
           "gzip-trailer": "truncated shard (the gzip data ends early)"}[cut]
    assert r.exit_code == 1 and r.output == f"nacc: c.tar.gz: {msg}\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.tar.gz"]


def test_shard_cut_at_a_member_boundary_is_refused_not_shortened(tmp_path, dev_clip):
    raw = _tar_bytes(shard_members(dev_clip, n=3, frames=4))
    with tarfile.open(fileobj=io.BytesIO(raw)) as t:
        fourth = [m.offset for m in t][4]
    (tmp_path / "c.tar").write_bytes(raw[:fourth])
    r = cli("compress", "--rm", "c.tar", cwd=tmp_path)
    assert r.exit_code == 1
    assert r.output == f"nacc: c.tar: truncated shard (it ends inside a tar header at tar byte " \
                       f"{fourth})\n"
    assert (tmp_path / "c.tar").read_bytes() == raw[:fourth]


def test_shard_members_must_pair_when_there_are_jsons(tmp_path, dev_clip):
    from nacc import inputs

    members = shard_members(dev_clip, n=2, frames=4)
    (tmp_path / "a.tar").write_bytes(_tar_bytes([m for m in members if m[0] != "000001.json"]))
    with pytest.raises(NaccError) as e:
        inputs.segments_of(str(tmp_path / "a.tar"))
    assert str(e.value) == ("member 000001.token.npy has no 000001.json beside it "
                            "(a damaged shard?)")
    twice = members + [("000001.json", b"{}")]
    (tmp_path / "b.tar").write_bytes(_tar_bytes(twice))
    with pytest.raises(NaccError) as e:
        inputs.segments_of(str(tmp_path / "b.tar"))
    assert str(e.value) == "member 000001.json: key '000001' appears twice"
    no_json = [m for m in members if m[0].endswith(".npy")]
    (tmp_path / "c.tar").write_bytes(_tar_bytes(no_json))
    assert [n for n, _ in _names_and_bytes(tmp_path / "c.tar")] == ["000000.npy", "000001.npy"]


@pytest.mark.parametrize("file_name,msg", [
    ("a\nb.npy", "member k.token.npy: unsafe segment name 'a\\nb.npy'"),
    ("a\x1b[31m.npy", "member k.token.npy: unsafe segment name 'a\\x1b[31m.npy'"),
    ("/etc/x.npy", "member k.token.npy: unsafe segment name '/etc/x.npy'"),
    ("x" * 256 + ".npy", "member k.token.npy: unsafe segment name '" + "x" * 77 + "'..."),
    (".", "member k.token.npy: unsafe segment name '.'"),
])
def test_shard_names_that_cannot_be_file_names_are_refused(tmp_path, dev_clip, file_name, msg):
    from nacc import inputs

    members = [("k.json", json.dumps({"file_name": file_name}).encode()),
               ("k.token.npy", npy_bytes(dev_clip[:2]))]
    (tmp_path / "u.tar").write_bytes(_tar_bytes(members))
    with pytest.raises(NaccError) as e:
        inputs.segments_of(str(tmp_path / "u.tar"))
    assert str(e.value) == msg


def test_damaged_shard_is_refused_by_datasets(tmp_path):
    from test_hostile_inputs import CORPUS

    from nacc.training.datasets import DatasetError, iter_segments

    with pytest.raises(DatasetError) as e:
        list(iter_segments([CORPUS / "crc.tar.gz"]))
    assert str(e.value) == (f"{CORPUS / 'crc.tar.gz'}: damaged gzip data (Error -3 while "
                            "decompressing data: incorrect data check)")
    with pytest.raises(DatasetError) as e:
        list(iter_segments([CORPUS / "lost-json.tar.gz"]))
    assert str(e.value) == (f"{CORPUS / 'lost-json.tar.gz'}: member 000001.token.npy has no "
                            "000001.json beside it (a damaged shard?)")


# -- compress: frame shapes, output == input, --rm -------------------------------------------
def test_frame_shape_that_does_not_fit_is_a_clean_error(tmp_path, dev_clip):
    np.save(tmp_path / "w.npy", dev_clip[:10].reshape(10, 128)[:, :120])
    r = cli("compress", "--frame-shape", "7x15", "w.npy", cwd=tmp_path)
    assert r.exit_code == 1
    assert r.output == ("nacc: w.npy: --frame-shape 7x15 (105 tokens) does not fit frames of "
                        "120 tokens (shape (10, 120))\n")
    r = cli("verify", "--frame-shape", "7x15", "w.npy", cwd=tmp_path)
    assert r.exit_code == 1 and "does not fit frames of 120 tokens" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["w.npy"]


def test_junk_and_stdin_are_named_once(tmp_path):
    from click.testing import CliRunner

    from nacc.cli import main

    (tmp_path / "junk.npy").write_bytes(b"junk")
    r = cli("compress", "junk.npy", cwd=tmp_path)
    assert r.exit_code == 1 and r.output == "nacc: junk.npy: not a .npy file (bad magic)\n"
    r = CliRunner().invoke(main, ["compress", "-o", str(tmp_path / "o.nacc"), "-"], input=b"junk")
    assert r.exit_code == 1 and r.output == "nacc: -: not a .npy file (bad magic)\n"
    assert not (tmp_path / "o.nacc").exists()


@pytest.mark.parametrize("spelling", ["same", "dot", "absolute", "symlink", "hardlink", "dir"])
def test_output_that_is_an_input_is_refused(tmp_path, small_clip, spelling):
    import os

    np.save(tmp_path / "f.npy", small_clip)
    before = (tmp_path / "f.npy").read_bytes()
    src, out = "f.npy", {"same": "f.npy", "dot": "./f.npy", "absolute": str(tmp_path / "f.npy"),
                         "symlink": "l.npy", "hardlink": "h.npy", "dir": "d/a.npy"}[spelling]
    if spelling == "symlink":
        os.symlink("f.npy", tmp_path / "l.npy")
    if spelling == "hardlink":
        os.link(tmp_path / "f.npy", tmp_path / "h.npy")
    if spelling == "dir":
        (tmp_path / "d").mkdir()
        os.replace(tmp_path / "f.npy", tmp_path / "d" / "a.npy")
        src = "d"
    listing = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    r = cli("compress", "-f", "--predictor", "prevframe", src, "-o", out, cwd=tmp_path)
    assert r.exit_code == 1
    shown = "d/a.npy" if spelling == "dir" else "f.npy"
    assert r.output == f"nacc: {src}: output {out} is the input {shown} (choose another -o)\n"
    assert sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*")) == listing
    assert (tmp_path / shown).read_bytes() == before


def test_rm_keeps_a_shard_its_archive_does_not_restore(tmp_path, shard):
    """A shard's archive holds its token members only (not the other members, nor the
    json's other fields): --rm must not remove it (README: an input is removed only once
    its archive restores it).  Refused before anything is written."""
    before = shard.read_bytes()
    r = cli("compress", "-q", "--rm", "--predictor", "prevframe", shard.name, cwd=tmp_path)
    assert r.exit_code == 1
    assert r.output == (f"nacc: {shard.name}: --rm: the archive restores the token arrays of "
                        f"{shard.name}, not the file itself; compress it without --rm\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == [shard.name]
    assert shard.read_bytes() == before


def test_rm_keeps_inputs_when_the_archive_does_not_decode_to_them(tmp_path, dev_clip,
                                                                  monkeypatch):
    from nacc import codec

    d = tmp_path / "d"
    d.mkdir()
    for k, name in enumerate(NAMES):
        (d / name).write_bytes(npy_bytes(dev_clip[4 * k:4 * k + 4]))

    real = codec.decompress_archive

    def corrupt(buf, *args, **kwargs):
        for k, (name, data) in enumerate(real(buf, *args, **kwargs)):
            yield name, data if k != 1 else data[:-1] + bytes([data[-1] ^ 1])

    monkeypatch.setattr(codec, "decompress_archive", corrupt)
    before = {p.name: p.read_bytes() for p in d.iterdir()}
    r = cli("compress", "-q", "--rm", "--predictor", "prevframe", "-o", "all.nacc",
            *(f"d/{n}" for n in NAMES), cwd=tmp_path)
    assert r.exit_code == 1
    assert r.output == (f"nacc: all.nacc: all.nacc does not decode to segment "
                        f"'{NAMES[1]}'; inputs kept\n")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d"]
    assert {p.name: p.read_bytes() for p in d.iterdir()} == before


def test_rm_to_stdout_is_a_usage_error(tmp_path, small_clip):
    np.save(tmp_path / "f.npy", small_clip)
    r = cli("compress", "--rm", "-c", "f.npy", cwd=tmp_path)
    assert r.exit_code == 2 and "--rm needs an output file" in r.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.npy"]
