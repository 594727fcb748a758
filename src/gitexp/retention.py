"""Retention: archive runs to a remote, then remove them here.

``archive`` pushes the runs chosen (by name, or by the filters of ``git exp
rm``: age, status, tags, ``--where``) to an archive remote with their
artifacts, checks that the remote holds each run's ref at the very commit
pushed and every artifact object the run refers to, and only then deletes
the run's ref here (compare-and-swap on that commit: a run that changed
meanwhile stays). A run the remote does not verifiably hold is never
removed. ``git exp ls-remote`` lists archived runs; ``git exp pull`` brings
them back; ``git exp gc`` frees the local bytes.

The transport is :mod:`gitexp.remotes` (push, ls-remote), the selection
:func:`gitexp.maintenance.select_for_removal` (the leaderboard's filters).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from gitexp.errors import GitExpError, RemoteError, RunStateError
from gitexp.maintenance import select_for_removal
from gitexp.records import ExpRef
from gitexp.remotes import ls_remote, open_store, push, resolve_remote
from gitexp.remotes.objects import referenced_keys
from gitexp.remotes.progress import ProgressFn, no_progress
from gitexp.store import ExpStore


@dataclass
class ArchiveResult:
    """What ``archive`` did: runs archived (removed here), and runs kept, with why."""

    remote: str
    archived: list[str] = field(default_factory=list)  # experiment/run-id
    kept: dict[str, str] = field(default_factory=dict)  # experiment/run-id -> reason
    selected: list[str] = field(default_factory=list)
    objects: int = 0  # artifact objects uploaded
    dry_run: bool = False

    def error(self) -> GitExpError | None:
        """The error to exit with when some runs were not archived."""
        if self.kept:
            return RemoteError(
                f"{len(self.kept)} run(s) not archived and kept here (see above)", self.remote
            )
        return None


def archive(
    store: ExpStore,
    remote: str,
    runs: Sequence[str] = (),
    experiment: str | None = None,
    older_than: str | None = None,
    statuses: Sequence[str] = (),
    where: str | None = None,
    tags: Sequence[str] = (),
    unless_tags: Sequence[str] = (),
    dry_run: bool = False,
    progress: ProgressFn = no_progress,
) -> ArchiveResult:
    """Push the selected runs and their artifacts to ``remote``, verify the
    remote holds them, then delete them here.

    Raises:
        UsageError: nothing selects runs (no names, no filters).
        RunStateError: a run named is still running.
        NoRemote, RemoteError: the remote cannot be used, or has no artifact
            store while the runs have artifacts (they would be lost).
    """
    refs = select_for_removal(
        store, runs, experiment, older_than, statuses, where, tags, unless_tags
    )
    rem = resolve_remote(store.repo, remote)
    result = ArchiveResult(rem.label, selected=[r.short for r in refs], dry_run=dry_run)
    if not refs:
        return result
    shas: dict[str, str] = {}
    for ref in refs:
        sha = store.repo.get_ref(str(ref))
        if sha is None:
            result.kept[ref.short] = "no longer here"
            continue
        if runs and store.read(ref, sha).status == "running":
            raise RunStateError(f"run {ref.short} is still running: archive it once it ends")
        shas[str(ref)] = sha
    keys = referenced_keys(store, shas)
    stored = [k for k in keys if store.cas.has(k)]
    remote_store = open_store(rem, store.repo.work_tree or store.repo.git_dir)
    if stored and remote_store is None:
        raise RemoteError(
            f"remote {rem.label} has no artifact store, and the runs have "
            f"{len(stored)} artifact object(s) that would be lost: set "
            f"remote.{rem.name or '<name>'}.expstore (docs/remotes.md); nothing was archived",
            rem.url,
        )
    if dry_run:
        pushed = push(store, remote, list(shas), progress=progress, dry_run=True)
        result.objects = pushed.objects
        result.archived = [ExpRef.from_ref(r).short for r in shas]
        return result
    pushed = push(store, remote, list(shas), progress=progress)
    result.objects = pushed.objects
    refused = {
        r.ref: str(r.status)
        for r in pushed.refs
        if r.status not in ("new", "updated", "up to date")
    }
    # what the remote holds now, from its own ref advertisement and its own store
    _, listed = ls_remote(store, remote)
    there = {r.ref: r.sha for r in listed}
    lacking = set(remote_store.missing(stored)) if remote_store is not None else set()
    for name, sha in shas.items():
        short = ExpRef.from_ref(name).short
        if name in refused:
            result.kept[short] = f"the remote refused it ({refused[name]})"
            continue
        if there.get(name) != sha:
            result.kept[short] = "the remote does not hold this commit of it"
            continue
        missing = [k for k in referenced_keys(store, {name: sha}) if k in lacking]
        if missing:
            result.kept[short] = f"{len(missing)} artifact object(s) missing on the remote"
            continue
        if store.repo.delete_ref(name, sha):
            result.archived.append(short)
        else:
            result.kept[short] = "it changed while it was archived (archive it again)"
    return result
