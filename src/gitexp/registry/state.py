"""A model's state (``model.json``) and the operations that change it.

Pure: no I/O. Every change to a model is an *event* (``register``, ``promote``,
``rollback``) applied to a :class:`ModelState`; the same function applies an
event when the user asks for it and when a push or pull replays local events on
top of a remote's history (:func:`replay`), so both follow one set of rules:

- a new version starts in ``development``;
- ``staging`` and ``production`` hold one version each: promoting a version
  there archives the one that held it;
- an archived version is never promoted; a rollback brings back the version
  that held a stage (or an alias) before the current one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gitexp.errors import FormatError, ModelNotFound, RunStateError, UsageError
from gitexp.records.models import (
    EXCLUSIVE_STAGES,
    FIRST_STAGE,
    LATEST,
    MODEL_FORMAT,
    OPS,
    STAGES,
    check_format,
    parse_version_number,
    validate_alias,
    validate_model_name,
)

Event = dict[str, Any]


def _ints(value: Any, what: str) -> list[int]:
    if not isinstance(value, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in value
    ):
        raise FormatError(f"{what} is not a list of version numbers")
    return list(value)


@dataclass
class ModelState:
    """What ``model.json`` holds: each version's stage, who held each exclusive
    stage and each alias (oldest first: ``stages``, ``aliases``), and the event
    that made this state."""

    name: str
    latest: int = 0
    stage_of: dict[int, str] = field(default_factory=dict)
    stages: dict[str, list[int]] = field(default_factory=dict)
    aliases: dict[str, list[int]] = field(default_factory=dict)
    event: Event | None = None

    # ------------------------------------------------------------ the file
    def to_json(self) -> dict[str, Any]:
        """``model.json`` as data: per stage the versions in it now, the versions
        that held each exclusive stage and each alias (oldest first), the event."""
        by_stage: dict[str, list[int]] = {s: [] for s in STAGES}
        for v, s in sorted(self.stage_of.items()):
            by_stage[s].append(v)
        return {
            "format": MODEL_FORMAT,
            "name": self.name,
            "latest": self.latest,
            "versions": by_stage,
            "holders": {s: list(h) for s, h in sorted(self.stages.items()) if h},
            "aliases": {a: list(h) for a, h in sorted(self.aliases.items()) if h},
            "event": self.event,
        }

    @classmethod
    def from_json(cls, data: Any, what: str = "model.json") -> ModelState:
        """Parse and check ``model.json``."""
        doc = check_format(data, what)
        try:
            name = validate_model_name(doc.get("name"))
        except UsageError as exc:
            raise FormatError(f"{what}: {exc}") from exc
        latest = doc.get("latest", 0)
        if not isinstance(latest, int) or isinstance(latest, bool) or latest < 0:
            raise FormatError(f"{what}: 'latest' is not a version number")
        stage_of: dict[int, str] = {}
        versions = doc.get("versions") or {}
        if not isinstance(versions, dict) or not set(versions) <= set(STAGES):
            raise FormatError(f"{what}: 'versions' is not an object of stages")
        for s, listed in versions.items():
            for v in _ints(listed, f"{what}: versions.{s}"):
                if v > latest or v in stage_of:
                    raise FormatError(f"{what}: version {v} is listed twice or beyond latest")
                stage_of[v] = str(s)
        if len(stage_of) != latest:
            raise FormatError(f"{what}: versions 1 to {latest} are not each in one stage")
        stages: dict[str, list[int]] = {}
        holders = doc.get("holders") or {}
        if not isinstance(holders, dict):
            raise FormatError(f"{what}: 'holders' is not an object")
        for s, h in holders.items():
            if s not in EXCLUSIVE_STAGES:
                raise FormatError(f"{what}: 'holders' names {s!r}, not an exclusive stage")
            stages[s] = _ints(h, f"{what}: holders.{s}")
        aliases: dict[str, list[int]] = {}
        raw_aliases = doc.get("aliases") or {}
        if not isinstance(raw_aliases, dict):
            raise FormatError(f"{what}: 'aliases' is not an object")
        for a, h in raw_aliases.items():
            try:
                validate_alias(a)
            except UsageError as exc:
                raise FormatError(f"{what}: {exc}") from exc
            aliases[a] = _ints(h, f"{what}: aliases.{a}")
        for hist in (*stages.values(), *aliases.values()):
            if any(v not in stage_of for v in hist):
                raise FormatError(f"{what}: a stage or alias names a version that does not exist")
        event = doc.get("event")
        if event is not None and (not isinstance(event, dict) or event.get("op") not in OPS):
            raise FormatError(f"{what}: 'event' is not a registry operation")
        return cls(name, latest, stage_of, stages, aliases, event)

    def copy(self) -> ModelState:
        """An independent copy (events applied to it leave this one alone)."""
        return ModelState(
            self.name,
            self.latest,
            dict(self.stage_of),
            {s: list(h) for s, h in self.stages.items()},
            {a: list(h) for a, h in self.aliases.items()},
            dict(self.event) if self.event is not None else None,
        )

    # ------------------------------------------------------------- reading
    def holder(self, stage: str) -> int | None:
        """The version in an exclusive stage now, or None."""
        hist = self.stages.get(stage) or []
        if hist and self.stage_of.get(hist[-1]) == stage:
            return hist[-1]
        return None

    def alias_target(self, alias: str) -> int | None:
        """The version an alias names now, or None."""
        hist = self.aliases.get(alias) or []
        return hist[-1] if hist else None

    def aliases_of(self, version: int) -> list[str]:
        """The aliases that name ``version`` now, sorted."""
        return sorted(a for a, h in self.aliases.items() if h and h[-1] == version)

    def in_stage(self, stage: str) -> list[int]:
        """The versions in ``stage`` now, oldest first."""
        return sorted(v for v, s in self.stage_of.items() if s == stage)

    def resolve(self, spec: str | int | None) -> int:
        """The version ``spec`` names: a stage, ``vN``/``N``, ``latest``, an alias,
        or None (the latest version).

        Raises:
            ModelNotFound: nothing matches.
        """
        if not self.latest:
            raise ModelNotFound(f"model {self.name} has no versions")
        if spec is None or spec == LATEST:
            return self.latest
        number = parse_version_number(spec)
        if number is not None:
            if number not in self.stage_of:
                raise ModelNotFound(
                    f"model {self.name} has no version {number} (versions 1 to {self.latest})"
                )
            return number
        text = str(spec)
        if text in EXCLUSIVE_STAGES:
            held = self.holder(text)
            if held is None:
                raise ModelNotFound(f"no version of model {self.name} is in {text}")
            return held
        if text in STAGES:
            versions = self.in_stage(text)
            if not versions:
                raise ModelNotFound(f"no version of model {self.name} is {text}")
            return versions[-1]
        target = self.alias_target(text)
        if target is None:
            known = ", ".join(sorted(a for a, h in self.aliases.items() if h)) or "none"
            raise ModelNotFound(
                f"model {self.name} has no stage or alias {text!r} (stages: "
                f"{', '.join(STAGES)}; aliases: {known})"
            )
        return target

    def _need(self, version: int) -> None:
        if version not in self.stage_of:
            raise ModelNotFound(
                f"model {self.name} has no version {version}"
                + (f" (versions 1 to {self.latest})" if self.latest else " (it has no versions)")
            )

    # ------------------------------------------------------------- changes
    def apply(self, event: Mapping[str, Any]) -> Event:
        """Apply one event; return it completed with what it did (``archived``,
        ``from``, ``to``). Raises (and changes nothing) when it does not apply."""
        op = event.get("op")
        done = dict(event)
        if op == "register":
            version = int(event["version"])
            if version != self.latest + 1:
                raise RunStateError(
                    f"model {self.name}: version {version} is not the next one ({self.latest + 1})"
                )
            self.latest = version
            self.stage_of[version] = FIRST_STAGE
        elif op == "promote":
            version = int(event["version"])
            self._need(version)
            if event.get("alias") is not None:
                alias = validate_alias(event["alias"])
                before = self.alias_target(alias)
                if before == version:
                    raise UsageError(f"alias {alias} already names {self.name} v{version}")
                self.aliases.setdefault(alias, []).append(version)
                done["from"] = before
            else:
                stage = event.get("stage")
                if stage not in STAGES:
                    raise UsageError(f"unknown stage {stage!r} (one of {', '.join(STAGES)})")
                current = self.stage_of[version]
                if current == "archived":
                    raise RunStateError(
                        f"{self.name} v{version} is archived and cannot be promoted (a rollback"
                        " of the stage it held brings it back)"
                    )
                if current == stage:
                    raise UsageError(f"{self.name} v{version} is in {stage} already")
                archived = []
                if stage in EXCLUSIVE_STAGES:
                    held = self.holder(stage)
                    if held is not None:
                        self.stage_of[held] = "archived"
                        archived.append(held)
                    self.stages.setdefault(stage, []).append(version)
                self.stage_of[version] = str(stage)
                done["archived"] = archived
        elif op == "rollback":
            if event.get("alias") is not None:
                alias = str(event["alias"])
                hist = self.aliases.get(alias) or []
                if not hist:
                    raise ModelNotFound(f"model {self.name} has no alias {alias!r}")
                done["from"] = hist.pop()
                done["to"] = hist[-1] if hist else None
                if not hist:
                    self.aliases.pop(alias, None)
            else:
                stage = event.get("stage")
                if stage not in EXCLUSIVE_STAGES:
                    raise UsageError(
                        f"only {' and '.join(EXCLUSIVE_STAGES)} (and aliases) can be rolled back,"
                        f" not {stage!r}"
                    )
                hist = self.stages.get(stage) or []
                held = self.holder(stage)
                if held is not None:
                    if len(hist) < 2:
                        raise RunStateError(
                            f"model {self.name}: no version held {stage} before v{held}; "
                            "nothing to roll back to"
                        )
                    hist.pop()
                    self.stage_of[held] = "archived"
                elif not hist:
                    raise RunStateError(f"model {self.name}: no version ever held {stage}")
                back = hist[-1]
                # the version that comes back leaves any exclusive stage it holds now
                self.stage_of[back] = str(stage)
                done["from"], done["to"] = held, back
        else:
            raise FormatError(f"unknown registry operation {op!r}")
        self.event = done
        return done


class ReplayConflict(Exception):
    """A local event that no longer applies on top of the remote's history."""

    def __init__(self, event: Event, reason: str) -> None:
        super().__init__(reason)
        self.event = event
        self.reason = reason


