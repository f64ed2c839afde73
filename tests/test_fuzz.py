"""A time-bounded mutation fuzz run of every reader of users' files (issue 9).

The contract (tnfast/errors.py): a reader of a user's file returns, or raises InputError (one
line naming the file and the problem); any other exception is a bug. Each target below starts
from valid seeds (real files from ../shared/data where there are any, cut small, else files the
project's own writers make), mutates one of its files (bit flips, byte spans inserted, deleted
or duplicated, truncation, splices of two seeds, odd numbers, delimiters, quotes, BOM, NUL, CR,
gzip wrapping or a damaged gzip stream, format words) and calls the reader in-process.

Budget: ``TNFAST_FUZZ_SECONDS`` (default 20) split evenly over the targets, each running at
least ``MIN_ITERATIONS``; ``TNFAST_FUZZ_SEED`` (default fixed) seeds the mutations. Iteration i
of a target draws from ``default_rng([seed, crc32(target), i])``, so a reported iteration is
the same input whatever the budget. A failure names target, seed and iteration, and copies the
input under pytest's tmp_path. The regression cases at the end are the bugs this run found.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import gzip
import io
import json
import os
import re
import shutil
import signal
import tempfile
import threading
import time
import tomllib
import traceback
import warnings
import zlib
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from conftest import SHARED_DATA

from tnfast.data.edges import read_edge_list, read_id_map
from tnfast.data.gctx import GCT, read_gctx, write_gctx
from tnfast.data.importer import read_features, read_signature_file, read_split_file
from tnfast.data.tables import read_id_list, read_matrix
from tnfast.errors import InputError

BUDGET_S = float(os.environ.get("TNFAST_FUZZ_SECONDS") or 20)
SEED = int(os.environ.get("TNFAST_FUZZ_SEED") or 20240909)
MIN_ITERATIONS = 25
CALL_LIMIT_S = 60  # one call longer than this is reported as a hang (a loop, not a slow machine)
MAX_FINDINGS = 12  # distinct failures kept per target before it stops early
L1000 = SHARED_DATA / "l1000-example"
FIXTURES = SHARED_DATA / "gctx-fixtures"
TESTS_DATA = Path(__file__).parent / "data"

# --------------------------------------------------------------------------- mutations

NUMBER = re.compile(rb"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")
ODD_NUMBERS = [b"NaN", b"nan", b"-nan", b"inf", b"-inf", b"Infinity", b"1e400", b"-1e400", b"1e-400", b"-0",
               b"", b"3.5e38", b"-3.5e38", b"1_0", b"0x1F", b"\xd9\xa3", b"+", b"-", b".", b"1e", b"--1",
               b" 1 ", b'"1"', b"'1'", b"9" * 40, b"-9223372036854775809", b"1.0.0", b"\xef\xbc\x91"]
SPECIALS = [b"\t", b",", b" ", b'"', b"'", b"\xef\xbb\xbf", b"\x00", b"\r", b"\n", b"\r\n", b"#", b"\x0b",
            b"\x0c", b"\x1c", b"\xe2\x80\xa8", b"\xc2\xa0", b"\xc2\x85", b"\\", b"\xff", b"\xc3", b"=",
            b"[", b"]", b"{", b"}", b":", b"\t\t", b",,", b'""']
INTERESTING = [0, 1, 2, 0x7F, 0x80, 0xFF, 0x7FFF, 0x8000, 0xFFFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF,
               2**63 - 1, 2**63, 2**64 - 1, 4096, 65536, 10**9]
TABLE_WORDS = [b"gene_id", b"source", b"target", b"weight", b"score", b"combined_score", b"split", b"train",
               b"valid", b"test", b"val", b"trt_sh", b"landmark_id", b"value", b"-666", b"ABC1", b"16"]
JSON_WORDS = [b"null", b"true", b"false", b"[]", b"{}", b'"\\u0000"', b'"../../x"', b"1e999", b"-1", b"0", b"2",
              b"NaN", b'""', b'"RNAi"', b'"a/b"', b"[1]", b'{"a": 1}', b"99999999999999999999", b"[null]",
              b'"<U5"', b'"float64"', b'"bool"', b'"int64"', b'"string"', b"[0]", b"[0, 0, 0]", b"[-1]",
              b"[1000000000000]", b'"format"', b'"version"', b'"shape"', b'"chunk_shape"', b'"fill_value"']
TOML_WORDS = [b"profile = [1]", b"profile = {a = 1}", b"profile = 1", b'profile = ""', b"[model]", b"[train]",
              b"[[model]]", b"inf", b"nan", b"-inf", b"1979-05-27", b"07:32:00", b"true", b'"x"', b"[1, 2]",
              b"[]", b"{}", b"0", b"-1", b"1e400", b"99999999999999999999", b'"""', b"'''", b"steps = ",
              b"model = 1", b"train = []", b"fundnn_hidden = ", b"[0]", b"0.5"]
NPY_WORDS = [b"'shape': (", b"(-1,)", b"(99999999999,)", b"(0, 0)", b"()", b"'|O'", b"'<c16'", b"'>f8'", b"'|b1'",
             b"'<U5'", b"'|V8'", b"'fortran_order': True", b"'descr': ", b"{}", b"None", b"(1, 2, 3)", b"'<M8[s]'"]


def _pos(rng, b: bytes, head_bias: bool = False) -> int:
    """A position in ``b`` (len(b) included); binary formats keep their headers near the start."""
    hi = len(b) + 1
    if head_bias and rng.random() < 0.5:
        hi = min(hi, 2048)
    return int(rng.integers(0, hi))


def _span(rng, b: bytes) -> tuple[int, int]:
    i = _pos(rng, b)
    n = int(min(rng.geometric(0.05), len(b) - i)) if rng.random() < 0.8 else int(rng.integers(0, len(b) - i + 1))
    return i, i + n


def flip_bits(rng, b, ctx):
    out = bytearray(b)
    for _ in range(int(rng.integers(1, 9)) if out else 0):
        i = _pos(rng, out[:-1] if len(out) > 1 else out, ctx.binary)
        out[min(i, len(out) - 1)] ^= 1 << int(rng.integers(8))
    return bytes(out)


