"""Hyperparameter sweeps: grid, random, successive halving, Hyperband and Optuna
searches whose trials are ordinary git-exp runs.

- :mod:`gitexp.sweeps.spec`: the sweep file (YAML, TOML, JSON), checked up front.
- :mod:`gitexp.sweeps.methods`: configurations, budgets, who goes on to the next rung.
- :mod:`gitexp.sweeps.studies`: ``method: optuna`` and ``gitexp.OptunaCallback``.
- :mod:`gitexp.sweeps.live`: a running trial's metric, as a pruner reads it.
- :mod:`gitexp.sweeps.driver`: runs the jobs on an executor, records, resumes.
- :mod:`gitexp.sweeps.cluster`: the Dask executor (driver side);
  :mod:`gitexp.sweeps.worker`: what a Dask worker runs for a trial.
- :mod:`gitexp.sweeps.notebook`: ``gitexp.sweep()``, trials that are a function.
- :mod:`gitexp.sweeps.record`: the sweep in git, ``refs/sweeps/<id>``.

docs/sweeps.md is the user's guide; docs/format.md describes the record.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from gitexp.sweeps.driver import Progress, SweepResult, resume, start, sweep_tag
from gitexp.sweeps.methods import iter_brackets_text, plan
from gitexp.sweeps.notebook import TrialPruned
from gitexp.sweeps.spec import Spec, load_spec, parse_spec

__all__ = [
    "Progress",
    "Spec",
    "SweepResult",
    "TrialPruned",
    "describe",
    "dry_run",
    "importance",
    "list_sweeps",
    "load_spec",
    "parse_spec",
    "plan",
    "resume",
    "start",
    "sweep_tag",
]


def dry_run(spec: Spec) -> dict[str, Any]:
    """What a sweep would run, without running anything: the brackets (successive
    halving, Hyperband) and each first-rung configuration with its budget and command."""
    p = plan(spec)
    configs = []
    for job in p.configurations:
        params = job.all_params(spec)
        entry: dict[str, Any] = {"trial": job.trial, "bracket": job.bracket, "budget": job.budget}
        entry["params"] = params
        if spec.method != "optuna":
            entry["command"] = spec.argv(params)
        configs.append(entry)
    return {
        "method": spec.method,
        "seed": spec.seed,
        "trials": p.trials,
        "brackets": [
            {
                "bracket": b.index,
                "rungs": [{"n": r.n, "budget": r.budget} for r in b.rungs],
                "total_budget": b.total_budget,
            }
            for b in p.brackets
        ],
        "brackets_text": list(iter_brackets_text(p)),
        "configurations": configs,
    }


def _ranks(values: Sequence[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2.0
        i = j + 1
    return ranks


def _pearson(x: Sequence[float], y: Sequence[float]) -> float | None:
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sx = math.sqrt(sum((a - mx) ** 2 for a in x))
    sy = math.sqrt(sum((b - my) ** 2 for b in y))
    if sx == 0 or sy == 0:
        return None
    return sum((a - mx) * (b - my) for a, b in zip(x, y)) / (sx * sy)


def importance(entries: Sequence[Mapping[str, Any]], names: Sequence[str]) -> list[dict[str, Any]]:
    """How much each parameter goes with the metric, over the trials that have it:
    |Spearman rank correlation| for numbers, the correlation ratio (eta) for
    other values; 0 (none) .. 1 (the parameter decides the order). A summary, not
    a causal claim: trials of different budgets are compared only at the largest."""
    scored = [e for e in entries if isinstance(e.get("value"), (int, float))]
    scored = [e for e in scored if not math.isnan(float(e["value"]))]
    if scored:
        top = max((e.get("budget") or 0) for e in scored)
        at_top = [e for e in scored if (e.get("budget") or 0) == top]
        scored = at_top if len(at_top) >= 3 else scored
    out = []
    ys = [float(e["value"]) for e in scored]
    for name in names:
        xs = [(e.get("params") or {}).get(name) for e in scored]
        score: float | None = None
        how = "spearman"
        if len(scored) >= 3 and all(
            isinstance(x, (int, float)) and not isinstance(x, bool) for x in xs
        ):
            r = _pearson(_ranks([float(x) for x in xs]), _ranks(ys))  # type: ignore[arg-type]
            score = None if r is None else abs(r)
        elif len(scored) >= 3:
            how = "eta"
            groups: dict[str, list[float]] = {}
            for x, y in zip(xs, ys):
                groups.setdefault(repr(x), []).append(y)
            mean = sum(ys) / len(ys)
            total = sum((y - mean) ** 2 for y in ys)
            between = sum(len(g) * (sum(g) / len(g) - mean) ** 2 for g in groups.values())
            score = None if total == 0 or len(groups) < 2 else math.sqrt(between / total)
        out.append({"param": name, "importance": score, "measure": how, "trials": len(scored)})
    out.sort(key=lambda d: -(float(d["importance"]) if d["importance"] is not None else -1.0))
    return out


def describe(sweep_id: str, repo: str = ".") -> dict[str, Any]:
    """A sweep as ``git exp sweep show`` shows it: the record, each trial with its
    run's status (from the leaderboard), the best, counts and parameter importance."""
    from gitexp.leaderboard import Query, leaderboard
    from gitexp.store import ExpStore
    from gitexp.sweeps import record as rec

    with ExpStore(repo) as store:
        r = rec.read(store.repo, sweep_id)
        board = leaderboard(store, Query(tags=[sweep_tag(sweep_id)], columns=["ref", "status"]))
        status_of = {str(row.get("ref")): row.get("status") for row in board.rows}
    spec = parse_spec(
        r.data.get("spec"), f"sweep {sweep_id}", in_process=r.data.get("executor") == "python"
    )
    trials = []
    for e in r.trials:
        e = dict(e)
        e["run_status"] = status_of.get(str(e.get("run")))
        trials.append(e)
    searched = [p.name for p in spec.parameters if p.kind != "fixed"]
    counts: dict[str, int] = {}
    for e in trials:
        counts[str(e.get("state"))] = counts.get(str(e.get("state")), 0) + 1
    return {
        "id": r.id,
        "ref": r.ref,
        "sha": r.sha,
        **{k: v for k, v in r.data.items() if k not in ("counts",)},
        "counts": counts,
        "trials": trials,
        "importance": importance(trials, searched),
    }


def list_sweeps(repo: str = ".") -> list[dict[str, Any]]:
    """Every sweep in the repository, newest first: id, experiment, method, status,
    counts, best."""
    from gitexp.store import ExpStore
    from gitexp.sweeps import record as rec

    with ExpStore(repo) as store:
        out = []
        for r in rec.read_all(store.repo):
            d = r.data
            out.append(
                {
                    "id": r.id,
                    "experiment": d.get("experiment"),
                    "method": d.get("method"),
                    "status": d.get("status"),
                    "created": d.get("created"),
                    "trials": len(r.trials),
                    "counts": d.get("counts") or {},
                    "best": d.get("best"),
                    "metric": d.get("metric"),
                }
            )
        return out
