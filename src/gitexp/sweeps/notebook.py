"""``gitexp.sweep(fn, space, ...)``: a sweep whose trials are a Python function.

For notebooks and scripts: ``fn(params, budget, run)`` logs into the run it is
given and returns the objective (or logs it as the metric). Each call is an
ordinary run, linked to the sweep like a ``git exp sweep`` trial, and the sweep
is recorded the same way (``git exp sweep show ID`` works on it).
"""

from __future__ import annotations

import math
import os
import sys
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from gitexp.store import ExpStore
from gitexp.sweeps import methods as m
from gitexp.sweeps import record as rec
from gitexp.sweeps.driver import (
    Driver,
    LocalExecutor,
    SweepResult,
    _nested,
    new_record,
    settle_outcome,
    sweep_tag,
)
from gitexp.sweeps.spec import parse_spec
from gitexp.tracking import Run, create_run


class TrialPruned(Exception):
    """Raised in a function trial by the logging call whose value made the
    sweep's pruner stop the trial; :func:`sweep` records the run as ``pruned``."""


class TrialRun:
    """The run a function trial logs into when a pruner watches the sweep.

    Everything is the :class:`gitexp.Run`'s, except that logging the sweep's
    metric also hands the value to the pruner, and when the pruner stops the
    trial that call raises :class:`TrialPruned` (``should_prune()`` says it
    without raising, for code that prefers to check).
    """

    def __init__(
        self, run: Run, metric: str, report: Callable[[list[tuple[int, float]]], bool]
    ) -> None:
        self._run = run
        self._metric = metric
        self._report = report
        self._next = 0
        self._pruned = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._run, name)

    def __repr__(self) -> str:
        return repr(self._run)

    def should_prune(self) -> bool:
        """Whether the pruner stopped this trial."""
        return self._pruned

    def log_metric(self, key: str, value: Any, step: int | None = None) -> None:
        """``Run.log_metric``; the sweep's metric also goes to the pruner."""
        self._run.log_metric(key, value, step)
        if key == self._metric:
            self._feed(value, step)

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """``Run.log_metrics``; the sweep's metric also goes to the pruner."""
        self._run.log_metrics(metrics, step)
        if isinstance(metrics, Mapping) and self._metric in metrics:
            self._feed(metrics[self._metric], step)

    def _feed(self, value: Any, step: Any) -> None:
        if hasattr(value, "__len__") and not isinstance(value, (str, bytes)):
            values = list(value)  # an array: one point per element, as Run.log_metric
            if hasattr(step, "__len__"):
                steps = [int(x) for x in step]
            else:
                first = self._next if step is None else int(step)
                steps = list(range(first, first + len(values)))
        else:
            values, steps = [value], [self._next if step is None else int(step)]
        points = []
        for s, v in zip(steps, values):
            try:
                points.append((s, float(v)))
            except (TypeError, ValueError):
                continue
        if not points:
            return
        self._next = max(s for s, _ in points) + 1
        if self._report(points):
            self._pruned = True
        if self._pruned:
            raise TrialPruned(f"the sweep's pruner stopped the trial at step {points[-1][0]}")


def _is_pruned(exc: BaseException, driver: Driver) -> bool:
    if isinstance(exc, TrialPruned):
        return True
    search = driver.search
    return search is not None and isinstance(exc, search.optuna.TrialPruned)