def set_int(rng, b, ctx):
    """Overwrite 1, 2, 4 or 8 bytes with a boundary value (sizes, counts and offsets in headers)."""
    w = int(rng.choice([1, 2, 4, 8]))
    v = int(rng.choice(INTERESTING)) % (1 << (8 * w))
    if rng.random() < 0.3:
        v = int(rng.integers(0, 1 << min(8 * w, 62)))
    raw = v.to_bytes(w, "little" if rng.random() < 0.5 else "big")
    i = _pos(rng, b, ctx.binary)
    return b[:i] + raw + b[i + w:]


def insert_bytes(rng, b, ctx):
    i = _pos(rng, b, ctx.binary)
    return b[:i] + rng.bytes(int(rng.integers(1, 17))) + b[i:]


def delete_span(rng, b, ctx):
    i, j = _span(rng, b)
    return b[:i] + b[j:]


def duplicate_span(rng, b, ctx):
    i, j = _span(rng, b)
    k = _pos(rng, b)
    return b[:k] + b[i:j] * int(rng.integers(1, 4)) + b[k:]


def truncate(rng, b, ctx):
    return b[:_pos(rng, b)]


def splice(rng, b, ctx):
    """The head of this input and the tail of another seed (or of itself)."""
    other = ctx.donors[int(rng.integers(len(ctx.donors)))] if ctx.donors else b
    return b[:_pos(rng, b)] + other[_pos(rng, other):]


def odd_number(rng, b, ctx):
    m = NUMBER.search(b, _pos(rng, b)) or NUMBER.search(b)
    if m is None:
        return insert_token(rng, b, ctx)
    return b[:m.start()] + ODD_NUMBERS[int(rng.integers(len(ODD_NUMBERS)))] + b[m.end():]


def insert_special(rng, b, ctx):
    i = _pos(rng, b)
    return b[:i] + SPECIALS[int(rng.integers(len(SPECIALS)))] * int(rng.integers(1, 3)) + b[i:]


def insert_token(rng, b, ctx):
    """A word of the format (a header name, a JSON or TOML value, an .npy header fragment)."""
    words = ctx.words or TABLE_WORDS
    w = words[int(rng.integers(len(words)))]
    i = _pos(rng, b)
    if rng.random() < 0.5:  # in place of the token that starts here
        m = re.compile(rb"[\w.+-]+|\"[^\"\n]*\"").search(b, i)
        if m:
            return b[:m.start()] + w + b[m.end():]
    return b[:i] + w + b[i:]


def replace_value(rng, b, ctx):
    """``key = value`` (TOML, tables) or ``"key": value,`` (JSON) with another value from the format's words."""
    lines = b.split(b"\n")
    at = [i for i, line in enumerate(lines) if re.search(rb"[=:]", line)]
    if not at:
        return insert_token(rng, b, ctx)
    i = at[int(rng.integers(len(at)))]
    m = re.search(rb"([=:]\s*)(.*?)(,?\s*)$", lines[i])
    words = ctx.words or TABLE_WORDS
    lines[i] = lines[i][:m.end(1)] + words[int(rng.integers(len(words)))] + m.group(3)
    return b"\n".join(lines)


def line_edit(rng, b, ctx):
    lines = b.split(b"\n")
    i, j = (int(x) for x in rng.integers(0, len(lines), 2))
    op = int(rng.integers(5))
    if op == 0:  # duplicate
        lines.insert(j, lines[i])
    elif op == 1 and len(lines) > 1:  # delete
        del lines[i]
    elif op == 2:  # swap
        lines[i], lines[j] = lines[j], lines[i]
    elif op == 3:  # case
        lines[i] = lines[i].upper() if rng.random() < 0.5 else lines[i].lower()
    else:  # another line's fields, cut at a delimiter
        cut = [m.start() for m in re.finditer(rb"[\t, ]", lines[j])] or [len(lines[j])]
        lines[i] = lines[j][:int(rng.choice(cut))]
    return b"\n".join(lines)


def gzip_wrap(rng, b, ctx):
    return gzip.compress(b, mtime=0)


def reencode(rng, b, ctx):
    text = b.decode("utf-8", "replace")
    return text.encode(["utf-16", "latin-1", "utf-32"][int(rng.integers(3))], "replace")


def newlines(rng, b, ctx):
    return b.replace(b"\n", [b"\r\n", b"\r", b"\n\n", b"\x85"][int(rng.integers(4))])


JSON_VALUES = [None, True, False, 0, 1, -1, 2, 3, 2**63, 10**30, 1e300, -0.0, 0.5, float("nan"), float("inf"), "",
               "x", "\0", "../x", "RNAi", "float32", "bool", "string", "int64", [], {}, [0], [1, 2], [-1], [3, 0, 10],
               {"a": 1}, [None]]
TOML_VALUES = [v for v in JSON_VALUES if v is not None and v != [None]] + ["quick", "full", dt.date(1979, 5, 27)]


def _paths(x, path=()):
    yield path
    items = x.items() if isinstance(x, dict) else enumerate(x) if isinstance(x, list) else ()
    for k, v in items:
        yield from _paths(v, (*path, k))


def _at(doc, path):
    for k in path:
        doc = doc[k]
    return doc


