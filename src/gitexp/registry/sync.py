"""``refs/models/`` through ``git exp push``, ``fetch`` and ``pull``.

A model's ref moves on the other side only by fast-forward, compare-and-swap.
When two clones changed one model, the side that integrates replays its local
events (those after the newest commit both histories share) on top of the
other side's tip (:func:`gitexp.registry.state.replay`): a registration gets the
next free number, a promotion that still applies is applied, one that does not
stops that model with its reason. No event is ever dropped: a model that cannot
be replayed is left as it was, and reported.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gitexp import records as fmt
from gitexp.errors import Diverged, GitExpError, IntegrityError
from gitexp.git import GitRepo, remote_refs
from gitexp.records.models import (
    MODELS_NAMESPACE,
    VERSION_JSON,
    model_ref,
    validate_model_name,
    version_dir,
)
from gitexp.registry import record
from gitexp.registry.state import ReplayConflict, replay
from gitexp.remotes import resolve_remote
from gitexp.store import ExpStore

PUSH_ATTEMPTS = 10


@dataclass
class ModelSync:
    """What a push or fetch did to one model.

    ``status``: ``new``, ``updated``, ``up to date``, ``replayed`` (local events
    replayed on top of the other side's), ``forced``, ``local ahead`` (fetch:
    nothing to take), ``remote ahead`` (push: pull first), ``diverged`` (could
    not be replayed: left alone, ``reason`` says why), ``refused`` (the remote
    served something that is not a readable model), ``rejected`` (the remote
    refused the update); with a dry run, what would happen.
    """

    name: str
    old: str | None
    new: str | None
    status: str
    reason: str = ""
    replayed: int = 0

    @property
    def ok(self) -> bool:
        """Whether the model is in sync (or needs nothing from this side)."""
        return self.status not in ("diverged", "refused", "rejected")


def sync_error(results: list[ModelSync], remote: str) -> GitExpError | None:
    """The error to exit with when a model could not be synced, else None."""
    refused = [r.name for r in results if r.status == "refused"]
    if refused:
        return IntegrityError(f"{len(refused)} model(s) from {remote} refused (see above)")
    bad = [r.name for r in results if not r.ok]
    if bad:
        return Diverged(
            f"{len(bad)} model(s) left as they are: their local changes do not apply on top of "
            f"{remote}'s (see above; nothing was lost)",
            [model_ref(n) for n in bad],
        )
    return None


def _replay_onto(repo: GitRepo, name: str, mine: str, theirs: str) -> tuple[str, int]:
    """Write the local events after the shared history on top of ``theirs``;
    return the new tip (the local ref is not moved here) and how many events
    were written.

    Raises:
        ReplayConflict: an event does not apply there.
    """
    base = record.merge_base(repo, mine, theirs)
    local = list(record.walk(repo, name, mine, stop=base))[::-1]  # oldest first
    events = [e.event for e in local]
    registered = {int(e.event["version"]): e.sha for e in local if e.event.get("op") == "register"}
    target = record.read(repo, name, theirs)
    _, applied = replay(target.state, events)
    tip = target
    state = target.state.copy()
    for event, local_number, new_number in applied:
        event = state.apply(event)
        new_version = None
        details = [f"replayed on {theirs[:12]}"]
        if local_number is not None and new_number is not None:
            source = record.read(repo, name, registered[local_number])
            tree = source.tree
            assert tree is not None
            found = repo.lookup_path(tree, version_dir(local_number))
            if found is None:
                raise ReplayConflict(event, f"version {local_number} has no files here")
            entries = repo.read_tree(found[1])
            what = f"{name} v{local_number}: {VERSION_JSON}"
            doc = fmt.parse_json(repo.read_blob(entries[VERSION_JSON][1], fmt.MAX_DOC_BYTES), what)
            doc["version"] = new_number
            run_tree = entries.get("run")
            code_tree = entries.get("code")
            new_version = (
                new_number,
                fmt.canonical_json(doc),
                run_tree[1] if run_tree else None,
                code_tree[1] if code_tree else None,
            )
            if new_number != local_number:
                details.append(f"registered here as v{local_number}")
        message = record.commit_message(name, event, details)
        tip = record.write(repo, tip, state.copy(), message, new_version)
    assert tip.sha is not None
    return tip.sha, len(applied)


def _integrate(repo: GitRepo, name: str, mine: str, theirs: str) -> ModelSync:
    """Replay ``mine``'s local events onto ``theirs`` and move the local ref there."""
    ref = model_ref(name)
    try:
        new, count = _replay_onto(repo, name, mine, theirs)
    except ReplayConflict as exc:
        return ModelSync(
            name,
            mine,
            theirs,
            "diverged",
            f"{exc.reason}; the other side's history ends at {theirs[:12]} "
            f"(git log {theirs[:12]}); the local history is kept",
        )
    if not repo.set_ref(ref, mine, new, f"git-exp: replay {name} on {theirs[:12]}"):
        return ModelSync(name, mine, theirs, "diverged", "the model changed here meanwhile; again")
    return ModelSync(name, mine, new, "replayed", replayed=count)


def _local_models(repo: GitRepo, names: list[str] | None) -> dict[str, str]:
    refs = record.models_under(repo.refs_under(MODELS_NAMESPACE))
    if names is not None:
        refs = {n: s for n, s in refs.items() if n in names}
    return refs


