"""Delivering alerts: a hook program and webhooks, in the background, time-limited.

Each target (the hook, each webhook URL) has a thread and a queue of its own,
so a hook that hangs never holds up a webhook, and nothing ever waits for
either: :meth:`Dispatcher.send` only queues. A webhook is retried with
back-off (on a refused connection, a timeout, a 5xx or 429 answer) until the
alert's time limit; a hook program is killed at it. What could not be
delivered is said once on the ``gitexp`` logger. At the end of a run,
:meth:`Dispatcher.drain` waits a bounded time for what is still queued.
"""

from __future__ import annotations

import encodings.idna  # noqa: F401  (socket looks it up by name; at exit nothing may be imported)
import json
import logging
import queue
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

_log = logging.getLogger("gitexp")

ATTEMPT_TIMEOUT = 5.0  # seconds for one HTTP attempt (within the alert's time limit)
FIRST_BACKOFF = 0.2  # seconds before the second attempt; doubles after each
USER_AGENT = "git-exp alerts"


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code in (408, 425, 429) or exc.code >= 500
    return isinstance(exc, (urllib.error.URLError, OSError, TimeoutError))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.HTTPError):
        return f"HTTP {exc.code} {exc.reason}"
    if isinstance(exc, urllib.error.URLError):
        return str(exc.reason)
    return str(exc) or type(exc).__name__


@dataclass
class Outcome:
    """What became of one alert at one target."""

    target: str
    ok: bool
    attempts: int
    error: str | None = None


class _Worker:
    """One target: a queue and a daemon thread that works through it."""

    def __init__(self, dispatcher: Dispatcher, label: str, kind: str, address: str) -> None:
        self.dispatcher = dispatcher
        self.label = label
        self.kind = kind  # "webhook" or "hook"
        self.address = address
        self.queue: queue.Queue[tuple[bytes, float, str]] = queue.Queue()
        self.thread = threading.Thread(target=self._loop, name=f"gitexp-alert-{kind}", daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while True:
            body, deadline, title = self.queue.get()
            try:
                out = (
                    self._post(body, deadline)
                    if self.kind == "webhook"
                    else self._run(body, deadline)
                )
            except Exception as exc:  # never let a delivery kill the thread
                out = Outcome(self.label, False, 1, _reason(exc))
            self.dispatcher._done(out, title)
            self.queue.task_done()

    def _post(self, body: bytes, deadline: float) -> Outcome:
        attempts = 0
        backoff = FIRST_BACKOFF
        error = "time limit reached before the first attempt"
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return Outcome(self.label, False, attempts, error)
            attempts += 1
            req = urllib.request.Request(
                self.address,
                data=body,
                method="POST",
                headers={"Content-Type": "application/json", "User-Agent": USER_AGENT},
            )
            try:
                with urllib.request.urlopen(req, timeout=min(left, ATTEMPT_TIMEOUT)) as resp:
                    resp.read(65536)
                return Outcome(self.label, True, attempts)
            except Exception as exc:
                error = _reason(exc)
                if not _retryable(exc):
                    return Outcome(self.label, False, attempts, error)
            pause = min(backoff, deadline - time.monotonic())
            if pause <= 0:
                return Outcome(self.label, False, attempts, error)
            time.sleep(pause)
            backoff *= 2

    def _run(self, body: bytes, deadline: float) -> Outcome:
        try:
            proc = subprocess.Popen(
                [self.address],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                cwd=self.dispatcher.cwd,
                start_new_session=True,  # a Ctrl-C meant for training is not the hook's
            )
        except OSError as exc:
            return Outcome(self.label, False, 1, exc.strerror or str(exc))
        try:
            _, err = proc.communicate(body, timeout=max(0.01, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            return Outcome(self.label, False, 1, "killed at the time limit")
        if proc.returncode != 0:
            last = err.decode("utf-8", "replace").strip().splitlines()
            why = f"exit {proc.returncode}" + (f": {last[-1][:200]}" if last else "")
            return Outcome(self.label, False, 1, why)
        return Outcome(self.label, True, 1)


class Dispatcher:
    """Sends alerts to a hook program and webhooks without ever blocking the caller.

    Args:
        webhooks: URLs to POST each alert to (JSON).
        hook: an executable program that gets each alert as JSON on stdin.
        timeout: seconds to deliver one alert to one target, all attempts included.
        cwd: where the hook runs.
    """

    def __init__(
        self,
        webhooks: Sequence[str] = (),
        hook: str | None = None,
        timeout: float = 10.0,
        cwd: str | None = None,
    ) -> None:
        self.timeout = timeout
        self.cwd = cwd
        self.outcomes: list[Outcome] = []
        self._lock = threading.Lock()
        self._pending = 0
        self._idle = threading.Condition(self._lock)
        self._workers: list[_Worker] = []
        if hook:
            self._workers.append(_Worker(self, "hook exp-alert", "hook", hook))
        for url in webhooks:
            self._workers.append(_Worker(self, f"webhook {_shown_url(url)}", "webhook", url))

    @property
    def targets(self) -> int:
        """How many targets alerts go to."""
        return len(self._workers)

    def send(self, payload: dict[str, Any]) -> None:
        """Queue one alert for every target; returns at once."""
        if not self._workers:
            return
        body = json.dumps(payload, ensure_ascii=False, allow_nan=False).encode("utf-8")
        deadline = time.monotonic() + self.timeout
        title = str(payload.get("gitexp", {}).get("title", ""))
        with self._lock:
            self._pending += len(self._workers)
        for w in self._workers:
            w.queue.put((body, deadline, title))

    def _done(self, outcome: Outcome, title: str) -> None:
        if not outcome.ok:
            _log.warning(
                "git-exp: alert %r not delivered to %s (%d attempt(s)): %s",
                title,
                outcome.target,
                outcome.attempts,
                outcome.error,
            )
        with self._lock:
            self.outcomes.append(outcome)
            self._pending -= 1
            if self._pending <= 0:
                self._idle.notify_all()

    def drain(self, timeout: float) -> bool:
        """Wait at most ``timeout`` seconds for queued alerts; True when all went."""
        end = time.monotonic() + max(0.0, timeout)
        with self._lock:
            while self._pending > 0:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._idle.wait(left)
        return True

    def pending(self) -> int:
        """Deliveries queued or in progress."""
        with self._lock:
            return self._pending


def _shown_url(url: str) -> str:
    """A webhook URL without its path (Slack's path is its secret)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}" + (f":{parts.port}" if parts.port else "")
