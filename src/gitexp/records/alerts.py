"""``alerts.json``: the alerts a run raised, and the ``system/`` metric namespace.

An alert is a small object: when, how serious, a title and a text, what raised
it (``event``) and, depending on the event, the metric, step and value, the
rule, or the run's final status. Pure: no I/O.
"""

from __future__ import annotations

import math
import os
from typing import Any

from gitexp.errors import FormatError, InvalidValue
from gitexp.records.names import _has_control, has_surrogates

ALERT_LEVELS = ("info", "warning", "error")
# what raises an alert: run.alert() from the script; a --where rule that became true;
# a metric that became NaN or infinite; no metric for a while; the run's end
ALERT_EVENTS = ("user", "rule", "nan", "stalled", "finished", "failed", "killed", "crashed")
END_EVENTS = ("finished", "failed", "killed", "crashed")
MAX_ALERTS = 1000  # alerts recorded in one run; a run raising more keeps the first ones
MAX_TITLE = 200
MAX_TEXT = 10_000
SYSTEM_PREFIX = "system/"  # metric keys git-exp's own sampler writes

_FIELDS = {  # optional field -> accepted types
    "metric": (str,),
    "step": (int,),
    "value": (int, float, str),
    "rule": (str,),
    "status": (str,),
    "exit_code": (int,),
    "host": (str,),
}


def is_system_metric(key: str) -> bool:
    """True for the metrics git-exp samples itself (``system/...``)."""
    return key.startswith(SYSTEM_PREFIX)


def new_alert_id() -> str:
    """12 hex digits from the OS (a seeded global RNG cannot repeat them)."""
    return os.urandom(6).hex()


def _text(value: Any, what: str, limit: int, empty: bool) -> str:
    if not isinstance(value, str):
        raise InvalidValue(f"alert {what} must be text, not {type(value).__name__}")
    if not empty and not value.strip():
        raise InvalidValue(f"alert {what} must not be empty")
    if has_surrogates(value):
        raise InvalidValue(f"alert {what} is not valid Unicode text")
    if what == "title" and _has_control(value):
        value = " ".join(value.split())  # a title is one line
    out: str = value if len(value) <= limit else value[: limit - 3] + "..."
    return out


def alert_entry(
    title: str,
    text: str = "",
    level: str = "info",
    event: str = "user",
    time: str = "",
    **details: Any,
) -> dict[str, Any]:
    """A checked alert as ``alerts.json`` holds it (a long title or text is cut).

    Raises:
        InvalidValue: a level or event that does not exist, text that is not text.
    """
    if level not in ALERT_LEVELS:
        raise InvalidValue(f"alert level must be one of {', '.join(ALERT_LEVELS)}, not {level!r}")
    if event not in ALERT_EVENTS:
        raise InvalidValue(f"unknown alert event {event!r}")
    out: dict[str, Any] = {
        "id": new_alert_id(),
        "time": time,
        "level": level,
        "event": event,
        "title": _text(title, "title", MAX_TITLE, empty=False),
        "text": _text(text, "text", MAX_TEXT, empty=True),
    }
    for key, value in details.items():
        if value is None:
            continue
        if key not in _FIELDS:
            raise InvalidValue(f"unknown alert field {key!r}")
        if isinstance(value, float) and not math.isfinite(value):
            value = "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
        out[key] = value
    return out


def parse_alerts(data: Any, where: str) -> list[dict[str, Any]]:
    """``alerts.json`` read from a run tree (untrusted): a list of alert objects.

    Raises:
        FormatError: not a list of objects with text ``title``, ``level``, ``event``.
    """
    if not isinstance(data, list):
        raise FormatError(f"{where}: alerts.json is not a list")
    out = []
    for item in data[:MAX_ALERTS]:
        if not isinstance(item, dict):
            raise FormatError(f"{where}: alerts.json holds a non-object")
        for key in ("id", "time", "level", "event", "title", "text"):
            if not isinstance(item.get(key, ""), str):
                raise FormatError(f"{where}: alerts.json: {key!r} is not text")
        for key, types in _FIELDS.items():
            value = item.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, types)):
                raise FormatError(f"{where}: alerts.json: {key!r} has the wrong type")
        out.append(item)
    return out
