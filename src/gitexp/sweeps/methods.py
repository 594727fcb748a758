"""Search methods: which configurations to try, with which budget, and who goes on.

A method is a function ``(spec, evaluate)`` that calls ``evaluate(jobs)`` with a
batch of :class:`Job` s (run in parallel by the executor) and gets one
:class:`Outcome` per job back. Grid and random search send one batch; successive
halving sends one batch per rung, and Hyperband one successive halving per
bracket (Li et al. 2017, Algorithm 1).

Configurations come from the seed alone: trial ``t`` draws its values from its
own generator seeded with ``(seed, t)``, so a sweep with the same seed tries
the same configurations, in any order, after a resume, with any ``-j``.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gitexp.sweeps.spec import Spec

# trial states (in the sweep record); a trial's run has the same status except
# ``promoted`` (its run finished and the trial went on with a bigger budget)
FINISHED, FAILED, PRUNED, PROMOTED, KILLED = "finished", "failed", "pruned", "promoted", "killed"


@dataclass(frozen=True)
class Job:
    """One trial at one budget: what the executor runs."""

    trial: int
    params: dict[str, Any]
    budget: int | float | None = None
    rung: int = 0
    bracket: int = 0

    @property
    def key(self) -> tuple[int, int]:
        """``(trial, rung)``: one run of the sweep."""
        return (self.trial, self.rung)

    def all_params(self, spec: Spec) -> dict[str, Any]:
        """The params the run records: the configuration plus the budget."""
        if spec.budget is None or self.budget is None:
            return dict(self.params)
        return {**self.params, spec.budget.param: self.budget}


@dataclass
class Outcome:
    """What became of a job."""

    state: str
    value: float | None = None
    run: str | None = None  # the run's ref
    error: str | None = None
    reused: bool = False  # recorded before a resume: not run again
    params: dict[str, Any] | None = None  # the configuration a resume found (method optuna)
    intermediate: dict[int, float] | None = None  # its metric by step (for Optuna's pruner)


Evaluate = Callable[[Sequence[Job]], Mapping[tuple[int, int], Outcome]]


@dataclass(frozen=True)
class Rung:
    """A rung of successive halving: ``n`` configurations with budget ``budget`` each."""

    n: int
    budget: float


@dataclass(frozen=True)
class Bracket:
    """One successive halving: its rungs, smallest budget first."""

    index: int
    rungs: tuple[Rung, ...]

    @property
    def total_budget(self) -> float:
        """The budget the bracket spends: sum of n_i * r_i."""
        return sum(r.n * r.budget for r in self.rungs)


@dataclass
class Plan:
    """What a sweep will run, as ``--dry-run`` shows it."""

    brackets: list[Bracket]
    configurations: list[Job] = field(default_factory=list)  # first-rung jobs

    @property
    def trials(self) -> int:
        """How many configurations are tried."""
        return len(self.configurations)


# ------------------------------------------------------------- configurations


def grid_configs(spec: Spec) -> list[dict[str, Any]]:
    """Every combination of the ``values`` axes (fixed params in each), in file order."""
    axes = [p.values if p.kind == "values" else (p.value,) for p in spec.parameters]
    names = [p.name for p in spec.parameters]
    return [dict(zip(names, combo)) for combo in itertools.product(*axes)]


def grid_size(spec: Spec) -> int:
    """How many configurations the grid holds."""
    return math.prod(len(p.values) if p.kind == "values" else 1 for p in spec.parameters)


def sample_config(spec: Spec, trial: int) -> dict[str, Any]:
    """Trial ``trial``'s configuration: the same for the same seed, always."""
    rng = random.Random(f"gitexp-sweep/{spec.seed}/{trial}")
    return {p.name: p.sample(rng) for p in spec.parameters}


# ------------------------------------------------------------- budgets


def _log(x: float, base: int) -> int:
    """floor(log_base(x)) for x >= 1, exact for powers (no 4.999999 for log_3(243))."""
    k = 0
    while base ** (k + 1) <= x * (1 + 1e-9):
        k += 1
    return k