def _toml(v) -> str:
    """A TOML value (enough for what tomllib gives back and TOML_VALUES)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and not np.isfinite(v):
        return "nan" if v != v else ("inf" if v > 0 else "-inf")
    if isinstance(v, int | float | str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(map(_toml, v)) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(x)}" for k, x in v.items()) + "}"
    return v.isoformat()  # dates and times


def _dump_toml(doc: dict) -> str:
    top = [f"{json.dumps(k)} = {_toml(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    tables = [f"[{json.dumps(k)}]\n" + "".join(f"{json.dumps(a)} = {_toml(x)}\n" for a, x in v.items())
              for k, v in doc.items() if isinstance(v, dict)]
    return "\n".join(top) + "\n" + "\n".join(tables)


def structured(rng, b, ctx):
    """Parse JSON or TOML, change one value (to another type or node, deleted, a key added), write it back."""
    try:
        doc = json.loads(b) if ctx.kind == "json" else tomllib.loads(b.decode())
    except (ValueError, UnicodeDecodeError):
        return insert_token(rng, b, ctx)
    pool = JSON_VALUES if ctx.kind == "json" else TOML_VALUES
    paths = list(_paths(doc))
    path = paths[int(rng.integers(len(paths)))]
    node, op = _at(doc, path), int(rng.integers(6))
    numbers = [p for p in paths if p and type(_at(doc, p)) in (int, float)]
    if op == 5 and numbers:  # one number changed everywhere (a shape and its chunk shape together)
        old = _at(doc, numbers[int(rng.integers(len(numbers)))])
        new = [old + 1, old - 1, 0, -old, old * 1000][int(rng.integers(5))]
        for p in numbers:
            if _at(doc, p) == old:
                _at(doc, p[:-1])[p[-1]] = new
    elif isinstance(node, dict) and (op == 4 or not path):  # a key more
        keys = [p[-1] for p in paths if p and isinstance(p[-1], str)] + ["x"]
        node[keys[int(rng.integers(len(keys)))]] = copy.deepcopy(pool[int(rng.integers(len(pool)))])
    elif path:
        parent, key = _at(doc, path[:-1]), path[-1]
        if op == 0:
            parent[key] = copy.deepcopy(pool[int(rng.integers(len(pool)))])
        elif op == 1:
            parent[key] = copy.deepcopy(_at(doc, paths[int(rng.integers(len(paths)))]))
        elif op == 2:
            del parent[key]
        elif isinstance(node, int | float) and not isinstance(node, bool):
            parent[key] = [node + 1, node - 1, -node, node * 1000, 0][int(rng.integers(5))]
        elif isinstance(parent, list):
            parent.insert(int(key), copy.deepcopy(node))
    out = json.dumps(doc, indent=2) if ctx.kind == "json" else _dump_toml(doc)
    return out.encode("utf-8", "surrogatepass")


BYTE_OPS = [flip_bits, set_int, insert_bytes, delete_span, duplicate_span, truncate, splice]
TEXT_OPS = [odd_number, odd_number, insert_special, insert_special, insert_token, replace_value, line_edit,
            line_edit, gzip_wrap, reencode, newlines]


@dataclass
class Ctx:
    kind: str  # text, json, toml, binary (HDF5, SQLite, zarr chunks), mixed (.npy/.npz: binary, text header), gz
    donors: list[bytes]
    words: list[bytes]

    @property
    def binary(self) -> bool:
        return self.kind in ("binary", "mixed", "gz")


def mutate(rng, data: bytes, ctx: Ctx) -> bytes:
    """One to a few stacked mutations of ``data``, chosen by its kind."""
    if ctx.kind == "gz":
        if rng.random() < 0.6:  # mutate the text inside, compress again
            try:
                inner = gzip.decompress(data)
            except (OSError, EOFError, zlib.error):
                inner = data
            return gzip.compress(mutate(rng, inner, Ctx("text", ctx.donors, ctx.words)), mtime=0)
        ops = BYTE_OPS  # a damaged gzip stream: flips, truncation, a bad CRC or length
    elif ctx.kind in ("json", "toml") and rng.random() < 0.5:
        ops = [structured]
    elif ctx.kind in ("text", "json", "toml"):
        ops = TEXT_OPS + BYTE_OPS if rng.random() < 0.3 else TEXT_OPS
    elif ctx.kind == "mixed":
        ops = BYTE_OPS + TEXT_OPS[:6]
    else:
        ops = BYTE_OPS + [set_int, set_int, flip_bits]
    for _ in range(int(min(rng.geometric(0.55), 5))):
        data = ops[int(rng.integers(len(ops)))](rng, data, ctx)
    return data


# --------------------------------------------------------------------------- seeds and targets


@dataclass
class Seed:
    """Valid files (relative path -> bytes) the target reads together; ``mutable`` -> (kind, weight)."""

    files: dict[str, bytes]
    mutable: dict[str, tuple[str, float]]
    extra: dict = field(default_factory=dict)


@dataclass
class Target:
    name: str
    needs: tuple[Path, ...]  # the folders of ../shared/data its seeds come from (skipped without them)
    seeds: Callable[[Path], list[Seed]]  # builds the seeds in a scratch directory
    call: Callable[[Path, Seed, int], object]  # reads the files under the work directory; int: a random pick
    repro: str  # how to call it on a saved input
    words: list[bytes] = field(default_factory=lambda: TABLE_WORDS)


def _kind(name: str) -> str:
    if name.endswith(".gz"):
        return "gz"
    if name.endswith((".gctx", ".sqlite")) or "/c/" in name:
        return "binary"
    if name.endswith((".npy", ".npz")):
        return "mixed"
    if name.endswith((".json", ".toml")):
        return name.rsplit(".", 1)[1]
    return "text"


def single(name: str, data: bytes, **extra) -> Seed:
    return Seed({name: data}, {name: (_kind(name), 1.0)}, extra)


def _lines(path: Path, n: int, cols: int | None = None, opener=open) -> bytes:
    """The first ``n`` lines (and ``cols`` columns) of a real table: a valid, smaller seed."""
    with opener(path, "rt", encoding="utf-8") as f:
        out = []
        for line in f:
            out.append(line if cols is None else "\t".join(line.rstrip("\n").split("\t")[:cols]) + "\n")
            if len(out) == n:
                break
    return "".join(out).encode()


def _gctx_bytes(scratch: Path, name: str, g: GCT) -> bytes:
    write_gctx(scratch / name, g)
    return (scratch / name).read_bytes()


def _sub_gctx(g: GCT, rows: slice, cols: slice) -> GCT:
    return GCT(g.matrix[rows, cols], g.row_ids[rows], g.col_ids[cols], {k: v[rows] for k, v in g.row_meta.items()},
               {k: v[cols] for k, v in g.col_meta.items()})


def _signature_gctx(scratch: Path) -> list[Seed]:
    """Real consensus signatures, cut to 20 landmarks x 8 signatures, of each type; and one probe-keyed file."""
    seeds = []
    for t in ("RNAi", "OE", "CRISPR"):
        g = _sub_gctx(read_gctx(L1000 / f"signatures_{t}.gctx"), slice(0, 20), slice(0, 8))
        seeds.append(single(f"sig_{t}.gctx", _gctx_bytes(scratch, f"sig_{t}.gctx", g), cids=g.col_ids[[3, 0]].tolist()))
    hp = _sub_gctx(read_gctx(FIXTURES / "test_l1000_highprecision.gctx"), slice(0, 30), slice(0, 6))
    hp.col_meta = {"pert_type": np.array(["trt_xpr"] * 6), "pert_gene_id": np.arange(6, dtype=np.int64) * 7 + 1}
    seeds.append(single("probes.gctx", _gctx_bytes(scratch, "probes.gctx", hp), cids=hp.col_ids[[5, 1, 2]].tolist()))
    return seeds


def _gctx_seeds(scratch: Path) -> list[Seed]:
    seeds = [single(p.name, p.read_bytes(), cids=read_gctx(p).col_ids[[1, 0]].tolist())
             for p in (FIXTURES / "mini_gctoo_for_testing.gctx", FIXTURES / "test_parse_gctx_rid_entrez_id.gctx")]
    return seeds + _signature_gctx(scratch)


def _gctx_call(work: Path, seed: Seed, pick: int):
    # Half of the calls read a column subset (the slab reader) as `tnfast query --column` does.
    return read_gctx(_the_file(work, seed), cids=seed.extra["cids"] if pick % 2 else None)


def _signature_tsv(scratch: Path) -> list[Seed]:
    g = _sub_gctx(read_gctx(L1000 / "signatures_OE.gctx"), slice(0, 24), slice(0, 10))
    out = []
    for name, sep in (("sig.tsv", "\t"), ("sig.csv", ",")):
        rows = [["pert_gene_id", *g.row_ids]] + [[str(x), *(repr(float(v)) for v in g.matrix[:, j])]
                                                 for j, x in enumerate(g.col_meta["pert_gene_id"].tolist())]
        out.append(single(name, "".join(sep.join(r) + "\n" for r in rows).encode()))
    return out


def _query_seeds(scratch: Path) -> list[Seed]:
    g = read_gctx(L1000 / "signatures_RNAi.gctx")
    body = "".join(f"{lm}\t{v!r}\n" for lm, v in zip(g.row_ids[:40].tolist(), g.matrix[:40, 0].tolist()))
    return [single("q.tsv", ("landmark_id\tvalue\n" + body).encode()), single("q_noheader.txt", body.encode())]


def _feature_seeds(scratch: Path) -> list[Seed]:
    """The real feature table cut to 30 genes x 24 features, as .tsv, .csv and .tsv.gz, and as .npy + genes."""
    text = _lines(L1000 / "features.tsv.gz", 31, cols=25, opener=gzip.open)
    rows = [line.split("\t") for line in text.decode().splitlines()]
    values = np.array([r[1:] for r in rows[1:]], dtype=np.float32)
    genes = ("gene_id\n" + "".join(r[0] + "\n" for r in rows[1:])).encode()
    buf32, buf64 = io.BytesIO(), io.BytesIO()
    np.save(buf32, values)
    np.save(buf64, np.asfortranarray(values.astype(np.float64)))  # another dtype, fortran_order: True
    npy = lambda data: Seed({"f.npy": data, "genes.txt": genes}, {"f.npy": ("mixed", 3.0), "genes.txt": ("text", 1.0)})
    return [single("f.tsv", text), single("f.csv", text.replace(b"\t", b",")),
            single("f.tsv.gz", gzip.compress(text, mtime=0)), npy(buf32.getvalue()), npy(buf64.getvalue())]


def _split_seeds(scratch: Path) -> list[Seed]:
    seeds = [single(f"split_{t}.tsv", (L1000 / f"split_{t}.tsv").read_bytes()) for t in ("RNAi", "OE")]
    body = (L1000 / "split_CRISPR.tsv").read_text().split("\n", 1)[1].replace("valid", "val")
    return seeds + [single("split.csv", body.replace("\t", ",").encode())]


@functools.cache
def _landmarks(n: int = 40) -> tuple[tuple[str, ...], ...]:
    """(entrez id, symbol, probe) of the first real landmark genes."""
    return tuple(tuple(r.split("\t")) for r in _lines(L1000 / "landmarks.tsv", n + 1).decode().splitlines()[1:])


def _edge_seeds(scratch: Path, symbols: bool = False) -> list[Seed]:
    """Edge lists over real landmark genes, in the layouts users bring (STRING, two columns, CSV, no header)."""
    lm = _landmarks()
    ids = [r[1] if symbols else r[0] for r in lm]
    rng = np.random.default_rng(5)
    pairs = [(ids[i], ids[(i + k) % len(ids)]) for i in range(len(ids)) for k in (1, 3)]
    scores = rng.integers(150, 1000, len(pairs))
    string = "protein1 protein2 combined_score\n" + "".join(f"{a} {b} {s}\n" for (a, b), s in zip(pairs, scores))
    two = "source\ttarget\n" + "".join(f"{a}\t{b}\n" for a, b in pairs)
    csv = "gene_a,gene_b,weight\n" + "".join(f"{a},{b},{s / 1000}\n" for (a, b), s in zip(pairs, scores))
    bare = "".join(f"{a}\t{b}\t{s / 997:.4f}\n" for (a, b), s in zip(pairs, scores))
    return [single("string.txt", string.encode()), single("edges.tsv", two.encode()),
            single("edges.csv", csv.encode()), single("bare.tsv", bare.encode())]


def _id_map_seeds(scratch: Path) -> list[Seed]:
    lm = _landmarks()
    return [single("map.tsv", ("symbol\tgene_id\n" + "".join(f"{r[1]}\t{r[0]}\n" for r in lm)).encode()),
            single("landmarks.tsv", _lines(L1000 / "landmarks.tsv", 41))]


def _id_list_seeds(scratch: Path) -> list[Seed]:
    return [single("landmarks.tsv", _lines(L1000 / "landmarks.tsv", 41)),
            single("split.tsv", (L1000 / "split_OE.tsv").read_bytes()),
            single("genes.txt", "".join(r[0] + "\n" for r in _landmarks()).encode())]


def _matrix_seeds(scratch: Path) -> list[Seed]:
    return _signature_tsv(scratch) + [s for s in _feature_seeds(scratch) if "f.npy" not in s.files]


def _orgdb_seeds(scratch: Path) -> list[Seed]:
    from test_orgdb import make_db

    return [single("org.Hs.eg.sqlite", make_db(scratch / "org.Hs.eg.sqlite").read_bytes())]


def _toml_seeds(scratch: Path) -> list[Seed]:
    from tnfast.train_config import resolve

    return [single("tiny.toml", (TESTS_DATA / "tiny_model.toml").read_bytes()),
            single("small.toml", resolve("small").to_toml().encode()),
            single("config.toml", resolve("quick").to_toml().encode())]


def _tree(root: Path, prefix: str) -> dict[str, bytes]:
    return {f"{prefix}/{p.relative_to(root).as_posix()}": p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _dir_seed(root: Path, prefix: str, weight: Callable[[str], float]) -> Seed:
    files = _tree(root, prefix)
    return Seed(files, {k: (_kind(k), weight(k)) for k in files})


def _bundle_seeds(scratch: Path) -> list[Seed]:
    from test_bundle import small_bundle

    small_bundle().save(scratch / "bundle")
    return [_dir_seed(scratch / "bundle", "bundle", lambda k: 4.0 if k.endswith(".json") else 1.0)]


def _preds_seeds(scratch: Path) -> list[Seed]:
    from test_catalogue import store

    store(scratch / "preds.zarr")
    return [_dir_seed(scratch / "preds.zarr", "preds.zarr", lambda k: 3.0 if k.endswith(".json") else 1.0)]


def _the_file(work: Path, seed: Seed) -> Path:
    (name,) = seed.files
    return work / name


def _orgdb_call(work: Path, seed: Seed, pick: int):
    from tnfast.data.orgdb import LAYERS, coannotation_layers

    i = pick % (len(LAYERS) + 1)
    return coannotation_layers(_the_file(work, seed), LAYERS if i == len(LAYERS) else [LAYERS[i]])


def _toml_call(work: Path, seed: Seed, pick: int):
    from tnfast.train_config import resolve

    return resolve(config=_the_file(work, seed))


def _bundle_call(work: Path, seed: Seed, pick: int):
    from tnfast.data.bundle import load_bundle

    b = load_bundle(work / "bundle", truth=True)
    return [float(np.asarray(a).sum()) for a in b.truth.values()]


def _preds_call(work: Path, seed: Seed, pick: int):
    """What query, export and evaluate do with a store: open it, read every chunk, look up `measured`."""
    from tnfast.preds import open_preds

    p = open_preds(work / "preds.zarr")
    p.select_types(None)
    for pos, block in p.chunks():
        assert block.shape[1] == len(pos)
        p.measured[:, pos].sum()
    return p


def _features_call(work: Path, seed: Seed, pick: int):
    if "f.npy" in seed.files:
        return read_features(work / "f.npy", work / "genes.txt")
    return read_features(_the_file(work, seed))


def _edges_with_map(work: Path, seed: Seed, pick: int):
    return read_edge_list(_the_file(work, seed), id_map={r[1]: r[0] for r in _landmarks()})


def _edges_min_score(work: Path, seed: Seed, pick: int):
    f = _the_file(work, seed)
    return read_edge_list(f, min_score=500.0 if f.name == "string.txt" else 0.5)


def _query_call(work: Path, seed: Seed, pick: int):
    from tnfast.query import read_query

    return read_query(_the_file(work, seed))


def _matrix_call(work: Path, seed: Seed, pick: int):
    f = _the_file(work, seed)
    return read_matrix(f, id_column="gene_id" if f.name.startswith("f.") else None, unique=f.name.startswith("f."))


TARGETS = [
    Target("gctx", (FIXTURES, L1000), _gctx_seeds, _gctx_call, "tnfast.data.gctx.read_gctx(PATH[, cids])"),
    Target("signatures-gctx", (FIXTURES, L1000), _signature_gctx, lambda w, s, _: read_signature_file(_the_file(w, s)),
           "tnfast.data.importer.read_signature_file(PATH)"),
    Target("signatures-tsv", (L1000,), _signature_tsv, lambda w, s, _: read_signature_file(_the_file(w, s), "OE"),
           "tnfast.data.importer.read_signature_file(PATH, 'OE')"),
    Target("features", (L1000,), _feature_seeds, _features_call,
           "tnfast.data.importer.read_features(PATH) or read_features(f.npy, genes.txt)", TABLE_WORDS + NPY_WORDS),
    Target("split", (L1000,), _split_seeds, lambda w, s, _: read_split_file(_the_file(w, s)),
           "tnfast.data.importer.read_split_file(PATH)"),
    Target("edges", (L1000,), _edge_seeds, lambda w, s, _: read_edge_list(_the_file(w, s)),
           "tnfast.data.edges.read_edge_list(PATH)"),
    Target("edges-id-map", (L1000,), lambda d: _edge_seeds(d, symbols=True), _edges_with_map,
           "tnfast.data.edges.read_edge_list(PATH, id_map=symbol -> id of the first 40 landmarks)"),
    Target("edges-min-score", (L1000,), lambda d: [s for s in _edge_seeds(d) if "edges.tsv" not in s.files],
           _edges_min_score,
           "tnfast.data.edges.read_edge_list(PATH, min_score=500 (string.txt) or 0.5)"),
    Target("id-map", (L1000,), _id_map_seeds, lambda w, s, _: read_id_map(_the_file(w, s)),
           "tnfast.data.edges.read_id_map(PATH)"),
    Target("id-list", (L1000,), _id_list_seeds, lambda w, s, _: read_id_list(_the_file(w, s)),
           "tnfast.data.tables.read_id_list(PATH)"),
    Target("matrix", (L1000,), _matrix_seeds, _matrix_call,
           "tnfast.data.tables.read_matrix(PATH[, id_column='gene_id'])"),
    Target("query-signature", (L1000,), _query_seeds, _query_call, "tnfast.query.read_query(PATH)"),
    Target("orgdb", (), _orgdb_seeds, _orgdb_call,
           "tnfast.data.orgdb.coannotation_layers(PATH, LAYERS or one of them)"),
    Target("train-config", (), _toml_seeds, _toml_call, "tnfast.train_config.resolve(config=PATH)", TOML_WORDS),
    Target("bundle", (), _bundle_seeds, _bundle_call, "tnfast.data.bundle.load_bundle(DIR/bundle)",
           JSON_WORDS + NPY_WORDS),
    Target("preds", (), _preds_seeds, _preds_call, "tnfast.preds.open_preds(DIR/preds.zarr) + every chunk",
           JSON_WORDS),
]

# --------------------------------------------------------------------------- the run


class Hang(BaseException):
    """A call past CALL_LIMIT_S (BaseException: readers that catch Exception must not hide it)."""


@contextmanager
def call_limit(seconds: float):
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise Hang(f"still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@contextmanager
def memory_guard(headroom: int = 4 << 30):
    """Cap this process's address space while fuzzing: a file that claims a huge array must end in
    an error here (reported), not in the machine swapping or the OOM killer."""
    try:
        import resource

        vm = next(int(line.split()[1]) * 1024 for line in Path("/proc/self/status").read_text().splitlines()
                  if line.startswith("VmSize:"))
    except (ImportError, OSError, StopIteration):
        yield
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    limit = vm + headroom if hard == resource.RLIM_INFINITY else min(vm + headroom, hard)
    if soft != resource.RLIM_INFINITY and soft <= limit:
        yield
        return
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def _write(path: Path, data: bytes) -> None:
    """Write ``path``; an .npy as a new file under the name (an earlier result may still map the old one)."""
    tmp = path.with_name(path.name + ".fuzz-tmp") if path.suffix == ".npy" else path
    try:
        tmp.write_bytes(data)
    except FileNotFoundError:
        path.parent.mkdir(parents=True)
        tmp.write_bytes(data)
    if tmp != path:
        os.replace(tmp, path)


def _where(e: BaseException) -> str:
    """The innermost frame in tnfast (else the innermost one): what tells two failures apart."""
    frames = traceback.extract_tb(e.__traceback__)
    ours = [f for f in frames if f"{os.sep}tnfast{os.sep}" in f.filename] or frames
    f = ours[-1] if ours else None
    return f"{Path(f.filename).name}:{f.lineno}" if f else "?"


def fuzz(target: Target, seeds: list[Seed], work: Path, failures: Path, seconds: float, seed: int) -> int:
    """Mutate and call until ``seconds`` are spent (at least MIN_ITERATIONS); returns the iterations run."""
    donors = [data for s in seeds for data in s.files.values()]
    key = zlib.crc32(target.name.encode())
    found: dict[str, str] = {}
    on_disk: dict[str, bytes] = {}  # what work/ holds now: only changed files are written again
    deadline = time.monotonic() + seconds
    i = refused = 0
    while (i < MIN_ITERATIONS or time.monotonic() < deadline) and len(found) < MAX_FINDINGS:
        rng = np.random.default_rng([seed, key, i])
        k = int(rng.integers(len(seeds)))
        s = seeds[k]
        names = list(s.mutable)
        weights = np.array([s.mutable[n][1] for n in names])
        name = names[int(rng.choice(len(names), p=weights / weights.sum()))]
        data = mutate(rng, s.files[name], Ctx(s.mutable[name][0], donors, target.words))
        for rel, content in {**s.files, name: data}.items():
            if on_disk.get(rel) != content:
                _write(work / rel, content)
                on_disk[rel] = content
        problem = None
        try:
            with call_limit(CALL_LIMIT_S), warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                target.call(work, s, int(rng.integers(1 << 30)))
            ours = [w for w in caught if f"{os.sep}tnfast{os.sep}" in w.filename and w.category is RuntimeWarning]
            if ours:  # an overflow to inf, an invalid cast: a value the reader should have refused
                w = ours[0]
                problem = (f"{w.category.__name__}: {w.message}",
                           f"{w.category.__name__}@{Path(w.filename).name}:{w.lineno}")
        except InputError as e:
            refused += 1
            if "\n" in str(e) or not e.where.startswith(str(work)):
                problem = f"InputError does not name the input in one line: {str(e)!r}", "InputError-where"
        except (Exception, Hang) as e:
            tb = "".join(traceback.format_exception(type(e), e, e.__traceback__)[-6:])
            problem = f"{type(e).__name__}: {e}\n{tb}", f"{type(e).__name__}@{_where(e)}"
        if problem is not None and problem[1] not in found:
            saved = failures / f"{target.name}-{i}"
            for rel in s.files:
                (saved / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(work / rel, saved / rel)
            found[problem[1]] = (f"- {problem[1]} at iteration {i} (seed file {name} of seed {k}); input saved "
                                 f"in {saved}\n  {problem[0]}")
        i += 1
    print(f"fuzz {target.name}: {i} iterations in {seconds:.1f} s, {refused} refused with InputError "
          f"(TNFAST_FUZZ_SEED={seed})")
    if found:
        pytest.fail(f"fuzz target {target.name!r}: {len(found)} distinct failures (TNFAST_FUZZ_SEED={seed}, "
                    f"TNFAST_FUZZ_SECONDS={BUDGET_S:g}); reproduce with {target.repro} on the saved file\n"
                    + "\n".join(found.values()), pytrace=False)
    return i


@contextmanager
def scratch(fallback: Path):
    """A directory in RAM (/dev/shm) where there is one: rewriting a file thousands of times costs
    ~3 ms a write on ext4 (it flushes a truncated file on close) and ~0.05 ms on tmpfs."""
    shm = Path("/dev/shm")
    if not (shm.is_dir() and os.access(shm, os.W_OK | os.X_OK)):
        yield fallback
        return
    d = Path(tempfile.mkdtemp(prefix="tnfast-fuzz-", dir=shm))
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.mark.parametrize("target", TARGETS, ids=[t.name for t in TARGETS])
def test_fuzz(target: Target, tmp_path: Path):
    missing = [p for p in target.needs if not p.is_dir()]
    if missing:
        pytest.skip(f"{missing[0]} is not present (the seeds are real files from it)")
    (tmp_path / "seeds").mkdir()
    seeds = target.seeds(tmp_path / "seeds")
    for s in seeds:  # the seeds themselves read cleanly: the run starts from valid files
        for rel, data in s.files.items():
            _write(tmp_path / "valid" / rel, data)
        for pick in range(2):
            target.call(tmp_path / "valid", s, pick)
        shutil.rmtree(tmp_path / "valid")
    with memory_guard(), scratch(tmp_path) as ram:
        fuzz(target, seeds, ram / "work", tmp_path / "failures", BUDGET_S / len(TARGETS), SEED)


# --------------------------------------------------------------------------- regressions: what the fuzz found
# Each is one input the run above (or a look at what it reported) turned up, fixed in the reader
# named; before the fix each ended in the exception named, not InputError.


def test_mutations_are_reproducible():
    ctx = Ctx("text", [b"a\tb\n1\t2\n"], TABLE_WORDS)
    runs = [[mutate(np.random.default_rng([7, 1, i]), b"gene_id\tf0\n16\t0.5\n", ctx) for i in range(50)]
            for _ in range(2)]
    assert runs[0] == runs[1] and len(set(runs[0])) > 10


def _npy_header(shape, descr="<f4") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": descr, "fortran_order": False, "shape": shape})
    return buf.getvalue()


def _bundle(tmp_path: Path) -> Path:
    from test_bundle import small_bundle

    return small_bundle().save(tmp_path / "b")


def _refused(call, *fragments) -> str:
    with pytest.raises(InputError) as e:
        call()
    msg = str(e.value)
    assert "\n" not in msg and all(f in msg for f in fragments), msg
    return msg


def test_features_npy_beyond_float32_range(tmp_path):
    """float64 1e300 passed the finite check, then became inf in float32 (RuntimeWarning)."""
    np.save(tmp_path / "f.npy", np.array([[0.5, 1e300], [0.1, 0.2]]))
    (tmp_path / "genes.txt").write_text("gene_id\n7\n8\n")
    _refused(lambda: read_features(tmp_path / "f.npy", tmp_path / "genes.txt"), "f.npy", "row 0 (gene '7')", "1e+300")


def test_bundle_npy_header_that_breaks_numpys_python2_clean_up(tmp_path):
    """A v1.0 header with an unclosed brace: tokenize.TokenError from inside np.load."""
    from tnfast.data.bundle import load_bundle

    d = _bundle(tmp_path)
    good = (d / "truth" / "OE.npy").read_bytes()
    (d / "truth" / "OE.npy").write_bytes(good.replace(b"}", b" ", 1))
    _refused(lambda: load_bundle(d), "OE.npy", "not a readable .npy array")
    (d / "truth" / "OE.npy").write_bytes(good)
    (d / "features.npz").write_bytes((d / "features.npz").read_bytes().replace(b"), }", b"),  ", 1))
    _refused(lambda: load_bundle(d), "features.npz", "not a readable .npz file")


def test_bundle_npy_header_that_numpys_tokenizer_refuses_to_indent(tmp_path):
    """IndentationError (a SyntaxError) from numpy's Python-2 header clean-up."""
    from tnfast.data.bundle import load_bundle

    d = _bundle(tmp_path)
    header = b"{'descr': '<f4', 'fortran_order': False, 'shape': (5, 3), }\n    x\n  y\n"
    (d / "truth" / "OE.npy").write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + bytes(60))
    _refused(lambda: load_bundle(d), "OE.npy", "not a readable .npy array")


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # numpy's own, on the way
def test_bundle_truth_npy_with_a_shape_no_memory_map_can_take(tmp_path):
    """OverflowError from np.memmap."""
    from tnfast.data.bundle import load_bundle

    d = _bundle(tmp_path)
    (d / "truth" / "OE.npy").write_bytes(_npy_header((10**10, 10**10)) + bytes(64))
    _refused(lambda: load_bundle(d), "OE.npy", "not a readable .npy array")