def describe_event(name: str, event: Mapping[str, Any]) -> str:
    """One line saying what an event did, as the user reads it."""
    op = event.get("op")
    if op == "register":
        return f"register {name} v{event.get('version')}"
    if op == "promote":
        if event.get("alias") is not None:
            return f"set alias {event['alias']} of {name} to v{event.get('version')}"
        return f"promote {name} v{event.get('version')} to {event.get('stage')}"
    if op == "rollback":
        what = event.get("alias") if event.get("alias") is not None else event.get("stage")
        to = event.get("to")
        back = f"v{to} is back" if to is not None else "removed"
        return f"roll back {what} of {name} (v{event.get('from')} -> {back})"
    return f"{op} {name}"


def replay(
    base: ModelState, events: Iterable[Event]
) -> tuple[ModelState, list[tuple[Event, int | None, int | None]]]:
    """Apply local ``events`` (oldest first) on top of another history's ``base``.

    Returns the new state and, per event that still changes something, (the
    event as applied, the local version number it registered, the number it
    got here) — the last two None for other operations. A registration gets
    the next free number; later events that named the local number follow it.
    An event whose effect already holds is skipped.

    Raises:
        ReplayConflict: an event that cannot apply here (nothing is changed).
    """
    state = base.copy()
    renumber: dict[int, int] = {}
    out: list[tuple[Event, int | None, int | None]] = []
    for ev in events:
        op = ev.get("op")
        try:
            if op == "register":
                local = int(ev["version"])
                new = state.latest + 1
                renumber[local] = new
                out.append((state.apply({**ev, "version": new}), local, new))
                continue
            if op == "promote":
                version = renumber.get(int(ev["version"]), int(ev["version"]))
                if ev.get("alias") is not None and state.alias_target(ev["alias"]) == version:
                    continue
                if ev.get("alias") is None and state.stage_of.get(version) == ev.get("stage"):
                    continue
                out.append((state.apply({**ev, "version": version}), None, None))
                continue
            if op == "rollback":
                what = "alias" if ev.get("alias") is not None else "stage"
                key = ev[what]
                was = ev.get("from")
                back = ev.get("to")
                was = renumber.get(was, was) if was is not None else None
                back = renumber.get(back, back) if back is not None else None
                now = state.alias_target(key) if what == "alias" else state.holder(key)
                if now == back:
                    continue  # rolled back there already
                if now != was:
                    raise ReplayConflict(
                        ev,
                        f"{describe_event(state.name, ev)}: {key} is held by "
                        f"{'v' + str(now) if now is not None else 'no version'} on the other "
                        f"side, not v{was}",
                    )
                applied = state.apply({k: v for k, v in ev.items() if k not in ("from", "to")})
                if applied.get("to") != back:
                    raise ReplayConflict(
                        ev,
                        f"{describe_event(state.name, ev)}: on the other side the previous "
                        f"holder of {key} is "
                        f"{'v' + str(applied.get('to')) if applied.get('to') else 'none'}",
                    )
                out.append((applied, None, None))
                continue
        except ReplayConflict:
            raise
        except (UsageError, RunStateError, ModelNotFound, KeyError, ValueError) as exc:
            raise ReplayConflict(ev, f"{describe_event(state.name, ev)}: {exc}") from exc
        raise ReplayConflict(ev, f"unknown registry operation {op!r}")
    return state, out
