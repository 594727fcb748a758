"""The spool: a live writer's entries between checkpoints.

A process writing a run keeps a *spool* under
``.git/exp/live/<run-id>/<writer-id>/``: ``owner.json`` (pid, process start,
host), ``start.json`` for a new run until its ref exists, and numbered entries
(a JSON delta and a Parquet segment) flushed every fraction of a second, and
committed to the run's ref at checkpoints. ``run.json``'s ``writers`` map
records the last entry each writer committed, so replaying a dead writer's
spool is idempotent (:meth:`gitexp.store.runs.ExpStore.settle`).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from gitexp import records as fmt
from gitexp.errors import FormatError, GitExpError, RunConflict, StoreError
from gitexp.git import MODE_FILE
from gitexp.records import ArtifactEntry, ExpRef
from gitexp.store.liveness import process_start
from gitexp.store.records import RunDelta, RunStart

if TYPE_CHECKING:
    from gitexp.store.runs import ExpStore


PASS_THROUGH_BYTES = 1 << 20  # a spool segment this large is committed without re-encoding
MERGE_ROWS = 1 << 20  # small spool segments are merged into segments of about this many rows
START_JSON = "start.json"  # a new run's first state, in its writer's spool until its ref exists


def spool_mtime(path: str) -> float:
    """The newest mtime of a spool directory and its entries (its last sign of life)."""
    try:
        return max(
            [os.stat(path).st_mtime]
            + [os.stat(os.path.join(path, n)).st_mtime for n in os.listdir(path)]
        )
    except FileNotFoundError:
        return 0.0


def rmdir_quiet(path: str) -> None:
    with contextlib.suppress(OSError):
        os.rmdir(path)


def read_owner(d: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(d, "owner.json"), encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def _atomic_write(path: str, data: bytes) -> None:
    """Write a spool file: a temporary name, then rename (a reader never sees half).

    No fsync: the spool must survive a killed *process*, and the kernel keeps
    what was written for that; what must survive a machine crash is committed
    to git (refs are fsync'd) at checkpoints.
    """
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from exc


def read_start(writer_dir: str) -> RunStart | None:
    """The ``start.json`` of a writer's spool, or None when there is none.

    Raises:
        FormatError: it does not parse.
    """
    path = os.path.join(writer_dir, START_JSON)
    try:
        with open(path, encoding="utf-8") as f:
            return RunStart.from_json(json.load(f))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise FormatError(f"{path} is unreadable: {exc}") from exc


def list_spool(writer_dir: str) -> list[int]:
    """Sequence numbers of complete spool entries (their JSON exists), ascending."""
    try:
        names = os.listdir(writer_dir)
    except FileNotFoundError:
        return []
    return sorted(int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit())


def read_entry(writer_dir: str, seq: int) -> RunDelta | None:
    """One spool entry's change (without its points), or None when it is gone:
    committed and removed since it was listed. For watching a live run.

    Raises:
        FormatError: it does not parse.
    """
    path = os.path.join(writer_dir, f"{seq:08d}.json")
    try:
        with open(path, encoding="utf-8") as f:
            return RunDelta.from_json(json.load(f))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, AttributeError, GitExpError) as exc:
        raise FormatError(f"spool entry {path} is unreadable: {exc}") from exc


def spool_artifacts(writer_dir: str) -> list[ArtifactEntry]:
    """The artifacts of every spool entry of a writer, read entry by entry: an
    entry committed (and removed) while we read is skipped, not the ones after
    it. For gc, which must see every object a live run holds."""
    out: list[ArtifactEntry] = []
    for seq in list_spool(writer_dir):
        path = os.path.join(writer_dir, f"{seq:08d}.json")
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
            out += fmt.manifest_from_json(data.get("artifacts") or [])
        except FileNotFoundError:
            continue  # committed meanwhile: on the ref, which gc reads after
        except (OSError, ValueError, AttributeError, GitExpError) as exc:
            raise FormatError(f"spool entry {path} is unreadable: {exc}") from exc
    return out


def load_spool(
    writer_dir: str, seqs: list[int], write_blob: Callable[[bytes], str] | None = None
) -> RunDelta:
    """Merge spool entries into one delta (small segments concatenated).

    With ``write_blob``, each segment is written as a git blob as soon as it is
    read, and the delta holds ``(mode, sha)``: memory stays bounded by one
    segment however much a run spooled since its last commit.
    """
    from gitexp.metrics import merge_segments, segment_rows

    wid = os.path.basename(writer_dir)
    delta = RunDelta()
    small: list[tuple[bytes, str, int]] = []  # (segment bytes, where, rows) to be merged
    segments: list[bytes | tuple[int, str]] = []

    def keep(data: bytes) -> None:
        segments.append((MODE_FILE, write_blob(data)) if write_blob is not None else data)

    def merge_small() -> None:
        if len(small) == 1:  # nothing to merge with: the segment as it is
            keep(small[0][0])
        elif small:
            keep(merge_segments((d, w) for d, w, _ in small))
        small.clear()

    def add_small(data: bytes, where: str) -> None:
        small.append((data, where, segment_rows(data, where)))
        if sum(n for *_, n in small) >= MERGE_ROWS:  # bound memory and segment size
            merge_small()

    for seq in seqs:
        base = os.path.join(writer_dir, f"{seq:08d}")
        try:
            with open(base + ".json", encoding="utf-8") as text:
                part = RunDelta.from_json(json.load(text))
        except (OSError, ValueError) as exc:
            raise FormatError(f"spool entry {base}.json is unreadable: {exc}") from exc
        delta.absorb(part)
        if os.path.exists(base + ".parquet"):
            with open(base + ".parquet", "rb") as binary:
                data = binary.read()
            if len(data) >= PASS_THROUGH_BYTES:  # big enough to be a segment as it is
                merge_small()
                keep(data)
            else:
                add_small(data, f"spool entry {base}.parquet")
    merge_small()
    delta.segments = segments
    delta.writer = (wid, seqs[-1])
    return delta


def read_pending(writer_dir: str, after: int, points: bool = True) -> RunDelta:
    """The entries of a writer after sequence number ``after``, read without
    changing anything (segments as Parquet bytes): what a live run logged that its
    ref does not hold yet. An entry that its writer commits (and removes) while
    this reads is left out, with the entries after it: the ref holds them.
    ``points=False`` leaves the segments out (the summary is enough)."""
    delta = RunDelta()
    for seq in (s for s in list_spool(writer_dir) if s > after):
        base = os.path.join(writer_dir, f"{seq:08d}")
        try:
            with open(base + ".json", encoding="utf-8") as text:
                part = RunDelta.from_json(json.load(text))
            if points and os.path.exists(base + ".parquet"):
                with open(base + ".parquet", "rb") as binary:
                    part.segments = [binary.read()]
        except FileNotFoundError:
            break
        except (OSError, ValueError, AttributeError, GitExpError) as exc:
            raise FormatError(f"spool entry {base}.json is unreadable: {exc}") from exc
        delta.absorb(part)
        delta.writer = (os.path.basename(writer_dir), seq)
    return delta


class SpoolWriter:
    """This process's spool for one run: durable between checkpoints.

    The writer of a new run holds its :class:`RunStart` until the first
    commit, which creates the run's ref: at a checkpoint a second or so into
    the run, or at finish for a shorter run (its only commit).
    """

    def __init__(self, store: ExpStore, ref: ExpRef, start: RunStart | None = None) -> None:
        self.store = store
        self.ref = ref
        self.writer_id = f"{os.getpid()}-{os.urandom(4).hex()}"
        self.dir = os.path.join(store.live_root(ref.run_id), self.writer_id)
        self.start = start
        owner = {
            "pid": os.getpid(),
            "start": process_start(os.getpid()),
            "host": store.host,
            "ref": str(ref),
            "created": time.time(),
        }
        try:
            os.makedirs(self.dir, exist_ok=True)
            if start is not None:  # before owner.json: a dead owner's spool is complete
                _atomic_write(
                    os.path.join(self.dir, START_JSON), json.dumps(start.to_json()).encode()
                )
            _atomic_write(os.path.join(self.dir, "owner.json"), json.dumps(owner).encode())
        except (OSError, StoreError) as exc:
            shutil.rmtree(self.dir, ignore_errors=True)
            rmdir_quiet(os.path.dirname(self.dir))
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"cannot write {self.dir}: {exc.strerror or exc}") from exc
        self.seq = 0
        self.committed = 0

    def write(self, delta: RunDelta, segment: bytes | None) -> int:
        """Write one entry durably; return its sequence number."""
        seq = self.seq + 1
        base = os.path.join(self.dir, f"{seq:08d}")
        try:
            if segment is not None:
                _atomic_write(base + ".parquet", segment)
            _atomic_write(base + ".json", json.dumps(delta.to_json()).encode())
        except StoreError:
            with contextlib.suppress(OSError):  # an entry without its JSON is not one
                os.unlink(base + ".parquet")
            raise
        self.seq = seq
        return seq

    def touch(self) -> None:
        """Heartbeat: the owner file's mtime says the writer is alive."""
        with contextlib.suppress(OSError):
            os.utime(os.path.join(self.dir, "owner.json"))

    def uncommitted(self) -> list[int]:
        """Entries written but not yet on the ref."""
        return [s for s in list_spool(self.dir) if s > self.committed]

    def commit(self, extra: RunDelta | None, verb: str) -> str | None:
        """Move spooled entries (and ``extra``) onto the ref; drop them from the spool.

        The first commit of a new run creates its ref (verb ``start``, or
        ``finish`` when the run ends before its first checkpoint).
        """
        seqs = self.uncommitted()
        delta = load_spool(self.dir, seqs, self.store.repo.write_blob) if seqs else RunDelta()
        if extra is not None:
            delta.absorb(extra)
        if seqs:
            delta.writer = (self.writer_id, seqs[-1])
        if self.start is not None:
            sha = self.store.commit_first(
                self.start, delta, "start" if verb == "checkpoint" else verb
            )
            if sha is None:
                raise RunConflict(
                    f"run {self.ref.short} was created by someone else meanwhile; "
                    "nothing of this run was recorded on it",
                    str(self.ref),
                )
            self.start = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.dir, START_JSON))
        elif delta.is_empty() and delta.writer is None:
            return None
        else:
            sha = self.store.update(self.ref, delta, verb)
        for s in seqs:
            for ext in (".json", ".parquet"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.dir, f"{s:08d}{ext}"))
        if seqs:
            self.committed = seqs[-1]
        return sha

    def close(self) -> None:
        """Remove the spool (call only after a final commit)."""
        shutil.rmtree(self.dir, ignore_errors=True)
        rmdir_quiet(os.path.dirname(self.dir))
