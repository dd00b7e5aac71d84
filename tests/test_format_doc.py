"""FORMAT.md is the format: its tables match the code's constants and bounds, and a parser
driven by its structure tables alone reads every golden archive exactly as nacc.container
does.  The parser, the rANS decoder and the writer helpers here follow the document, not
the code."""
from __future__ import annotations

import ast
import bisect
import hashlib
import importlib
import io
import json
import re
import struct
import zlib

import numpy as np
import pytest

from conftest import ROOT
from nacc import codec, container, npyio
from nacc.errors import NaccError

DOC = (ROOT / "FORMAT.md").read_text()
GOLDEN = ROOT / "tests" / "golden"


# -- the document's tables --------------------------------------------------------------
def _cells(line: str) -> list[str]:
    return [c.strip() for c in line.strip().strip("|").split("|")]


def _table_after(lines: list[str], i: int) -> list[dict[str, str]]:
    """The markdown table that starts at or after line ``i``, as one dict per row."""
    while not lines[i].startswith("|"):
        i += 1
    head = _cells(lines[i])
    assert set(_cells(lines[i + 1])) <= {"---"}, lines[i + 1]
    rows = []
    i += 2
    while i < len(lines) and lines[i].startswith("|"):
        cells = _cells(lines[i])
        assert len(cells) == len(head), lines[i]
        rows.append(dict(zip(head, cells)))
        i += 1
    return rows


def table_under(heading: str) -> list[dict[str, str]]:
    """The table that follows the line ``heading``."""
    lines = DOC.splitlines()
    return _table_after(lines, lines.index(heading) + 1)


def structures() -> dict[str, list[dict[str, str]]]:
    """Every ``### Structure `name` `` table of FORMAT.md."""
    lines = DOC.splitlines()
    out = {}
    for i, line in enumerate(lines):
        m = re.fullmatch(r"### Structure `(\w+)`", line)
        if m:
            rows = _table_after(lines, i + 1)
            assert list(rows[0]) == ["field", "encoding", "when", "value"], m.group(1)
            out[m.group(1)] = rows
    return out


def code(cell: str) -> str:
    """A cell's text without the backticks around it."""
    return cell[1:-1] if cell.startswith("`") and cell.endswith("`") else cell


