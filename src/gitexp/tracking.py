"""The tracking API: :class:`Run` and :func:`start_run`.

A logging call appends to memory. One background thread per process spools
buffered data to ``.git/exp/live/`` every half second (so a killed process
loses at most that much) and commits the spool to the run's ref at
checkpoints, less often as a run ages. ``finish`` commits everything.

Safe where training code runs: calls from several threads are serialised by a
lock; a forked child (a data-loader worker) never writes its parent's run; a
run left open is finished when the interpreter exits; and a process started by
``git exp run`` attaches to that run through ``GITEXP_RUN_REF``.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import math
import os
import sys
import threading
import time
import traceback
import warnings
import weakref
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, NoReturn

from gitexp import records as fmt
from gitexp.capture import (
    CodeState,
    code_state,
    environment,
    host_facts,
    input_source,
    record_path,
)
from gitexp.errors import RunConflict, RunStateError, RunStopped, UsageError
from gitexp.metrics import MetricBuffer, release_memory, to_parquet
from gitexp.records import ArtifactEntry, ExpRef
from gitexp.store import ExpStore, RunDelta, SpoolWriter

if TYPE_CHECKING:
    from gitexp.signals import RunSignals, Watcher

ENV_RUN_REF = "GITEXP_RUN_REF"
ENV_REPO = "GITEXP_REPO"
# the directory that stands for the repository's work tree in a child of ``git exp run``
# (``reproduce`` runs the recorded command in an exported copy of the code)
ENV_WORK_TREE = "GITEXP_WORK_TREE"
# JSON {restored copy: original path} of inputs outside the repository (reproduce)
ENV_PATH_MAP = "GITEXP_PATH_MAP"

FLUSH_INTERVAL = 0.25  # seconds between spool writes while points are buffered
MIN_CHECKPOINT = 5.0  # seconds between commits to the ref, early in a run
MAX_CHECKPOINT = 300.0  # ... and late in a long run
HEARTBEAT_INTERVAL = 600.0  # an idle run still commits a heartbeat this often
TICK = 0.05
FIRST_COMMIT_DELAY = 0.25  # a run's ref is created this long into the run (or at finish)
MAX_ID_DRAWS = 50
MAX_BUFFERED = 1 << 20  # points held in memory before a logging call spools them itself
FINISH_DRAIN_POINTS = 1 << 18  # at finish, what is still buffered is spooled in smaller drains
# the clock of flushes and checkpoints (a test drives a simulated one through a long run)
_clock = time.monotonic


_log = logging.getLogger("gitexp")


class GitExpWarning(UserWarning):
    """Something was skipped or could not be recorded, but the run goes on."""


def checkpoint_interval(age: float) -> float:
    """Seconds between checkpoints for a run ``age`` seconds old.

    Grows with age so a 10-hour run makes a few hundred commits, not thousands.
    """
    return min(MAX_CHECKPOINT, max(MIN_CHECKPOINT, age / 20.0))


_open_runs: weakref.WeakSet[Run] = weakref.WeakSet()
_active: list[Run] = []
_state_lock = threading.Lock()
_flusher: threading.Thread | None = None
_attached_refs: set[str] = set()
# params for the next run this process starts (seed_everything before start_run),
# with the pid that set them: a forked child does not inherit them
_deferred: tuple[int, dict[str, Any]] | None = None
_uncaught: list[str] = []


def _flush_loop() -> None:
    while True:
        time.sleep(TICK)
        now = _clock()
        for run in list(_open_runs):
            try:
                run._tick(now)
            except Exception as exc:  # never kill the thread; report once per run
                run._report_background_error(exc)


def _ensure_flusher() -> None:
    global _flusher
    with _state_lock:
        if _flusher is None or not _flusher.is_alive():
            _flusher = threading.Thread(target=_flush_loop, name="gitexp-flusher", daemon=True)
            _flusher.start()


_inherited: list[Run] = []  # in a forked child: the parent's runs, now inert
_attach_lock = threading.Lock()


def _after_fork_in_child() -> None:
    global _flusher
    for run in list(_open_runs):
        run._forked = True
    # module-level calls in a forked worker reach these (and do nothing), as calls on
    # the Run objects do: a data-loader worker never writes its parent's run
    _inherited.extend(_active)
    _open_runs.clear()
    _active.clear()
    _flusher = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class _RefuseImports:
    """A meta path finder that refuses every import not done yet.

    Installed while runs are finished at interpreter exit. By then threading
    has shut down, and a module imported for the first time may fail halfway
    (``concurrent.futures`` cannot register its exit hook, as pandas found when
    pyarrow's pandas probe imported it). A refused import is an ImportError at
    once, which optional imports (that probe among them) already handle; what
    the finish needs is imported while the run starts (:func:`_prepare_exit`).
    """

    def __init__(self) -> None:
        self.refused: list[str] = []

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        self.refused.append(fullname)
        raise ImportError(f"git-exp imports nothing at interpreter exit ({fullname})")


def _exit_outcome() -> tuple[str, str | None, int | None]:
    """How this process is ending: (status, error, exit code) for its open runs."""
    if _uncaught:
        return "failed", _uncaught[-1], 1
    code = _exit_requests[-1] if _exit_requests else None
    if code is None or code == 0:
        return "finished", None, 0
    if isinstance(code, int):
        return "failed", f"sys.exit({code})", code
    return "failed", f"sys.exit({code!r})", 1


def _at_exit() -> None:
    runs = [r for r in list(_open_runs) if not (r._forked or r._finished)]
    if not runs:
        return
    status, error, code = _exit_outcome()
    guard = _RefuseImports()
    sys.meta_path.insert(0, guard)
    try:
        for run in runs:
            try:
                run._finish(status=status, error=error, exit_code=code)
            except BaseException as exc:
                run._leave_in_spool(status, error, code, exc)
    finally:
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(guard)


atexit.register(_at_exit)
_prev_excepthook = sys.excepthook
_exit_requests: list[Any] = []  # what sys.exit was called with, last one last
_sys_exit = sys.exit


def _excepthook(tp: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
    # at an interactive prompt an error ends a statement, not the program
    if not (sys.flags.interactive or hasattr(sys, "ps1")):
        _uncaught.append("".join(traceback.format_exception(tp, value, tb)))
    _prev_excepthook(tp, value, tb)


def _exit(status: Any = None) -> NoReturn:
    """``sys.exit``, remembering its argument: a run open at exit then records
    how the program ended (``sys.exit(3)``: failed, exit code 3)."""
    _exit_requests.append(status)
    _sys_exit(status)


sys.excepthook = _excepthook
sys.exit = _exit


class Run:
    """A run being recorded by this process.

    Create one with :func:`start_run`. Use it as a context manager, or call
    :meth:`finish` yourself.
    """

    def __init__(
        self,
        store: ExpStore,
        ref: ExpRef,
        writer: SpoolWriter,
        params: dict[str, Any],
        start: float,
        attached: bool,
    ) -> None:
        self._store = store
        self._ref = ref
        self._writer = writer
        self._params = params
        self._start_wall = start
        self._start = _clock()
        self._attached = attached
        self._buffer = MetricBuffer()
        # throughput clocks: name -> (metric key, [monotonic time of the last mark,
        # items carried over from a call in the same clock tick]); the first mark is
        # the run's start (metrics.MetricBuffer.append_rate)
        self._rates: dict[str, tuple[str, list[float]]] = {}
        self._rates_origin = time.monotonic() - max(0.0, time.time() - start)
        self._pending = RunDelta()
        self._held: list[Any] = []  # point tables a failed write gave back, oldest first
        self._io = threading.RLock()
        self._last_spool = self._start
        self._last_commit = self._start
        self._last_beat = self._start
        self._finished = False
        self._forked = False
        self._reported = False
        self._pid = os.getpid()
        self._work_tree: str | None = None  # set when the code runs outside the work tree
        self._path_map: dict[str, str] = {}  # restored input copies -> original paths
        self.warnings: list[str] = []
        self._signals: RunSignals | None = None  # system sampler, alert watcher, delivery
        self._feed: Watcher | None = None  # the watcher this run's own flushes feed
        self._stop: str | None = None  # why logging must stop (a NaN with stop_on_nan)

    # ---------------------------------------------------------------- facts
    @property
    def id(self) -> str:
        """The run id."""
        return self._ref.run_id

    @property
    def experiment(self) -> str:
        """The experiment the run belongs to."""
        return self._ref.experiment

    @property
    def ref(self) -> str:
        """The full ref name."""
        return str(self._ref)

    @property
    def params(self) -> dict[str, Any]:
        """The run's params so far (a copy)."""
        return fmt.deep_merge({}, self._params)

    @property
    def sha(self) -> str | None:
        """The commit the run's ref points at now."""
        return self._store.repo.get_ref(self.ref)

    def __repr__(self) -> str:
        return f"<gitexp.Run {self._ref.short}>"

    # -------------------------------------------------------------- logging
    def _usable(self) -> bool:
        if self._forked:
            return False
        if self._finished:
            raise RunStateError(f"run {self.id} is finished; start a new run to log more")
        return True

    def log_metric(
        self, key: str, value: Any, step: int | None = None, *, timestamp: float | None = None
    ) -> None:
        """Log one value of a metric (at ``step``; default: one past the last).

        ``value`` may also be a numpy array: one point per element, at
        consecutive steps. ``timestamp``: the point's time in seconds since the
        epoch (default: now), for a value measured earlier.
        """
        if self._forked:
            return
        if self._finished:
            self._usable()
        if self._stop is not None:
            self._stopped()
        if hasattr(value, "__len__") and not isinstance(value, (str, bytes)):
            if timestamp is not None:
                raise UsageError("log_metric takes a timestamp for one value, not for an array")
            steps = None if step is None else _steps(step, value)
            self._buffer.append_array(key, value, steps, self._relieve)
        else:
            self._buffer.append(key, value, step, timestamp)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Log several metrics at one step."""
        if not self._usable():
            return
        if self._stop is not None:
            self._stopped()
        if not isinstance(metrics, Mapping):
            raise UsageError("log_metrics takes a mapping of metric name to value")
        self._buffer.append_many(metrics, step, self._relieve)

    def _stopped(self) -> NoReturn:
        assert self._stop is not None
        raise RunStopped(f"run {self.id} was {self._stop}", self._stop)

    def _relieve(self) -> None:
        """Past MAX_BUFFERED points (arrays logged faster than the background
        thread spools them), spool in the caller's thread: memory stays bounded."""
        if self._buffer.size() > MAX_BUFFERED:
            self._spool()
            release_memory()

    def log_param(self, key: str, value: Any) -> None:
        """Record one param (``a.b`` keys nest); durable when the call returns."""
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Record params (nested mappings are kept); durable when the call returns."""
        if not self._usable():
            return
        if not isinstance(params, Mapping):
            raise UsageError("log_params takes a mapping of param name to value")
        update: dict[str, Any] = {}
        for key, value in params.items():
            if not isinstance(key, str) or not key:
                raise UsageError(f"param name must be non-empty text, not {key!r}")
            fmt.set_dotted(update, key, fmt.to_jsonable(value, key))
        with self._io:
            self._params = fmt.deep_merge(self._params, update)
            self._pending.params = fmt.deep_merge(self._pending.params, update)
            self._spool()

    def log_summary(self, metrics: Mapping[str, Any]) -> None:
        """Record explicit final metrics (shown instead of the last logged value)."""
        if not self._usable():
            return
        from gitexp.metrics import check_metric_key, to_float

        final = {check_metric_key(k): to_float(v, k) for k, v in metrics.items()}
        with self._io:
            self._pending.summary.final.update(final)
            self._spool()

    def log_throughput(
        self, n_items: float, step: int | None = None, *, name: str = "items"
    ) -> float:
        """Log the rate of ``n_items`` processed since the previous call for ``name``
        (or since the run started): the metric ``throughput/<name>_per_sec``, in
        items per second, at ``step`` (default: one past the last). Returns the rate.

        As cheap as :meth:`log_metric`: a clock read and an append to the buffer.
        A call in the same clock tick as the previous one logs nothing, returns
        NaN and carries its items over to the next call.
        """
        if self._finished:
            self._usable()
        if self._stop is not None:
            self._stopped()
        n = n_items if type(n_items) is int and n_items >= 0 else _item_count(n_items, name)
        rate = self._rates.get(name)
        if rate is None:
            rate = self._rates.setdefault(name, (_rate_key(name), [self._rates_origin, 0.0]))
        return self._buffer.append_rate(rate[0], rate[1], n, step, not self._forked)

    def reset_throughput(self, name: str = "items") -> None:
        """Start the clock of ``name`` now: the next :meth:`log_throughput` of that
        name counts from here (a training loop that begins after a long setup calls
        this before its first batch)."""
        rate = self._rates.get(name)
        if rate is None:
            rate = self._rates.setdefault(name, (_rate_key(name), [self._rates_origin, 0.0]))
        self._buffer.mark_rate(rate[1])

    def log_artifact(
        self, path: str | os.PathLike[str], name: str | None = None, role: str = "output"
    ) -> ArtifactEntry | None:
        """Store a file or directory in the CAS and list it in the manifest.

        Durable when the call returns. The same bytes logged again, in this or
        any other run, are stored once. Returns the manifest entry (None in a
        forked child, which never writes its parent's run).
        """
        if not self._usable():
            return None
        if role not in fmt.ROLES:
            raise UsageError(f"unknown artifact role {role!r} (one of {', '.join(fmt.ROLES)})")
        path = os.fspath(path)
        if name is None:
            name = os.path.basename(os.path.normpath(os.path.abspath(path)))
        hashed = record_path(path, name, role, self._store.cas, store=True)
        self._warn(hashed.warnings)
        with self._io:
            self._pending.artifacts.append(hashed.entry)
            self._spool()
        return hashed.entry

    def log_input(self, path: str | os.PathLike[str], store: bool = False) -> ArtifactEntry | None:
        """Record a data input by its BLAKE3 (a directory by its Merkle root).

        With ``store=True`` its bytes also go to the CAS, so ``reproduce`` can
        restore it; otherwise only drift can be detected. None in a forked child.
        """
        if not self._usable():
            return None
        path = os.fspath(path)
        name, source = input_source(
            path, self._work_tree or self._store.repo.work_tree, self._path_map
        )
        hashed = record_path(path, name, "input", self._store.cas, store=store, source=source)
        self._warn(hashed.warnings)
        with self._io:
            self._pending.artifacts.append(hashed.entry)
            self._spool()
        return hashed.entry

    def set_tags(self, *tags: str | Iterable[str] | Mapping[str, Any]) -> None:
        """Add tags: strings, lists of strings, or a mapping (stored as ``key=value``)."""
        if not self._usable():
            return
        flat: list[str] = []
        for t in tags:
            if isinstance(t, str):
                flat.append(t)
            elif isinstance(t, Mapping):
                flat += [f"{k}={v}" for k, v in t.items()]
            else:
                flat += list(t)
        with self._io:
            self._pending.tags_add += [fmt.validate_tag(t) for t in flat]
            self._spool()

    def remove_tags(self, *tags: str) -> None:
        """Remove tags."""
        if not self._usable():
            return
        with self._io:
            self._pending.tags_remove += list(tags)
            self._spool()

    def note(self, text: str) -> None:
        """Attach a free-text note to the run."""
        if not self._usable():
            return
        text = fmt.validate_note(text)
        with self._io:
            self._pending.notes.append({"time": fmt.iso(fmt.utc_now()) or "", "text": text})
            self._spool()

    # --------------------------------------------------------------- alerts
    def alert(self, title: str, text: str = "", level: str = "info") -> dict[str, Any] | None:
        """Raise an alert: recorded in the run (``alerts.json``, durable when the
        call returns) and sent in the background to the alert hook program and
        webhooks (git config ``exp.alert.webhook``), never blocking this call.

        ``level`` is ``info``, ``warning`` or ``error``. Returns the alert as
        recorded (None in a forked child).
        """
        if not self._usable():
            return None
        entry = fmt.alert_entry(title, text, level, "user", fmt.iso(fmt.utc_now()) or "")
        with self._io:
            self._record_alert(entry)
            self._spool()
        self._alert_signals().deliver(entry)
        return entry

    def _record_alert(self, entry: dict[str, Any]) -> None:
        """Add an alert to what is spooled next (alerts.json keeps MAX_ALERTS)."""
        with self._io:
            self._pending.alerts.append(entry)

    def _alert_signals(self) -> RunSignals:
        """This run's signals; made on first use from the repository's alert config."""
        if self._signals is None:
            from gitexp.signals import RunSignals, load

            self._signals = RunSignals(self._identity(), self._record_alert, load(self._store.repo))
        return self._signals

    def _identity(self) -> dict[str, Any]:
        return {"ref": self.ref, "id": self.id, "experiment": self.experiment}

    def _start_signals(
        self,
        system_metrics: bool,
        interval: float | None,
        config: Any,
        info: Mapping[str, Any],
    ) -> None:
        """Start sampling system metrics and watching for alerts (``start_run``)."""
        from gitexp.signals import DEFAULT_INTERVAL, RunSignals

        sig = RunSignals(
            {**self._identity(), "name": info.get("name"), "host": info.get("host")},
            self._record_alert,
            config,
            stop=self._stop_logging,
            info=info,
            params=self._params,
        )
        self._signals = sig
        self._feed = sig.watcher
        if system_metrics:
            sig.start_sampling(self._log_system, None, interval or DEFAULT_INTERVAL)

    def _log_system(self, values: dict[str, float], step: int) -> None:
        if not (self._forked or self._finished):
            self._buffer.append_many(values, step)

    def _stop_logging(self, reason: str) -> None:
        self._stop = reason

    def _warn(self, messages: list[str]) -> None:
        for m in messages:
            self.warnings.append(m)
            warnings.warn(f"git-exp: {m}", GitExpWarning, stacklevel=3)

    # ------------------------------------------------------------ flushing
    def _take(self, max_points: int | None = None) -> tuple[RunDelta, Any]:
        """Everything logged and not yet written: (delta, Arrow table of points or None).

        Points a failed write gave back come first, in the order they were logged.
        """
        drained = self._buffer.drain(max_points)
        delta, self._pending = self._pending, RunDelta()
        tables, self._held = self._held, []
        if drained is not None:
            table, summary = drained
            delta.summary = delta.summary.merge(summary)
            tables.append(table)
        if not tables:
            return delta, None
        if len(tables) == 1:
            return delta, tables[0]
        from gitexp.metrics import concat

        return delta, concat(tables)

    def _give_back(self, delta: RunDelta, table: Any) -> None:
        """Undo a :meth:`_take` whose write failed (a full disk): nothing logged is
        lost from memory, and the next flush, checkpoint or finish writes it."""
        delta.absorb(self._pending)
        self._pending = delta
        if table is not None:
            self._held.insert(0, table)

    def _spool(self, max_points: int | None = None) -> None:
        """Write what is buffered to the spool (durable, not yet on the ref): one
        entry per bounded drain, so a burst of points never sits in memory twice."""
        with self._io:
            while True:
                delta, table = self._take(max_points)
                if table is None and delta.is_empty():
                    return
                try:
                    self._writer.write(delta, None if table is None else to_parquet(table))
                except BaseException:
                    self._give_back(delta, table)
                    raise
                self._last_spool = _clock()
                if self._feed is not None:  # alerts it fires are spooled next time
                    self._feed.observe(
                        delta.summary, delta.params, delta.tags_add, delta.tags_remove
                    )
                if not self._buffer.pending():
                    return

    def flush(self) -> None:
        """Make everything logged so far durable now."""
        if self._forked or self._finished:
            return
        self._spool()

    def checkpoint(self) -> None:
        """Commit everything logged so far to the run's ref now."""
        if self._forked or self._finished:
            return
        with self._io:
            self._spool()
            self._writer.commit(self._heartbeat(), "checkpoint")
            self._last_commit = _clock()

    def _heartbeat(self) -> RunDelta:
        return RunDelta(run={"heartbeat": fmt.iso(fmt.utc_now())})

    def _tick(self, now: float) -> None:
        if self._forked or self._finished or os.getpid() != self._pid:
            return
        if not self._io.acquire(blocking=False):
            return
        try:
            if self._finished:
                return
            wrote = False
            if (self._buffer.pending() or not self._pending.is_empty()) and (
                now - self._last_spool >= FLUSH_INTERVAL
            ):
                self._spool()
                wrote = True
            if self._writer.start is not None:
                if now - self._start >= FIRST_COMMIT_DELAY:  # the run's ref, at last
                    self._writer.commit(self._heartbeat(), "start")
                    self._last_commit = self._last_beat = now
                    wrote = True
            elif now - self._last_commit >= checkpoint_interval(now - self._start):
                idle_for = now - self._last_beat
                if self._writer.uncommitted() or idle_for >= HEARTBEAT_INTERVAL:
                    self._writer.commit(self._heartbeat(), "checkpoint")
                    self._last_beat = now
                    wrote = True
                self._last_commit = now
            self._writer.touch()
            if self._feed is not None:
                self._feed.tick()
            if wrote:
                release_memory()
        finally:
            self._io.release()

    def _report_background_error(self, exc: Exception) -> None:
        if not self._reported:
            self._reported = True
            _log.error("git-exp: background flush of run %s failed: %s", self.id, exc)

    # -------------------------------------------------------------- finish
    def finish(self, status: str = "finished") -> None:
        """Commit everything and close the run with ``status``."""
        if self._forked or self._finished:
            return
        if status not in fmt.FINAL_STATUSES:
            raise UsageError(f"status must be one of {', '.join(fmt.FINAL_STATUSES)}")
        self._finish(status=status)

    def _finish(self, status: str, error: str | None = None, exit_code: int | None = None) -> None:
        sig = self._signals
        if sig is not None:
            sig.stop_sampling()
        with self._io:
            if self._finished:
                return
            if self._buffer.size() > FINISH_DRAIN_POINTS:  # a big burst goes through the
                self._spool(FINISH_DRAIN_POINTS)  # spool in small drains
                release_memory()
            taken, table = self._take(FINISH_DRAIN_POINTS)
            if self._feed is not None:  # the last points, then the end: in the last commit
                self._feed.observe(taken.summary, taken.params, taken.tags_add, taken.tags_remove)
                self._feed.end(status, exit_code, error)
                fired, self._pending = self._pending, RunDelta()
                taken.absorb(fired)
            delta = RunDelta()
            delta.absorb(taken)
            try:
                if table is not None:
                    delta.segments = [to_parquet(table)]
                delta.run.update(self._final_state(status, error, exit_code))
                self._writer.commit(delta, "finish" if not self._attached else "checkpoint")
            except BaseException:
                self._give_back(taken, table)  # the run stays open: finish may be retried
                raise
            self._writer.close()
            self._finished = True
        _open_runs.discard(self)
        with _state_lock:
            if self in _active:
                _active.remove(self)
        self._store.close()
        if sig is not None:
            sig.close()  # alerts still on their way: a bounded wait

    def _final_state(self, status: str, error: str | None, exit_code: int | None) -> dict[str, Any]:
        """The run.json fields a finish writes (an attached run's are the runner's)."""
        out: dict[str, Any] = {}
        if not self._attached:
            out.update(status=status, end_time=fmt.iso(fmt.utc_now()))
            if exit_code is not None:
                out["exit_code"] = exit_code
        if error:
            out["error"] = error
        return out

    def _leave_in_spool(
        self, status: str, error: str | None, exit_code: int | None, exc: BaseException
    ) -> None:
        """At interpreter exit, when the final commit failed: spool everything with
        the final state, so the next command that reads the run records it, as
        after a SIGKILL, but with the status the program ended with."""
        try:
            with self._io:
                self._pending.run.update(self._final_state(status, error, exit_code))
                self._spool()
        except BaseException as again:
            _log.error(
                "git-exp: run %s could not be finished (%s) nor spooled (%s): "
                "what it logged since its last flush is lost",
                self.id,
                exc,
                again,
            )
            return
        _log.error(
            "git-exp: could not finish run %s at exit (%s); everything it logged is "
            "spooled, and the next git exp command records it",
            self.id,
            exc,
        )

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self,
        tp: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._forked or self._finished:
            return
        if tp is None:
            self._finish("finished")
        elif issubclass(tp, KeyboardInterrupt):
            self._finish("killed", error="KeyboardInterrupt")
        else:
            self._finish("failed", error="".join(traceback.format_exception(tp, value, tb)))


THROUGHPUT_PREFIX = "throughput/"
THROUGHPUT_SUFFIX = "_per_sec"


def _rate_key(name: str) -> str:
    """The metric key of a throughput ``name``: ``throughput/<name>_per_sec``."""
    from gitexp.metrics import check_metric_key

    if not isinstance(name, str) or not name:
        raise UsageError(f"throughput name must be non-empty text, not {name!r}")
    return check_metric_key(f"{THROUGHPUT_PREFIX}{name}{THROUGHPUT_SUFFIX}")


def _item_count(n_items: Any, name: str) -> float:
    """A count of items: a finite, non-negative number (numpy scalars too)."""
    from gitexp.errors import InvalidValue

    if isinstance(n_items, bool):
        raise InvalidValue(f"throughput {name!r}: item count {n_items!r} is not a number", name)
    if type(n_items) is float:
        n = n_items
    else:
        from gitexp.metrics import to_float

        n = to_float(n_items, f"{THROUGHPUT_PREFIX}{name}{THROUGHPUT_SUFFIX}")
    if not (n >= 0.0 and n != math.inf):  # NaN fails the first test
        raise InvalidValue(
            f"throughput {name!r}: item count must be a finite number >= 0, not {n_items!r}", name
        )
    return n


def _steps(step: Any, values: Any) -> Any:
    import numpy as np

    if np.ndim(step) == 0:  # np.size, not len: a 0-d array is one value
        return np.arange(int(step), int(step) + np.size(values))
    return step


_rehearsed = False


def _prepare_exit(store: ExpStore) -> None:
    """Import now what finishing a run imports, once per process, and read the
    commit identity of ``store`` (its own lookups import): at interpreter exit
    nothing may be imported (:class:`_RefuseImports`)."""
    global _rehearsed
    store.repo.identity()
    if not _rehearsed:
        from gitexp.cas import hash_bytes
        from gitexp.metrics import rehearse

        rehearse()
        hash_bytes(b"")  # blobs and logs are hashed at the finish too
        _rehearsed = True


def _register(run: Run) -> Run:
    global _deferred
    _prepare_exit(run._store)
    _open_runs.add(run)
    with _state_lock:
        _active.append(run)
        deferred, _deferred = _deferred, None
    _ensure_flusher()
    if deferred is not None and deferred[0] == os.getpid():
        run.log_params(deferred[1])
    return run


def log_params_now_or_next(params: Mapping[str, Any]) -> None:
    """Record ``params`` in the active run, or, when none is active yet, in the
    next run this process starts (``seed_everything()`` called before
    ``start_run()``)."""
    global _deferred
    run = active_run()
    if run is not None:
        run.log_params(params)
        return
    with _state_lock:
        before = _deferred[1] if _deferred and _deferred[0] == os.getpid() else {}
        _deferred = (os.getpid(), {**before, **params})


def start_run(
    experiment: str | None = None,
    name: str | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Iterable[str] | None = None,
    repo: str | os.PathLike[str] | None = None,
    command: list[str] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    system_metrics: bool = True,
    system_interval: float | None = None,
    alerts: Iterable[str] = (),
    alert_on: str | Iterable[str] | None = None,
    alert_stalled: float | str | None = None,
    stop_on_nan: bool = False,
) -> Run:
    """Start recording a run, or attach to the one ``git exp run`` started.

    Args:
        experiment: group name (default ``default``); ``/`` makes a hierarchy.
        name: a human name stored in the run.
        params: the config; nested mappings are kept.
        tags: labels.
        repo: a path inside the git repository (default: the working directory).
        command: the command line to record (default: this interpreter's argv).
        environ: the environment to read (default: ``os.environ``).
        system_metrics: sample CPU, memory, disk and network I/O and GPUs of this
            process and its children as ``system/...`` metrics, in a background thread.
        system_interval: seconds between samples (default 5).
        alerts: rules in the ``--where`` language (``"metrics.val_acc > 0.95"``): an
            alert the first time one holds. Added to git config ``exp.alert.rule``.
        alert_on: built-in events to alert on (``nan``, ``stalled``, ``finished``,
            ``failed``, ``killed``, ``crashed``; default ``exp.alert.on``, else
            nan, failed and crashed).
        alert_stalled: an alert when no metric comes for this long (seconds or ``"30m"``).
        stop_on_nan: when a metric becomes NaN or infinite, the next logging call
            raises :class:`~gitexp.errors.RunStopped` (the run ends ``failed``).

    Under ``git exp run`` the run is the command's: these options are the
    command line's there (its supervisor samples the whole process tree and
    watches for alerts), and those given here are ignored.

    Raises:
        NotARepository: outside a git repository.
        NoCommits: in a repository with no commit to record as the code version.
        InvalidName, InvalidValue: bad names or params.
    """
    env = os.environ if environ is None else environ
    attach_ref = env.get(ENV_RUN_REF)
    if attach_ref and attach_ref not in _attached_refs:
        return _attach(attach_ref, env.get(ENV_REPO) or repo or ".", name, params, tags, env)
    experiment = fmt.DEFAULT_EXPERIMENT if experiment is None else experiment
    fmt.validate_experiment(experiment)
    fmt.validate_run_name(name)
    clean_params: dict[str, Any] = {}
    for key, value in (params or {}).items():
        fmt.set_dotted(clean_params, str(key), fmt.to_jsonable(value, str(key)))
    tag_list = sorted({fmt.validate_tag(t) for t in (tags or [])})
    if system_interval is not None and not system_interval > 0:
        raise UsageError("system_interval must be a positive number of seconds")
    store = ExpStore(repo or ".")
    try:
        config = _alert_config(store, alerts, alert_on, alert_stalled, stop_on_nan)
        run = create_run(
            store,
            experiment=experiment,
            name=name,
            params=clean_params,
            tags=tag_list,
            command=list(command) if command is not None else _argv(),
            environ=env,
        )
    except BaseException:
        store.close()
        raise
    start = run._writer.start
    info = dict(start.run) if start is not None else {"id": run.id, "experiment": experiment}
    try:
        run._start_signals(system_metrics, system_interval, config, info)
    except BaseException:
        run._finish("failed", error="could not start its system metrics or alerts")
        raise
    return run


def _alert_config(
    store: ExpStore,
    rules: Iterable[str],
    events: str | Iterable[str] | None,
    stalled: float | str | None,
    stop_on_nan: bool,
) -> Any:
    """The alerts of a run started here: git config plus the arguments (checked
    before anything is written)."""
    from gitexp.signals import load

    return load(store.repo, list(rules), events, stalled, stop_on_nan=stop_on_nan)


def create_run(
    store: ExpStore,
    experiment: str,
    name: str | None,
    params: dict[str, Any],
    tags: list[str],
    command: list[str],
    environ: Mapping[str, str],
    artifacts: Iterable[ArtifactEntry] = (),
    extra: Mapping[str, Any] | None = None,
    code: CodeState | None = None,
    defer: bool = True,
) -> Run:
    """Create a run in an open store and start tracking it (used by ``git exp run``).

    ``code``: the code version to record instead of capturing the work tree's
    (``reproduce`` records its replay against the original run's code commit).
    ``defer``: leave the first commit (which creates the run's ref) to the first
    checkpoint, FIRST_COMMIT_DELAY into the run, or to finish, so that a short
    run is one commit; ``git exp run`` creates the ref at once, for its command
    to attach to.
    """
    fmt.validate_experiment(experiment)
    probe = None
    if code is None:
        store.repo.require_head()  # NoCommits before anything is started or written
        probe = store.repo.status_probe()  # git status runs while the rest is prepared
    _prepare_exit(store)
    ref: ExpRef | None = None
    try:
        now = fmt.utc_now()
        info: dict[str, Any] = {
            "name": name,
            "status": "running",
            "start_time": fmt.iso(now),
            "heartbeat": fmt.iso(now),
            "command": command,
            "cwd": os.getcwd(),
            "tags": tags,
            **host_facts(),
            **(extra or {}),
        }
        info.setdefault("cwd_rel", _relative_cwd(info.get("cwd"), store.repo.work_tree))
        env = environment(environ, os.path.join(store.repo.exp_dir, "cache"))
        ref = ExpRef(experiment, _reserve_run_id(store, experiment, now))
        if code is None:
            code = code_state(store.repo, store.cas, probe=probe)
        start = store.start_state(
            ref, info, params, code.data, code.code_commit, env, [*code.large_files, *artifacts]
        )
        # the spool (with the start state) exists before the ref does, so a reader
        # never sees a live run without its writer, and a writer killed before its
        # first commit leaves what the next command needs to record the run
        writer = store.open_writer(ref, start)
    except BaseException:
        if probe is not None:
            probe.close()
        if ref is not None:
            store.release_run_id(ref)
        raise
    if not defer:
        try:
            writer.commit(None, "start")
        except BaseException:
            writer.close()
            raise
    return _register(Run(store, ref, writer, params, now.timestamp(), attached=False))


def _reserve_run_id(store: ExpStore, experiment: str, now: Any) -> str:
    """A new run id that no run here holds (drawn again while one does)."""
    for _ in range(MAX_ID_DRAWS):
        run_id = fmt.new_run_id(now)
        if store.reserve_run_id(ExpRef(experiment, run_id)):
            return run_id
    raise RunConflict(f"could not draw a free run id in {experiment}", experiment)


def _relative_cwd(cwd: Any, work_tree: str | None) -> str | None:
    """``cwd`` relative to the work tree (posix, ``.`` at the top), or None outside it."""
    if not isinstance(cwd, str) or not work_tree:
        return None
    for root, where in (
        (os.path.abspath(work_tree), os.path.abspath(cwd)),
        (os.path.realpath(work_tree), os.path.realpath(cwd)),
    ):
        if where == root or where.startswith(root + os.sep):
            return os.path.relpath(where, root).replace(os.sep, "/")
    return None


def resume_run(address: str, repo: str | os.PathLike[str] | None = None) -> Run:
    """Go on recording a run already on its ref (``gitexp.mlflow``'s
    ``start_run(run_id=...)``, ``gitexp.wandb``'s ``init(id=..., resume=True)``).

    The process becomes one more writer of the run, as a command under
    ``git exp run`` is: what it logs is added; the run's status and end time
    stay those recorded (a finish commits what was logged).
    """
    store = ExpStore(repo or ".")
    try:
        ref = store.resolve(address)
    finally:
        store.close()
    return _attach(str(ref), repo or ".", None, None, None, os.environ)


def _attach(
    ref_name: str,
    repo: str | os.PathLike[str],
    name: str | None,
    params: Mapping[str, Any] | None,
    tags: Iterable[str] | None,
    environ: Mapping[str, str],
) -> Run:
    ref = ExpRef.from_ref(ref_name)
    store = ExpStore(repo)
    try:
        record = store.read(ref)
        writer = store.open_writer(ref)
    except BaseException:
        store.close()
        raise
    _attached_refs.add(ref_name)
    # throughput counts from the run's start in the command git exp run started for it,
    # from now in a process that goes on with an older run
    started = _started_at(record.info) if environ.get(ENV_RUN_REF) == ref_name else time.time()
    run = Run(store, ref, writer, dict(record.params), started, attached=True)
    run._work_tree = environ.get(ENV_WORK_TREE) or None
    run._path_map = _path_map(environ.get(ENV_PATH_MAP))
    delta = RunDelta(env=environment(environ, os.path.join(store.repo.exp_dir, "cache")))
    if name and not record.name:
        delta.run["name"] = fmt.validate_run_name(name)
    if params:
        update: dict[str, Any] = {}
        for key, value in params.items():
            fmt.set_dotted(update, str(key), fmt.to_jsonable(value, str(key)))
        delta.params = update
        run._params = fmt.deep_merge(run._params, update)
    delta.tags_add = [fmt.validate_tag(t) for t in (tags or [])]
    run._pending = delta
    run._spool()
    return _register(run)


def _started_at(info: Mapping[str, Any]) -> float:
    """When an attached run started (its ``start_time``; now if unreadable): its
    throughput clocks count from there."""
    now = time.time()
    try:
        started = fmt.parse_iso(info.get("start_time"))
    except (TypeError, ValueError, AttributeError):
        return now
    return now if started is None else min(now, started.timestamp())


def _path_map(text: str | None) -> dict[str, str]:
    """``GITEXP_PATH_MAP`` as set by ``reproduce``; anything malformed is ignored."""
    if not text:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        k: v
        for k, v in data.items()
        if isinstance(k, str) and isinstance(v, str) and os.path.isabs(k) and os.path.isabs(v)
    }


def _argv() -> list[str]:
    argv = list(sys.argv) if sys.argv and sys.argv != [""] else []
    if argv and not argv[0].startswith("-"):
        return [os.path.basename(sys.executable), *argv]
    return argv


def active_run() -> Run | None:
    """The innermost run this process is recording, or None."""
    with _state_lock:
        return _active[-1] if _active else None


def _need_active() -> Run:
    """The run a module-level call (``gitexp.log_metric``) goes to.

    Under ``git exp run`` a script needs no :func:`start_run`: the first call
    attaches to the run the command was started for, which the process then
    writes until it exits (status and exit code are the command's).
    """
    run = active_run()
    if run is not None:
        return run
    if _inherited:
        return _inherited[-1]
    with _attach_lock:
        run = active_run()
        if run is None and os.environ.get(ENV_RUN_REF) not in (None, "", *_attached_refs):
            run = start_run()
    if run is None:
        raise RunStateError(
            "no active run: call gitexp.start_run() first, or start the script "
            "with 'git exp run -- python ...'"
        )
    return run
