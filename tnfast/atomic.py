"""Outputs that are either complete or absent: build under a hidden sibling name, rename at the end."""

from __future__ import annotations

import os
import re
import shutil
import socket
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
    kill leaves at most a hidden ``.<name>.*.tmp`` or ``.old`` sibling, which the next write of
    ``path`` removes. A plain mkdir (not mkdtemp, which makes it 0700) gives the result the
    usual permissions.
    """
    path = Path(path)
    if path.exists() and not overwrite:
        raise InputError(path, "already exists (pass --overwrite to replace it)")
    check_output(path, directory=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp, old = _temp_names(path)
    tmp.mkdir()
    try:
        yield tmp
        _sync_tree(tmp)
        if path.exists():
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


def _temp_names(path: Path) -> tuple[Path, Path]:
    """Fresh hidden ``.tmp`` and ``.old`` sibling names for ``path``, after removing dead writers' leftovers.

    The name carries the writer's host and pid, so a leftover can be told apart from the
    temporary of a write still running: only those of this host whose process is gone are
    removed (a live pid, another host's or an unparsable name is left alone).
    """
    _remove_stale(path)
    stem = f".{path.name}.{socket.gethostname()}.{os.getpid()}.{uuid.uuid4().hex[:12]}"
    return path.parent / f"{stem}.tmp", path.parent / f"{stem}.old"


def _remove_stale(path: Path) -> None:
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(?P<host>.+)\.(?P<pid>\d+)\.[0-9a-f]{{12}}\.(tmp|old)")
    host = socket.gethostname()
    for entry in path.parent.iterdir():
        m = pattern.fullmatch(entry.name)
        if m and m["host"] == host and not _alive(int(m["pid"])):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's process
        pass
    return True


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
    tmp, _ = _temp_names(path)
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


def check_new_file(path: str | os.PathLike, overwrite: bool, parents: bool = False) -> None:
    """:func:`check_output` for a file, then: an existing file is replaced only with --overwrite.

    Before any work, so a refused output costs nothing. A directory is refused as a directory,
    even with --overwrite. ``parents``: the writer creates missing directories above the file.
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(path, "is a directory; expected a file to write")
    check_output(path.parent if parents else path, directory=parents)
    if path.exists() and not overwrite:
        raise InputError(path, "already exists (pass --overwrite to replace it)")
