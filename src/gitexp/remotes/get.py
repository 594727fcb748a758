"""``git exp get``: one artifact's bytes, from the local store or the remote's, verified."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass

from gitexp import records as fmt
from gitexp.cas import replace_tree
from gitexp.cas.remote import RemoteStore
from gitexp.errors import (
    IntegrityError,
    InvalidName,
    NoRemote,
    ObjectMissing,
    RunNotFound,
    StoreError,
    TargetExists,
    UsageError,
)
from gitexp.records import ArtifactEntry
from gitexp.remotes.config import STORE_KEY, open_store, resolve_remote
from gitexp.remotes.objects import (
    listing_bound,
    listing_files,
    manifest_entries,
)
from gitexp.remotes.progress import Progress, ProgressFn, no_progress
from gitexp.store import ExpStore


@dataclass
class GetResult:
    """What ``get`` restored."""

    run: str
    entry: ArtifactEntry
    dest: str
    files: int
    nbytes: int
    downloaded: int  # objects fetched from the remote store


def _find_entry(entries: list[ArtifactEntry], path: str) -> tuple[ArtifactEntry, str | None]:
    """The entry named ``path`` (or the dir entry holding it, with the inner path)."""
    try:
        want = fmt.normalize_artifact_path(path)
    except InvalidName as exc:
        raise UsageError(str(exc)) from exc
    order = {r: i for i, r in enumerate(("output", "input", "log", "config", "code"))}
    ranked = sorted(entries, key=lambda e: order.get(e.role, 9))
    for e in ranked:
        if e.path == want:
            return e, None
    for e in ranked:
        if e.kind == "dir" and want.startswith(e.path + "/"):
            return e, want[len(e.path) + 1 :]
    raise UsageError(f"no artifact or input {want!r} in this run (git exp show lists them)")


def get(
    store: ExpStore,
    run: str,
    path: str,
    dest: str | None = None,
    remote: str | None = None,
    force: bool = False,
    progress: ProgressFn = no_progress,
) -> GetResult:
    """Restore an artifact or input of a run (a file or a whole directory entry).

    Objects missing from the local CAS are fetched from the remote's store,
    verified by BLAKE3 on the way in; every restored file is verified again.
    """
    ref = store.resolve(run)
    sha = store.repo.get_ref(str(ref))
    if sha is None:
        raise RunNotFound(f"no run at {ref}")
    entries, refused = manifest_entries(store.repo, sha, ref.short)
    try:
        entry, inner = _find_entry(entries, path)
    except UsageError:
        for r in refused:
            if path in r.path:
                raise IntegrityError(str(r)) from None
        raise
    label = f"{ref.short}: {entry.path}"
    return restore_entry(
        store, entry, label, dest, inner=inner, remote=remote, force=force, progress=progress
    )


def restore_entry(
    store: ExpStore,
    entry: ArtifactEntry,
    label: str,
    dest: str | None = None,
    *,
    inner: str | None = None,
    remote: str | None = None,
    force: bool = False,
    progress: ProgressFn = no_progress,
) -> GetResult:
    """Restore one manifest entry (a file, a directory, or the file ``inner`` of a
    directory) to ``dest`` (default: its name in the working directory).

    Objects missing from the local CAS are fetched from the remote's store,
    verified by BLAKE3 on the way in; every restored file is verified again.
    ``label`` names the entry in messages (``run: path``) and in the result.
    """
    if not entry.stored and not store.cas.has(entry.blake3):
        raise StoreError(
            f"{label}: only its hash was recorded, not its bytes "
            "(inputs keep their bytes when they are stored with the run)"
        )
    run = label.split(": ", 1)[0]
    remote_store: RemoteStore | None = None
    downloaded = 0

    def ensure(key: str, label: str, size: int) -> None:
        nonlocal remote_store, downloaded
        if store.cas.has(key):
            return
        if remote_store is None:
            try:
                rem = resolve_remote(store.repo, remote)
            except NoRemote as exc:
                raise ObjectMissing(
                    f"{label}: object {key[:12]} is not in the local store and there is no "
                    "remote to fetch it from",
                    key,
                ) from exc
            remote_store = open_store(rem, store.repo.work_tree or store.repo.git_dir)
            if remote_store is None:
                raise ObjectMissing(
                    f"{label}: object {key[:12]} is not in the local store, and remote "
                    f"{rem.label} has no artifact store (git config remote.{rem.label}."
                    f"{STORE_KEY} <url>)",
                    key,
                )
        try:  # the manifest's size bounds what is read
            if remote_store.download(store.cas, key, size=size):
                downloaded += 1
        except IntegrityError as exc:
            raise IntegrityError(f"{label}: {exc}", exc.expected, exc.got) from None

    name = inner or entry.path
    target = os.path.abspath(dest if dest else os.path.basename(name))
    if entry.kind == "file" or inner is not None:
        if entry.kind == "file":
            key, mode, size = entry.blake3, entry.mode, entry.size
        else:
            ensure(entry.blake3, label, listing_bound(entry))
            rows = listing_files(store.cas.get_bytes(entry.blake3), label)
            match = [r for r in rows if r[0] == inner]
            if not match:
                raise UsageError(f"{label} has no file {inner!r}")
            _, key, size, mode = match[0]
        if os.path.exists(target) and not force:
            raise TargetExists(f"{target} exists", target)
        if os.path.isdir(target):
            raise UsageError(f"{target} is a directory")
        ensure(key, label, size)
        store.cas.restore(key, target, mode)
        return GetResult(run, entry, target, 1, size, downloaded)
    # a whole directory entry: every file into a fresh directory, swapped in at the end
    ensure(entry.blake3, label, listing_bound(entry))
    rows = listing_files(store.cas.get_bytes(entry.blake3), label)
    if os.path.lexists(target) and not force:
        raise TargetExists(f"{target} exists", target)
    for i, (_, key, size, _) in enumerate(rows):
        ensure(key, label, size)
        progress(Progress("restoring", i + 1, len(rows)))
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".gitexp-get-", dir=parent)
    total = 0
    try:
        root = os.path.realpath(tmp)
        for rel, key, size, mode in rows:
            out = os.path.realpath(os.path.join(tmp, *rel.split("/")))
            if not out.startswith(root + os.sep):
                raise IntegrityError(f"{label}: {rel!r} leaves the directory; refused")
            store.cas.restore(key, out, mode)
            total += size
        replace_tree(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return GetResult(run, entry, target, len(rows), total, downloaded)
