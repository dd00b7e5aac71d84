"""nacc.training.datasets: segments from .npy, directories, .npz and webdataset shards."""
import io
import json
import tarfile

import numpy as np
import pytest

from nacc.training.datasets import DatasetError, Segments, iter_segments, load_tokens


def _vid(seed, t=3, h=2, w=4, v=16):
    return np.random.default_rng(seed).integers(0, v, (t, h, w)).astype(np.int16)


def _shard(path, items, gz=False, corrupt_key=None, meta=True):
    with tarfile.open(path, "w:gz" if gz else "w") as tar:
        for key, arr, fname in items:
            buf = io.BytesIO()
            np.save(buf, arr)
            data = buf.getvalue()
            if key == corrupt_key:
                data = data[:20]
            members = [(f"{key}.token.npy", data)]
            if meta:
                members.append((f"{key}.json", json.dumps({"file_name": fname}).encode()))
            for name, payload in members:
                info = tarfile.TarInfo(name)
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))


def test_npy_dir_npz(tmp_path):
    a, b, c = _vid(1), _vid(2), _vid(3)
    (tmp_path / "d" / "sub").mkdir(parents=True)
    np.save(tmp_path / "d" / "sub" / "b.npy", b)
    np.save(tmp_path / "d" / "a.npy", a)
    np.savez(tmp_path / "c.npz", x=c, y=a)
    segs = list(iter_segments([tmp_path / "d", tmp_path / "c.npz"], vocab=16))
    assert [s.name.split("/")[-1] for s in segs] == ["a.npy", "b.npy", "c.npz:x", "c.npz:y"]
    for s, ref in zip(segs, [a, b, c, a]):
        assert s.tokens.dtype == np.int32 and np.array_equal(s.tokens, ref)
    assert np.array_equal(load_tokens(tmp_path / "d" / "a.npy"), a)


@pytest.mark.parametrize("gz", [False, True])
def test_shards(tmp_path, gz):
    p = tmp_path / ("s.tar.gz" if gz else "s.tar")
    _shard(p, [("k0", _vid(1), "seg_a"), ("k1", _vid(2), "seg_b")], gz=gz)
    segs = list(iter_segments([p], vocab=16))
    assert [s.name for s in segs] == ["seg_a", "seg_b"]
    assert np.array_equal(segs[1].tokens, _vid(2))


@pytest.mark.parametrize("meta", [True, False])
def test_shard_segments_are_named_as_the_cli_names_them(tmp_path, meta):
    from nacc import inputs

    p = tmp_path / "s.tar"
    _shard(p, [("k0", _vid(1), "seg_a.npy"), ("k1", _vid(2), "seg_b.npy")], meta=meta)
    names = [s.name for s in iter_segments([p], vocab=16)]
    assert names == (["seg_a.npy", "seg_b.npy"] if meta else ["k0.npy", "k1.npy"])
    assert names == [n for n, _ in inputs.segments_of(str(p))]


def test_errors_and_skip_bad(tmp_path):
    np.save(tmp_path / "big.npy", _vid(1, v=40))
    with pytest.raises(DatasetError, match="big.npy"):
        list(iter_segments([tmp_path / "big.npy"], vocab=16))
    np.save(tmp_path / "a.npy", _vid(1))
    np.save(tmp_path / "shape.npy", _vid(2, h=3))
    with pytest.raises(DatasetError, match="shape.npy"):
        list(iter_segments([tmp_path / "a.npy", tmp_path / "shape.npy"]))
    empty = tmp_path / "empty.tar"
    with tarfile.open(empty, "w"):
        pass
    with pytest.raises(DatasetError, match="empty.tar"):
        list(iter_segments([empty]))
    bad = tmp_path / "bad.tar"
    _shard(bad, [("k0", _vid(1), "x"), ("k1", _vid(2), "y")], corrupt_key="k1")
    with pytest.raises(DatasetError, match=r"bad.tar\[k1.token.npy\]"):
        list(iter_segments([bad]))
    trunc = tmp_path / "trunc.tar.gz"
    _shard(trunc, [("k0", _vid(1), "x")], gz=True)
    trunc.write_bytes(trunc.read_bytes()[:-30])
    with pytest.raises(DatasetError, match="trunc.tar.gz"):
        list(iter_segments([trunc]))
    s = Segments([tmp_path / "a.npy", tmp_path / "big.npy", empty, bad, trunc], vocab=16,
                 skip_bad=True)
    with pytest.warns(UserWarning):
        segs = list(s)
    assert len(segs) == 1 and s.n_bad == 4
    with pytest.raises(DatasetError, match="nothere"):
        list(iter_segments([tmp_path / "nothere.npy"]))