def _trial(fn: Callable[[dict[str, Any], Any, Run], Any]) -> Callable[[Driver, m.Job], m.Outcome]:
    def run_one(driver: Driver, job: m.Job) -> m.Outcome:
        spec = driver.spec
        store = ExpStore(driver.repo_path)
        run = create_run(
            store,
            experiment=spec.experiment,
            name=None,
            params=_nested(job.all_params(spec)),
            tags=[sweep_tag(driver.record.id)],
            command=[os.path.basename(sys.executable), *sys.argv],
            environ=os.environ,
            extra={"links": {"sweep": driver.link(job)}},
            code=driver.code,
        )
        handle: Any = run
        search = driver.search
        if search is not None and search.prunes and spec.metric is not None:
            trial_no = job.trial
            handle = TrialRun(run, spec.metric, lambda points: search.report(trial_no, points))
        status = "finished"
        try:
            with run:
                try:
                    value = fn(dict(job.params), job.budget, handle)
                except Exception as exc:
                    if not _is_pruned(exc, driver):
                        raise
                    run._finish("pruned")
                    status, value = "pruned", None
                if value is not None and spec.metric is not None:
                    value = float(value)
                    run.log_summary({spec.metric: value})
        except Exception as exc:
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
            return m.Outcome(m.FAILED, run=run.ref, error=last)
        if value is not None and spec.metric is not None:
            return m.Outcome(m.FINISHED, value, run.ref)  # its final value: no need to read
        return settle_outcome(driver.thread_store(), run.ref, status, 0, spec.metric)

    return run_one


def sweep(
    fn: Callable[[dict[str, Any], Any, Run], Any],
    space: Mapping[str, Any],
    *,
    method: str = "random",
    metric: str | Mapping[str, str] = "objective",
    budget: Mapping[str, Any] | None = None,
    trials: int | None = None,
    jobs: int = 1,
    seed: int = 0,
    experiment: str = "sweep",
    repo: str | os.PathLike[str] = ".",
    max_failures: int | None = None,
    sampler: str | Mapping[str, Any] | None = None,
    pruner: str | Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Search ``space`` by calling ``fn(params, budget, run)`` once per trial.

    ``space`` maps names to values or distributions, as ``parameters:`` in a
    sweep file (docs/sweeps.md); ``metric`` is a name (maximized) or ``{"name":
    ..., "goal": "minimize"}``; ``budget`` is ``{"param", "min", "max", "eta"}``
    for successive halving and Hyperband. ``fn`` returns the objective (recorded
    as the metric's final value) or logs the metric itself. ``jobs`` calls run
    at once, in threads. ``method="optuna"`` takes a ``sampler`` and a ``pruner``
    by name (or ``{"name": ..., ARG: VALUE}``); with a pruner, logging the metric
    through ``run`` feeds it, and the call that makes it stop the trial raises
    :class:`TrialPruned` out of ``fn`` (the run ends ``pruned``). Returns the
    best trial (``trial``, ``params``, ``value``, ``budget``, ``run``), or None
    when no trial produced the metric; the sweep's id is under ``sweep``.
    """
    data: dict[str, Any] = {
        "experiment": experiment,
        "method": method,
        "metric": metric,
        "seed": seed,
        "parameters": dict(space),
    }
    for key, value in (
        ("budget", budget),
        ("trials", trials),
        ("max_failures", max_failures),
        ("sampler", sampler),
        ("pruner", pruner),
    ):
        if value is not None:
            data[key] = value
    spec = parse_spec(data, "gitexp.sweep()", in_process=True)
    if spec.method == "optuna":
        from gitexp.sweeps import studies

        studies.check(spec)
    result = run_sweep(spec, _trial(fn), repo=str(repo), jobs=jobs)
    if result.best is None:
        return None
    best = dict(result.best)
    best["sweep"] = result.id
    if isinstance(best.get("value"), float) and math.isnan(best["value"]):
        return None
    return best


def run_sweep(
    spec: Any, trial: Callable[[Driver, m.Job], m.Outcome], repo: str = ".", jobs: int = 1
) -> SweepResult:
    """Record and run a sweep whose trials are ``trial(driver, job)``."""
    with ExpStore(repo) as store:
        store.repo.require_head()
        record = new_record(spec, None, None, executor="python", jobs=jobs)
        driver = Driver(store, spec, record, LocalExecutor(jobs), trial=trial)
        record.data["trials_planned"] = driver.progress.total
        with rec.driving(store.repo, record.id):
            return driver.run()
