"""A running trial's metric, read as it is logged: what a pruner is fed.

A trial's process logs into its run; its points reach the run's spool
(``.git/exp/live/<run-id>/<writer>/NNNNNNNN.parquet``, every quarter second)
and later a checkpoint commit on the run's ref. :class:`LiveMetric` reads both,
through the store's own read paths (the ref's segments, the spool's entries),
each segment once, and hands out the steps of one metric that it has not
handed out before. A spool entry committed (and removed) between two reads is
found on the ref the next time.
"""

from __future__ import annotations

import contextlib
import math
import os

from gitexp.errors import GitExpError
from gitexp.metrics import from_parquet, series
from gitexp.records import ExpRef
from gitexp.store import ExpStore, list_spool


class LiveMetric:
    """New points of one metric of a live run, in step order."""

    def __init__(self, repo: str, ref: str, key: str) -> None:
        self.repo = repo
        self.ref = ExpRef.from_ref(ref)
        self.key = key
        self.reported: set[int] = set()  # steps handed out already
        self._segments: set[str] = set()  # blob shas of committed segments read
        self._entries: set[tuple[str, int]] = set()  # spool entries read
        self._tip: str | None = None
        self._store: ExpStore | None = None

    def _open(self) -> ExpStore:
        if self._store is None:
            self._store = ExpStore(self.repo)
        return self._store

    def close(self) -> None:
        """Release the store."""
        if self._store is not None:
            self._store.close()
            self._store = None

    def _read(self, data: bytes, where: str, out: dict[int, float]) -> None:
        steps, values = series(from_parquet(data, where), self.key)
        for step, value in zip(steps, values):
            if step is not None and value is not None and not math.isnan(value):
                out[int(step)] = float(value)

    def poll(self) -> list[tuple[int, float]]:
        """``(step, value)`` of the points logged since the last poll (the last value
        of a step logged twice), ascending by step."""
        store = self._open()
        found: dict[int, float] = {}
        # the spool first: an entry committed meanwhile is then on the ref read next
        for writer, _, _ in store.writers_of(self.ref.run_id):
            for seq in list_spool(writer):
                if (writer, seq) in self._entries:
                    continue
                path = os.path.join(writer, f"{seq:08d}.parquet")
                try:
                    with open(path, "rb") as f:
                        data = f.read()
                except FileNotFoundError:
                    if not os.path.exists(path[: -len(".parquet")] + ".json"):
                        continue  # committed and removed: read from the ref below
                    self._entries.add((writer, seq))  # an entry without points
                    continue
                with contextlib.suppress(GitExpError):  # half-written: next time
                    self._read(data, f"spool entry {path}", found)
                    self._entries.add((writer, seq))
        tip = store.repo.get_ref(str(self.ref))
        if tip is not None and tip != self._tip:
            self._tip = tip
            with contextlib.suppress(GitExpError):
                for name, blob in store.read(self.ref, tip).segments:
                    if blob in self._segments:
                        continue
                    self._read(store.repo.read_blob(blob), f"metrics/{name}", found)
                    self._segments.add(blob)
        new = sorted((s, v) for s, v in found.items() if s not in self.reported)
        self.reported.update(s for s, _ in new)
        return new
