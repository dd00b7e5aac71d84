"""Damaged and hostile inputs: each one in tests/hostile/inputs/ once compressed with exit 0
and wrong or missing segments, or stopped with a traceback.  Now `compress` and `verify`
refuse each with exactly ``nacc: FILE: message``, exit 1, no output, the input untouched;
a byte-flip and truncation sweep over small shards and .npz files finds no other outcome
than a refusal or identical segments."""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest import cli_in_process
from nacc import inputs, npyio
from nacc.errors import NaccError

HOSTILE = Path(__file__).resolve().parent / "hostile"
CORPUS = HOSTILE / "inputs"
SUPPORTED = "(one of <i2 <i4 <i8 <u2 <u4 <u8 >i2 >i4 >i8 >u2 >u4 >u8 |i1 |u1)"

# file -> the message after "nacc: FILE: "
EXPECTED = {
    # shards
    "crc.tar.gz": "damaged gzip data (Error -3 while decompressing data: incorrect data check)",
    "flags.tar.gz": "damaged gzip data (Error -3 while decompressing data: unknown header "
                    "flags set)",
    "cut-inside.tar.gz": "truncated shard (the gzip data ends early)",
    "cut-boundary.tar": "truncated shard (it ends inside a tar header at tar byte 5120)",
    "cut-boundary.tar.gz": "truncated shard (it ends inside a tar header at tar byte 5120)",
    "lost-json.tar.gz": "member 000001.token.npy has no 000001.json beside it (a damaged "
                        "shard?)",
    "lost-npy.tar.gz": "member 000001.json has no 000001.token.npy beside it (a damaged shard?)",
    "trailing.tar.gz": "damaged shard (bytes after the end of the gzip data)",
    "bad-header.tar": "damaged tar header at tar byte 5120 (bad checksum)",
    "after-end.tar": "damaged tar (data after the end-of-archive marker at tar byte 7680)",
    # .npz
    "crc.npz": "member a.npy: damaged (Bad CRC-32 for file 'a.npy')",
    "method.npz": "member a.npy: compression method 99 (numpy writes only stored or deflated "
                  "members)",
    "cut.npz": "not a readable .npz (File is not a zip file)",
    "lost-member.npz": "damaged .npz (unexplained bytes 0..931 before member b.npy)",
    "deflate.npz": "member a.npy: damaged (error: Error -3 while decompressing data: invalid "
                   "code lengths set)",
    # .npy headers
    "junk.npy": "not a .npy file (bad magic)",
    "shape-2p32.npy": "shape (4294967296, 4294967296) has more than 2^62 items",
    "shape-int64.npy": "shape (3037000500, 3037000500) has more than 2^62 items",
    "shape-negative.npy": "bad shape (-1, 128) (sizes are integers >= 0)",
    "shape-float.npy": "bad shape (2.0, 128) (sizes are integers >= 0)",
    "shape-string.npy": "bad shape ('2', 128) (sizes are integers >= 0)",
    "shape-bool.npy": "bad shape (True, 128) (sizes are integers >= 0)",
    "shape-list.npy": "bad shape [2, 128] (want a tuple of at most 32 sizes)",
    "short-data.npy": ".npy data is 10 bytes, header says 256000000",
    "dtype-garbage.npy": f"dtype 'garbage' is not a supported token dtype {SUPPORTED}",
    "dtype-native.npy": f"dtype '=i2' is not a supported token dtype {SUPPORTED}",
    "dtype-float64.npy": "dtype float64 is not an integer type; token ids are integers",
    "fortran-string.npy": "bad fortran_order 'no' in .npy header",
    "extra-key.npy": "unreadable .npy header (want a dict of descr, fortran_order and shape)",
    "nested.npy": "unreadable .npy header (SyntaxError)",
    "bigint.npy": "unreadable .npy header (SyntaxError)",
    "v3-utf8.npy": "unreadable .npy header (UnicodeDecodeError)",
    "version-9.npy": "unsupported .npy version 9",
}


