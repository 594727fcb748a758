"""Progress reports of push, fetch, pull and get: objects and bytes per phase."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class Progress:
    """One progress report: ``done`` of ``total`` items of ``phase`` (and bytes so far)."""

    phase: str
    done: int = 0
    total: int = 0
    nbytes: int = 0
    text: str = ""  # free text from the git server (``Counting objects ...``)
    total_bytes: int = 0  # 0 when not known


ProgressFn = Callable[[Progress], None]
BytesFn = Callable[[int], None]


def no_progress(_: Progress) -> None:
    return None


class Meter:
    """Counts objects and bytes of one phase, from any thread, and reports each
    change (the renderer throttles). Reports are serialized by a lock."""

    def __init__(self, progress: ProgressFn, phase: str, total: int, total_bytes: int = 0):
        self.progress = progress
        self.phase = phase
        self.total = total
        self.total_bytes = total_bytes
        self.done = 0
        self.nbytes = 0
        self._lock = threading.Lock()

    def _report(self) -> None:
        self.progress(
            Progress(self.phase, self.done, self.total, self.nbytes, total_bytes=self.total_bytes)
        )

    def add_bytes(self, n: int) -> None:
        """Bytes moved inside an object being transferred."""
        with self._lock:
            self.nbytes += n
            self._report()

    def finish_one(self) -> None:
        """One object done."""
        with self._lock:
            self.done += 1
            self._report()
