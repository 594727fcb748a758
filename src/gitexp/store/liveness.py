"""Is a process alive, and is it the one we think (Linux ``/proc``, pid reuse)?"""

from __future__ import annotations

import os


def _proc_stat(pid: int) -> list[bytes] | None:
    """Fields of /proc/<pid>/stat after the command name (Linux), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return data[data.rindex(b")") + 2 :].split()
    except (OSError, ValueError):
        return None


def process_start(pid: int) -> str | None:
    """An identifier of a process's start (Linux: clock ticks since boot), to
    tell a live owner from a recycled pid."""
    fields = _proc_stat(pid)
    return fields[19].decode() if fields and len(fields) > 19 else None


def pid_alive(pid: int, start: str | None) -> bool:
    """True when process ``pid`` runs and is the one that started at ``start``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    fields = _proc_stat(pid)
    if fields and fields[0] in (b"Z", b"X"):
        return False  # a zombie: dead, only not reaped yet
    if start is not None:
        now = process_start(pid)
        if now is not None and now != start:
            return False
        if now is None and os.path.isdir("/proc/self"):
            return False  # zombie or gone between the two checks
    return True
