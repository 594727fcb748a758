"""Times as format 1 stores them: timezone-aware UTC, ISO-8601 with ``Z``."""

from __future__ import annotations

import datetime as _dt
import re

from gitexp.errors import UsageError

_AGE_RE = re.compile(r"([0-9]+(?:\.[0-9]+)?)\s*(s|m|h|d|w|mo|y)")  # always fullmatch
# a month is 30 days and a year 365: ages are for retention and time limits, not calendars
_AGE_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "mo": 30 * 86400}
_AGE_UNITS["y"] = 365 * 86400


def parse_age(text: str) -> float:
    """``30d``, ``12h``, ``2w``, ``3mo``, ``1y``, ``0.5s`` -> seconds."""
    m = _AGE_RE.fullmatch(text.strip()) if isinstance(text, str) else None
    if not m:
        raise UsageError(
            f"age {text!r} is not a number with a unit s, m, h, d, w, mo or y (e.g. 30d)"
        )
    return float(m.group(1)) * _AGE_UNITS[m.group(2)]


def utc_now() -> _dt.datetime:
    """The current time, timezone-aware UTC, to the microsecond."""
    return _dt.datetime.now(_dt.timezone.utc)


def iso(ts: _dt.datetime | None) -> str | None:
    """ISO-8601 UTC text with a ``Z`` suffix."""
    if ts is None:
        return None
    return ts.astimezone(_dt.timezone.utc).isoformat().replace("+00:00", "Z")


def parse_iso(text: str | None) -> _dt.datetime | None:
    """Inverse of :func:`iso`."""
    if not text:
        return None
    return _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
