"""The CAS objects runs refer to: manifests read entry by entry, hostile entries refused alone."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gitexp import records as fmt
from gitexp.cas import parse_dir_listing
from gitexp.errors import (
    IntegrityError,
    InvalidName,
    StoreError,
    UsageError,
)
from gitexp.git import GitRepo
from gitexp.records import ARTIFACTS_JSON, NAMESPACE, ArtifactEntry
from gitexp.store import ExpStore


def each_in_pool(workers: int, fn: Callable[[Any], Any], items: list[Any]) -> Iterable[Any]:
    """``fn`` over ``items``, in order; in a small thread pool when ``workers`` > 1.

    The first exception stops the rest and propagates.
    """
    if workers <= 1 or len(items) <= 1:
        for item in items:
            yield fn(item)
        return
    from concurrent.futures import ThreadPoolExecutor

    # many items go in chunks: a future (and its lock) per 64 objects, not per object
    size = max(1, min(64, len(items) // (workers * 8)))
    chunks = [items[i : i + size] for i in range(0, len(items), size)]

    def each(chunk: list[Any]) -> list[Any]:
        return [fn(item) for item in chunk]

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(each, chunk) for chunk in chunks]
        try:
            for fut in futures:
                yield from fut.result()
        finally:
            for fut in futures:
                fut.cancel()


LOCAL_WORKERS = 4  # threads moving many objects to or from a directory store


def transfer_workers(remote_store: Any, count: int) -> int:
    """How many objects to move at once: the store's own number for object
    stores (latency-bound), a few threads for a directory with many objects
    (each small object is a few file-system calls that wait on the disk)."""
    if getattr(remote_store, "local", None) is not None:
        return LOCAL_WORKERS if count >= 64 else 1
    return int(remote_store.workers)


@dataclass
class Refusal:
    """An artifact that was not accepted, and why."""

    run: str
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.run}: {self.path}: {self.reason}"


# the most bytes a line of a directory listing holds (mode, key, size, a path of
# PATH_MAX), and the most a listing may hold whatever its manifest says
LISTING_LINE = 4200
LISTING_MAX = 1 << 30


def listing_bound(entry: ArtifactEntry) -> int:
    """The most bytes the listing of a directory entry can hold: what a download
    of it may read before it is refused."""
    if entry.files is None:
        return fmt.MAX_DOC_BYTES
    return min(LISTING_MAX, max(entry.files, 1) * LISTING_LINE)


@dataclass
class RunObjects:
    """The CAS objects a run's manifest needs."""

    files: list[tuple[str, str]] = field(default_factory=list)  # (key, label)
    dirs: list[tuple[str, str]] = field(default_factory=list)  # (listing key, label)
    optional: list[str] = field(default_factory=list)  # listings of unstored dirs
    refused: list[Refusal] = field(default_factory=list)
    # the most bytes each object may hold (manifest sizes, listing bounds): a
    # download stops past it
    sizes: dict[str, int] = field(default_factory=dict)

    def bound(self, key: str, size: int) -> None:
        """Note that ``key`` holds at most ``size`` bytes (the largest claim wins)."""
        self.sizes[key] = max(size, self.sizes.get(key, 0))


def manifest_entries(
    repo: GitRepo, sha: str, run: str
) -> tuple[list[ArtifactEntry], list[Refusal]]:
    """A run's manifest parsed entry by entry: a bad entry is refused alone."""
    info = repo.commit_info(sha)
    found = repo.lookup_path(info.tree, ARTIFACTS_JSON)
    if found is None:
        return [], []
    try:
        raw = repo.read_blob(found[1], fmt.doc_limit(ARTIFACTS_JSON))
    except StoreError as exc:
        return [], [Refusal(run, ARTIFACTS_JSON, str(exc))]
    return manifest_entries_of(raw, run)


def manifest_entries_of(raw: bytes, run: str) -> tuple[list[ArtifactEntry], list[Refusal]]:
    """The bytes of a manifest (``artifacts.json``) parsed entry by entry."""
    try:
        data = fmt.parse_json(raw, f"{run}: {ARTIFACTS_JSON}", fmt.doc_limit(ARTIFACTS_JSON))
    except StoreError as exc:
        return [], [Refusal(run, ARTIFACTS_JSON, str(exc))]
    if not isinstance(data, list):
        return [], [Refusal(run, ARTIFACTS_JSON, "is not a list; every artifact refused")]
    entries: list[ArtifactEntry] = []
    refused: list[Refusal] = []
    for item in data:
        try:
            entries.append(ArtifactEntry.from_json(item))
        except (StoreError, UsageError) as exc:
            path = item.get("path") if isinstance(item, dict) else None
            reason = str(exc)
            if isinstance(path, str):
                try:
                    fmt.normalize_artifact_path(path)
                except InvalidName as bad:
                    reason = str(bad)  # the short reason, not the whole entry
            refused.append(Refusal(run, repr(path), reason))
    return entries, refused


