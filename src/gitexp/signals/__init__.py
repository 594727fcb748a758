"""Live signals of a run: system metrics and alerts.

System metrics are ordinary metrics under ``system/`` (:mod:`.system`).
Alerts are raised by a :class:`~gitexp.signals.watch.Watcher` (rules in the
``--where`` language, NaN, stalled, the run's end) or by ``run.alert()``,
recorded in the run (``alerts.json``) and delivered through a hook program and
webhooks (:mod:`.deliver`) that can never block or break training.

:class:`RunSignals` holds one run's sampler, watcher and dispatcher in this
process; ``tracking`` (a run started with ``start_run``) and ``runner`` (the
``git exp run`` supervisor, which samples and watches for its command) own one.
Nothing here reads or writes the store: the owner records what is fired.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from gitexp.records import MAX_ALERTS
from gitexp.signals.config import (
    DEFAULT_EVENTS,
    EVENTS,
    HOOK_NAME,
    AlertConfig,
    load,
    parse_events,
)
from gitexp.signals.system import DEFAULT_INTERVAL, KEYS, SystemSampler, nvidia_present
from gitexp.signals.watch import Watcher

__all__ = [
    "DEFAULT_EVENTS",
    "DEFAULT_INTERVAL",
    "EVENTS",
    "HOOK_NAME",
    "KEYS",
    "AlertConfig",
    "RunSignals",
    "SystemSampler",
    "Watcher",
    "load",
    "nvidia_present",
    "parse_events",
    "payload",
]

if TYPE_CHECKING:
    from gitexp.signals.deliver import Dispatcher

_log = logging.getLogger("gitexp")
MAX_EXIT_WAIT = 5.0  # at most this long at the end of a run for alerts still on their way


def payload(entry: Mapping[str, Any], run: Mapping[str, Any]) -> dict[str, Any]:
    """What a hook reads on stdin and a webhook receives: Slack-compatible
    (``text``), with the alert and its run as data under ``gitexp``."""
    text = f"[{entry.get('level')}] {entry.get('title')}"
    if entry.get("text"):
        text += "\n" + str(entry["text"])
    return {"text": text, "gitexp": {**entry, "run": dict(run)}}


class RunSignals:
    """One run's system sampler, alert watcher and dispatcher, in this process.

    Args:
        run: the run's identity for deliveries (ref, id, experiment, name, host).
        record: records an alert in the run (appends it to what is spooled next).
        config: what to watch for and where to deliver (None: nothing is watched,
            but :meth:`deliver` still reaches the configured targets when given).
        stop: called once with the reason when a NaN alert fires and the config
            asks to stop then.
    """

    def __init__(
        self,
        run: Mapping[str, Any],
        record: Callable[[dict[str, Any]], None],
        config: AlertConfig | None = None,
        stop: Callable[[str], None] | None = None,
        info: Mapping[str, Any] | None = None,
        params: Mapping[str, Any] | None = None,
    ) -> None:
        self.run = dict(run)
        self.config = config or AlertConfig()
        self._record = record
        self._stop = stop
        self.stopped: str | None = None
        self.fired: list[dict[str, Any]] = []
        self.sent = 0
        self._lock = threading.Lock()
        self.sampler: SystemSampler | None = None
        self.dispatcher: Dispatcher | None = None
        if self.config.delivering:  # urllib and its kin are imported only then
            from gitexp.signals.deliver import Dispatcher

            self.dispatcher = Dispatcher(
                self.config.webhooks, self.config.hook, self.config.timeout, self.config.cwd
            )
        self.watcher: Watcher | None = None
        if self.config.watching:
            self.watcher = Watcher(self.config, self.fire, info=info, params=params)

    # --------------------------------------------------------------- alerts
    def fire(self, entry: dict[str, Any]) -> None:
        """Record an alert in the run, deliver it, and stop the run when asked."""
        with self._lock:
            self.fired.append(entry)
        self._record(entry)
        self.deliver(entry)
        if entry.get("event") == "nan" and self.config.stop_on_nan and self.stopped is None:
            self.stopped = f"stopped early: {entry.get('text') or entry.get('title')}"
            if self._stop is not None:
                self._stop(self.stopped)

    def deliver(self, entry: Mapping[str, Any]) -> None:
        """Queue an alert for the hook and webhooks (returns at once). Past
        MAX_ALERTS alerts in a run (a script raising one per step), no more
        are sent, and that is said once."""
        if self.dispatcher is None:
            return
        with self._lock:
            self.sent += 1
            if self.sent > MAX_ALERTS:
                if self.sent == MAX_ALERTS + 1:
                    _log.warning("git-exp: %d alerts raised: no more are sent", MAX_ALERTS)
                return
        self.dispatcher.send(payload(entry, self.run))

    # ------------------------------------------------------- system metrics
    def start_sampling(
        self,
        log: Callable[[dict[str, float], int], None],
        pid: int | None = None,
        interval: float = DEFAULT_INTERVAL,
    ) -> SystemSampler | None:
        """Sample the process tree of ``pid`` (default: this process) every
        ``interval`` seconds into ``log``; None (and a warning) when it cannot."""
        sampler = SystemSampler(log, pid, interval)
        try:
            sampler.start()
        except Exception as exc:  # psutil missing or refused: the run goes on without
            _log.warning("git-exp: no system metrics: %s", exc)
            return None
        self.sampler = sampler
        return sampler

    def stop_sampling(self) -> None:
        """Stop the sampler (a sample in progress is waited for, briefly)."""
        if self.sampler is not None:
            self.sampler.stop()

    def close(self, wait: float = MAX_EXIT_WAIT) -> bool:
        """Stop sampling and wait at most ``wait`` seconds (and never longer than
        the alerts' own time limit) for alerts still being delivered."""
        self.stop_sampling()
        if self.dispatcher is None:
            return True
        return self.dispatcher.drain(min(wait, self.config.timeout))
