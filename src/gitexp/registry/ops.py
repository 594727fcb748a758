"""Registry operations on one repository: register, promote, rollback, and
reading models back (list, show, history, addresses ``NAME@STAGE``).

Every change is one event applied to the model's state (:mod:`.state`) and
written as one commit (:mod:`.record`); the ref moves by compare-and-swap and a
change that loses the race is applied again to the new tip.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gitexp import records as fmt
from gitexp.errors import InvalidName, RunConflict, RunStateError, UsageError
from gitexp.records import ArtifactEntry
from gitexp.records.models import (
    EXCLUSIVE_STAGES,
    MODEL_FORMAT,
    STAGES,
    model_ref,
    parse_version_number,
    validate_alias,
    validate_model_name,
)
from gitexp.registry import record
from gitexp.registry.record import Model, Version
from gitexp.registry.state import Event, ModelState
from gitexp.store import ExpStore, RunRecord

MAX_RETRIES = 50
ROLE_ORDER = ("output", "input", "log", "config", "code")


def parse_address(address: str) -> tuple[str, str | None]:
    """``NAME[@SPEC]`` -> (name, spec or None), the name checked."""
    if not isinstance(address, str) or not address:
        raise InvalidName("a model address must not be empty", str(address))
    name, sep, spec = address.partition("@")
    validate_model_name(name)
    if sep and not spec:
        raise InvalidName(f"{address!r}: nothing after '@' (NAME@STAGE, NAME@vN, NAME@ALIAS)")
    return name, spec if sep else None


def is_model_address(text: str) -> bool:
    """Whether ``text`` reads as ``NAME@SPEC`` (run addresses never hold '@')."""
    return "@" in text


# ------------------------------------------------------------------ writing


def _stamp(store: ExpStore, event: Event, message: str) -> Event:
    return {
        **event,
        "by": store.repo.identity().decode("utf-8", "replace"),
        "time": fmt.iso(fmt.utc_now()),
        "message": message,
    }


Step = tuple[Event, "tuple[int, bytes, str | None, str | None] | None", list[str]]


def _change(
    store: ExpStore,
    name: str,
    plan: Callable[[ModelState], list[Step]],
    create: bool = False,
) -> list[tuple[Event, Model]]:
    """Apply the events ``plan`` makes from the current state, one commit each,
    then move the ref once (compare-and-swap, planned again on a lost race)."""
    repo = store.repo
    ref = model_ref(name)
    for attempt in range(MAX_RETRIES):
        model = record.read(repo, name) if create else record.require(repo, name)
        state = model.state.copy()
        steps = plan(state)
        done: list[tuple[Event, Model]] = []
        tip = model
        replay_state = model.state.copy()
        for event, new_version, details in steps:
            applied = replay_state.apply(event)
            message = record.commit_message(name, applied, details)
            tip = record.write(repo, tip, replay_state.copy(), message, new_version)
            done.append((applied, tip))
        assert tip.sha is not None
        if repo.set_ref(ref, model.sha, tip.sha, f"git-exp: {done[-1][0]['op']} {name}"):
            return done
        time.sleep(random.uniform(0.001, 0.01) * (1 + attempt))
    raise RunConflict(f"model {name} kept changing under us; nothing was changed (try again)", ref)


def _pick_artifact(rec: RunRecord, path: str | None) -> ArtifactEntry:
    short = rec.ref.short
    if path is None:
        outputs = sorted((a for a in rec.artifacts if a.role == "output"), key=lambda a: a.path)
        if len(outputs) == 1:
            entry = outputs[0]
        elif not outputs:
            raise UsageError(
                f"run {short} has no output artifact to register (a script logs one with "
                "run.log_artifact)"
            )
        else:
            shown = ", ".join(a.path for a in outputs[:6]) + (" …" if len(outputs) > 6 else "")
            raise UsageError(f"run {short} has {len(outputs)} output artifacts: name one ({shown})")
    else:
        try:
            want = fmt.normalize_artifact_path(path)
        except InvalidName as exc:
            raise UsageError(str(exc)) from exc
        ranked = sorted(
            (a for a in rec.artifacts if a.path == want),
            key=lambda a: ROLE_ORDER.index(a.role) if a.role in ROLE_ORDER else 9,
        )
        if not ranked:
            have = ", ".join(sorted({a.path for a in rec.artifacts})[:8]) or "none"
            raise UsageError(f"run {short} has no artifact {want!r} (its artifacts: {have})")
        entry = ranked[0]
    if not entry.stored:
        raise UsageError(
            f"run {short}: {entry.path}: only its hash was recorded, not its bytes; a model "
            "version needs its bytes"
        )
    return entry


def _version_doc(
    store: ExpStore,
    name: str,
    number: int,
    rec: RunRecord,
    entry: ArtifactEntry,
    event: Event,
    source: dict[str, Any] | None,
) -> bytes:
    info = rec.info
    env = rec.env or {}
    python: dict[str, Any] = env["python"] if isinstance(env.get("python"), dict) else {}
    plat: dict[str, Any] = env["platform"] if isinstance(env.get("platform"), dict) else {}
    metrics = {k: fmt.to_jsonable(v, k) for k, v in sorted(rec.summary.final_values().items())}
    doc = {
        "format": MODEL_FORMAT,
        "model": name,
        "version": number,
        "run": {
            "ref": str(rec.ref),
            "experiment": rec.experiment,
            "id": rec.run_id,
            "name": rec.name,
            "status": rec.status,
            "commit": rec.sha,
            "start_time": info.get("start_time"),
            "end_time": info.get("end_time"),
            "host": info.get("host"),
            "user": info.get("user"),
        },
        "artifact": entry.to_json(),
        "metrics": metrics,
        "lineage": {
            "code_commit": rec.code.get("commit"),
            "code_tree": rec.code.get("tree"),
            "branch": rec.code.get("branch"),
            "dirty": bool(rec.code.get("dirty")),
            "fingerprint": info.get("fingerprint"),
            "inputs": fmt.manifest_to_json(rec.inputs()),
            "environment": {
                "python": " ".join(
                    str(python.get(k)) for k in ("implementation", "version") if python.get(k)
                )
                or None,
                "platform": " ".join(str(plat.get(k)) for k in ("system", "machine") if plat.get(k))
                or None,
                "packages": len(env.get("packages") or []),
            },
        },
        "registered": {k: event.get(k) for k in ("by", "time", "message")},
        "source": source,
    }
    return fmt.canonical_json(doc)


def register(
    store: ExpStore,
    name: str,
    run: str,
    artifact: str | None = None,
    message: str = "",
    source: dict[str, Any] | None = None,
) -> Version:
    """Make the next version of model ``name`` from ``run``'s artifact.

    The artifact is ``artifact`` (a path in the run's manifest) or the run's only
    output artifact. The version records the artifact's BLAKE3, the run's final
    metrics and its lineage; the run's tree and its code's tree go into the
    registry commit.

    Raises:
        InvalidName: the model name is not valid.
        RunNotFound: no such run.
        RunStateError: the run is still running.
        UsageError: the run has no such artifact, or only its hash.
    """
    validate_model_name(name)
    return register_record(store, name, store.read_settled(run), artifact, message, source)


def register_record(
    store: ExpStore,
    name: str,
    rec: RunRecord,
    artifact: str | None = None,
    message: str = "",
    source: dict[str, Any] | None = None,
) -> Version:
    """:func:`register` from a run as read (any commit of it)."""
    validate_model_name(name)
    if rec.status == "running":
        raise RunStateError(f"run {rec.ref.short} is still running; register it once it has ended")
    entry = _pick_artifact(rec, artifact)
    repo = store.repo
    code_tree = rec.code.get("tree")
    if not (isinstance(code_tree, str) and repo.has_object(code_tree)):
        code_tree = None
    base = _stamp(store, {"op": "register"}, message)

    def plan(state: ModelState) -> list[Step]:
        number = state.latest + 1
        event = {**base, "version": number, **({"source": source} if source else {})}
        doc = _version_doc(store, name, number, rec, entry, event, source)
        details = [
            f"run: {rec.ref.short}",
            f"artifact: {entry.path} (blake3 {entry.blake3[:12]}, {entry.size} bytes)",
            f"code: {str(rec.code.get('commit') or '')[:12]}",
        ]
        return [(event, (number, doc, rec.tree, code_tree), details)]

    (_, model), *_ = _change(store, name, plan, create=True)
    return record.read_version(repo, model, model.state.latest)


def promote(
    store: ExpStore,
    name: str,
    version: int | str,
    stage: str | None = None,
    aliases: Sequence[str] = (),
    message: str = "",
) -> list[Event]:
    """Put a version (a number, ``vN``, or ``latest``, an alias or a stage: the
    version it names) in ``stage`` (the version that held an exclusive stage is
    archived) and/or set ``aliases`` on it; one commit per change. Returns the
    events as applied.

    Raises:
        ModelNotFound: no such model or version.
        RunStateError: the version is archived.
        UsageError: an unknown stage, a bad alias, or nothing to do.
    """
    if stage is not None and stage not in STAGES:
        raise UsageError(f"unknown stage {stage!r} (one of {', '.join(STAGES)})")
    for alias in aliases:
        validate_alias(alias)
    if stage is None and not aliases:
        raise UsageError("name a stage or an alias to promote to")

    def plan(state: ModelState) -> list[Step]:
        number = parse_version_number(version)
        if number is None:  # latest, an alias, a stage: the version it names now
            number = state.resolve(str(version))
        steps: list[Step] = []
        trial = state.copy()
        wanted: list[Event] = []
        if stage is not None:
            wanted.append({"op": "promote", "version": number, "stage": stage})
        wanted += [{"op": "promote", "version": number, "alias": a} for a in dict.fromkeys(aliases)]
        for ev in wanted:
            ev = _stamp(store, ev, message)
            applied = trial.apply(ev)  # raises now, before anything is written
            details = []
            if applied.get("archived"):
                details.append("archived: " + ", ".join(f"v{v}" for v in applied["archived"]))
            if applied.get("alias") is not None and applied.get("from") is not None:
                details.append(f"moved from: v{applied['from']}")
            steps.append((ev, None, details))
        return steps

    return [ev for ev, _ in _change(store, name, plan)]


def rollback(store: ExpStore, name: str, target: str, message: str = "") -> Event:
    """Bring back the version that held ``target`` (``staging``, ``production`` or
    an alias) before the current one; the current one is archived (an alias
    without a previous version is removed).

    Raises:
        ModelNotFound: no such model or alias.
        RunStateError: nothing to roll back to.
        UsageError: a stage that cannot be rolled back.
    """

    def plan(state: ModelState) -> list[Step]:
        if target in EXCLUSIVE_STAGES or target in STAGES:
            ev: Event = {"op": "rollback", "stage": target}
        else:
            ev = {"op": "rollback", "alias": validate_alias(target)}
        ev = _stamp(store, ev, message)
        applied = state.copy().apply(ev)
        details = [f"from: v{applied['from']}" if applied.get("from") else "from: none"]
        details.append(f"back: v{applied['to']}" if applied.get("to") else "back: none")
        return [(ev, None, details)]

    ((event, _),) = _change(store, name, plan)
    return event


# ------------------------------------------------------------------ reading


def resolve(store: ExpStore, address: str) -> Version:
    """The version ``NAME[@STAGE|@vN|@ALIAS|@latest]`` names (NAME alone: the latest).

    Raises:
        ModelNotFound: no such model, or nothing matches the spec.
    """
    name, spec = parse_address(address)
    model = record.require(store.repo, name)
    number = model.state.resolve(spec)
    version = record.read_version(store.repo, model, number)
    return version


@dataclass
class ModelSummary:
    """One line of ``git exp model list``."""

    name: str
    latest: int
    versions: int
    stages: dict[str, int | None]  # staging/production -> holder
    aliases: dict[str, int]
    updated: str | None  # time of the last event
    sha: str


def list_models(store: ExpStore) -> list[ModelSummary]:
    """Every model of the repository, by name."""
    out = []
    for name in record.list_names(store.repo):
        model = record.read(store.repo, name)
        if model.sha is None:
            continue
        s = model.state
        out.append(
            ModelSummary(
                name,
                s.latest,
                len(s.stage_of),
                {st: s.holder(st) for st in EXCLUSIVE_STAGES},
                {a: h[-1] for a, h in sorted(s.aliases.items()) if h},
                (s.event or {}).get("time"),
                model.sha,
            )
        )
    return out


def version_data(version: Version) -> dict[str, Any]:
    """A version as plain data (``git exp model show NAME@X --json``)."""
    return {
        "model": version.model,
        "version": version.number,
        "stage": version.stage,
        "aliases": version.aliases,
        **{k: v for k, v in version.data.items() if k not in ("format", "model", "version")},
    }


def describe(store: ExpStore, address: str) -> dict[str, Any]:
    """A model (``NAME``: every version, its stages and aliases) or one version
    (``NAME@X``) as plain data."""
    name, spec = parse_address(address)
    model = record.require(store.repo, name)
    if spec is not None:
        number = model.state.resolve(spec)
        return version_data(record.read_version(store.repo, model, number))
    s = model.state
    return {
        "model": name,
        "ref": model_ref(name),
        "sha": model.sha,
        "latest": s.latest,
        "stages": {st: s.holder(st) for st in EXCLUSIVE_STAGES},
        "aliases": {a: h[-1] for a, h in sorted(s.aliases.items()) if h},
        "versions": [version_data(v) for v in record.read_versions(store.repo, model)],
        "last_event": s.event,
    }


def history(store: ExpStore, name: str, limit: int | None = None) -> list[dict[str, Any]]:
    """The model's events, newest first: what, who (in the event and as the
    commit's author), when, why, and the commit."""
    validate_model_name(name)
    if limit is not None and limit < 0:
        raise UsageError(f"the limit must be positive, not {limit}")
    out = []
    for entry in record.history(store.repo, name, limit):
        out.append({"sha": entry.sha, "author": entry.author, **entry.event})
    return out
