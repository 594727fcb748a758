"""``git exp push``: artifacts first, git objects next, refs last (fast-forward only)."""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from gitexp.errors import (
    Diverged,
    GitExpError,
    RemoteError,
    RunNotFound,
    UsageError,
)
from gitexp.git import RefPush
from gitexp.records import NAMESPACE, validate_experiment
from gitexp.remotes.config import Remote, is_url, open_store, resolve_remote
from gitexp.remotes.objects import (
    each_in_pool,
    local_size,
    referenced_keys,
)
from gitexp.remotes.progress import Meter, Progress, ProgressFn, no_progress
from gitexp.store import ExpStore


@dataclass
class PushResult:
    """What ``push`` did."""

    remote: Remote
    refs: list[RefPush] = field(default_factory=list)
    objects: int = 0  # uploaded (with dry_run: that would be uploaded)
    nbytes: int = 0
    checked: int = 0  # objects the pushed runs reference
    local_only: int = 0  # objects not uploaded because the remote has no store
    missing_local: list[str] = field(default_factory=list)  # referenced, but not here
    git_objects: int = 0  # git objects sent in the pack (commits, trees, blobs)
    git_bytes: int = 0  # their uncompressed size
    dry_run: bool = False  # nothing was written anywhere

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


def _select_refs(store: ExpStore, runs: Iterable[str], experiment: str | None) -> dict[str, str]:
    runs = list(runs)
    if runs and experiment is not None:
        raise UsageError("give either runs or -e EXPERIMENT, not both")
    if experiment is not None:
        validate_experiment(experiment)
    if runs:
        out: dict[str, str] = {}
        for address in runs:
            ref = store.resolve(address)
            sha = store.repo.get_ref(str(ref))
            if sha is None:
                raise RunNotFound(f"no run at {ref}")
            out[str(ref)] = sha
        return out
    return {str(ref): sha for ref, sha in sorted(store.list_refs(experiment).items())}


def push(
    store: ExpStore,
    remote: str | None = None,
    runs: Iterable[str] = (),
    experiment: str | None = None,
    progress: ProgressFn = no_progress,
    force: bool = False,
    dry_run: bool = False,
) -> PushResult:
    """Upload the artifacts of runs to the remote's store, then push their refs.

    Returns a status per ref; ``force`` overwrites remote runs that diverged.
    ``dry_run``: compare with the remote and its store and say what a push
    would do, writing nothing.
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
    refs = _select_refs(store, runs, experiment)
    if not refs:
        return result
    keys = referenced_keys(store, refs)
    present = [k for k in keys if store.cas.has(k)]
    here = set(present)
    result.missing_local = [k for k in keys if k not in here]
    result.checked = len(keys)
    try:
        _upload(store, rem, present, result, progress, dry_run)
    except RemoteError as exc:
        # artifacts go before refs: a store that fails stops the push here
        raise RemoteError(f"no run was pushed, the artifact store failed: {exc}", rem.url) from exc
    if dry_run:
        from gitexp.git import remote_refs

        current = remote_refs(rem.url, NAMESPACE, rem.ssh_command)
        plan = repo.plan_push(current, refs, force)
        result.refs = [plan[name] for name in refs]
        return result

    def on_objects(done: int, total: int, nbytes: int) -> None:
        result.git_objects, result.git_bytes = done, nbytes
        progress(Progress("sending git objects", done, total, nbytes))

    progress(Progress("pushing runs", 0, len(refs)))
    result.refs = repo.push(
        rem.url,
        refs,
        ssh_command=rem.ssh_command,
        progress=lambda text: progress(Progress("pushing runs", text=text)),
        force=force,
        on_objects=on_objects,
    )
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
    remote_store = open_store(rem, store.repo.work_tree or store.repo.git_dir)
    if remote_store is None:
        result.local_only = len(present)
        return
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

    for size in each_in_pool(remote_store.workers, send, todo):
        result.nbytes += size
        result.objects += 1
