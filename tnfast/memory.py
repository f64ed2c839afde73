"""Memory bounds: what this process may use, and one check that refuses a job up front.

A job whose estimated peak does not fit is refused before it reads its data, with one line
naming the file and the estimate (issue 9), instead of being killed by the kernel's OOM killer
half-way. The bound is ``--max-memory`` when the user gives one, else the memory available to
this process: what it holds now plus the smaller of MemAvailable (/proc/meminfo) and the room
left under its cgroup's limit (v2 ``memory.max``, v1 ``memory.limit_in_bytes``). Under torchrun
the local processes share that room equally. Where none of that can be read (not Linux), the
check is skipped unless ``--max-memory`` is given.

The estimates themselves live next to what they estimate: :mod:`tnfast.data.estimate` (the
importer's sources) and :mod:`tnfast.footprint` (training and prediction).
"""

from __future__ import annotations

import os
import re
import resource
import sys
from pathlib import Path

from .errors import InputError

__all__ = ["parse_size", "available_memory", "process_rss", "format_size", "format_count", "memory_bound",
           "require", "peak_note"]

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([kmgtp]?)(i?b?)\s*$", re.IGNORECASE)
_UNLIMITED = 1 << 60  # cgroup v1 writes "no limit" as a number near 2^63


def parse_size(text: str, where: str = "--max-memory") -> int:
    """Bytes from '8G', '8GB', '8GiB', '512M', '1.5T' or plain '1048576' (binary units: G = 2^30)."""
    m = _SIZE.match(str(text))
    if m is None or (not m[2] and m[3].lower() not in ("", "b")):  # "8iB" is not a unit; "8Gi" is
        raise InputError(where, f"expected a size such as 8G, 512M, 1.5T or a number of bytes, got {text!r}")
    size = int(float(m[1]) * _UNITS[m[2].lower()])
    if size <= 0:
        raise InputError(where, f"must be more than 0 bytes, got {text!r}")
    return size


def format_size(n: float) -> str:
    """'3.2 GiB', '512 B': binary units, one decimal."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def format_count(n: float) -> str:
    """'12,345' below a hundred thousand, '1.3e9' above."""
    if n < 1e5:
        return f"{n:,.0f}"
    mantissa, exp = f"{n:.1e}".split("e")
    return f"{mantissa}e{int(exp)}"


def process_rss() -> int:
    """Resident memory of this process now, in bytes (0 when it cannot be read)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        pass
    try:  # elsewhere the peak so far is the best cheap figure (bytes on macOS, KiB on the BSDs)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if sys.platform == "darwin" else peak * 1024
    except (OSError, ValueError):
        return 0


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def _stat_field(path: Path, name: str) -> int:
    try:
        for line in path.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == name and value.strip().isdigit():
                return int(value)
    except (OSError, UnicodeDecodeError):
        pass
    return 0


def _cgroup_room(proc: Path, root: Path) -> int | None:
    """Room left under this process's cgroup limits (the tightest of its own group and its
    ancestors'), counting reclaimable page cache (inactive file pages) as free; None when
    there is no limit or none can be read."""
    try:
        lines = (proc / "self" / "cgroup").read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    rooms = []
    for line in lines:
        _, controllers, rel = (line.split(":", 2) + ["", ""])[:3]
        rel = rel.strip().lstrip("/")
        if controllers == "" and (root / "cgroup.controllers").exists():  # v2, unified hierarchy
            d = root / rel
            while True:  # the group and each ancestor up to the root; the tightest counts
                limit = _read_int(d / "memory.max")  # "max" (no limit) reads as None
                used = _read_int(d / "memory.current")
                if limit is not None and used is not None:
                    rooms.append(limit - used + _stat_field(d / "memory.stat", "inactive_file"))
                if d == root or root not in d.parents:
                    break
                d = d.parent
        elif "memory" in controllers.split(","):  # v1: its hierarchical limit covers the ancestors
            mount = root / "memory"
            # inside a container the mount is the group itself; on a host, the group is below it
            for d in (mount / rel, mount):
                stat = d / "memory.stat"
                limit = _stat_field(stat, "hierarchical_memory_limit") or _read_int(d / "memory.limit_in_bytes")
                used = _read_int(d / "memory.usage_in_bytes")
                if limit is not None and used is not None:
                    if limit < _UNLIMITED:
                        rooms.append(limit - used + _stat_field(stat, "total_inactive_file"))
                    break
    return max(0, min(rooms)) if rooms else None


def available_memory(proc: str | os.PathLike = "/proc", cgroup: str | os.PathLike = "/sys/fs/cgroup") -> int | None:
    """Bytes this process may still allocate: the smaller of MemAvailable and the room under its
    cgroup's memory limit; None where neither can be read (not Linux)."""
    rooms = []
    try:
        for line in (Path(proc) / "meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                rooms.append(int(line.split()[1]) * 1024)
                break
    except (OSError, UnicodeDecodeError, ValueError, IndexError):
        pass
    room = _cgroup_room(Path(proc), Path(cgroup))
    if room is not None:
        rooms.append(room)
    return min(rooms) if rooms else None


def memory_bound(max_memory: int | None) -> tuple[int | None, bool]:
    """(bytes this process may reach in all, whether they come from --max-memory).

    Default: what the process holds now plus what is available to it; under torchrun each of
    the node's LOCAL_WORLD_SIZE processes gets an equal share of the available part. (None, False)
    when nothing is known: then no check is made."""
    if max_memory is not None:
        return int(max_memory), True
    room = available_memory()
    if room is None:
        return None, False
    try:
        local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        local = 1
    return process_rss() + room // local, False


def require(need: int, bound: tuple[int | None, bool], where: str | os.PathLike, what: str) -> None:
    """InputError (one line, naming ``where``) when ``need`` bytes exceed ``bound`` (from
    :func:`memory_bound`); ``what`` says for what, e.g. 'to import (about 1.3e9 edges)'."""
    limit, given = bound
    if limit is None or need <= limit:
        return
    if given:
        tail = f"more than the {format_size(limit)} allowed by --max-memory"
    else:
        tail = f"more than the {format_size(limit)} available (set --max-memory to change the bound)"
    raise InputError(where, f"would need about {format_size(need)} of memory {what}, {tail}")


def peak_note(need: int, bound: tuple[int | None, bool]) -> str:
    """The progress line of a job that fits: 'memory: about 1.2 GiB at the peak (19.7 GiB available)'."""
    limit, given = bound
    room = "" if limit is None else f" ({format_size(limit)} {'allowed by --max-memory' if given else 'available'})"
    return f"memory: about {format_size(need)} at the peak{room}"