def test_bundle_npz_entry_with_an_unknown_compression_method(tmp_path):
    """NotImplementedError from zipfile (a flipped compression-method field of the zip directory)."""
    from tnfast.data.bundle import load_bundle

    d = _bundle(tmp_path)
    p = d / "networks" / "ppi.npz"
    raw = bytearray(p.read_bytes())
    for i in (m.start() for m in re.finditer(b"PK\x01\x02", raw)):  # each central directory entry
        raw[i + 10:i + 12] = (97).to_bytes(2, "little")
    p.write_bytes(bytes(raw))
    _refused(lambda: load_bundle(d), "ppi.npz", "not a readable .npz file")


def test_bundle_manifest_names_a_layer_with_a_nul(tmp_path):
    """ValueError 'embedded null byte' from Path.resolve: JSON spells NUL as \\u0000."""
    from tnfast.data.bundle import load_bundle

    d = _bundle(tmp_path)
    m = json.loads((d / "bundle.json").read_text())
    m["layers"] = ["ppi\u0000"]
    (d / "bundle.json").write_text(json.dumps(m))
    _refused(lambda: load_bundle(d), "bundle.json", "'layers' must be a list of names")


@pytest.mark.parametrize("value", ["[1]", "{a = 1}"])
def test_train_config_profile_that_is_not_a_string(tmp_path, value):
    """TypeError 'unhashable type' looking the profile up."""
    from tnfast.train_config import resolve

    (tmp_path / "c.toml").write_text(f"profile = {value}\n")
    _refused(lambda: resolve(config=tmp_path / "c.toml"), "c.toml", "unknown profile")


