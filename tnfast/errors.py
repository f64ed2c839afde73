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
        return f"{loc}: {self.message}"
