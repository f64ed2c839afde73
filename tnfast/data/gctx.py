"""GCTX 1.0, the Connectivity Map's HDF5 matrix format: reader and writer on h5py alone.

Layout (CMap orientation)::

    /                     attribute ``version`` = b"GCTX1.0"
    /0/DATA/0/matrix      shape (n_cols, n_rows): stored TRANSPOSED relative to the GCT
    /0/META/ROW/id        n_rows row ids (features, e.g. the 978 landmark genes)
    /0/META/ROW/<field>   one 1-D dataset of n_rows values per row-metadata field
    /0/META/COL/id        n_cols column ids (samples / signatures)
    /0/META/COL/<field>   one 1-D dataset of n_cols values per column-metadata field

Ids and text fields may be fixed-length byte strings, variable-length strings or (ids from
GEO files) integers; all come back as ``str``. Numeric metadata stays numeric. A bad file raises
:class:`tnfast.errors.InputError` naming the file, the HDF5 object and the problem. NaN in the
matrix is not an error here (real L1000 files have some); callers decide.

cmapPy is deliberately not used: it does not work with NumPy 2.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field

import h5py
import numpy as np

from ..atomic import atomic_file
from ..errors import InputError, input_file

__all__ = ["GCT", "read_gctx", "write_gctx"]

VERSION = "GCTX1.0"
MATRIX = "/0/DATA/0/matrix"
ROW_META = "/0/META/ROW"
COL_META = "/0/META/COL"

# A column subset is read in slabs of at most this many bytes: one HDF5 call per run of nearby
# columns instead of one hyperslab per column (h5py's fancy indexing is slow for long lists).
_SLAB_BYTES = 8 << 20
_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"  # at offset 0 unless the file has a user block
# What h5py raises for a damaged file: OSError mostly, RuntimeError or KeyError/ValueError when a
# damaged object header or attribute message is decoded.
_H5_ERRORS = (OSError, RuntimeError, KeyError, ValueError)


@dataclass(eq=False)  # field-wise == on arrays is ambiguous; compare the fields explicitly
class GCT:
    matrix: np.ndarray  # (n_rows, n_cols) float32; rows = features, columns = samples/signatures
    row_ids: np.ndarray  # (n_rows,) str
    col_ids: np.ndarray  # (n_cols,) str
    row_meta: dict[str, np.ndarray] = field(default_factory=dict)  # field -> (n_rows,); no 'id'
    col_meta: dict[str, np.ndarray] = field(default_factory=dict)  # field -> (n_cols,)


# --------------------------------------------------------------------------- reading

def read_gctx(path: str | os.PathLike, cids: Sequence[str] | None = None) -> GCT:
    """Read a GCTX file; with ``cids``, only those columns, in the order given."""
    if isinstance(cids, str | bytes):
        raise TypeError("cids must be a sequence of column ids, not a single string")
    path = input_file(path, "a GCTX file")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if not head:
        raise InputError(path, "is empty (0 bytes), expected a GCTX file")
    try:
        f = h5py.File(path, "r")
    except _H5_ERRORS as e:
        sizes = re.search(r"truncated file: eof = (\d+).*stored_eof = (\d+)", str(e))
        if sizes:
            raise InputError(path, f"truncated HDF5/GCTX file: {int(sizes[1]):,} of its {int(sizes[2]):,} bytes "
                                   "(an interrupted download or copy?)") from None
        hint = " (corrupt or truncated?)" if head == _HDF5_MAGIC else ""
        raise InputError(path, f"not a readable HDF5/GCTX file{hint}: {_h5_reason(e)}") from None
    try:
        with f:
            return _read(path, f, cids)
    except _H5_ERRORS as e:  # damaged metadata or chunks only show when they are read
        raise InputError(path, f"HDF5 read failed (corrupt or truncated?): {_h5_reason(e)}") from None


def _h5_reason(e: Exception) -> str:
    """HDF5's own words, without the repeated file name and flags: 'truncated file: eof = 1000, ...'."""
    msg = str(e) if isinstance(e, OSError) else f"{type(e).__name__}: {e}"
    inner = re.search(r"\((.*)\)\s*$", msg)
    reason = inner.group(1) if inner else msg
    reason = re.sub(r"\s*name = '[^']*',?", "", reason)
    return re.sub(r"\s+", " ", reason).strip(" ,")


def _read(path: str, f: h5py.File, cids: Sequence[str] | None) -> GCT:
    if "version" not in f.attrs:
        raise InputError(path, "no 'version' attribute on the root group; not a GCTX file", place="/")
    ds = f.get(MATRIX)
    if not isinstance(ds, h5py.Dataset):
        raise InputError(path, "no data matrix", place=MATRIX)
    if ds.ndim != 2 or _dtype(path, ds, MATRIX).kind not in "biuf":
        raise InputError(path, f"expected a 2-D numeric matrix, found shape {ds.shape} of {ds.dtype}",
                         place=MATRIX)
    n_cols, n_rows = ds.shape
    row_ids = _ids(path, f, ROW_META, n_rows, "row")
    col_ids = _ids(path, f, COL_META, n_cols, "column")
    row_meta = _meta(path, f, ROW_META, n_rows, "row")
    col_meta = _meta(path, f, COL_META, n_cols, "column")
    if cids is None:
        stored = ds[()]
    else:
        idx = _col_index(path, col_ids, cids)
        stored = _read_cols(ds, idx)
        col_ids = col_ids[idx]
        col_meta = {k: v[idx] for k, v in col_meta.items()}
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes +-inf: callers check finiteness
        matrix = np.ascontiguousarray(stored.T, dtype=np.float32)
    return GCT(matrix, row_ids, col_ids, row_meta, col_meta)


