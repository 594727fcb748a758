"""The CAS objects runs refer to: manifests read entry by entry, hostile entries refused alone."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
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

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(fn, item) for item in items]
        try:
            for fut in futures:
                yield fut.result()
        finally:
            for fut in futures:
                fut.cancel()


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
        limit = fmt.doc_limit(ARTIFACTS_JSON)
        data = fmt.parse_json(repo.read_blob(found[1], limit), f"{run}: {ARTIFACTS_JSON}", limit)
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
    out = RunObjects(refused=refused)
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


def referenced_keys(store: ExpStore, refs: dict[str, str]) -> list[str]:
    """The CAS objects the runs ``refs`` (name -> sha) reference, as far as
    this repository can tell: a directory's files are known only when its
    listing is here."""
    keys: list[str] = []
    for name, sha in refs.items():
        objs = run_objects(store.repo, sha, name[len(NAMESPACE) :])
        keys += [k for k, _ in objs.files]
        for listing, _label in objs.dirs:
            keys.append(listing)
            try:
                rows = parse_dir_listing(store.cas.get_bytes(listing))
            except StoreError:
                continue  # not here (counted by the caller) or damaged (refused later)
            keys += [k for _, k, _, _ in rows]
        keys += [k for k in objs.optional if store.cas.has(k)]
    return list(dict.fromkeys(keys))


def local_size(store: ExpStore, key: str) -> int:
    try:
        return os.path.getsize(store.cas.path_for(key))
    except OSError:
        return 0
