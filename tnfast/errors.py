"""The one error type for bad input: the CLI turns it into one line on stderr and exit code 2."""

from __future__ import annotations

import os


class InputError(Exception):
    """A problem with something the user gave us: a file, a field in it, an option.

    ``where`` names the file (and line, column or field when known); ``message`` says what was
    expected. ``str(err)`` is the single line the CLI prints.
    """

    def __init__(self, where: str | os.PathLike, message: str, place: str | None = None):
        self.where = os.fspath(where)
        self.place = place
        self.message = message
        super().__init__(str(self))

    def __str__(self) -> str:
        loc = self.where if self.place is None else f"{self.where}: {self.place}"
        # One line whatever it quotes (a file name or a library's message with a newline in it).
        return f"{loc}: {self.message}".replace("\r", "\\r").replace("\n", "\\n")


def input_file(path: str | os.PathLike, expected: str = "a file") -> str:
    """``path`` as str once it names something we can read; else one InputError saying why.

    Every reader of a user's file starts here, so a missing file, a directory or an unreadable
    file reads the same everywhere. Pipes (``<(zcat x.gz)``) pass: only directories are refused.
    """
    p = os.fspath(path)
    if os.path.isdir(p):
        raise InputError(p, f"is a directory, expected {expected}")
    if not os.path.exists(p):
        raise InputError(p, f"no such file (expected {expected})")
    if not os.access(p, os.R_OK):
        raise InputError(p, "permission denied (cannot read it)")
    return p
