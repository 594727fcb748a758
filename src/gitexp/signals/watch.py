"""Watching a run's metrics for the conditions that raise alerts.

A :class:`Watcher` is fed what a run logs, one flush at a time (the summary of
the points of that flush: last, min, max per metric), and keeps the run's state
as ``git exp log`` would show it: the row a ``--where`` expression is
evaluated on (``metrics.<key>`` the latest value, ``params.<key>``, ``tags``,
``status``...). After each flush it checks:

- every rule (a ``--where`` expression): the first time it holds, an alert;
  once per run, however many steps it goes on holding;
- NaN and infinities: a metric whose latest value is NaN or infinite, or that
  logged an infinite value; one alert per run (it names every such metric);

and on :meth:`tick`, a run with no metric (``system/`` ones aside) for the
``stalled`` time; once per silence. :meth:`end` raises the alert of the run's
end (``finished``, ``failed``, ``killed``, ``crashed``) when it is watched for.

The watcher decides; ``fire`` (given by the owner) records and delivers.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from gitexp import records as fmt
from gitexp.records import Summary, is_system_metric
from gitexp.signals.config import AlertConfig
from gitexp.where import compile_where, names_in

_log = logging.getLogger("gitexp")
Fire = Callable[[dict[str, Any]], None]
MAX_LISTED = 10  # metrics named in one alert's text


def _num(v: float) -> str:
    return f"{v:.6g}" if math.isfinite(v) else ("NaN" if math.isnan(v) else str(v))


class Watcher:
    """Decides when a run raises an alert (see the module docstring)."""

    def __init__(
        self,
        config: AlertConfig,
        fire: Fire,
        info: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self._fire = fire
        self._clock = clock
        self.rules = [
            (text, compile_where(text, label=f"alert rule {text!r}"), names_in(text))
            for text in config.rules
        ]
        self.fired_rules: set[str] = set()
        self.nan: dict[str, Any] | None = None  # the NaN alert, once fired
        self.stalled_fired = False
        self.ended = False
        self.summary = Summary()
        self.info: dict[str, Any] = dict(info or {})
        self.params: dict[str, Any] = fmt.flatten(dict(params or {}))
        self.tags: list[str] = list(self.info.get("tags") or [])
        self.last_activity = clock()
        self.last_metric: tuple[str, int] | None = None
        self._newest = 0.0  # the time of the newest point seen (system/ ones aside)

    # ------------------------------------------------------------- feeding
    def set_run(self, info: Mapping[str, Any], params: Mapping[str, Any]) -> None:
        """The run as recorded now (its ``run.json`` and params)."""
        self.info = dict(info)
        self.params = fmt.flatten(dict(params))
        self.tags = list(self.info.get("tags") or [])

    def reset(self, summary: Summary) -> None:
        """Replace the metric state (the run's whole summary as recorded now), then check."""
        self.summary = summary
        self._check(summary)

    def observe(
        self,
        summary: Summary,
        params: Mapping[str, Any] | None = None,
        tags_add: Iterable[str] = (),
        tags_remove: Iterable[str] = (),
    ) -> None:
        """One flush of the run: its points' summary, params and tags it set; then check."""
        if params:
            self.params.update(fmt.flatten(dict(params)))
        removed = set(tags_remove)
        if removed or tags_add:
            self.tags = [t for t in self.tags if t not in removed]
            self.tags += [t for t in tags_add if t not in self.tags]
        self.summary = self.summary.merge(summary)
        self._check(summary)

    # ------------------------------------------------------------- checking
    def row(self) -> dict[str, Any]:
        """The run as the ``--where`` language sees it now."""
        row: dict[str, Any] = {
            "id": self.info.get("id"),
            "experiment": self.info.get("experiment"),
            "name": self.info.get("name"),
            "status": self.info.get("status", "running"),
            "start": self.info.get("start_time"),
            "duration": self.info.get("duration"),
            "exit_code": self.info.get("exit_code"),
            "tags": list(self.tags),
        }
        for k, v in self.params.items():
            row["params." + k] = v
        for k, v in self.summary.final_values().items():
            row["metrics." + k] = v
        return row

    def _check(self, fresh: Summary) -> None:
        user = [k for k in fresh.metrics if not is_system_metric(k)]
        if user:
            key = max(user, key=lambda k: fresh.metrics[k].last_time)
            if fresh.metrics[key].last_time > self._newest:  # a point not seen before
                self._newest = fresh.metrics[key].last_time
                self.last_activity = self._clock()
                self.stalled_fired = False
                self.last_metric = (key, fresh.metrics[key].last_step)
        if "nan" in self.config.events and self.nan is None:
            self._check_nan(fresh)
        if self.rules and len(self.fired_rules) < len(self.rules):
            self._check_rules()

    def _check_nan(self, fresh: Summary) -> None:
        found: list[tuple[str, int, float]] = []
        for key, s in sorted(fresh.metrics.items()):
            if not math.isfinite(s.last):
                found.append((key, s.last_step, s.last))
            elif math.isinf(s.max) or math.isinf(s.min):
                found.append((key, s.last_step, s.max if math.isinf(s.max) else s.min))
        if not found:
            return
        key, step, value = found[0]
        what = "NaN" if math.isnan(value) else "infinite"
        text = f"{key} = {_num(value)} at step {step}"
        if len(found) > 1:
            text += "; also " + ", ".join(f"{k} = {_num(v)}" for k, _, v in found[1:MAX_LISTED])
        self.nan = self._raise(
            f"{key} became {what}", text, "error", "nan", metric=key, step=step, value=value
        )

    def _check_rules(self) -> None:
        row = self.row()
        for text, pred, names in self.rules:
            if text in self.fired_rules or not pred(row):
                continue
            self.fired_rules.add(text)
            shown = []
            metric = step = value = None
            for name in names:
                for col in (name, f"metrics.{name}", f"params.{name}"):
                    if col in row and row[col] is not None:
                        v = row[col]
                        shown.append(f"{col} = {_num(v) if isinstance(v, float) else v}")
                        key = col[len("metrics.") :] if col.startswith("metrics.") else None
                        if key is not None and metric is None and key in self.summary.metrics:
                            metric, step, value = key, self.summary.metrics[key].last_step, v
                        break
            text_out = ", ".join(shown)
            if step is not None:
                text_out += f" (step {step})"
            self._raise(
                f"alert rule holds: {text}",
                text_out,
                "info",
                "rule",
                rule=text,
                metric=metric,
                step=step,
                value=value,
            )

    def tick(self, now: float | None = None) -> None:
        """Raise ``stalled`` when no metric came for the configured time."""
        limit = self.config.stalled
        if limit is None or self.stalled_fired or self.ended:
            return
        now = self._clock() if now is None else now
        if now - self.last_activity < limit:
            return
        self.stalled_fired = True
        quiet = now - self.last_activity
        last = (
            f"the last was {self.last_metric[0]} at step {self.last_metric[1]}"
            if self.last_metric
            else "none was logged yet"
        )
        self._raise(
            f"no metric for {_age(quiet)}", f"the run looks stalled; {last}", "warning", "stalled"
        )

    def end(
        self,
        status: str,
        exit_code: int | None = None,
        error: str | None = None,
        event: str | None = None,
        detail: str = "",
    ) -> None:
        """The run ended with ``status``: check the rules a last time (``status``
        is in the row now), then raise the end alert when it is watched for.
        ``event`` names the end when it is not the status (``crashed``)."""
        if self.ended:
            return
        self.ended = True
        self.info = {**self.info, "status": status}
        if exit_code is not None:
            self.info["exit_code"] = exit_code
        if self.rules and len(self.fired_rules) < len(self.rules):
            self._check_rules()
        event = event or status
        if event not in self.config.events or event not in fmt.END_EVENTS:
            return
        level = {"finished": "info", "killed": "warning"}.get(event, "error")
        lines = [detail] if detail else []
        if exit_code is not None:
            lines.append(f"exit code {exit_code}")
        if error:
            last = [ln for ln in error.strip().splitlines() if ln.strip()]
            if last:
                lines.append(last[-1].strip()[:500])
        finals = {k: v for k, v in self.summary.final_values().items() if not is_system_metric(k)}
        if finals:
            shown = sorted(finals.items())[:MAX_LISTED]
            lines.append("metrics: " + ", ".join(f"{k} = {_num(v)}" for k, v in shown))
        self._raise(
            f"run {event}",
            "\n".join(lines),
            level,
            event,
            status=status,
            exit_code=exit_code,
        )

    def _raise(
        self, title: str, text: str, level: str, event: str, **details: Any
    ) -> dict[str, Any]:
        name = self.info.get("name")
        who = f"{self.info.get('experiment')}/{self.info.get('id')}"
        entry = fmt.alert_entry(
            f"{title} in {who}" + (f" ({name})" if name else ""),
            _text(text),
            level,
            event,
            fmt.iso(fmt.utc_now()) or "",
            **details,
        )
        try:
            self._fire(entry)
        except Exception as exc:  # recording or delivering failed: the run goes on
            _log.error("git-exp: alert %r could not be raised: %s", entry["title"], exc)
        return entry


def _text(text: str) -> str:
    """System text (a traceback) may hold undecodable bytes: alerts hold valid text."""
    return text.encode("utf-8", "replace").decode("utf-8")


def _age(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s"
