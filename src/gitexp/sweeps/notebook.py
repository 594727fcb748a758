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
from gitexp.sweeps.driver import Driver, LocalExecutor, SweepResult, _nested, new_record, sweep_tag
from gitexp.sweeps.spec import parse_spec
from gitexp.tracking import Run, create_run


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
        try:
            with run:
                value = fn(dict(job.params), job.budget, run)
                if value is not None and spec.metric is not None:
                    run.log_summary({spec.metric: float(value)})
        except Exception as exc:
            last = traceback.format_exception_only(type(exc), exc)[-1].strip()
            return m.Outcome(m.FAILED, run=run.ref, error=last)
        return driver.finished_outcome(run.ref)

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
) -> dict[str, Any] | None:
    """Search ``space`` by calling ``fn(params, budget, run)`` once per trial.

    ``space`` maps names to values or distributions, as ``parameters:`` in a
    sweep file (docs/sweeps.md); ``metric`` is a name (maximized) or ``{"name":
    ..., "goal": "minimize"}``; ``budget`` is ``{"param", "min", "max", "eta"}``
    for successive halving and Hyperband. ``fn`` returns the objective (recorded
    as the metric's final value) or logs the metric itself. ``jobs`` calls run
    at once, in threads. Returns the best trial (``trial``, ``params``,
    ``value``, ``budget``, ``run``), or None when no trial produced the metric;
    the sweep's id is under ``sweep``.
    """
    data: dict[str, Any] = {
        "experiment": experiment,
        "method": method,
        "metric": metric,
        "seed": seed,
        "parameters": dict(space),
    }
    for key, value in (("budget", budget), ("trials", trials), ("max_failures", max_failures)):
        if value is not None:
            data[key] = value
    spec = parse_spec(data, "gitexp.sweep()", in_process=True)
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
