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
