"""Which of a remote's runs a partial pull brings: an experiment, a start date,
named runs. Decided from the ref advertisement alone (a run id starts with its
UTC start time), so nothing of the other runs is downloaded."""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from gitexp import records as fmt
from gitexp.errors import UsageError
from gitexp.records import NAMESPACE

_AGE = re.compile(r"^(\d+)\s*([mhdw])$")
_AGE_SECONDS = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
_NEVER = _dt.datetime.min.replace(tzinfo=_dt.timezone.utc)  # a ref with no start time


def parse_since(text: str, now: _dt.datetime | None = None) -> _dt.datetime:
    """A start date: ``2026-11-20``, ``2026-11-20T14:30[:00][Z]`` (UTC), or an
    age: ``90m``, ``12h``, ``7d``, ``2w`` before now."""
    raw = text.strip()
    m = _AGE.match(raw)
    if m:
        now = now or fmt.utc_now()
        return now - _dt.timedelta(seconds=int(m.group(1)) * _AGE_SECONDS[m.group(2)])
    try:
        when = _dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"{text!r} is neither a date (2026-11-20, 2026-11-20T14:30) nor an age (7d, 12h, 2w)"
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_dt.timezone.utc)  # run ids are UTC
    return when


def _run_start(ref: str) -> _dt.datetime | None:
    """The start time a run ref's id carries (``YYYYMMDD-HHMMSS-...``), or None."""
    run_id = ref.rsplit("/", 1)[-1]
    if not fmt.is_run_id(run_id):
        return None
    try:
        return _dt.datetime.strptime(run_id[:15], "%Y%m%d-%H%M%S").replace(tzinfo=_dt.timezone.utc)
    except ValueError:
        return None


@dataclass
class Selection:
    """A part of a remote's runs; empty means all of them."""

    experiment: str | None = None
    since: _dt.datetime | None = None
    runs: list[str] = field(default_factory=list)  # addresses, as a user types them
    # ref prefixes runs must be under (the remote's fetch refspecs for runs); empty: any
    prefixes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.experiment is not None:
            fmt.validate_experiment(self.experiment)

    @property
    def partial(self) -> bool:
        """True when only some runs are wanted."""
        return bool(self.experiment or self.since or self.runs or self.prefixes)

    def pick(self, advertised: Mapping[str, str]) -> dict[str, str]:
        """The run refs of ``advertised`` (ref -> tip sha) this selection wants.

        Every address of ``runs`` must name exactly one advertised run (a run id,
        ``experiment/run-id``, the full ref, or 4+ hex digits of its tip sha);
        one that names none, or several, is an error that says so.
        """
        out = dict(advertised)
        if self.prefixes:
            out = {r: s for r, s in out.items() if r.startswith(tuple(self.prefixes))}
        if self.experiment:
            top = f"{NAMESPACE}{self.experiment}/"
            out = {r: s for r, s in out.items() if r.startswith(top)}
        if self.since is not None:
            since = self.since
            out = {r: s for r, s in out.items() if (_run_start(r) or _NEVER) >= since}
        if self.runs:
            chosen: dict[str, str] = {}
            for address in self.runs:
                hits = _matches(address, out)
                if not hits:
                    raise UsageError(f"the remote has no run matching {address!r}")
                if len(hits) > 1:
                    names = sorted(h[len(NAMESPACE) :] for h in hits)
                    raise UsageError(
                        f"{address!r} matches {len(hits)} runs on the remote: "
                        + ", ".join(names[:10])
                    )
                chosen.update({h: out[h] for h in hits})
            out = chosen
        return out


def _matches(address: str, refs: Mapping[str, str]) -> list[str]:
    text = address.strip()
    if not text:
        return []
    if text in refs:
        return [text]
    if NAMESPACE + text in refs:
        return [NAMESPACE + text]
    if fmt.is_run_id(text):
        return [r for r in refs if r.endswith("/" + text)]
    low = text.lower()
    if len(low) >= 4 and all(c in "0123456789abcdef" for c in low):
        return [r for r, sha in refs.items() if sha.startswith(low)]
    return []


def refspec_prefixes(refspecs: Iterable[str]) -> list[str]:
    """The run ref prefixes a remote's fetch refspecs bring (``git exp clone -e``
    writes ``+refs/experiments/<exp>/*:...``); empty when none names runs, or
    one brings them all."""
    out: list[str] = []
    for spec in refspecs:
        src = spec.lstrip("+").split(":", 1)[0]
        if not src.startswith(NAMESPACE) or not src.endswith("*"):
            continue
        prefix = src[:-1]
        if prefix == NAMESPACE:
            return []
        out.append(prefix)
    return out


def selected_names(names: Iterable[str], experiment: str | None) -> list[str]:
    """``names`` under ``experiment`` (and its sub-experiments), or all of them."""
    if not experiment:
        return list(names)
    top = f"{NAMESPACE}{experiment}/"
    return [n for n in names if n.startswith(top)]