# -- a parser driven by the structure tables --------------------------------------------
class DocParser:
    """Reads bytes with the encodings of FORMAT.md's Conventions table, one structure
    table at a time.  A record is a dict of field -> value; ``spans`` keeps the bytes each
    field came from."""

    def __init__(self, buf: bytes):
        self.buf = buf
        self.structs = structures()

    def _take(self, pos: int, n: int) -> tuple[bytes, int]:
        assert pos + n <= len(self.buf), "truncated"
        return self.buf[pos:pos + n], pos + n

    def _varint(self, pos: int) -> tuple[int, int]:
        n = shift = 0
        for _ in range(10):
            b = self.buf[pos]
            pos += 1
            n |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return n, pos
        raise AssertionError("varint longer than 10 bytes")

    def _one(self, enc: str, pos: int, scope: list[dict]):
        if enc == "u8":
            return self.buf[pos], pos + 1
        if enc == "u32":
            raw, pos = self._take(pos, 4)
            return struct.unpack("<I", raw)[0], pos
        if enc == "varint":
            return self._varint(pos)
        if enc in ("string", "bytes"):
            n, pos = self._varint(pos)
            raw, pos = self._take(pos, n)
            return (raw.decode("utf8") if enc == "string" else raw), pos
        m = re.fullmatch(r"raw\((\d+)\)", enc)
        if m:
            return self._take(pos, int(m.group(1)))
        m = re.fullmatch(r"framed\((\w+)\)", enc)
        if m:
            n, pos = self._varint(pos)
            body, end = self._take(pos, n)
            rec, stop = self.parse(m.group(1), pos, scope)
            assert stop == end, f"{m.group(1)}: {end - stop} bytes left over"
            crc, end = self._one("u32", end, scope)
            assert crc == zlib.crc32(body), f"{m.group(1)}: checksum"
            return rec, end
        if enc in self.structs:
            return self.parse(enc, pos, scope)
        raise AssertionError(f"unknown encoding {enc!r}")

    @staticmethod
    def lookup(scope: list[dict], name: str):
        """A field read before: in this record, its framed sub-records, then outwards."""
        for rec in reversed(scope):
            stack = [rec]
            while stack:
                r = stack.pop()
                if name in r:
                    return r[name]
                stack += [v for v in r.values() if isinstance(v, dict)]
        raise KeyError(name)

    def parse(self, name: str, pos: int, scope: list[dict] | None = None) -> tuple[dict, int]:
        rec: dict = {"spans": {}}
        scope = (scope or []) + [rec]
        for row in self.structs[name]:
            field, enc, when, value = (row["field"], code(row["encoding"]), code(row["when"]),
                                       row["value"])
            if when:
                m = re.fullmatch(r"(\w+) == (\d+)", when)
                assert m, when
                if self.lookup(scope, m.group(1)) != int(m.group(2)):
                    continue
            start = pos
            m = re.fullmatch(r"(\w+) \* (\w+)", enc)
            if m:
                items = []
                for _ in range(self.lookup(scope, m.group(2))):
                    item, pos = self._one(m.group(1), pos, scope)
                    items.append(item)
                rec[field] = items
            else:
                rec[field], pos = self._one(enc, pos, scope)
            rec["spans"][field] = self.buf[start:pos]
            self._check(rec, field, value)
        return rec, pos

    @staticmethod
    def _check(rec: dict, field: str, value: str) -> None:
        """The ``value`` column's constants and checksums."""
        got = rec[field]
        if re.fullmatch(r"`\d+`", value):
            assert got == int(value[1:-1]), (field, got)
        elif re.fullmatch(r"`[A-Z_]+`( or `[A-Z_]+`)*", value):
            allowed = [getattr(container, n) for n in re.findall(r"`([A-Z_]+)`", value)]
            assert got in allowed, (field, got, value)
        m = re.match(r"CRC-32 of the (\w+)'s", value)
        if m:
            assert got == zlib.crc32(rec["spans"][m.group(1)]), f"{field} mismatch"


def doc_parse(buf: bytes) -> dict:
    """The whole archive by the document: ``archive``, ``archive_v2`` or ``archive_v1`` by
    its version."""
    structs = structures()
    for name in ("archive", "archive_v2", "archive_v1"):
        version = int(code([r for r in structs[name] if r["field"] == "version"][0]["value"]))
        if buf[4] == version:
            rec, pos = DocParser(buf).parse(name, 0)
            assert pos == len(buf), f"{len(buf) - pos} bytes after the last block"
            return rec
    raise AssertionError(f"version {buf[4]} is not documented")


def doc_blocks(rec: dict) -> list[dict]:
    """Each block as (coding, frame shape, vocab, members, words) read from the doc's
    records; a version 1 segment is one CODED block of one member."""
    out = []
    if "blocks" in rec:
        for b in rec["blocks"]:
            h = b["block_header"]
            out.append(dict(coding=h["coding"], frame=(h["frame_height"], h["frame_width"]),
                            vocab=h["vocab"], members=h["members"], words=b["payload"]))
    else:
        for s in rec["segments"]:
            h = s["segment_header"]
            out.append(dict(coding=container.CODED, frame=(h["frame_height"], h["frame_width"]),
                            vocab=h["vocab"], members=[h], words=s["payload"]))
    return out


GOLDEN_FILES = sorted(str(p.relative_to(GOLDEN)) for p in GOLDEN.rglob("*.nacc"))