def _ids(path: str, f: h5py.File, group: str, n: int, what: str) -> np.ndarray:
    place = f"{group}/id"
    ds = f.get(place)
    if not isinstance(ds, h5py.Dataset):
        raise InputError(path, f"no {what} ids", place=place)
    if ds.shape != (n,):
        raise InputError(path, f"{what} ids have shape {ds.shape}, but the matrix has {n} {what}s "
                               f"(matrix {MATRIX} is stored as (n_cols, n_rows))", place=place)
    ids = _values(path, ds, place)
    if ids.dtype.kind != "U":
        # Integral ids stored as float would otherwise print as '5720.0'.
        if ids.dtype.kind == "f" and (np.abs(ids) < 2**63).all() and (ids == np.round(ids)).all():
            ids = ids.astype(np.int64)
        ids = ids.astype(str)
    uniq, counts = np.unique(ids, return_counts=True)
    if len(uniq) != n:
        dups = uniq[counts > 1]
        more = f" ({len(dups)} ids repeated)" if len(dups) > 1 else ""
        raise InputError(path, f"duplicate {what} id {str(dups[0])!r}{more}", place=place)
    return ids


def _meta(path: str, f: h5py.File, group: str, n: int, what: str) -> dict[str, np.ndarray]:
    out = {}
    for name, obj in f[group].items():
        if name == "id":
            continue
        if isinstance(name, bytes):  # h5py gives a name that is not UTF-8 as bytes
            name = name.decode("utf-8", "backslashreplace")
        place = f"{group}/{name}"
        if not isinstance(obj, h5py.Dataset):
            raise InputError(path, "expected a metadata dataset, found a group", place=place)
        if obj.shape != (n,):
            raise InputError(path, f"metadata field has shape {obj.shape}, expected ({n},): "
                                   f"one value per {what}", place=place)
        out[name] = _values(path, obj, place)
    return out


def _values(path: str, ds: h5py.Dataset, place: str) -> np.ndarray:
    """A 1-D dataset as a str array (text) or its stored numeric dtype."""
    if _dtype(path, ds, place).kind == "S" or h5py.check_string_dtype(ds.dtype) is not None:
        raw = ds[()]
        if raw.dtype.kind == "O":  # variable-length strings arrive as an object array of bytes
            raw = np.array([x.encode() if isinstance(x, str) else x for x in raw.tolist()], dtype="S")
        try:
            return np.char.decode(raw, "utf-8")
        except UnicodeDecodeError:
            # Older CMap files hold Latin-1 gene titles in datasets labelled ASCII; reading them
            # beats refusing the whole file over one accent.
            return np.char.decode(raw, "latin-1")
    if ds.dtype.kind in "biuf":
        return ds[()]
    raise InputError(path, f"unsupported dtype {ds.dtype} (expected text or numbers)", place=place)


def _dtype(path: str, ds: h5py.Dataset, place: str) -> np.dtype:
    """The dataset's dtype; h5py raises TypeError for a damaged datatype (e.g. an unknown string encoding)."""
    try:
        return ds.dtype
    except TypeError as e:
        raise InputError(path, f"unreadable HDF5 datatype (corrupt?): {e}", place=place) from None


def _col_index(path: str, col_ids: np.ndarray, cids: Sequence[str]) -> np.ndarray:
    pos = {c: i for i, c in enumerate(col_ids.tolist())}
    want = list(cids)
    missing = [c for c in want if c not in pos]
    if missing:
        more = f" ({len(missing)} requested ids are missing)" if len(missing) > 1 else ""
        raise InputError(path, f"column id {str(missing[0])!r} not in the file{more}",
                         place=f"{COL_META}/id")
    idx = np.array([pos[c] for c in want], dtype=np.intp)
    uniq, counts = np.unique(idx, return_counts=True)
    if len(uniq) != len(idx):
        raise InputError(path, f"column id {str(col_ids[uniq[counts > 1][0]])!r} requested more than once",
                         place=f"{COL_META}/id")
    return idx