def _store_with(tmp_path: Path, array: str, **meta) -> Path:
    from test_catalogue import store

    d = store(tmp_path / "p.zarr")
    m = json.loads((d / array / "zarr.json").read_text())
    m.update(meta)
    (d / array / "zarr.json").write_text(json.dumps(m))
    return d


def _read_store(d: Path):
    from tnfast.preds import open_preds

    p = open_preds(d)
    for pos, _ in p.chunks():
        p.measured[:, pos]


def test_preds_store_with_a_zero_chunk_size(tmp_path):
    """ValueError 'range() arg 3 must not be zero' reading chunk by chunk: zarr accepts chunk size 0."""
    grid = {"name": "regular", "configuration": {"chunk_shape": [3, 0, 10]}}
    d = _store_with(tmp_path, "predictions", chunk_grid=grid)
    _refused(lambda: _read_store(d), "p.zarr", "chunk shape")


@pytest.mark.parametrize("shape, chunk", [([8], [8]), ([3, 4], [3, 8])])
def test_preds_store_whose_measured_does_not_match(tmp_path, shape, chunk):
    """IndexError in `tnfast query` (measured[t, pos]); JSON edits of measured/zarr.json make these."""
    d = _store_with(tmp_path, "measured", shape=shape,
                    chunk_grid={"name": "regular", "configuration": {"chunk_shape": chunk}},
                    dimension_names=["perturbation", "gene"][-len(shape):])
    _refused(lambda: _read_store(d), "p.zarr", "'measured'", "(3, 8)")