@pytest.mark.parametrize("name", GOLDEN_FILES)
def test_doc_parser_reads_every_golden_archive_like_the_container(name):
    buf = (GOLDEN / name).read_bytes()
    rec = doc_parse(buf)
    header, blocks = container.read_archive(buf)
    h = rec["header"]
    assert (h["predictor"], json.loads(h["params"]), h["model_hash"], h["precision"],
            h["n_segments"], h.get("n_blocks")) == \
        (header.predictor, header.params, header.model_hash, header.precision,
         header.n_segments, header.n_blocks)
    assert h["params"] == json.dumps(header.params, sort_keys=True, separators=(",", ":"))
    mine = doc_blocks(rec)
    assert len(mine) == len(blocks) == header.blocks
    for d, b in zip(mine, blocks):
        assert (d["coding"], d["frame"], d["vocab"]) == (b.coding, b.frame_shape, b.vocab)
        assert d["words"] == [int(w) for w in b.words]
        assert [(m["name"], m["descr"], bool(m["fortran"]), tuple(m["dims"]),
                 m.get("raw_prefix"), m["data_crc"]) for m in d["members"]] == \
            [(s.name, s.descr, s.fortran, s.shape, s.raw_prefix, s.data_crc)
             for s in b.segments]


def test_golden_table_lists_every_golden_archive():
    rows = table_under("## Golden archives")
    assert sorted(code(r["archive"]) for r in rows) == GOLDEN_FILES
    for r in rows:
        rec = doc_parse((GOLDEN / code(r["archive"])).read_bytes())
        blocks = doc_blocks(rec)
        codings = [getattr(container, code(c.strip())) for c in r["codings"].split(",")]
        assert (rec["version"], rec["header"]["predictor"], rec["header"]["n_segments"],
                len(blocks), [b["coding"] for b in blocks]) == \
            (int(r["version"]), code(r["predictor"]), int(r["segments"]), int(r["blocks"]),
             codings), r["archive"]


def test_golden_solid_groups_as_documented():
    rec = doc_parse((GOLDEN / "prevframe-dev12-solid2.nacc").read_bytes())
    assert [[m["name"] for m in b["members"]] for b in doc_blocks(rec)] == \
        [["part0.npy", "part1.npy"], ["part2.npy"]]
    rec = doc_parse((GOLDEN / "cm-dev12-solid3.nacc").read_bytes())
    assert [len(b["members"]) for b in doc_blocks(rec)] == [3]


# -- constants --------------------------------------------------------------------------
def test_constants_table_matches_the_code():
    rows = table_under("## Constants")
    for r in rows:
        module, name = code(r["constant"]).split(".")
        got = getattr(importlib.import_module(f"nacc.{module}"), name)
        assert got == ast.literal_eval(code(r["value"])), r["constant"]
    documented = {code(r["constant"]) for r in rows}
    for name, v in vars(container).items():
        if name.isupper() and isinstance(v, (int, bytes, tuple)):
            assert f"container.{name}" in documented, f"container.{name} is not in FORMAT.md"


def test_documented_versions_are_the_versions_read():
    versions = []
    for rows in structures().values():
        versions += [int(code(r["value"])) for r in rows if r["field"] == "version"]
    assert sorted(versions) == list(container.READS)
    assert max(versions) == container.VERSION


def test_conventions_table_names_every_encoding_the_structures_use():
    conventions = {code(r["encoding"]) for r in table_under("## Conventions")}
    assert conventions == {"u8", "u32", "varint", "string", "bytes", "raw(n)", "framed(S)",
                           "X * f"}
    structs = structures()
    for rows in structs.values():
        for r in rows:
            enc = code(r["encoding"])
            enc = re.sub(r" \* \w+$", "", enc)
            enc = re.sub(r"^framed\((\w+)\)$", r"\1", enc)
            assert enc in conventions | set(structs) or re.fullmatch(r"raw\(\d+\)", enc), enc


# -- bounds: values just past each documented bound are refused -------------------------
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _string(b: bytes | str) -> bytes:
    b = b.encode() if isinstance(b, str) else b
    return _varint(len(b)) + b


def _framed(body: bytes) -> bytes:
    return _varint(len(body)) + body + struct.pack("<I", zlib.crc32(body))