def hyperband_brackets(low: float, high: float, eta: int) -> list[Bracket]:
    """Hyperband's brackets (Li et al. 2017, Algorithm 1), most aggressive first.

    R = high / low (the maximum budget in units of the smallest), s_max =
    floor(log_eta R), B = (s_max + 1) R; bracket s starts n = ceil(B/R * eta^s /
    (s + 1)) configurations at budget R eta^-s and rung i keeps n_i = floor(n
    eta^-i) of them at budget r eta^i. Budgets are returned in the budget's own
    unit (multiplied by ``low``).
    """
    big_r = high / low
    s_max = _log(big_r, eta)
    b = (s_max + 1) * big_r
    out = []
    for s in range(s_max, -1, -1):
        n = math.ceil(b / big_r * eta**s / (s + 1) - 1e-9)
        r = big_r * eta ** (-s)
        rungs = tuple(Rung(n // eta**i, r * eta**i * low) for i in range(s + 1))
        out.append(Bracket(s_max - s, rungs))
    return out


def halving_bracket(n: int, low: float, high: float, eta: int) -> Bracket:
    """Successive halving of ``n`` configurations ending at the largest budget.

    It has s + 1 rungs, s = min(floor(log_eta(high/low)), floor(log_eta n)):
    rung i runs floor(n eta^-i) configurations at budget high eta^(i-s).
    """
    s = min(_log(high / low, eta), _log(n, eta))
    return Bracket(0, tuple(Rung(n // eta**i, high * eta ** (i - s)) for i in range(s + 1)))


def plan(spec: Spec) -> Plan:
    """The brackets and first-rung configurations a sweep will run."""
    b = spec.budget
    if spec.method == "grid":
        budget = b.value(b.high) if b else None
        jobs = [Job(t, c, budget) for t, c in enumerate(grid_configs(spec))]
        return Plan([], jobs)
    if spec.method in ("random", "optuna"):
        budget = b.value(b.high) if b else None
        n = spec.trials or 0
        configs = [sample_config(spec, t) for t in range(n)] if spec.method == "random" else []
        if spec.method == "optuna":  # Optuna picks them as it goes
            return Plan([], [Job(t, {}, budget) for t in range(n)])
        return Plan([], [Job(t, c, budget) for t, c in enumerate(configs)])
    assert b is not None
    if spec.method == "successive_halving":
        brackets = [halving_bracket(spec.trials or 1, b.low, b.high, b.eta)]
    else:
        brackets = hyperband_brackets(b.low, b.high, b.eta)
    first: list[Job] = []
    for br in brackets:
        for _ in range(br.rungs[0].n):
            t = len(first)
            first.append(Job(t, sample_config(spec, t), b.value(br.rungs[0].budget), 0, br.index))
    return Plan(brackets, first)


# ------------------------------------------------------------- running


def ranked(
    spec: Spec, jobs: Sequence[Job], outcomes: Mapping[tuple[int, int], Outcome]
) -> list[Job]:
    """The jobs with a metric value, best first (ties: lower trial number first)."""
    scored = [
        j
        for j in jobs
        if outcomes[j.key].value is not None
        and not math.isnan(outcomes[j.key].value or 0.0)
        and outcomes[j.key].state in (FINISHED, PROMOTED, PRUNED)
    ]
    sign = -1.0 if spec.maximize else 1.0
    return sorted(scored, key=lambda j: (sign * (outcomes[j.key].value or 0.0), j.trial))


def run_plan(
    spec: Spec,
    the_plan: Plan,
    evaluate: Evaluate,
    on_rung: Callable[[list[Job], list[Job]], None] | None = None,
) -> dict[tuple[int, int], Outcome]:
    """Run a plan: every job once for grid and random; rung by rung for
    successive halving and Hyperband, where the best floor(n_i / eta) by the
    metric go on to the next rung and the others are ``pruned``.

    ``on_rung(promoted, pruned)`` is told each rung's decision. Returns every
    outcome, by ``(trial, rung)``; it stops early (what ``evaluate`` did not
    run is absent) when ``evaluate`` returns fewer outcomes than jobs.
    """
    results: dict[tuple[int, int], Outcome] = {}
    if not the_plan.brackets:
        results.update(evaluate(the_plan.configurations))
        return results
    assert spec.budget is not None
    for br in the_plan.brackets:
        current = [j for j in the_plan.configurations if j.bracket == br.index]
        for i in range(len(br.rungs)):
            got = evaluate(current)
            results.update(got)
            if len(got) < len(current):
                return results  # stopped
            if i + 1 == len(br.rungs):
                break
            keep = br.rungs[i + 1].n
            best = ranked(spec, current, results)[:keep]
            chosen = {j.trial for j in best}
            pruned = [
                j for j in current if j.trial not in chosen and results[j.key].state == FINISHED
            ]
            for j in best:
                results[j.key].state = PROMOTED
            for j in pruned:
                results[j.key].state = PRUNED
            if on_rung is not None:
                on_rung(best, pruned)
            nxt = br.rungs[i + 1]
            current = [
                Job(j.trial, j.params, spec.budget.value(nxt.budget), i + 1, br.index)
                for j in sorted(best, key=lambda j: j.trial)
            ]
            if not current:
                break
    return results


def iter_brackets_text(the_plan: Plan) -> Iterator[str]:
    """``bracket 0: 81 x 1, 27 x 3, ...`` lines for ``--dry-run``."""
    for br in the_plan.brackets:
        rungs = ", ".join(f"{r.n} x {r.budget:g}" for r in br.rungs)
        yield f"bracket {br.index}: {rungs} (total budget {br.total_budget:g})"
