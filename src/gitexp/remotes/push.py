"""``git exp push``: artifacts first, git objects next, refs last (fast-forward only).

Only what is new is looked at: the remote's refs come from one advertisement,
the local ones from the ref cache, and a run whose ref is where the per-remote
state (:mod:`gitexp.remotes.state`) last saw it in sync has its manifest read
no more. A push with nothing new reads no run and sends nothing.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field

from gitexp.errors import (
    Diverged,
    GitExpError,
    RemoteError,
    RunNotFound,
    UsageError,
)
from gitexp.git import RefListing, RefPush, SyncStatus
from gitexp.records import validate_experiment
from gitexp.remotes.config import Remote, is_url, open_store, resolve_remote
from gitexp.remotes.namespaces import (
    ARTIFACT_PREFIXES,
    RUNS,
    SHARED,
    SHARED_PREFIXES,
    name_problem,
)
from gitexp.remotes.objects import (
    each_in_pool,
    keys_of,
    local_size,
    runs_objects,
    transfer_workers,
)
from gitexp.remotes.progress import Meter, Progress, ProgressFn, no_progress
from gitexp.remotes.state import SyncState, SyncTip, ref_cache
from gitexp.store import ExpStore

_SENT = (SyncStatus.NEW, SyncStatus.UPDATED, SyncStatus.FORCED)
_MOVED = (*_SENT, SyncStatus.UP_TO_DATE)


@dataclass
class PushResult:
    """What ``push`` did."""

    remote: Remote
    refs: list[RefPush] = field(default_factory=list)
    objects: int = 0  # uploaded (with dry_run: that would be uploaded)
    nbytes: int = 0
    checked: int = 0  # objects the pushed runs reference (of the runs looked at)
    runs_checked: int = 0  # runs whose manifest was read (the others were in sync)
    local_only: int = 0  # objects not uploaded because the remote has no store (counted)
    local_only_runs: int = 0  # runs whose artifacts stay here: no store, manifests not read
    missing_local: list[str] = field(default_factory=list)  # referenced, but not here
    git_objects: int = 0  # git objects sent in the pack (commits, trees, blobs)
    git_bytes: int = 0  # the pack's size as git wrote it
    dry_run: bool = False  # nothing was written anywhere
    also: dict[str, str] | None = None  # the remote's refs under ``push(also=...)``, if listed

    def error(self) -> GitExpError | None:
        """The error to exit with, if any ref was rejected."""
        rejected = [r.ref for r in self.refs if r.status == "rejected"]
        if rejected:
            return Diverged(
                f"{len(rejected)} run(s) not pushed: the remote has commits on them that this "
                "repository lacks (git exp fetch to see them; git exp push --force to "
                "overwrite the remote's)",
                rejected,
            )
        return None


def local_refs(store: ExpStore, prefix: str) -> dict[str, str]:
    """The local refs under ``prefix``, through the ref cache (unchanged ref
    directories are not read again)."""
    repo = store.repo
    return repo.ref_snapshot(prefix, ref_cache(repo, prefix))


def _select_refs(
    store: ExpStore, local: dict[str, str], runs: Iterable[str], experiment: str | None
) -> dict[str, str]:
    runs = list(runs)
    if runs and experiment is not None:
        raise UsageError("give either runs or -e EXPERIMENT, not both")
    if experiment is not None:
        validate_experiment(experiment)
    if runs:
        out: dict[str, str] = {}
        for address in runs:
            ref = str(store.resolve(address))
            sha = local.get(ref) or store.repo.get_ref(ref)
            if sha is None:
                raise RunNotFound(f"no run at {ref}")
            out[ref] = sha
        return out
    if experiment:
        top = f"{RUNS.prefix}{experiment}/"
        return {r: s for r, s in local.items() if r.startswith(top)}
    return dict(local)


def push(
    store: ExpStore,
    remote: str | None = None,
    runs: Iterable[str] = (),
    experiment: str | None = None,
    progress: ProgressFn = no_progress,
    force: bool = False,
    dry_run: bool = False,
    also: Sequence[str] = (),
) -> PushResult:
    """Upload the artifacts of runs to the remote's store, then push their refs.

    Returns a status per ref; ``force`` overwrites remote runs that diverged.
    ``dry_run``: compare with the remote and its store and say what a push
    would do, writing nothing. ``also``: more ref prefixes to list in the same
    connection; the remote's refs under them are in ``result.also``.
    """
    repo = store.repo
    runs = list(runs)
    if (
        remote is not None
        and remote not in repo.remotes()
        and not is_url(remote)
        and not os.path.isdir(remote)
    ):
        # `git exp push <run>`: the first word is a run, not a remote
        try:
            store.resolve(remote)
        except RunNotFound:
            pass  # neither: resolve_remote says there is no such remote
        else:
            runs, remote = [remote, *runs], None
    rem = resolve_remote(repo, remote)
    result = PushResult(rem, dry_run=dry_run)
    whole = not runs and experiment is None  # a whole push: every shared namespace goes
    tip = SyncTip(repo, rem) if whole else None
    listed: RefListing | None = None
    unmoved = tip.here(repo, SHARED_PREFIXES) if tip is not None else None
    if unmoved is not None:
        # nothing moved here since all was last in sync: only the remote may have
        progress(Progress("comparing with the remote"))
        listed = repo.remote_refs(rem.url, [*SHARED_PREFIXES, *also], rem.ssh_command)
        if SyncTip.listed(listed, unmoved):
            return _all_up_to_date(result, listed, also)
    local = local_refs(store, RUNS.prefix)
    selected = _select_refs(store, local, runs, experiment)
    if not selected:
        return result
    if whole:
        for ns in SHARED:
            if ns is not RUNS:
                mine = local_refs(store, ns.prefix)
                selected.update(mine)
                local.update(mine)
    progress(Progress("comparing with the remote"))
    if listed is None:
        listed = repo.remote_refs(rem.url, [*SHARED_PREFIXES, *also], rem.ssh_command)
    advertised: dict[str, str] = listed
    if also:
        result.also = {r: s for r, s in listed.items() if r.startswith(tuple(also))}
        advertised = {r: s for r, s in listed.items() if r not in result.also}
    state = SyncState(repo, rem)
    synced = state.synced
    # in sync: on the remote at this sha, artifacts included (per-remote state); a
    # run the remote lost (deleted or reset there) is looked at again
    in_sync = {r for r, s in selected.items() if advertised.get(r) == s and synced.get(r) == s}
    # a ref under the namespace that is not a run's name is not ours to push (only
    # refs with something to do are looked at: 10 us a name, 1 s for 100,000)
    refs = {r: s for r, s in sorted(selected.items()) if r in in_sync or not name_problem(r)}
    plan = repo.plan_push(advertised, refs, force)
    # artifacts: only of runs not in sync, and that will move
    look = {
        r: s
        for r, s in refs.items()
        if r not in in_sync
        and plan[r].status != SyncStatus.REJECTED
        and r.startswith(ARTIFACT_PREFIXES)
    }
    if not rem.store_url and not dry_run:
        # no store: no object can go anywhere, so no manifest is read (the refs go)
        result.local_only_runs, look = len(look), {}
    result.runs_checked = len(look)
    if look:
        progress(Progress("reading manifests", 0, len(look)))
    objects = runs_objects(
        store, look, progress=lambda d, t: progress(Progress("reading manifests", d, t))
    )
    per_run = {r: keys_of(store, objs) for r, objs in objects.items()}
    keys = list(dict.fromkeys(k for ks in per_run.values() for k in ks))
    here = {k for k in keys if store.cas.has(k)}
    result.missing_local = [k for k in keys if k not in here]
    result.checked = len(keys)
    try:
        _upload(store, rem, [k for k in keys if k in here], result, progress, dry_run)
    except RemoteError as exc:
        # artifacts go before refs: a store that fails stops the push here
        raise RemoteError(f"no run was pushed, the artifact store failed: {exc}", rem.url) from exc
    if dry_run:
        result.refs = [plan[name] for name in refs]
        return result

    def on_objects(done: int, total: int, nbytes: int) -> None:
        result.git_objects, result.git_bytes = done, max(result.git_bytes, nbytes)
        progress(Progress("sending git objects", done, total, nbytes))

    # only refs that move go to git (the others' statuses are the plan's)
    moving = {r: s for r, s in refs.items() if plan[r].status in _SENT}
    if moving:
        progress(Progress("pushing runs", 0, len(moving)))
        pushed = repo.push(
            rem.url,
            moving,
            ssh_command=rem.ssh_command,
            progress=lambda text: progress(Progress("pushing runs", text=text)),
            force=force,
            on_objects=on_objects,
            remote=advertised,
        )
        plan.update({p.ref: p for p in pushed})
    result.refs = [plan[name] for name in refs]
    for r in result.refs:
        if r.status not in _MOVED or r.ref in in_sync:
            continue
        if rem.store_url and any(k not in here for k in per_run.get(r.ref, ())):
            continue  # some of its artifacts are not here: look again next time
        state.mark(r.ref, r.new)
    state.save(keep=local)
    if tip is not None:
        # every ref here now on the remote at its sha, artifacts included, and
        # the remote with no other: the next whole push or pull can stop early
        after = dict(advertised)
        after.update({r.ref: r.new for r in result.refs if r.status in _MOVED})
        if after == local and state.synced == local:
            tip.save(local, SHARED_PREFIXES)
    return result


def _all_up_to_date(result: PushResult, listed: RefListing, also: Sequence[str]) -> PushResult:
    """The result of a push with nothing to do: every listed run up to date."""
    others = {r: s for r, s in listed.items() if r.startswith(tuple(also))} if also else {}
    up = SyncStatus.UP_TO_DATE
    result.refs = [RefPush(r, s, s, up) for r, s in sorted(listed.items()) if r not in others]
    if also:
        result.also = others
    return result


def _upload(
    store: ExpStore,
    rem: Remote,
    present: list[str],
    result: PushResult,
    progress: ProgressFn,
    dry_run: bool,
) -> None:
    """Upload to the remote's store the objects of ``present`` it lacks."""
    if not present:
        return  # (nothing to compare: the store is not even opened)
    remote_store = open_store(rem, store.repo.work_tree or store.repo.git_dir)
    if remote_store is None:
        result.local_only = len(present)
        return
    progress(Progress("comparing with the artifact store", 0, len(present)))
    todo = remote_store.missing(present)
    sizes = {k: local_size(store, k) for k in todo}
    if dry_run:
        result.objects, result.nbytes = len(todo), sum(sizes.values())
        return
    meter = Meter(progress, "uploading artifacts", len(todo), sum(sizes.values()))

    def send(key: str) -> int:
        size = remote_store.upload(store.cas, key, meter.add_bytes)
        meter.finish_one()
        return size

    # a directory store: the objects made durable together (one flush, not one each)
    batch = remote_store.local.batch() if remote_store.local is not None else nullcontext()
    with batch:
        for size in each_in_pool(transfer_workers(remote_store, len(todo)), send, todo):
            result.nbytes += size
            result.objects += 1