@pytest.mark.parametrize("update, expected", [
    ("UPDATE genes SET gene_id = X'FF31' WHERE _id = 1", "binary data in place of a gene id"),  # UnicodeDecodeError
    ("UPDATE go_bp SET go_id = CAST(X'474FFF41' AS TEXT) WHERE go_id = 'GO:A'", "unreadable SQLite database"),
])
def test_orgdb_values_that_are_not_text(tmp_path, update, expected):
    """A BLOB id (UnicodeDecodeError in numpy) or non-UTF-8 text (was reported as missing columns)."""
    import sqlite3

    from test_orgdb import make_db

    from tnfast.data.orgdb import coannotation_layers

    p = make_db(tmp_path / "org.Hs.eg.sqlite")
    with sqlite3.connect(p) as conn:
        conn.execute(update)
    conn.close()
    _refused(lambda: coannotation_layers(p, ["go-bp"]), "org.Hs.eg.sqlite", expected)


def test_orgdb_schema_with_bytes_that_are_not_utf8(tmp_path):
    """UnicodeDecodeError: sqlite's 'malformed database schema' message quotes the bad bytes."""
    import sqlite3

    from test_orgdb import make_db

    from tnfast.data.orgdb import coannotation_layers

    p = make_db(tmp_path / "org.Hs.eg.sqlite")
    conn = sqlite3.connect(p)
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute("UPDATE sqlite_master SET sql = CAST(X'435245415445205441424C45206B65676720E7' AS TEXT) "
                 "WHERE name = 'kegg'")  # 'CREATE TABLE kegg \xe7'
    conn.commit()
    conn.close()
    _refused(lambda: coannotation_layers(p, ["go-bp"]), "org.Hs.eg.sqlite", "unreadable SQLite database")