def run_objects(repo: GitRepo, sha: str, run: str) -> RunObjects:
    """The objects of a run tip's manifest (dir listings, not yet their files)."""
    entries, refused = manifest_entries(repo, sha, run)
    out = _objects_of(entries, run)
    out.refused = refused
    return out


def listing_files(data: bytes, label: str) -> list[tuple[str, str, int, int]]:
    """Parse a directory listing from outside: every path and key checked.

    Raises FormatError-like StoreError naming the problem; nothing is trusted.
    """
    try:
        rows = parse_dir_listing(data)
    except StoreError as exc:
        raise IntegrityError(f"{label}: {exc}") from exc
    for path, _key, _size, _mode in rows:
        try:
            norm = fmt.normalize_artifact_path(path)
        except InvalidName as exc:
            raise IntegrityError(f"{label}: hostile path in directory listing: {exc}") from exc
        if norm != path:
            raise IntegrityError(f"{label}: path {path!r} in directory listing is not normalized")
    return rows


MANIFEST_BATCH = 5000  # manifests read in one git cat-file batch


def runs_objects(
    store: ExpStore,
    refs: Mapping[str, str],
    known: Mapping[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, RunObjects]:
    """:func:`run_objects` of many runs (name -> sha), their manifests read in
    batches through ``git cat-file``. ``known``: records already read (name ->
    anything with the ``sha`` and ``artifacts`` read: a RunRecord, a pull's
    ``Taken``), whose manifest is not read again when the sha matches.
    ``progress(done, total)`` after each batch."""
    out: dict[str, RunObjects] = {}
    todo: list[tuple[str, str]] = []
    for name, sha in refs.items():
        rec = (known or {}).get(name)
        if rec is not None and getattr(rec, "sha", None) == sha:
            out[name] = _objects_of(rec.artifacts, name[len(NAMESPACE) :])
        else:
            todo.append((name, sha))
    for start in range(0, len(todo), MANIFEST_BATCH):
        part = todo[start : start + MANIFEST_BATCH]
        # the manifests alone (git reads each commit and tree on its way to them)
        limit = fmt.doc_limit(ARTIFACTS_JSON)
        got = store.repo.cat_batch([f"{sha}:{ARTIFACTS_JSON}" for _, sha in part], limit)
        for (name, sha), found in zip(part, got):
            run = name[len(NAMESPACE) :]
            raw = None if found is None else found[2]
            if isinstance(raw, int):
                reason = f"is {raw:,} bytes, more than {limit:,} allowed"
                out[name] = RunObjects(refused=[Refusal(run, ARTIFACTS_JSON, reason)])
            elif raw is not None:
                entries, refused = manifest_entries_of(raw, run)
                out[name] = _objects_of(entries, run)
                out[name].refused = refused
            elif store.repo.has_object(sha):
                out[name] = RunObjects()  # a run without a manifest: no artifacts
            else:
                out[name] = run_objects(store.repo, sha, run)  # raises: not here
        if progress is not None:
            progress(start + len(part), len(todo))
    return out


def _objects_of(entries: Iterable[ArtifactEntry], run: str) -> RunObjects:
    out = RunObjects()
    for e in entries:
        label = f"{run}: {e.path}"
        if e.kind == "dir":
            out.bound(e.blake3, listing_bound(e))
            if e.stored:
                out.dirs.append((e.blake3, label))
            else:
                out.optional.append(e.blake3)
        elif e.stored:
            out.bound(e.blake3, e.size)
            out.files.append((e.blake3, label))
    return out


def keys_of(store: ExpStore, objs: RunObjects) -> list[str]:
    """The CAS objects one run references, as far as this repository can tell:
    a directory's files are known only when its listing is here."""
    keys = [k for k, _ in objs.files]
    for listing, _label in objs.dirs:
        keys.append(listing)
        try:
            rows = parse_dir_listing(store.cas.get_bytes(listing))
        except (StoreError, ValueError, InvalidName):
            continue  # not here (counted by the caller) or damaged (refused later)
        keys += [k for _, k, _, _ in rows]
    keys += [k for k in objs.optional if store.cas.has(k)]
    return keys


def referenced_keys(store: ExpStore, refs: dict[str, str]) -> list[str]:
    """The CAS objects the runs ``refs`` (name -> sha) reference, as far as
    this repository can tell: a directory's files are known only when its
    listing is here."""
    keys: list[str] = []
    for objs in runs_objects(store, refs).values():
        keys += keys_of(store, objs)
    return list(dict.fromkeys(keys))


def local_size(store: ExpStore, key: str) -> int:
    try:
        return os.path.getsize(store.cas.path_for(key))
    except OSError:
        return 0