def _header(n_segments=1, n_blocks=1, model_hash=b"", version=2) -> bytes:
    body = _string("uniform") + _string("{}") + _string(model_hash) + bytes([24])
    body += _varint(n_segments) + (_varint(n_blocks) if version == 2 else b"")
    return b"\x89NAC" + bytes([version]) + _framed(body)


def _member(dims=(1, 1, 1), ndim=None) -> bytes:
    ndim = len(dims) if ndim is None else ndim
    return (_string("m.npy") + _string("<i2") + b"\x00" + _varint(ndim)
            + b"".join(_varint(d) for d in dims) + b"\x00" + struct.pack("<I", 0))


def _block(frame=(1, 1), vocab=2, members=(None,), n_words=0, n_members=None) -> bytes:
    body = b"\x00" + _varint(frame[0]) + _varint(frame[1]) + _varint(vocab)
    body += _varint(len(members) if n_members is None else n_members)
    body += b"".join(m if m is not None else _member() for m in members) + _varint(n_words)
    return _framed(body)


def _over(limit: int):
    return limit + 1


M = container
CRAFTED = {   # (part, name) -> (archive bytes with a value just past the bound, the bound)
    ("header", "header length"): (b"\x89NAC\x02" + _varint(_over(1 << 20)), 1 << 20),
    ("header", "model hash length"): (_header(model_hash=b"\0" * 65), 64),
    ("header", "segment count"): (_header(_over(M.MAX_SEGMENTS)), M.MAX_SEGMENTS),
    ("header", "block count"): (_header(2, 3), 2),
    ("block", "block header length"): (_header() + _varint(_over(1 << 24)), 1 << 24),
    ("block header", "member count"): (_header(2, 2) + _block(members=(None, None)), 1),
    ("block header", "frame height"): (_header() + _block(frame=(_over(M.MAX_TOKENS), 1)),
                                       M.MAX_TOKENS),
    ("block header", "frame width"): (_header() + _block(frame=(1, _over(M.MAX_TOKENS))),
                                      M.MAX_TOKENS),
    ("block header", "vocab"): (_header() + _block(vocab=_over(M.MAX_VOCAB)), M.MAX_VOCAB),
    ("block header", "ndim"): (_header() + _block(members=(_member((1,) * 9),)), M.MAX_NDIM),
    ("block header", "dimension"): (_header() + _block(members=(_member((_over(M.MAX_TOKENS),
                                                                          1, 1)),)),
                                    M.MAX_TOKENS),
    ("block header", "payload words"): (_header() + _block(members=(_member((2, 1, 1)),),
                                                           n_words=5), 4),
    ("segment", "segment header length"): (_header(version=1) + _varint(_over(1 << 20)),
                                           1 << 20),
}


def test_every_documented_bound_is_enforced():
    rows = table_under("## Bounds")
    assert {(r["part"], r["name"]) for r in rows} == set(CRAFTED)
    for r in rows:
        buf, bound = CRAFTED[r["part"], r["name"]]
        cell = code(r["bound"])
        if cell.isdigit():
            assert int(cell) == bound, r
        elif cell.isupper():
            assert getattr(container, cell) == bound, r
        with pytest.raises(NaccError) as e:
            container.read_archive(buf)
        assert str(e.value) == (f"damaged archive: {r['part']}: {r['name']} = {bound + 1} "
                                f"exceeds the limit {bound}"), r


def test_an_eleven_byte_varint_is_refused():
    with pytest.raises(NaccError, match="segment count: varint too long"):
        container.read_header(b"\x89NAC\x02" + _framed(
            _string("uniform") + _string("{}") + _string(b"") + bytes([24])
            + b"\x80" * 10 + b"\x00" + _varint(1)))
    assert DocParser(b"\x80" * 9 + b"\x01")._varint(0) == (1 << 63, 10)


# -- rANS words and the uniform table, by the document ----------------------------------
def doc_uniform(v: int) -> tuple[list[int], list[int]]:
    base = (1 << 24) // v
    r = (1 << 24) - base * v
    freq = [base + 1 if s < r else base for s in range(v)]
    return [s * base + min(s, r) for s in range(v)], freq