def push_models(
    store: ExpStore,
    remote: str | None = None,
    force: bool = False,
    dry_run: bool = False,
    names: list[str] | None = None,
    listed: Mapping[str, str] | None = None,
) -> list[ModelSync]:
    """Push every model (or ``names``) to the remote, replaying local events on
    top of the remote's where both changed a model. ``force`` overwrites the
    remote's models; ``dry_run`` says what would happen, writing nothing.
    ``listed``: the remote's ``refs/models/`` from a listing made moments ago
    (``git exp push`` lists runs and models in one connection)."""
    repo = store.repo
    rem = resolve_remote(repo, remote)
    results: dict[str, ModelSync] = {}
    todo = sorted(_local_models(repo, names))
    for _ in range(PUSH_ATTEMPTS):
        if not todo:
            break
        if listed is None:
            listed = remote_refs(rem.url, MODELS_NAMESPACE, rem.ssh_command)
        theirs = record.models_under(dict(listed))
        listed = None  # a second round (a model moved there meanwhile) lists again
        if any(theirs.get(n) and not repo.has_object(theirs[n]) for n in todo):
            repo.fetch(rem.url, MODELS_NAMESPACE, ssh_command=rem.ssh_command)
        send: dict[str, str] = {}
        planned: dict[str, ModelSync] = {}
        for name in todo:
            mine = repo.get_ref(model_ref(name))
            their = theirs.get(name)
            if mine is None:
                continue
            if their == mine:
                results[name] = ModelSync(name, their, mine, "up to date")
            elif their is None:
                planned[name] = ModelSync(name, None, mine, "new")
            elif repo.is_ancestor(their, mine):
                planned[name] = ModelSync(name, their, mine, "updated")
            elif force:
                planned[name] = ModelSync(name, their, mine, "forced")
            elif repo.is_ancestor(mine, their):
                results[name] = ModelSync(
                    name, their, mine, "remote ahead", "the remote has newer changes (pull them)"
                )
            elif dry_run:
                results[name] = ModelSync(
                    name, their, mine, "would replay", "both sides changed it since they agreed"
                )
            else:
                problem = record.check_model_commit(repo, name, their, record.chain(repo, mine))
                if problem:
                    results[name] = ModelSync(name, their, mine, "refused", problem)
                    continue
                done = _integrate(repo, name, mine, their)
                if done.status != "replayed":
                    results[name] = done
                    continue
                planned[name] = ModelSync(name, their, done.new, "replayed", "", done.replayed)
        if dry_run:
            results.update({n: ModelSync(n, p.old, p.new, p.status) for n, p in planned.items()})
            break
        for name, step in planned.items():
            assert step.new is not None
            send[model_ref(name)] = step.new
        retry = []
        if send:
            for pushed in repo.push(rem.url, send, ssh_command=rem.ssh_command, force=force):
                name = pushed.ref[len(MODELS_NAMESPACE) :]
                if pushed.status == "rejected":
                    retry.append(name)  # the remote moved since it advertised: again
                    results[name] = ModelSync(
                        name, pushed.old, pushed.new, "rejected", pushed.reason
                    )
                else:
                    results[name] = planned[name]
        todo = retry
    return [results[n] for n in sorted(results)]


def fetch_models(
    store: ExpStore, remote: str | None = None, listed: Mapping[str, str] | None = None
) -> list[ModelSync]:
    """Bring the remote's models here: new ones are created, ours fast-forward,
    and where both sides changed a model our local events are replayed on top
    of the remote's (a model that cannot be replayed keeps its local history).
    ``listed``: the remote's ``refs/models/`` from a listing made moments ago."""
    repo = store.repo
    rem = resolve_remote(repo, remote)
    refs = repo.fetch(rem.url, MODELS_NAMESPACE, ssh_command=rem.ssh_command, listed=listed)
    out = []
    for ref, their in sorted(refs.items()):
        rest = ref[len(MODELS_NAMESPACE) :]
        try:
            name = validate_model_name(rest)
        except GitExpError as exc:
            out.append(ModelSync(rest, None, their, "refused", f"not a model ref: {exc}"))
            continue
        mine = repo.get_ref(ref)
        if mine == their:
            out.append(ModelSync(name, mine, their, "up to date"))
            continue
        known = record.chain(repo, mine) if mine else []
        problem = record.check_model_commit(repo, name, their, known)
        if problem:
            out.append(ModelSync(name, mine, their, "refused", problem))
            continue
        if mine is None:
            ok = repo.set_ref(ref, None, their, f"git-exp: fetch {name} from {rem.label}")
            out.append(
                ModelSync(
                    name,
                    None,
                    their,
                    "new" if ok else "diverged",
                    "" if ok else "the model appeared here meanwhile; fetch again",
                )
            )
        elif repo.is_ancestor(mine, their):
            ok = repo.set_ref(ref, mine, their, f"git-exp: fetch {name} from {rem.label}")
            out.append(
                ModelSync(
                    name,
                    mine,
                    their,
                    "updated" if ok else "diverged",
                    "" if ok else "the model changed here meanwhile; fetch again",
                )
            )
        elif repo.is_ancestor(their, mine):
            out.append(ModelSync(name, mine, their, "local ahead"))
        else:
            out.append(_integrate(repo, name, mine, their))
    return out


def results_json(results: list[ModelSync]) -> list[dict[str, Any]]:
    """The results as plain data."""
    return [dataclasses.asdict(r) for r in results]
