"""GTO's git-tag convention, both ways, for teams that use GTO or DVC Studio.

- ``<name>@v<N>.0.0``: version N, an annotated tag on the version's run commit;
- ``<name>#<stage>#<E>``: a stage assignment; ``E`` counts the model's stage
  events from 1, so the highest ``E`` of a stage names its holder, as GTO reads it.

:func:`export_tags` writes the registry's history as such tags (idempotent);
:func:`import_tags` registers the versions such tags name and promotes the
stage holders they say.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gitexp import records as fmt
from gitexp.errors import GitExpError, StoreError
from gitexp.records import ExpRef
from gitexp.records.models import EXCLUSIVE_STAGES, validate_model_name
from gitexp.registry import ops, record
from gitexp.store import ExpStore

_REGISTER_RE = re.compile(r"^(?P<name>.+)@v(?P<version>\d+\.\d+\.\d+)$")
_PROMOTE_RE = re.compile(r"^(?P<name>[^#]+)#(?P<stage>[^#]+)(?:#(?P<number>\d+))?$")
# GTO's stage names mapped to the registry's (others have no equivalent here)
STAGE_NAMES = {
    "prod": "production",
    "production": "production",
    "staging": "staging",
    "stage": "staging",
    "stag": "staging",
    "dev": "development",
    "development": "development",
}


@dataclass
class TagResult:
    """What export or import did with one tag."""

    tag: str
    target: str | None
    status: str  # created, exists, conflict, skipped, registered, promoted, imported already
    reason: str = ""


def _epoch(iso: Any) -> int | None:
    when = fmt.parse_iso(iso) if isinstance(iso, str) else None
    return int(when.timestamp()) if when else None


def export_tags(store: ExpStore, names: Sequence[str] = ()) -> list[TagResult]:
    """Write each model's versions and stage events as GTO tags (those that
    exist with the same target are kept; one pointing elsewhere is reported)."""
    repo = store.repo
    existing = repo.tags()
    out: list[TagResult] = []
    for name in names or record.list_names(repo):
        model = record.require(repo, validate_model_name(name))
        commits: dict[int, str] = {}
        for version in record.read_versions(repo, model):
            commit = version.run.get("commit")
            if isinstance(commit, str):
                commits[version.number] = commit
        wanted: list[tuple[str, str | None, str, str | None, int | None]] = []
        events = [e.event for e in record.history(repo, name)][::-1]
        count = 0
        for ev in events:
            op = ev.get("op")
            if op == "register":
                n = int(ev["version"])
                msg = f"Registering artifact {name} version v{n}.0.0"
                wanted.append(
                    (f"{name}@v{n}.0.0", commits.get(n), msg, ev.get("by"), _epoch(ev.get("time")))
                )
            elif ev.get("stage") in EXCLUSIVE_STAGES and op in ("promote", "rollback"):
                count += 1
                held = ev.get("version") if op == "promote" else ev.get("to")
                if held is None:
                    continue
                n = int(held)
                stage = ev["stage"]
                msg = f"Assigning stage {stage} to artifact {name} version v{n}.0.0"
                if ev.get("message"):
                    msg += f"\n\n{ev['message']}"
                wanted.append(
                    (
                        f"{name}#{stage}#{count}",
                        commits.get(int(n)),
                        msg,
                        ev.get("by"),
                        _epoch(ev.get("time")),
                    )
                )
        for tag, target, msg, by, when in wanted:
            if target is None or not repo.has_object(target):
                out.append(TagResult(tag, target, "skipped", "its run commit is not here"))
            elif tag in existing:
                same = existing[tag] == target
                out.append(
                    TagResult(
                        tag,
                        target,
                        "exists" if same else "conflict",
                        "" if same else f"the tag points at {existing[tag][:12]}",
                    )
                )
            else:
                repo.create_tag(tag, target, msg, by, when)
                existing[tag] = target
                out.append(TagResult(tag, target, "created"))
    return out


def _semver(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def _run_of(store: ExpStore, commit: str) -> tuple[Any, str]:
    """The run record a tagged commit stands for: a run commit, or the only run
    made from that code commit; (None, why) when there is none."""
    repo = store.repo
    try:
        info = repo.commit_info(commit)
        found = repo.lookup_path(info.tree, fmt.RUN_JSON)
        if found is not None:
            run = fmt.parse_json(
                repo.read_blob(found[1], fmt.doc_limit(fmt.RUN_JSON)), fmt.RUN_JSON
            )
            ref = ExpRef(str(run.get("experiment")), str(run.get("id")))
            return store.read(ref, commit), ""
    except (GitExpError, AttributeError, KeyError) as exc:
        return None, f"cannot read the run at {commit[:12]}: {exc}"
    from gitexp.leaderboard import Query, select

    table = select(store, Query(where=f'code_commit == "{commit}"'))
    refs = [r for r in table.values("ref")]
    if len(refs) == 1:
        return store.read_settled(str(refs[0])), ""
    if not refs:
        return None, f"{commit[:12]} is not a run commit, and no run was made from it"
    return None, f"{len(refs)} runs were made from {commit[:12]}: tag a run commit instead"


def _artifact_path(store: ExpStore, commit: str, name: str) -> str | None:
    """The model's path from GTO's annotations (``artifacts.yaml`` or ``dvc.yaml``
    ``artifacts:``) in the tagged commit, if any."""
    import yaml

    repo = store.repo
    try:
        tree = repo.commit_info(commit).tree
    except GitExpError:
        return None
    for file in ("artifacts.yaml", "dvc.yaml"):
        found = repo.lookup_path(tree, file)
        if found is None:
            continue
        try:
            data = yaml.safe_load(repo.read_blob(found[1], fmt.MAX_DOC_BYTES))
        except (yaml.YAMLError, GitExpError):
            continue
        if file == "dvc.yaml" and isinstance(data, dict):
            data = data.get("artifacts")
        entry = data.get(name) if isinstance(data, dict) else None
        if isinstance(entry, dict) and isinstance(entry.get("path"), str):
            return str(entry["path"])
    return None


def import_tags(store: ExpStore, names: Sequence[str] = ()) -> list[TagResult]:
    """Register the versions GTO tags name (in semantic-version order) and promote
    the stage holders the newest stage tags say; tags already imported are skipped."""
    repo = store.repo
    tags = repo.tags()
    wanted = set(names)
    registers: dict[str, list[tuple[tuple[int, ...], str, str]]] = {}
    promotes: dict[str, dict[str, tuple[int, str, str]]] = {}
    for tag, commit in tags.items():
        m = _REGISTER_RE.match(tag)
        if m:
            registers.setdefault(m["name"], []).append((_semver(m["version"]), tag, commit))
            continue
        m = _PROMOTE_RE.match(tag)
        if m:
            number = int(m["number"]) if m["number"] else 0
            best = promotes.setdefault(m["name"], {}).get(m["stage"])
            if best is None or number > best[0]:
                promotes[m["name"]][m["stage"]] = (number, tag, commit)
    out: list[TagResult] = []
    for name in sorted(set(registers) | set(promotes)):
        if wanted and name not in wanted:
            continue
        try:
            validate_model_name(name)
        except GitExpError as exc:
            out.append(TagResult(name, None, "skipped", str(exc)))
            continue
        model = record.read(repo, name)
        versions = record.read_versions(repo, model)
        imported = {
            (v.data.get("source") or {}).get("gto"): v.number
            for v in versions
            if isinstance(v.data.get("source"), dict)
        }
        by_commit = {v.run.get("commit"): v.number for v in versions}
        for _, tag, commit in sorted(registers.get(name, [])):
            if tag in imported:
                out.append(TagResult(tag, commit, "imported already"))
                continue
            rec, why = _run_of(store, commit)
            if rec is None:
                out.append(TagResult(tag, commit, "skipped", why))
                continue
            try:
                version = ops.register_record(
                    store,
                    name,
                    rec,
                    _artifact_path(store, commit, name),
                    f"imported from GTO tag {tag}",
                    {"gto": tag},
                )
            except GitExpError as exc:
                out.append(TagResult(tag, commit, "skipped", str(exc)))
                continue
            by_commit[commit] = version.number
            by_commit.setdefault(rec.sha, version.number)
            out.append(TagResult(tag, commit, "registered", f"v{version.number}"))
        for gto_stage, (_, tag, commit) in sorted(promotes.get(name, {}).items()):
            stage = STAGE_NAMES.get(gto_stage)
            if stage is None:
                out.append(TagResult(tag, commit, "skipped", f"no stage here for {gto_stage!r}"))
                continue
            found = by_commit.get(commit)
            if found is None:
                out.append(TagResult(tag, commit, "skipped", "no version of it points there"))
                continue
            number = int(found)
            current = record.read(repo, name).state
            if current.stage_of.get(number) == stage:
                out.append(TagResult(tag, commit, "imported already", f"v{number} is in {stage}"))
                continue
            try:
                ops.promote(store, name, number, stage, message=f"imported from GTO tag {tag}")
            except (GitExpError, StoreError) as exc:
                out.append(TagResult(tag, commit, "skipped", str(exc)))
                continue
            out.append(TagResult(tag, commit, "promoted", f"v{number} to {stage}"))
    return out
