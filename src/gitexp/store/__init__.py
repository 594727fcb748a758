"""Runs as a whole: the run store and what it is made of.

- :mod:`gitexp.store.runs`: :class:`ExpStore`: create, update, read, resolve,
  list, delete and settle runs (refs moved by compare-and-swap);
- :mod:`gitexp.store.records`: :class:`RunRecord`, :class:`RunDelta`, :class:`RunStart`;
- :mod:`gitexp.store.validate`: a run tree read into a record, every check of it;
- :mod:`gitexp.store.messages`: commit messages of run commits;
- :mod:`gitexp.store.spool`: a live writer's spool between checkpoints;
- :mod:`gitexp.store.liveness`: whether a writer's process is alive (``/proc``).

The names below are re-exported for callers that need only the store.
"""

from __future__ import annotations

from gitexp.store.liveness import pid_alive, process_start
from gitexp.store.messages import commit_message
from gitexp.store.records import RunDelta, RunRecord, RunStart
from gitexp.store.runs import BATCH_READS, BATCH_SIZE, MAX_RETRIES, REMOTE_STALE_SECONDS, ExpStore
from gitexp.store.spool import (
    MERGE_ROWS,
    PASS_THROUGH_BYTES,
    START_JSON,
    SpoolWriter,
    list_spool,
    load_spool,
    read_entry,
    read_start,
    spool_mtime,
)
from gitexp.store.validate import LISTING_FILES, check_run, parse_record, record_from

__all__ = [
    "BATCH_READS",
    "BATCH_SIZE",
    "LISTING_FILES",
    "MAX_RETRIES",
    "MERGE_ROWS",
    "PASS_THROUGH_BYTES",
    "REMOTE_STALE_SECONDS",
    "START_JSON",
    "ExpStore",
    "RunDelta",
    "RunRecord",
    "RunStart",
    "SpoolWriter",
    "check_run",
    "commit_message",
    "list_spool",
    "load_spool",
    "parse_record",
    "pid_alive",
    "process_start",
    "read_entry",
    "read_start",
    "record_from",
    "spool_mtime",
]
