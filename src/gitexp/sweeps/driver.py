"""The sweep driver: runs a method's jobs on an executor, records the sweep, resumes it.

Every trial is an ordinary run started the way ``git exp run`` starts one
(:func:`gitexp.runner.run_command`): params from the trial's configuration,
the command with its placeholders filled in, tag ``sweep=<id>`` and
``links.sweep`` = ``{"id", "trial", "rung", "bracket"}`` in its ``run.json``.
The code version is captured once, when the sweep starts, and every trial
records it.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import math
import os
import queue
import signal
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gitexp import records as fmt
from gitexp.errors import ExecutorError, GitExpError, SpecError
from gitexp.records import ExpRef
from gitexp.records.sweeps import SPEC_NAMES
from gitexp.store import ExpStore, RunDelta
from gitexp.sweeps import methods as m
from gitexp.sweeps import record as rec
from gitexp.sweeps.spec import Spec, parse_spec

if TYPE_CHECKING:
    from gitexp.sweeps.studies import OptunaSearch

RECORD_INTERVAL = 1.0  # seconds between sweep-record commits while trials finish
DEFAULT_MAX_FAILURES = 3  # failed trials, with none finished, that stop a sweep
TAG = "sweep"


def sweep_tag(sweep_id: str) -> str:
    """The tag every trial run of a sweep carries (``git exp log -t sweep=<id>``)."""
    return f"{TAG}={sweep_id}"


@dataclass
class Progress:
    """Where a sweep stands (what the progress display shows)."""

    total: int
    done: int = 0
    running: int = 0
    pruned: int = 0
    failed: int = 0
    best: dict[str, Any] | None = None
    last: dict[str, Any] | None = None  # the trial that just ended


@dataclass
class SweepResult:
    """What a sweep did."""

    id: str
    status: str  # finished, failed (stopped early), interrupted
    best: dict[str, Any] | None
    progress: Progress
    warnings: list[str] = field(default_factory=list)
    reason: str | None = None


# ---------------------------------------------------------------- executors


class LocalExecutor:
    """``-j N`` trials at once on this machine: each trial's command is its own process,
    supervised by one of N threads of the driver.

    The other executors (:class:`gitexp.sweeps.cluster.DaskExecutor`) are built on
    it: a driver thread per running trial, and hooks the driver calls."""

    name = "local"

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._pool = cf.ThreadPoolExecutor(max_workers=slots, thread_name_prefix="gitexp-trial")

    def submit(self, fn: Callable[..., m.Outcome], *args: Any) -> cf.Future[m.Outcome]:
        """Start ``fn(*args)`` in a free slot."""
        return self._pool.submit(fn, *args)

    def facts(self) -> dict[str, Any]:
        """What the sweep record keeps about the executor, beside its address."""
        return {}

    def check(self, store: ExpStore) -> None:
        """What must hold before the sweep is recorded (a remote, say)."""

    def prepare(self, driver: Driver) -> None:
        """After the sweep is recorded, before its first trial."""

    def run_trial(self, driver: Driver, job: m.Job) -> m.Outcome:
        """Run one job (in an executor thread) and say what became of it."""
        return driver.run_local_trial(job)

    def sync(self, store: ExpStore) -> None:
        """Bring the trials' runs into the driver's repository (resume reads them)."""

    def pruned(self, driver: Driver, refs: Sequence[str]) -> None:
        """The driver marked these runs pruned."""

    def finish(self, driver: Driver) -> None:
        """The sweep ended (or stopped): its last record is written."""

    def close(self, wait: bool = True) -> None:
        """Stop taking trials; with ``wait``, wait for the running ones."""
        self._pool.shutdown(wait=wait, cancel_futures=True)


def make_executor(address: str, slots: int | None, remote: str | None = None) -> LocalExecutor:
    """The executor an ``--executor`` address names; ExecutorError when it cannot be
    used (unknown, not installed, not reachable). ``slots`` None: the executor's
    own number (1 here; the cluster's worker threads for Dask)."""
    if slots is not None and slots < 1:
        raise SpecError(f"-j must be at least 1, not {slots}")
    if address in ("", "local"):
        return LocalExecutor(slots or 1)
    scheme = address.split("://", 1)[0] if "://" in address else address
    if scheme == "dask":
        from gitexp.sweeps.cluster import DaskExecutor

        return DaskExecutor(address, slots, remote)
    if scheme == "ray":
        raise ExecutorError(
            f"executor {address}: the Ray executor is not in this release (use dask://HOST:PORT)"
        )
    raise ExecutorError(f"unknown executor {address!r} (local or dask://HOST:PORT)")


# ---------------------------------------------------------------- helpers


def _nested(params: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in params.items():
        fmt.set_dotted(out, key, value)
    return out


def metric_value(summary: Any, metric: str | None) -> float | None:
    """The metric a run reports: an explicit final value, else its last logged one."""
    if metric is None:
        return None
    value = summary.final_values().get(metric)
    return None if value is None else float(value)


def settle_outcome(
    store: ExpStore, ref_name: str | None, status: str, exit_code: int | None, metric: str | None
) -> m.Outcome:
    """What a trial's ended run means to the sweep: finished with its metric
    (a finished run that never logged the metric is marked ``failed``, in its
    own repository ``store``), pruned with its last value, killed or failed."""
    if ref_name is None:
        return m.Outcome(m.FAILED, error=f"exit code {exit_code}")
    if status not in ("finished", "pruned"):
        state = m.KILLED if status == "killed" else m.FAILED
        return m.Outcome(state, run=ref_name, error=f"exit code {exit_code}")
    if metric is None:
        return m.Outcome(m.FINISHED if status == "finished" else m.PRUNED, run=ref_name)
    ref = ExpRef.from_ref(ref_name)
    value = metric_value(store.read(ref).summary, metric)
    if status == "pruned":
        return m.Outcome(m.PRUNED, value, ref_name)
    if value is None:
        error = f"the trial never logged the sweep's metric {metric!r}"
        store.update(ref, RunDelta(run={"status": "failed", "error": error}), "fail")
        return m.Outcome(m.FAILED, run=ref_name, error=error)
    return m.Outcome(m.FINISHED, value, ref_name)


def make_watch(
    metric: str, report: Callable[[list[tuple[int, float]]], bool]
) -> Callable[[str, str], bool]:
    """``watch(repo, ref)``: read the run's new points of ``metric`` and give them to
    ``report``, which says whether to stop the trial. ``watch("", "")`` closes it."""
    from gitexp.sweeps.live import LiveMetric

    state: dict[str, LiveMetric] = {}

    def watch(repo: str, ref: str) -> bool:
        if not ref:
            for live in state.values():
                live.close()
            state.clear()
            return False
        if ref not in state:
            state[ref] = LiveMetric(repo, ref, metric)
        points = state[ref].poll()
        return bool(points) and report(points)

    return watch


def best_of(spec: Spec, entries: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The best trial: among those with the metric, the largest budget first, then
    the best value (ties: the lower trial number)."""
    best: dict[str, Any] | None = None
    for e in entries:
        v = e.get("value")
        if e.get("state") not in (m.FINISHED, m.PROMOTED, m.PRUNED) or v is None:
            continue
        if e.get("state") == m.PRUNED and spec.method == "optuna":
            continue  # stopped part-way: its last value is not at the trial's budget
        if isinstance(v, float) and math.isnan(v):
            continue
        if best is None:
            best = dict(e)
            continue
        b_budget, e_budget = best.get("budget") or 0, e.get("budget") or 0
        if e_budget > b_budget or (e_budget == b_budget and spec.better(v, best["value"])):
            best = dict(e)
    return best


def _entry(job: m.Job, spec: Spec, state: str, outcome: m.Outcome | None = None) -> dict[str, Any]:
    return {
        "trial": job.trial,
        "rung": job.rung,
        "bracket": job.bracket,
        "budget": job.budget,
        "params": job.all_params(spec),
        "state": state,
        "run": outcome.run if outcome else None,
        "value": outcome.value if outcome else None,
        "error": outcome.error if outcome else None,
    }


# ---------------------------------------------------------------- the driver


class Driver:
    """Runs one sweep (new or resumed) to its end."""

    def __init__(
        self,
        store: ExpStore,
        spec: Spec,
        record: rec.SweepRecord,
        executor: LocalExecutor,
        gpus: Sequence[str] = (),
        on_progress: Callable[[Progress], None] | None = None,
        reused: Mapping[tuple[int, int], m.Outcome] | None = None,
        cwd: str | None = None,
        trial: Callable[[Driver, m.Job], m.Outcome] | None = None,
    ) -> None:
        from gitexp.capture import code_state

        self.store = store
        self.spec = spec
        self.record = record
        self.executor = executor
        self.on_progress = on_progress
        self.reused = dict(reused or {})
        self.cwd = os.path.abspath(cwd or os.getcwd())
        self._trial: Callable[[m.Job], m.Outcome] = (
            (lambda job: executor.run_trial(self, job))
            if trial is None
            else (lambda job: trial(self, job))
        )
        self.search: OptunaSearch | None = None
        if spec.method == "optuna":
            from gitexp.sweeps.studies import OptunaSearch

            self.search = OptunaSearch(spec, record.id)
        self.plan = m.plan(spec)
        total = sum(r.n for b in self.plan.brackets for r in b.rungs) or self.plan.trials
        self.progress = Progress(total)
        self.code = code_state(store.repo, store.cas)
        self.repo_path = store.repo.work_tree or store.repo.git_dir
        self.max_failures = spec.max_failures or min(DEFAULT_MAX_FAILURES, max(1, total))
        self.successes = 0
        self.stopped: str | None = None
        self.warnings: list[str] = []
        self._last_write = 0.0
        self._local = threading.local()
        self._stores: list[ExpStore] = []
        self._stores_lock = threading.Lock()
        self._gpus: queue.Queue[str] | None = None
        if gpus:
            self._gpus = queue.Queue()
            for i in range(max(executor.slots, len(gpus))):
                self._gpus.put(gpus[i % len(gpus)])
        recorded = record.data.get("code_commit")
        if recorded and recorded != self.code.code_commit:
            self.warnings.append(
                f"the code changed since the sweep started ({str(recorded)[:12]} -> "
                f"{self.code.code_commit[:12]}): the trials run from now on record the new code"
            )
        record.data["code_commit"] = self.code.code_commit

    # ------------------------------------------------------------ one trial
    def link(self, job: m.Job) -> dict[str, Any]:
        """``links.sweep`` of a trial's run."""
        return {"id": self.record.id, "trial": job.trial, "rung": job.rung, "bracket": job.bracket}

    def watcher(self, job: m.Job) -> Callable[[str, str], bool] | None:
        """``watch(repo, ref)`` for a trial's command when a pruner watches the
        sweep: it feeds the run's new metric points to the pruner and says
        whether to stop the trial; None when nothing is watched."""
        search, metric = self.search, self.spec.metric
        if search is None or not search.prunes or metric is None:
            return None
        return make_watch(metric, lambda points: search.report(job.trial, points))

    def run_local_trial(self, job: m.Job) -> m.Outcome:
        """Run one job as a tracked run on this machine; runs in an executor thread."""
        from gitexp.runner import run_command

        spec = self.spec
        params = job.all_params(spec)
        env = dict(os.environ)
        gpu = self._gpus.get() if self._gpus is not None else None
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        link = self.link(job)
        watch = self.watcher(job)
        try:
            result = run_command(
                spec.argv(params),
                repo=self.repo_path,
                experiment=spec.experiment,
                base_params=_nested(params),
                tags=[sweep_tag(self.record.id)],
                environ=env,
                cwd=self.cwd,
                extra={"links": {"sweep": link}},
                code=self.code,
                watch=None if watch is None else (lambda ref: watch(self.repo_path, ref)),
            )
        except GitExpError as exc:
            return m.Outcome(m.FAILED, error=str(exc))
        finally:
            if gpu is not None and self._gpus is not None:
                self._gpus.put(gpu)
            if watch is not None:
                watch("", "")  # closes what it opened
        return settle_outcome(
            self.thread_store(), result.ref, result.status, result.exit_code, spec.metric
        )

    def finished_outcome(self, ref_name: str) -> m.Outcome:
        """The outcome of a trial whose run finished: its metric, or failed without one."""
        return settle_outcome(self.thread_store(), ref_name, "finished", 0, self.spec.metric)

    def thread_store(self) -> ExpStore:
        """This executor thread's own store on the sweep's repository (stores are
        not shared between threads); all are closed when the sweep ends."""
        store: ExpStore | None = getattr(self._local, "store", None)
        if store is None:
            store = self._local.store = ExpStore(self.repo_path)
            with self._stores_lock:
                self._stores.append(store)
        return store

    def _close_stores(self) -> None:
        with self._stores_lock:
            for store in self._stores:
                store.close()
            self._stores.clear()

    # ------------------------------------------------------------ a batch
    def evaluate(self, jobs: Sequence[m.Job]) -> dict[tuple[int, int], m.Outcome]:
        """Run a batch of jobs, ``slots`` at a time; reuse what a resume found."""
        out: dict[tuple[int, int], m.Outcome] = {}
        todo: list[m.Job] = []
        for job in jobs:
            if job.key in self.reused:
                got = self.reused[job.key]
                out[job.key] = m.Outcome(
                    got.state, got.value, got.run, got.error, reused=True, params=got.params
                )
                if self.search is not None and got.params is not None:
                    job = m.Job(job.trial, got.params, job.budget, job.rung, job.bracket)
                    self.search.add_recorded(got.params, got, got.intermediate)
                self._ended(job, out[job.key], write=False)
            else:
                todo.append(job)
        if self.stopped:
            return out
        pending = list(reversed(todo))
        running: dict[cf.Future[m.Outcome], m.Job] = {}
        try:
            while pending or running:
                while pending and len(running) < self.executor.slots and not self._halted():
                    job = pending.pop()
                    if self.search is not None:
                        job = self.search.ask(job)  # Optuna picks the configuration now
                    running[self.executor.submit(self._trial, job)] = job
                    self.record.set_trial(_entry(job, self.spec, "running"))
                    self.progress.running += 1
                self._write_record("trials started", throttle=True)
                self._report()
                if not running:
                    break
                done, _ = cf.wait(list(running), return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    job = running.pop(fut)
                    self.progress.running -= 1
                    try:
                        outcome = fut.result()
                    except Exception as exc:  # a bug in a trial's supervision: the trial failed
                        outcome = m.Outcome(m.FAILED, error=f"{type(exc).__name__}: {exc}")
                    if self.search is not None:
                        self.search.tell(job, outcome)
                    out[job.key] = outcome
                    self._ended(job, outcome)
        except BaseException:
            self.executor.close(wait=False)
            raise
        return out

    def _halted(self) -> bool:
        """No more trials start: the sweep stopped, or the search has nothing new."""
        return bool(self.stopped) or (self.search is not None and self.search.exhausted)

    def _ended(self, job: m.Job, outcome: m.Outcome, write: bool = True) -> None:
        self.record.set_trial(_entry(job, self.spec, outcome.state, outcome))
        p = self.progress
        p.done += 1
        if outcome.state in (m.FAILED, m.KILLED):
            p.failed += 1
        elif outcome.state == m.PRUNED:
            p.pruned += 1
            self.successes += 1
        else:
            self.successes += 1
        p.best = best_of(self.spec, self.record.trials)
        p.last = _entry(job, self.spec, outcome.state, outcome)
        if not self.successes and p.failed >= self.max_failures and not self.stopped:
            self.stopped = (
                f"the first {p.failed} trials all failed (last: {outcome.error}); "
                "stopping instead of running the rest"
            )
        if write:
            self._write_record("trial ended", throttle=True)
            self._report()

    def on_rung(self, promoted: list[m.Job], pruned: list[m.Job]) -> None:
        """Successive halving decided: mark the trials that do not go on as pruned."""
        for job in pruned:
            entry = self.record._trials[job.key]
            entry["state"] = m.PRUNED
            self.progress.pruned += 1
            ref = entry.get("run")
            if ref and not self.reused.get(job.key, m.Outcome("")).state == m.PRUNED:
                with contextlib.suppress(GitExpError):
                    self.store.update(
                        ExpRef.from_ref(ref), RunDelta(run={"status": "pruned"}), "prune"
                    )
        refs = [
            str(self.record._trials[j.key].get("run"))
            for j in pruned
            if self.record._trials[j.key].get("run")
        ]
        if refs:
            self.executor.pruned(self, refs)
        for job in promoted:
            self.record._trials[job.key]["state"] = m.PROMOTED
        self._write_record(f"rung done: {len(promoted)} promoted, {len(pruned)} pruned")

    # ------------------------------------------------------------ record
    def _write_record(self, message: str, throttle: bool = False) -> None:
        now = time.monotonic()
        if throttle and now - self._last_write < RECORD_INTERVAL:
            return
        self._last_write = now
        self.record.data["best"] = best_of(self.spec, self.record.trials)
        self.record.data["counts"] = _counts(self.record.trials)
        self.record.data["updated"] = fmt.iso(fmt.utc_now())
        rec.write(self.store.repo, self.record, f"sweep {self.record.id}: {message}")

    def _report(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.progress)

    # ------------------------------------------------------------ all of it
    def run(self) -> SweepResult:
        """Run the sweep to its end (or until it stops or is interrupted)."""
        self.record.data["status"] = "running"
        self._write_record("started" if not self.reused else "resumed")
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, _raise_interrupt)
        try:
            try:
                self.executor.prepare(self)
            except GitExpError as exc:
                self.record.data["status"] = "failed"
                self.record.data["reason"] = str(exc)
                self._write_record("failed before its first trial")
                raise
            m.run_plan(self.spec, self.plan, self.evaluate, self.on_rung)
        except KeyboardInterrupt:
            self.record.data["status"] = "interrupted"
            self._write_record("interrupted")
            with contextlib.suppress(GitExpError):
                self.executor.finish(self)
            raise
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        self.executor.close()
        self._close_stores()  # the executor's threads are done with them
        status = "failed" if self.stopped else "finished"
        self.record.data["status"] = status
        self.record.data["reason"] = self.stopped
        self._write_record(status)
        try:
            self.executor.finish(self)
        except GitExpError as exc:
            self.warnings.append(f"the sweep's record was not shared: {exc}")
        best = self.record.data.get("best")
        return SweepResult(self.record.id, status, best, self.progress, self.warnings, self.stopped)


def _raise_interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def _counts(entries: Sequence[Mapping[str, Any]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for e in entries:
        out[str(e.get("state"))] = out.get(str(e.get("state")), 0) + 1
    return out


# ---------------------------------------------------------------- entry points


def new_record(
    spec: Spec, spec_name: str | None, spec_bytes: bytes | None, **facts: Any
) -> rec.SweepRecord:
    """A new sweep's record (not yet written)."""
    sweep_id = fmt.new_run_id()
    ext = os.path.splitext(spec_name or "")[1].lower()
    spec_file = (
        (SPEC_NAMES[ext], spec_bytes) if spec_bytes is not None and ext in SPEC_NAMES else None
    )
    data = {
        "experiment": spec.experiment,
        "method": spec.method,
        "seed": spec.seed,
        "metric": {"name": spec.metric, "goal": spec.goal} if spec.metric else None,
        "spec": spec.to_json(),
        "spec_file": os.path.basename(spec_name) if spec_name else None,
        "created": fmt.iso(fmt.utc_now()),
        "status": "running",
        **facts,
    }
    return rec.SweepRecord(sweep_id, data, None, spec_file)


def check_before_start(spec: Spec, cwd: str, executor: str = "local") -> None:
    """What must hold before any trial starts: the program exists (on this machine,
    for the local executor), Optuna and the sampler and pruner named (method optuna)."""
    from gitexp.runner import check_program

    if spec.method == "optuna":
        from gitexp.sweeps import studies

        studies.check(spec)
    if executor in ("", "local") and "{" not in spec.command[0]:
        check_program(list(spec.command), cwd)


def _flat_params(spec: Spec, nested: Mapping[str, Any]) -> dict[str, Any] | None:
    """A run's params as the sweep names them (``a.b`` is nested in params.json)."""
    out: dict[str, Any] = {}
    for p in spec.parameters:
        node: Any = nested
        for part in p.name.split("."):
            if not isinstance(node, Mapping) or part not in node:
                return None
            node = node[part]
        out[p.name] = node
    return out


def recorded_outcomes(
    store: ExpStore, sweep_id: str, spec: Spec | None = None
) -> dict[tuple[int, int], m.Outcome]:
    """What the trial runs of a sweep say happened, by (trial, rung): the runs
    that ended (finished, failed, pruned) are kept; crashed, killed or still
    running ones are run again on resume. With ``spec`` of an Optuna sweep, each
    outcome also carries its configuration (and, with a pruner, its metric by
    step), for the sampler and pruner to learn from."""
    from gitexp.leaderboard import Query, leaderboard
    from gitexp.metrics import series

    metric_spec = rec.read(store.repo, sweep_id).data.get("metric") or {}
    metric = metric_spec.get("name") if isinstance(metric_spec, dict) else None
    board = leaderboard(store, Query(tags=[sweep_tag(sweep_id)], columns=["id", "ref", "status"]))
    out: dict[tuple[int, int], m.Outcome] = {}
    rank = {m.FINISHED: 3, "pruned": 3, m.FAILED: 2}
    optuna = spec is not None and spec.method == "optuna"
    for row in board.rows:
        status = row.get("status")
        if status not in rank:
            continue
        ref = ExpRef.from_ref(str(row.get("ref")))
        run = store.read(ref)
        link = (run.info.get("links") or {}).get("sweep") or {}
        if link.get("id") != sweep_id or not isinstance(link.get("trial"), int):
            continue
        key = (int(link["trial"]), int(link.get("rung") or 0))
        value = metric_value(run.summary, metric)
        state = (
            m.PRUNED if status == "pruned" else (m.FINISHED if status == "finished" else m.FAILED)
        )
        error = run.info.get("error") if state == m.FAILED else None
        if state == m.FINISHED and metric is not None and value is None:
            state, error = m.FAILED, f"the trial never logged the sweep's metric {metric!r}"
        if key not in out or rank[status] > rank.get(out[key].state, 0):
            got = m.Outcome(state, value, str(ref), error)
            if optuna and spec is not None:
                got.params = _flat_params(spec, run.params)
                if spec.pruner and metric is not None:
                    steps, values = series(store.read_metrics(run), metric)
                    got.intermediate = {
                        int(st): float(v)
                        for st, v in zip(steps, values)
                        if st is not None and v is not None
                    }
            out[key] = got
    return out


def start(
    spec: Spec,
    *,
    repo: str = ".",
    spec_name: str | None = None,
    spec_bytes: bytes | None = None,
    jobs: int | None = None,
    executor: str = "local",
    remote: str | None = None,
    gpus: Sequence[str] = (),
    on_start: Callable[[str], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> SweepResult:
    """Run a new sweep: check everything, record it, tell ``on_start`` its id, run it.

    ``executor``: ``local`` or ``dask://HOST:PORT`` (whose workers share runs
    through ``remote``, by default the one ``git exp push`` uses)."""
    cwd = os.getcwd()
    check_before_start(spec, cwd, executor)
    if gpus and executor not in ("", "local"):
        raise SpecError(
            "GPUs are handed out by the local executor; a cluster's workers use their own "
            "CUDA_VISIBLE_DEVICES"
        )
    if spec.method == "optuna":
        from gitexp.sweeps import studies

        studies.quiet()
    pool = make_executor(executor, jobs, remote)
    try:
        with ExpStore(repo) as store:
            store.repo.require_head()
            pool.check(store)
            record = new_record(
                spec, spec_name, spec_bytes, executor=executor, jobs=pool.slots, **pool.facts()
            )
            driver = Driver(store, spec, record, pool, gpus, on_progress, cwd=cwd)
            record.data["trials_planned"] = driver.progress.total
            with rec.driving(store.repo, record.id):
                driver._write_record("created")
                if on_start is not None:
                    on_start(record.id)
                return driver.run()
    finally:
        pool.close(wait=False)


def resume(
    sweep_id: str,
    *,
    repo: str = ".",
    jobs: int | None = None,
    executor: str | None = None,
    remote: str | None = None,
    gpus: Sequence[str] = (),
    on_start: Callable[[str], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> SweepResult:
    """Go on with a sweep that was interrupted: the trials whose runs ended are not
    run again; the others are, with the same configurations (same seed)."""
    with ExpStore(repo) as store:
        rec.read(store.repo, sweep_id)  # no such sweep: say so before taking its lock
        with rec.driving(store.repo, sweep_id):
            record = rec.read(store.repo, sweep_id)
            if record.data.get("executor") == "python":
                raise SpecError(
                    f"sweep {sweep_id} ran a Python function (gitexp.sweep): call gitexp.sweep "
                    "again with the same seed; git exp sweep resume runs sweeps of commands"
                )
            spec = parse_spec(record.data.get("spec"), f"sweep {sweep_id}")
            address = executor or str(record.data.get("executor") or "local")
            check_before_start(spec, os.getcwd(), address)
            if spec.method == "optuna":
                from gitexp.sweeps import studies

                studies.quiet()
            jobs = jobs or (int(record.data.get("jobs") or 1) if address == "local" else None)
            was = record.data.get("remote")
            if remote is None and isinstance(was, dict) and address != "local":
                remote = was.get("name") or was.get("url")
            pool = make_executor(address, jobs, remote)
            try:
                pool.check(store)
                pool.sync(store)  # trials that ended on workers after the driver stopped
                reused = recorded_outcomes(store, sweep_id, spec)
                record.data.update(executor=address, jobs=pool.slots, **pool.facts())
                driver = Driver(
                    store, spec, record, pool, gpus, on_progress, reused, cwd=os.getcwd()
                )
                if on_start is not None:
                    on_start(record.id)
                return driver.run()
            finally:
                pool.close(wait=False)