def test_corpus_is_what_the_generator_writes(tmp_path):
    spec = importlib.util.spec_from_file_location("make_inputs", HOSTILE / "make_inputs.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(tmp_path)
    made = sorted(p.name for p in tmp_path.iterdir())
    assert made == sorted(p.name for p in CORPUS.iterdir()) == sorted(EXPECTED)
    for name in made:
        assert (tmp_path / name).read_bytes() == (CORPUS / name).read_bytes(), name
    assert max(p.stat().st_size for p in CORPUS.iterdir()) <= 12 * 1024


@pytest.mark.parametrize("command", ["compress", "verify"])
@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_hostile_input_is_refused(tmp_path, name, command):
    shutil.copy(CORPUS / name, tmp_path / name)
    r = cli_in_process([command, "--predictor", "prevframe", name], tmp_path)
    assert r.exit_code == 1, r.output
    assert r.output == f"nacc: {name}: {EXPECTED[name]}\n"
    assert [p.name for p in tmp_path.iterdir()] == [name]
    assert (tmp_path / name).read_bytes() == (CORPUS / name).read_bytes()


def test_hostile_input_with_rm_is_kept(tmp_path):
    shutil.copy(CORPUS / "crc.tar.gz", tmp_path / "crc.tar.gz")
    r = cli_in_process(["compress", "--rm", "crc.tar.gz"], tmp_path)
    assert r.exit_code == 1
    assert [p.name for p in tmp_path.iterdir()] == ["crc.tar.gz"]


# -- the shared header check ----------------------------------------------------------------
def test_check_descr_shape_accepts_token_dtypes():
    assert npyio.check_descr_shape("<i2", (600, 8, 16)) == (np.dtype("<i2"), 76800)
    assert npyio.check_descr_shape(">u8", (3, 0)) == (np.dtype(">u8"), 0)
    assert npyio.check_descr_shape("|u1", ()) == (np.dtype("u1"), 1)
    assert sorted(npyio.TOKEN_DESCRS) == ["<i2", "<i4", "<i8", "<u2", "<u4", "<u8", ">i2",
                                          ">i4", ">i8", ">u2", ">u4", ">u8", "|i1", "|u1"]


@pytest.mark.parametrize("descr,shape,msg", [
    ("<f4", (2, 3), "where: dtype float32 is not an integer type; token ids are integers"),
    ("|b1", (2, 3), "where: dtype bool is not an integer type; token ids are integers"),
    ("|O", (2, 3), "where: object arrays are not token videos"),
    ([("a", "<i2")], (2,), "where: structured arrays are not token videos"),
    ("<i16", (2,), f"where: dtype '<i16' is not a supported token dtype {SUPPORTED}"),
    ("i2", (2,), f"where: dtype 'i2' is not a supported token dtype {SUPPORTED}"),
    (7, (2,), f"where: dtype 7 is not a supported token dtype {SUPPORTED}"),
    ("x" * 100, (2,), "where: dtype '" + "x" * 56 + "... is not a supported token dtype "
     + SUPPORTED),
    ("<i2", (1 << 31, 1 << 31, 2),
     "where: shape (2147483648, 2147483648, 2) has more than 2^62 items"),
    ("<i2", (1 << 62, 1), None),
    ("<i2", (1 << 62, 2), "where: shape (4611686018427387904, 2) has more than 2^62 items"),
    ("<i2", (2, None), "where: bad shape (2, None) (sizes are integers >= 0)"),
    ("<i2", (1,) * 33,
     "where: bad shape (" + "1, " * 18 + "1,... (want a tuple of at most 32 sizes)"),
    ("<i2", 5, "where: bad shape 5 (want a tuple of at most 32 sizes)"),
])
def test_check_descr_shape_refuses(descr, shape, msg):
    if msg is None:
        assert npyio.check_descr_shape(descr, shape, "where")[1] == 1 << 62
        return
    with pytest.raises(NaccError) as e:
        npyio.check_descr_shape(descr, shape, "where")
    assert str(e.value) == msg


def test_parse_npy_names_where_once_or_not_at_all():
    with pytest.raises(NaccError) as e:
        npyio.parse_npy(b"hello")
    assert str(e.value) == "not a .npy file (bad magic)"
    with pytest.raises(NaccError) as e:
        npyio.parse_npy(b"hello", "member x.npy")
    assert str(e.value) == "member x.npy: not a .npy file (bad magic)"


# -- sweeps: every damage is a refusal or changes nothing ------------------------------------
def _segments(path):
    return [(n, npyio.npy_bytes(s)) for n, s in inputs.segments_of(str(path))]


# the fast tier damages every 8th byte and the first and last 64 (where the headers and
# trailers are); the slow tier every byte
SWEEPS = [pytest.param(8, id="sampled"), pytest.param(1, id="every-byte", marks=pytest.mark.slow)]


@pytest.mark.parametrize("step", SWEEPS)
@pytest.mark.parametrize("kind", ["tar.gz", "npz", "npz-deflated"])
def test_byte_flips_and_cuts_are_refused_or_harmless(tmp_path, kind, step):
    rng = np.random.default_rng(5)
    clips = [rng.integers(0, 16, (3, 8, 16)).astype(np.int16) for _ in range(2)]
    src = tmp_path / ("s.tar.gz" if kind == "tar.gz" else "s.npz")
    if kind == "tar.gz":
        import io
        import json
        import tarfile

        with tarfile.open(src, "w:gz") as t:
            for i, c in enumerate(clips):
                for member, data in ((f"{i}.json", json.dumps({"file_name": f"s{i}.npy"})
                                      .encode()), (f"{i}.token.npy", npyio.save_bytes(c))):
                    info = tarfile.TarInfo(member)
                    info.size = len(data)
                    t.addfile(info, io.BytesIO(data))
    elif kind == "npz":
        np.savez(src, a=clips[0], b=clips[1])
    else:
        np.savez_compressed(src, a=clips[0], b=clips[1])
    raw = src.read_bytes()
    ref = _segments(src)
    assert [n for n, _ in ref] == (["s0.npy", "s1.npy"] if kind == "tar.gz"
                                   else ["a.npy", "b.npy"])
    bad = tmp_path / ("bad" + "".join(src.suffixes))
    refused = same = 0
    where = sorted(set(range(0, len(raw), step)) | set(range(64))
                   | set(range(len(raw) - 64, len(raw))))
    cases = [bytes(raw[:i]) + bytes([raw[i] ^ 0x5A]) + raw[i + 1:] for i in where]
    cases += [raw[:i] for i in where] + [raw + b"\0", raw + raw[:100]]
    for data in cases:
        bad.write_bytes(data)
        try:
            got = _segments(bad)
        except NaccError:
            refused += 1
            continue
        assert got == ref
        same += 1
    # what may change harmlessly: gzip's time stamp, OS and extra flags; zip's version,
    # date and attribute fields
    # (the sampled positions are a subset of every byte: the same bound holds for them)
    assert refused + same == len(cases) and same < len(raw) // 5, (refused, same)


def test_archive_and_npy_parsers_share_one_dtype_list():
    from nacc import container

    assert container.DTYPES is npyio.TOKEN_DESCRS
    seg = container.Segment("a.npy", "<i1", False, (1, 1, 1), (1, 1), 2, 0)
    assert container.segment_problem(seg) == "segment 'a.npy': dtype '<i1' is not an integer dtype"


# -- a plain .tar has no data checksum -----------------------------------------------------
def _tar(tmp_path, arr) -> Path:
    import io
    import json
    import tarfile

    raw = io.BytesIO()
    np.save(raw, arr)
    path = tmp_path / "data-0000.tar"
    with tarfile.open(path, "w", format=tarfile.USTAR_FORMAT) as t:
        for name, data in (("000000.json", json.dumps({"file_name": "s.npy"}).encode()),
                           ("000000.token.npy", raw.getvalue())):
            info = tarfile.TarInfo(name)
            info.size, info.mtime = len(data), 0
            t.addfile(info, io.BytesIO(data))
    return path


def test_damage_inside_a_plain_tar_member_round_trips_what_was_read(tmp_path):
    """A plain .tar, like a plain .npy, carries no data checksum: a changed token byte is
    not seen, and the archive restores exactly what was read (the fuzz oracle's rule,
    fuzz._tar_segments)."""
    import sys

    sys.path.insert(0, str(Path(__file__).parent))
    import fuzz

    arr = np.arange(2 * 8 * 16, dtype=np.int16).reshape(2, 8, 16) % 1024
    path = _tar(tmp_path, arr)
    blob = bytearray(path.read_bytes())
    data_at = 3 * 512 + 128                          # inside 000000.token.npy's data
    assert blob[data_at:data_at + 2] == arr.tobytes()[:2]
    blob[data_at] ^= 0x01
    path.write_bytes(bytes(blob))
    read = fuzz._tar_segments(bytes(blob))
    assert list(read) == ["s.npy"]
    assert read["s.npy"] != npyio.npy_bytes(npyio.from_array(arr))
    r = cli_in_process(["compress", "-q", "--predictor", "prevframe", path.name], tmp_path)
    assert (r.exit_code, r.output) == (0, "")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data-0000.tar", "data-0000.tar.nacc"]
    r = cli_in_process(["decompress", "data-0000.tar.nacc"], tmp_path)
    assert r.exit_code == 0, r.output
    assert (tmp_path / "data-0000" / "s.npy").read_bytes() == read["s.npy"]


# -- the first-run compile notice ----------------------------------------------------------
@pytest.mark.parametrize("flags,verbose,quiet", [([], True, False), (["-v"], True, False),
                                                 (["-q"], False, True)])
def test_cli_sets_the_compile_notice(tmp_path, monkeypatch, flags, verbose, quiet):
    """Every command tells compile_notice its verbosity: the line shows in pipes too (a
    script would otherwise wait in silence), -q never shows it."""
    from nacc.kernels.cpu import compile_notice as cn

    calls = []
    monkeypatch.setattr(cn, "enable", lambda v, q=False: calls.append((v, q)))
    np.save(tmp_path / "c.npy", np.zeros((2, 8, 16), np.int16))
    r = cli_in_process(["compress", *flags, "--predictor", "uniform", "c.npy"], tmp_path)
    assert r.exit_code == 0, r.output
    assert calls == [(verbose, quiet)]


def test_quiet_compile_notice_prints_nothing(monkeypatch, capsys):
    from nacc.kernels.cpu import compile_notice as cn

    monkeypatch.setattr(cn, "_shown", False)
    cn.enable(True, quiet=True)
    cn.show()
    cn.enable(True)
    cn.show()
    cn.show()
    cn.enable(False)
    assert capsys.readouterr().err == cn.MESSAGE + "\n"
