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
from typing import Any

from gitexp import records as fmt
from gitexp.errors import ExecutorError, GitExpError, SpecError
from gitexp.records import ExpRef
from gitexp.store import ExpStore, RunDelta
from gitexp.sweeps import methods as m
from gitexp.sweeps import record as rec
from gitexp.sweeps.spec import Spec, parse_spec

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
    supervised by one of N threads of the driver."""

    name = "local"

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._pool = cf.ThreadPoolExecutor(max_workers=slots, thread_name_prefix="gitexp-trial")

    def submit(self, fn: Callable[..., m.Outcome], *args: Any) -> cf.Future[m.Outcome]:
        """Start ``fn(*args)`` in a free slot."""
        return self._pool.submit(fn, *args)

    def close(self, wait: bool = True) -> None:
        """Stop taking trials; with ``wait``, wait for the running ones."""
        self._pool.shutdown(wait=wait, cancel_futures=True)


def make_executor(address: str, slots: int) -> LocalExecutor:
    """The executor an ``--executor`` address names; ExecutorError when it cannot be used."""
    if slots < 1:
        raise SpecError(f"-j must be at least 1, not {slots}")
    if address in ("", "local"):
        return LocalExecutor(slots)
    scheme = address.split("://", 1)[0] if "://" in address else address
    if scheme in ("dask", "ray"):
        raise ExecutorError(
            f"executor {address}: the {scheme} executor is not in this release yet "
            "(use --executor local)"
        )
    raise ExecutorError(
        f"unknown executor {address!r} (local, dask://HOST:PORT or ray://HOST:PORT)"
    )


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


def best_of(spec: Spec, entries: Sequence[Mapping[str, Any]]) -> dict[str, Any] | None:
    """The best trial: among those with the metric, the largest budget first, then
    the best value (ties: the lower trial number)."""
    best: dict[str, Any] | None = None
    for e in entries:
        v = e.get("value")
        if e.get("state") not in (m.FINISHED, m.PROMOTED, m.PRUNED) or v is None:
            continue
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
            self._run_trial if trial is None else (lambda job: trial(self, job))
        )
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

    def _run_trial(self, job: m.Job) -> m.Outcome:
        """Run one job as a tracked run; runs in an executor thread."""
        from gitexp.runner import run_command

        spec = self.spec
        params = job.all_params(spec)
        env = dict(os.environ)
        gpu = self._gpus.get() if self._gpus is not None else None
        if gpu is not None:
            env["CUDA_VISIBLE_DEVICES"] = gpu
        link = self.link(job)
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
            )
        except GitExpError as exc:
            return m.Outcome(m.FAILED, error=str(exc))
        finally:
            if gpu is not None and self._gpus is not None:
                self._gpus.put(gpu)
        if result.status != "finished":
            state = m.KILLED if result.status == "killed" else m.FAILED
            return m.Outcome(state, run=result.ref, error=f"exit code {result.exit_code}")
        return self.finished_outcome(result.ref)

    def finished_outcome(self, ref_name: str) -> m.Outcome:
        """The outcome of a trial whose run finished: its metric, or failed without one."""
        metric = self.spec.metric
        if metric is None:
            return m.Outcome(m.FINISHED, run=ref_name)
        with ExpStore(self.repo_path) as store:
            ref = ExpRef.from_ref(ref_name)
            value = metric_value(store.read(ref).summary, metric)
            if value is None:
                error = f"the trial never logged the sweep's metric {metric!r}"
                store.update(ref, RunDelta(run={"status": "failed", "error": error}), "fail")
                return m.Outcome(m.FAILED, run=ref_name, error=error)
        return m.Outcome(m.FINISHED, value, ref_name)

    # ------------------------------------------------------------ a batch
    def evaluate(self, jobs: Sequence[m.Job]) -> dict[tuple[int, int], m.Outcome]:
        """Run a batch of jobs, ``slots`` at a time; reuse what a resume found."""
        out: dict[tuple[int, int], m.Outcome] = {}
        todo: list[m.Job] = []
        for job in jobs:
            if job.key in self.reused:
                got = self.reused[job.key]
                out[job.key] = m.Outcome(got.state, got.value, got.run, got.error, reused=True)
                self._ended(job, out[job.key], write=False)
            else:
                todo.append(job)
        if self.stopped:
            return out
        pending = list(reversed(todo))
        running: dict[cf.Future[m.Outcome], m.Job] = {}
        try:
            while pending or running:
                while pending and len(running) < self.executor.slots and not self.stopped:
                    job = pending.pop()
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
                    out[job.key] = outcome
                    self._ended(job, outcome)
        except BaseException:
            self.executor.close(wait=False)
            raise
        return out

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
            m.run_plan(self.spec, self.plan, self.evaluate, self.on_rung)
        except KeyboardInterrupt:
            self.record.data["status"] = "interrupted"
            self._write_record("interrupted")
            raise
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)
        self.executor.close()
        status = "failed" if self.stopped else "finished"
        self.record.data["status"] = status
        self.record.data["reason"] = self.stopped
        self._write_record(status)
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
        (rec.SPEC_NAMES[ext], spec_bytes)
        if spec_bytes is not None and ext in rec.SPEC_NAMES
        else None
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


def check_before_start(spec: Spec, cwd: str) -> None:
    """What must hold before any trial starts: the program exists."""
    from gitexp.runner import check_program

    if "{" not in spec.command[0]:
        check_program(list(spec.command), cwd)


def recorded_outcomes(store: ExpStore, sweep_id: str) -> dict[tuple[int, int], m.Outcome]:
    """What the trial runs of a sweep say happened, by (trial, rung): the runs
    that ended (finished, failed, pruned) are kept; crashed, killed or still
    running ones are run again on resume."""
    from gitexp.leaderboard import Query, leaderboard

    metric_spec = rec.read(store.repo, sweep_id).data.get("metric") or {}
    metric = metric_spec.get("name") if isinstance(metric_spec, dict) else None
    board = leaderboard(store, Query(tags=[sweep_tag(sweep_id)], columns=["id", "ref", "status"]))
    out: dict[tuple[int, int], m.Outcome] = {}
    rank = {m.FINISHED: 3, "pruned": 3, m.FAILED: 2}
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
            out[key] = m.Outcome(state, value, str(ref), error)
    return out


def start(
    spec: Spec,
    *,
    repo: str = ".",
    spec_name: str | None = None,
    spec_bytes: bytes | None = None,
    jobs: int = 1,
    executor: str = "local",
    gpus: Sequence[str] = (),
    on_start: Callable[[str], None] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
) -> SweepResult:
    """Run a new sweep: check everything, record it, tell ``on_start`` its id, run it."""
    cwd = os.getcwd()
    check_before_start(spec, cwd)
    pool = make_executor(executor, jobs)
    with ExpStore(repo) as store:
        store.repo.require_head()
        record = new_record(spec, spec_name, spec_bytes, executor=executor, jobs=jobs)
        driver = Driver(store, spec, record, pool, gpus, on_progress, cwd=cwd)
        record.data["trials_planned"] = driver.progress.total
        with rec.driving(store.repo, record.id):
            driver._write_record("created")
            if on_start is not None:
                on_start(record.id)
            return driver.run()


def resume(
    sweep_id: str,
    *,
    repo: str = ".",
    jobs: int | None = None,
    executor: str | None = None,
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
            reused = recorded_outcomes(store, sweep_id)
            jobs = jobs or int(record.data.get("jobs") or 1)
            address = executor or str(record.data.get("executor") or "local")
            pool = make_executor(address, jobs)
            driver = Driver(store, spec, record, pool, gpus, on_progress, reused, cwd=os.getcwd())
            if on_start is not None:
                on_start(record.id)
            return driver.run()
