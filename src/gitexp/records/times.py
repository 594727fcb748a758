"""Times as format 1 stores them: timezone-aware UTC, ISO-8601 with ``Z``."""

from __future__ import annotations

import datetime as _dt


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