def test_query_signature_with_only_a_header(tmp_path):
    """IndexError in read_query: parse_floats of no rows gave a 1-D array (fixed in tables.parse_floats)."""
    from tnfast.query import read_query

    (tmp_path / "q.tsv").write_text("landmark_id\t\\value\n")
    _refused(lambda: read_query(tmp_path / "q.tsv"), "q.tsv", "no data lines")


def test_gctx_string_datatype_with_an_unknown_encoding(tmp_path):
    """TypeError 'Unknown string encoding (value 15)' from h5py's dtype: a flipped character-set field."""
    import h5py

    files = {}
    for cset in ("ascii", "utf-8"):  # the same file but for the row ids' character set: the byte that holds it
        with h5py.File(tmp_path / f"{cset}.gctx", "w") as f:
            f.attrs["version"] = np.bytes_(b"GCTX1.0")
            f["0/DATA/0/matrix"] = np.zeros((1, 2), np.float32)
            f["0/META/ROW/id"] = np.array([b"a", b"b"]).astype(h5py.string_dtype(cset, 1))
            f["0/META/COL/id"] = np.array([b"x"])
        files[cset] = bytearray((tmp_path / f"{cset}.gctx").read_bytes())
    (at,) = [i for i, (a, b) in enumerate(zip(*files.values())) if a != b]
    files["ascii"][at] |= 0xF0  # character set 15: none HDF5 defines
    (tmp_path / "x.gctx").write_bytes(bytes(files["ascii"]))
    _refused(lambda: read_gctx(tmp_path / "x.gctx"), "x.gctx", "/0/META/ROW/id", "unreadable HDF5 datatype")


