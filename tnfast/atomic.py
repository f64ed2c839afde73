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
    it was. Killed at any moment (SIGKILL, power loss), ``path`` is the old output, the new one,
    or absent, each whole: the new tree is synced to disk before it is renamed into place, and
    an old output is renamed aside (not deleted in place) before the new one takes its name. A
    kill leaves at most a hidden ``.<name>.*.tmp`` or ``.old`` sibling. A plain mkdir (not
    mkdtemp, which makes it 0700) gives the result the usual permissions.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(path, "already exists (pass --overwrite to replace it)")
    check_output(path, directory=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    stem = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}"
    tmp = stem.with_name(stem.name + ".tmp")
    tmp.mkdir()
    try:
        yield tmp
        _sync_tree(tmp)
        if path.exists():
            old = stem.with_name(stem.name + ".old")
            os.replace(path, old)
            try:
                os.replace(tmp, path)
            except BaseException:
                os.replace(old, path)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
        _fsync(path.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _fsync(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        if path.is_dir():  # a directory we may write but not read: its entries still reach the disk
            return
        raise
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _sync_tree(root: Path) -> None:
    """Every file and directory under ``root`` on disk (files first), so a rename publishes data, not holes."""
    for d, _, files in os.walk(root, topdown=False):
        for f in files:
            _fsync(Path(d) / f)
        _fsync(Path(d))


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary sibling path to write; on success it is synced and renamed to ``path``."""
    path = Path(path)
    check_output(path, directory=False)
    # A named file (not mkstemp) so the result gets the usual permissions rather than 0600.
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
    try:
        yield tmp
        _fsync(tmp)  # the data must be on disk before the rename publishes it
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def check_output(path: str | os.PathLike, directory: bool) -> None:
    """One-line errors, before any work, for an output path that cannot be written.

    A directory output (``directory=True``) may not replace a file, and its missing parents are
    created later, so the nearest existing ancestor must be a writable directory. A file output
    may not replace a directory, and its directory must exist.
    """
    path = Path(path)
    if directory and path.exists() and not path.is_dir():
        raise InputError(path, "exists and is not a directory")
    if not directory and path.is_dir():
        raise InputError(path, "is a directory; expected a file to write")
    parent = path.parent
    if not directory and not parent.is_dir():
        raise InputError(path, f"directory {parent} does not exist")
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(parent, f"is not a directory, so {path} cannot be created under it")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(parent, f"permission denied: cannot create {path.name} here")
