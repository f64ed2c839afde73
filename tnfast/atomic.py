"""Outputs that are either complete or absent: build under a hidden sibling name, rename at the end."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import InputError


@contextmanager
def atomic_dir(path: str | os.PathLike, overwrite: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary directory beside ``path``; on success it replaces ``path``.

    On any exception (or interrupt) the temporary directory is removed and ``path`` is left as
    it was. A plain mkdir (not mkdtemp, which makes it 0700) gives the result the usual
    permissions.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(path, "already exists (pass --overwrite to replace it)")
    if path.exists() and not path.is_dir():
        raise InputError(path, "exists and is not a directory")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
    tmp.mkdir()
    try:
        yield tmp
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path to write; on success it is synced and renamed to ``path``."""
    path = Path(path)
    # A named file (not mkstemp) so the result gets the usual permissions rather than 0600.
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        yield tmp
        with open(tmp, "rb") as fh:  # the data must be on disk before the rename publishes it
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
