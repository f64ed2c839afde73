"""Delimited text tables (TSV, CSV, whitespace; optionally .gz) with errors that name the line.

Real exports differ in delimiter, comment lines and headers; every reader here goes through
:func:`read_rows` so a malformed file always ends in one InputError naming file, line and
column, never a parser traceback.
"""

from __future__ import annotations

import gzip
import os
import zlib
from pathlib import Path

import numpy as np

from ..errors import InputError, input_file


def open_text(path: str | os.PathLike) -> str:
    """The whole text of a (possibly gzipped) file, with clear errors for the usual mistakes."""
    p = Path(input_file(path, "a text table"))
    try:
        if p.suffix == ".gz":
            with gzip.open(p, "rt", encoding="utf-8-sig") as f:  # -sig: a byte-order mark is not data
                return f.read()
        return p.read_text(encoding="utf-8-sig")
    except PermissionError:
        raise InputError(p, "permission denied (cannot read it)") from None
    except (gzip.BadGzipFile, EOFError, zlib.error) as e:
        raise InputError(p, f"cannot read: not a valid gzip file, or a truncated one ({e})") from None
    except OSError as e:
        raise InputError(p, f"cannot read ({e})") from None
    except UnicodeDecodeError as e:
        raise InputError(p, f"not UTF-8 text (byte {e.start}); expected a delimited text table") from None


def delimiter(path: Path, first: str) -> str | None:
    """The field separator of a table, from its name and its first data line (None: whitespace)."""
    name = path.name.removesuffix(".gz")
    if name.endswith(".csv"):
        return ","
    if "\t" in first:
        return "\t"
    if "," in first and " " not in first.strip():
        return ","
    return None  # any run of whitespace, as STRING and BioGRID-style exports use


def read_rows(path: str | os.PathLike, min_columns: int = 1) -> list[tuple[int, list[str]]]:
    """(line number, fields) for every non-empty, non-comment ('#') line.

    All lines must have the same number of fields, at least ``min_columns``.
    """
    p = Path(path)
    text = open_text(p)
    rows = [(i + 1, line) for i, line in enumerate(text.splitlines())
            if line.strip() and not line.lstrip().startswith("#")]
    if not rows:
        raise InputError(p, "is empty (no data lines)")
    delim = delimiter(p, rows[0][1])
    out = []
    width = None
    for lineno, line in rows:
        fields = line.split(delim) if delim else line.split()
        if '"' in line or (delim and " " in line):  # the per-field clean-up is the slow part: only when needed
            fields = [f.strip().strip('"') for f in fields]
        if width is None:
            width = len(fields)
            if width < min_columns:
                raise InputError(p, f"expected at least {min_columns} columns, found {width}",
                                 place=f"line {lineno}")
        elif len(fields) != width:
            raise InputError(p, f"expected {width} columns like line {rows[0][0]}, found {len(fields)}",
                             place=f"line {lineno}")
        out.append((lineno, fields))
    return out


def parse_floats(path: str | os.PathLike, rows: list[tuple[int, list[str]]], header: list[str] | None,
                 start: int = 1, allow_nonfinite: bool = False) -> np.ndarray:
    """float32 matrix from columns ``start:`` of ``rows``; errors name line and column."""
    if not rows:  # e.g. a header line and nothing else
        raise InputError(path, "has no data lines (only a header?)")
    try:
        values = np.array([r[start:] for _, r in rows], dtype=np.float64)
    except ValueError:
        for lineno, r in rows:
            for j, v in enumerate(r[start:], start):
                try:
                    float(v)
                except ValueError:
                    col = header[j] if header else str(j + 1)
                    raise InputError(path, f"expected a number, found {v!r}",
                                     place=f"line {lineno}, column {col}") from None
        raise
    bad = np.abs(values) > np.finfo(np.float32).max  # inf, and finite numbers float32 cannot hold
    if not allow_nonfinite:
        bad |= np.isnan(values)
    if bad.any():
        i, j = np.argwhere(bad)[0]
        col = header[j + start] if header else str(j + start + 1)
        what = "is not allowed" if not np.isfinite(values[i, j]) else "is out of the float32 range"
        raise InputError(path, f"{values[i, j]} {what} (expected a finite number)",
                         place=f"line {rows[i][0]}, column {col}")
    return values.astype(np.float32)


def is_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def check_unique(path: str | os.PathLike, ids: np.ndarray, what: str, lines: list[int] | None = None) -> None:
    uniq, first, counts = np.unique(ids, return_index=True, return_counts=True)
    if len(uniq) != len(ids):
        dup = uniq[counts > 1][0]
        where = np.flatnonzero(ids == dup)
        place = f"lines {lines[where[0]]} and {lines[where[1]]}" if lines else None
        raise InputError(path, f"duplicate {what} {str(dup)!r}", place=place)


def read_id_list(path: str | os.PathLike) -> np.ndarray:
    """Gene ids from a one-column file, or the ``gene_id`` column of a table (header optional)."""
    rows = read_rows(path)
    header = rows[0][1]
    if "gene_id" in header:
        col = header.index("gene_id")
        rows = rows[1:]
    else:
        col = 0
    ids = np.array([r[col] for _, r in rows], dtype=str)
    check_unique(path, ids, "gene id", [n for n, _ in rows])
    return ids


def read_matrix(path: str | os.PathLike, id_column: str | None = None,
                unique: bool = True) -> tuple[np.ndarray, list[str], np.ndarray]:
    """A table with a header, one id column and numeric columns: (ids, column names, values).

    The id column is ``id_column`` when given, else the first column. Columns may be named by
    integer ids (a signature matrix's header lists Entrez landmark ids). ``unique=False`` allows
    an id on several rows.
    """
    rows = read_rows(path, min_columns=2)
    header = rows[0][1]
    body = rows[1:]
    if not body:
        raise InputError(path, "has a header but no data lines")
    if is_number(header[-1]) and is_number(header[1]) and (
            is_number(header[0]) or not all(h.isdigit() for h in header[1:])):
        raise InputError(path, "expected a header line naming the columns", place=f"line {rows[0][0]}")
    if id_column is not None:
        if id_column not in header:
            raise InputError(path, f"no column {id_column!r} in the header", place=f"line {rows[0][0]}")
        k = header.index(id_column)
        header = [header[k]] + header[:k] + header[k + 1:]
        body = [(n, [r[k]] + r[:k] + r[k + 1:]) for n, r in body]
    ids = np.array([r[0] for _, r in body], dtype=str)
    empty = np.flatnonzero(ids == "")
    if len(empty):
        raise InputError(path, f"empty {header[0]!r}", place=f"line {body[empty[0]][0]}")
    if unique:
        check_unique(path, ids, "id", [n for n, _ in body])
    return ids, header[1:], parse_floats(path, body, header)