def test_gctx_float_ids_beyond_int64_stay_as_written(tmp_path):
    """Integral float ids >= 2**63 overflowed int64 (RuntimeWarning) and read as a false duplicate."""
    import h5py

    with h5py.File(tmp_path / "x.gctx", "w") as f:
        f.attrs["version"] = np.bytes_(b"GCTX1.0")
        f["0/DATA/0/matrix"] = np.zeros((1, 2), np.float32)
        f["0/META/ROW/id"] = np.array([1e300, 2e300])
        f["0/META/COL/id"] = np.array([b"x"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_gctx(tmp_path / "x.gctx").row_ids.tolist() == ["1e+300", "2e+300"]


def test_gctx_metadata_field_named_in_bytes_that_are_not_utf8(tmp_path):
    """h5py gives a link name that is not UTF-8 as bytes: the 'have: ...' list of fields in
    read_signature_file's error then raised TypeError (found by CI's fuzz run, seed 1796007566)."""
    import h5py

    with h5py.File(tmp_path / "x.gctx", "w") as f:
        f.attrs["version"] = np.bytes_(b"GCTX1.0")
        f["0/DATA/0/matrix"] = np.zeros((1, 2), np.float32)
        f["0/META/ROW/id"] = np.array([b"7157", b"672"])
        f["0/META/COL/id"] = np.array([b"x"])
        f["0/META/COL"].create_dataset(b"pert\xff", data=np.array([b"trt_sh"]))
    assert list(read_gctx(tmp_path / "x.gctx").col_meta) == ["pert\\xff"]
    _refused(lambda: read_signature_file(tmp_path / "x.gctx"), "x.gctx", "pert_gene_id", "pert\\xff")