def doc_encode(symbols: list[int], start: list[int], freq: list[int]) -> list[int]:
    words, state = [], 0
    for s in reversed(symbols):
        f = freq[s]
        if state >> 40 >= f:
            words.append(state & 0xFFFFFFFF)
            state >>= 32
        state = ((state // f) << 24) | (state % f + start[s])
    if state:
        words.append(state & 0xFFFFFFFF)
        if state >> 32:
            words.append(state >> 32)
    return words


def doc_decode(words: list[int], n: int, start: list[int], freq: list[int]) -> list[int]:
    pos = len(words)
    if pos >= 2:
        state, pos = words[-1] << 32 | words[-2], pos - 2
    else:
        state, pos = (words[0], 0) if pos else (0, 0)
    out = []
    for _ in range(n):
        q = state & 0xFFFFFF
        s = bisect.bisect_right(start, q) - 1       # start is increasing (symbol order)
        state = (state >> 24) * freq[s] + q - start[s]
        if state < 1 << 32 and pos:
            pos -= 1
            state = state << 32 | words[pos]
        out.append(s)
    assert pos == 0, "words left over"
    return out


def doc_npy(member: dict, tokens: list[int]) -> bytes:
    """The restored file: the documented canonical prefix, then the data bytes."""
    dims = tuple(member["dims"])
    shape = f"({dims[0]},)" if len(dims) == 1 else "(" + ", ".join(map(str, dims)) + ")"
    text = f"{{'descr': '{member['descr']}', 'fortran_order': {bool(member['fortran'])}, " \
           f"'shape': {shape}, }}"
    text += " " * (-(10 + len(text) + 1) % 64) + "\n"
    prefix = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(text)) + text.encode("latin1")
    arr = np.array(tokens).reshape(dims).astype(member["descr"])
    data = arr.tobytes(order="F" if member["fortran"] else "C")
    assert zlib.crc32(data) == member["data_crc"]
    return (member["raw_prefix"] if member["prefix_flag"] else prefix) + data


@pytest.mark.parametrize("name,expect", [
    ("uniform-dev12.nacc", "uniform-dev12"),
    ("v1/uniform-dev12.nacc", "uniform-dev12"),
    ("prevframe-v37-noise-stored.nacc", "prevframe-v37-noise-stored"),
    ("prevframe-v37-flat.nacc", "prevframe-v37-flat"),
])
def test_uniform_blocks_decode_and_encode_by_the_document(name, expect, dev_clip):
    """Every uniform-coded golden block, decoded and re-encoded with the document's rANS
    and uniform table: the exact input file and the exact payload words."""
    from test_spine_format import golden_cases

    segments, _ = golden_cases(dev_clip)[expect]
    rec = doc_parse((GOLDEN / name).read_bytes())
    (block,) = doc_blocks(rec)
    assert block["coding"] == container.UNIFORM or rec["header"]["predictor"] == "uniform"
    start, freq = doc_uniform(block["vocab"])
    (member,) = block["members"]
    n = int(np.prod(member["dims"]))
    tokens = doc_decode(block["words"], n, start, freq)
    assert doc_npy(member, tokens) == npyio.npy_bytes(segments[0][1])
    assert doc_encode(tokens, start, freq) == block["words"]


def test_precision_shift_and_final_state_words():
    """Tables of total 2**P < 2**24 are coded shifted left by 24 - P; a stream that emitted
    no word stores one word (the state) when it is below 2**32."""
    from nacc import coder

    tables = np.array([[1, 3], [2, 2], [3, 1]], np.int32)       # P = 2
    syms = [1, 0, 1]
    start = [[0, 1], [0, 2], [0, 3]]
    words, state = [], 0
    for i in reversed(range(3)):
        f, st = int(tables[i, syms[i]]) << 22, start[i][syms[i]] << 22
        if state >> 40 >= f:
            words.append(state & 0xFFFFFFFF)
            state >>= 32
        state = ((state // f) << 24) | (state % f + st)
    words += [state & 0xFFFFFFFF] + ([state >> 32] if state >> 32 else [])
    assert [int(w) for w in coder.encode_tables(np.array(syms), tables, 2)] == words
    assert doc_encode([0], [0], [1 << 24]) == [] and doc_decode([], 1, [0], [1 << 24]) == [0]
    assert doc_encode([1], *doc_uniform(2)) == [1 << 23]
    assert [int(w) for w in coder.encode_tables(np.array([1]), np.array([[1 << 23] * 2]),
                                                24)] == [1 << 23]


# -- the header's predictor fields --------------------------------------------------------
def test_predictor_table_matches_the_golden_headers():
    rows = {code(r["predictor"]): r for r in table_under("## Predictors")}
    from nacc.predictors import available

    assert set(rows) == set(available())
    for name in GOLDEN_FILES:
        h = doc_parse((GOLDEN / name).read_bytes())["header"]
        row = rows[h["predictor"]]
        assert h["precision"] == int(row["precision"])
        if row["params"] == "`{}`":
            assert (h["params"], h["model_hash"]) == ("{}", b"")
        else:
            assert set(json.loads(h["params"])) == {"prior"} and len(h["model_hash"]) == 32


def test_cm_prior_digest_as_documented():
    cfg = json.loads((ROOT / "models" / "cm-prior" / "priors.json").read_text())
    for name, prior in [("cm-dev12.nacc", "commavq-v2"), ("cm-v3-dev12.nacc", "commavq-v3"),
                        ("cm-v4-dev12.nacc", "commavq-v4"), ("cm-v5-dev12.nacc", "commavq-v5"),
                        ("v1/cm-dev12.nacc", "commavq-v2")]:
        h = doc_parse((GOLDEN / name).read_bytes())["header"]
        entry = cfg["priors"][prior]
        d = hashlib.sha256(json.dumps(entry, sort_keys=True).encode())
        for key in ("tree", "warm"):
            if key in entry and entry[key].endswith(".cmw"):
                d.update(bytes.fromhex(cfg["sha256"][entry[key]]))
            elif key in entry:
                d.update((ROOT / "models" / "cm-prior" / entry[key]).read_bytes())
        assert h["params"] == json.dumps({"prior": prior}, separators=(",", ":"))
        assert h["model_hash"] == d.digest(), name


def test_worst_case_floor_rule_as_documented():
    """A block is stored with the uniform table exactly when its uniform words are fewer
    than the predictor's (the documented threshold only skips the comparison where the
    uniform code cannot be smaller)."""
    tokens = (np.arange(100, dtype=np.int32) * 7 % 37).reshape(1, 1, 100)
    npy = npyio.from_array(tokens.astype(np.int16))
    uniform = doc_encode(tokens.ravel().tolist(), *doc_uniform(37))
    assert len(uniform) == 17 and 32 * 13 < 100 * ((37 - 1).bit_length() - 1) - 64
    for n_words, coding in [(13, container.CODED), (17, container.CODED),
                            (18, container.UNIFORM)]:
        words = np.arange(n_words, dtype=np.uint32)
        packed = codec.pack_members([("z.npy", npy)], (1, 100), 37, tokens, words)
        rec, _ = DocParser(packed).parse("block", 0)
        assert rec["block_header"]["coding"] == coding, n_words
        assert rec["payload"] == (uniform if coding else words.tolist())


def test_canonical_prefix_as_documented():
    for arr in (np.zeros((3, 8, 16), np.int16), np.zeros(5, ">i4"),
                np.asfortranarray(np.zeros((4, 3), np.uint16)), np.zeros((), np.int64)):
        member = dict(dims=list(arr.shape), descr=npyio.from_array(arr).descr,
                      fortran=int(npyio.from_array(arr).fortran), prefix_flag=0,
                      data_crc=zlib.crc32(npyio.from_array(arr).data))
        buf = io.BytesIO()
        np.save(buf, arr)
        assert doc_npy(member, arr.ravel(order="C").tolist()) == buf.getvalue()