def _read_cols(ds: h5py.Dataset, idx: np.ndarray) -> np.ndarray:
    """Stored rows ``idx`` (= GCT columns; unique, any order) of the (n_cols, n_rows) dataset."""
    order = np.argsort(idx)
    want = idx[order]  # HDF5 reads go in increasing order
    picked = np.empty((len(want), ds.shape[1]), dtype=ds.dtype)
    span = max(1, _SLAB_BYTES // max(1, ds.shape[1] * ds.dtype.itemsize))
    i = 0
    while i < len(want):
        lo = int(want[i])
        j = int(np.searchsorted(want, lo + span))
        picked[i:j] = ds[lo:int(want[j - 1]) + 1][want[i:j] - lo]
        i = j
    out = np.empty_like(picked)
    out[order] = picked
    return out


# --------------------------------------------------------------------------- writing

def write_gctx(path: str | os.PathLike, gct: GCT) -> None:
    """Write ``gct`` in the CMap layout, atomically (temporary sibling file, then rename).

    An invalid GCT (shape/id/metadata mismatch, duplicate ids) raises ValueError before anything
    is written; an unusable output path raises InputError.
    """
    matrix = np.asarray(gct.matrix)
    if matrix.ndim != 2 or matrix.dtype.kind not in "biuf":
        raise ValueError(f"GCT matrix must be a 2-D numeric array, got shape {matrix.shape} of {matrix.dtype}")
    with gctx_writer(path, gct.row_ids, gct.col_ids, gct.row_meta, gct.col_meta, shape=matrix.shape) as put:
        put(0, matrix)


@contextlib.contextmanager
def gctx_writer(path: str | os.PathLike, row_ids, col_ids, row_meta: dict | None = None,
                col_meta: dict | None = None, shape: tuple[int, int] | None = None) -> Iterator[Callable]:
    """Write a GCTX file column block by column block, for matrices larger than memory.

    Yields ``put(first_col, block)`` with ``block`` of shape (n_rows, k); every column must be
    put once. Metadata is validated first (ValueError); the file appears at ``path`` only when
    the ``with`` block completes (temporary sibling, fsync, rename).
    """
    path = os.fspath(path)
    n_rows, n_cols = shape if shape is not None else (len(row_ids), len(col_ids))
    row_ids, col_ids, row_meta, col_meta = _checked(n_rows, n_cols, row_ids, col_ids, row_meta or {}, col_meta or {})
    with atomic_file(path) as tmp, h5py.File(tmp, "w-") as f:
        f.attrs["version"] = np.bytes_(VERSION.encode())
        # Contiguous and uncompressed: gzip saves under 10% on L1000 floats (measured on the
        # example files) but makes writing ~50x and reading ~40x slower.
        ds = f.create_dataset(MATRIX, shape=(n_cols, n_rows), dtype=np.float32)
        for group, ids, meta in ((ROW_META, row_ids, row_meta), (COL_META, col_ids, col_meta)):
            _put(f, f"{group}/id", ids)
            for name, values in meta.items():
                _put(f, f"{group}/{name}", values)

        def put(first_col: int, block: np.ndarray) -> None:
            block = np.asarray(block)
            if block.ndim != 2 or block.shape[0] != n_rows or first_col + block.shape[1] > n_cols:
                raise ValueError(f"block of shape {block.shape} at column {first_col} does not fit "
                                 f"a ({n_rows}, {n_cols}) matrix")
            ds[first_col:first_col + block.shape[1]] = block.T.astype(np.float32)

        yield put


def _put(f: h5py.File, name: str, values: np.ndarray) -> None:
    if values.dtype.kind == "U":
        data = np.char.encode(values, "utf-8")
        # Fixed-length, labelled UTF-8 so non-ASCII text decodes the same in any reader.
        f.create_dataset(name, data=data.astype(h5py.string_dtype("utf-8", max(1, data.itemsize))))
    else:
        f.create_dataset(name, data=values)


def _checked(n_rows: int, n_cols: int, row_ids, col_ids, row_meta: dict, col_meta: dict):
    """Validated, normalised copies of the labels; ValueError for anything unwritable."""
    row_ids = _text(row_ids, "row_ids")
    col_ids = _text(col_ids, "col_ids")
    for what, ids, n in (("row", row_ids, n_rows), ("column", col_ids, n_cols)):
        if ids.shape != (n,):
            raise ValueError(f"{what} ids have shape {ids.shape}, but the matrix has {n} {what}s")
        uniq, counts = np.unique(ids, return_counts=True)
        if len(uniq) != n:
            raise ValueError(f"duplicate {what} id {str(uniq[counts > 1][0])!r}")
    metas = []
    for what, meta, n in (("row", row_meta, n_rows), ("column", col_meta, n_cols)):
        out = {}
        for name, values in meta.items():
            if not isinstance(name, str) or not name or "/" in name or name == "id":
                raise ValueError(f"bad {what} metadata field name {name!r}")
            values = np.asarray(values)
            if values.shape != (n,):
                raise ValueError(f"{what} metadata {name!r} has shape {values.shape}, expected ({n},)")
            out[name] = values if values.dtype.kind in "biuf" else _text(values, name)
        metas.append(out)
    return row_ids, col_ids, metas[0], metas[1]


def _text(values, what: str) -> np.ndarray:
    values = np.asarray(values)
    if values.dtype.kind == "S":
        return np.char.decode(values, "utf-8")
    if values.dtype.kind in "UOiub":
        return values.astype(str)
    raise ValueError(f"{what}: cannot store dtype {values.dtype} as text")
