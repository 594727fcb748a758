"""Sweeps: what the driver costs per trial, and what successive halving buys.

Usage:
    python bench/bench_sweep.py                # everything (a few minutes; MLflow's venv made once)
    python bench/bench_sweep.py --quick        # small sizes, a smoke run
    python bench/bench_sweep.py --skip-mlflow

git-exp runs in this interpreter (and ``git exp`` from PATH). Optuna with its
MLflow callback runs in MLflow's own virtualenv, ``bench/.mlflow-venv`` (the
one bench_vs_mlflow.py makes; this script adds optuna and optuna-integration
to it on first use), through ``bench/optuna_mlflow_worker.py``.

Parts:
  S1  the driver's overhead per command trial: ``git exp sweep`` of N trials of
      ``true`` (random search, -j 1). Per trial: the slope of the sweep's wall
      time (and of its CPU time) between two sizes, minus what spawning ``true``
      costs by itself (measured here). Goal: <= 20 ms.
  S2  1,000 trials of a trivial function through ``gitexp.sweep`` (random search).
  S3  the same function through Optuna (RandomSampler), 1,000 trials: the study
      alone, with ``gitexp.OptunaCallback``, and with Optuna's ``MLflowCallback``
      (MLflow's sqlite and file stores); per trial, and the tracking's share.
  S4  -j 2 against -j 1 on 8 trials that sleep 1 s: the speed-up (ideal 2x), also
      without the sweep's fixed cost (a sweep of one trial that does not sleep).
  S5  a synthetic objective with a hidden optimum, over several seeds:
      successive halving (81 configurations, budget 1..81, eta 3) against grid
      and random search at the full budget, on the same total budget: the
      budget each spends and the true value of the best trial it reports.

Prints a table; writes the figures as JSON to bench/results/.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from benchlib import IDENTITY, make_repo  # noqa: E402

RESULTS = HERE / "results"
WORKER = HERE / "optuna_mlflow_worker.py"


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def env() -> dict[str, str]:
    return {**os.environ, **IDENTITY, "GIT_CONFIG_NOSYSTEM": "1"}


def child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def timed_sweep(repo: str, spec: dict[str, Any], *args: str) -> tuple[float, float]:
    """(wall seconds, CPU seconds of the driver and its trials) of one ``git exp sweep``."""
    path = os.path.join(repo, "sweep.json")
    with open(path, "w") as f:
        json.dump(spec, f)
    cpu0, t0 = child_cpu(), time.perf_counter()
    proc = subprocess.run(
        ["git", "exp", "sweep", "sweep.json", "-q", *args],
        cwd=repo,
        env=env(),
        capture_output=True,
        text=True,
    )
    wall, cpu = time.perf_counter() - t0, child_cpu() - cpu0
    if proc.returncode != 0:
        raise RuntimeError(f"git exp sweep failed: {proc.stderr[-2000:]}")
    return wall, cpu


def spawn_cost(n: int) -> tuple[float, float]:
    """(wall, CPU) per ``true`` spawned and waited for by Python, as the driver does."""
    cpu0, t0 = child_cpu(), time.perf_counter()
    for _ in range(n):
        subprocess.run(["true"], capture_output=True)
    return (time.perf_counter() - t0) / n, (child_cpu() - cpu0) / n


# ------------------------------------------------------------------ S1, S4


def run_command_cost(tmp: Path, n: int, round_: int) -> tuple[float, float]:
    """(wall, CPU) per ``true`` recorded as a run by ``run_command`` in this process,
    the way a trial is, without a sweep: what recording a run costs by itself."""
    from gitexp.capture import code_state
    from gitexp.runner import run_command
    from gitexp.store import ExpStore

    repo = str(tmp / f"s1-runs-{round_}")
    make_repo(repo)
    old = os.environ.copy()
    os.environ.update(IDENTITY)
    try:
        with ExpStore(repo) as store:
            code = code_state(store.repo, store.cas)
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        c0 = child_cpu() + r0.ru_utime + r0.ru_stime
        t0 = time.perf_counter()
        for i in range(n):
            run_command(["true", str(i)], repo=repo, experiment="s1-runs", code=code, cwd=repo)
        wall = time.perf_counter() - t0
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = child_cpu() + r1.ru_utime + r1.ru_stime - c0
    finally:
        os.environ.clear()
        os.environ.update(old)
    return wall / n, cpu / n


def s1_overhead(tmp: Path, sizes: tuple[int, int], repeats: int) -> dict[str, Any]:
    out: dict[str, Any] = {"sizes": list(sizes)}
    repo = str(tmp / "s1")
    make_repo(repo)
    walls: dict[int, list[float]] = {n: [] for n in sizes}
    cpus: dict[int, list[float]] = {n: [] for n in sizes}
    base_wall: list[float] = []
    base_cpu: list[float] = []
    for r in range(repeats):  # interleaved, so that a change of load hits all of them
        w, c = run_command_cost(tmp, sizes[1], r)
        base_wall.append(w)
        base_cpu.append(c)
        for n in sizes:
            spec = {
                "experiment": f"s1-{n}",
                "command": "true {x}",
                "method": "random",
                "trials": n,
                "parameters": {"x": {"distribution": "uniform", "min": 0, "max": 1}},
            }
            w, c = timed_sweep(repo, spec)
            walls[n].append(w)
            cpus[n].append(c)
    a, b = sizes
    wall_slope = (statistics.median(walls[b]) - statistics.median(walls[a])) / (b - a)
    cpu_slope = (statistics.median(cpus[b]) - statistics.median(cpus[a])) / (b - a)
    spawn_wall, spawn_cpu = spawn_cost(200)
    runs_wall, runs_cpu = statistics.median(base_wall), statistics.median(base_cpu)
    out.update(
        wall_per_trial_ms=1000 * wall_slope,
        cpu_per_trial_ms=1000 * cpu_slope,
        spawn_wall_ms=1000 * spawn_wall,
        spawn_cpu_ms=1000 * spawn_cpu,
        overhead_wall_ms=1000 * (wall_slope - spawn_wall),
        overhead_cpu_ms=1000 * (cpu_slope - spawn_cpu),
        fixed_s=statistics.median(walls[a]) - a * wall_slope,
        run_wall_ms=1000 * runs_wall,
        run_cpu_ms=1000 * runs_cpu,
        driver_wall_ms=1000 * (wall_slope - runs_wall),
        driver_cpu_ms=1000 * (cpu_slope - runs_cpu),
        walls={str(k): v for k, v in walls.items()},
    )
    return out


def s4_parallel(tmp: Path, trials: int, sleep: float) -> dict[str, Any]:
    repo = str(tmp / "s4")
    make_repo(repo)
    spec = {
        "experiment": "s4",
        "command": "sleep {t}",
        "method": "grid",
        "parameters": {"t": sleep, "i": {"values": list(range(trials))}},
    }
    # the fixed cost of a sweep (the process, the record): one trial that does not sleep
    fixed, _ = timed_sweep(repo, {**spec, "parameters": {"t": 0, "i": {"values": [0]}}})
    j1, _ = timed_sweep(repo, spec, "-j", "1")
    j2, _ = timed_sweep(repo, spec, "-j", "2")
    return {
        "trials": trials,
        "sleep_s": sleep,
        "fixed_s": fixed,
        "j1_s": j1,
        "j2_s": j2,
        "speedup": j1 / j2,
        "speedup_trials": (j1 - fixed) / max(1e-9, j2 - fixed),
    }


# ------------------------------------------------------------------ S2, S3


def s2_function(tmp: Path, trials: int) -> dict[str, Any]:
    import gitexp

    repo = tmp / "s2"
    make_repo(str(repo))

    def fn(params: dict[str, Any], budget: Any, run: Any) -> float:
        return (params["x"] - 0.3) ** 2

    t0 = time.perf_counter()
    best = gitexp.sweep(
        fn,
        {"x": {"distribution": "uniform", "min": 0, "max": 1}},
        method="random",
        metric={"name": "objective", "goal": "minimize"},
        trials=trials,
        repo=repo,
        experiment="s2",
    )
    took = time.perf_counter() - t0
    assert best is not None
    # baseline: the same runs recorded with start_run, no sweep
    t0 = time.perf_counter()
    for i in range(trials):
        with gitexp.start_run(experiment="s2-runs", params={"x": i / trials}, repo=repo) as run:
            run.log_summary({"objective": (i / trials - 0.3) ** 2})
    runs = time.perf_counter() - t0
    return {
        "trials": trials,
        "seconds": took,
        "per_trial_ms": 1000 * took / trials,
        "start_run_ms": 1000 * runs / trials,
    }


def s3_optuna_here(tmp: Path, trials: int) -> dict[str, Any]:
    import optuna

    import gitexp

    optuna.logging.set_verbosity(optuna.logging.WARNING)

    def objective(trial: Any) -> float:
        return (trial.suggest_float("x", 0.0, 1.0) - 0.3) ** 2

    out: dict[str, Any] = {"optuna": optuna.__version__}
    for label, with_cb in (("alone", False), ("gitexp", True)):
        repo = tmp / f"s3-{label}"
        make_repo(str(repo))
        callbacks = [gitexp.OptunaCallback(metric="objective", repo=repo)] if with_cb else []
        study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
        t0 = time.perf_counter()
        study.optimize(objective, n_trials=trials, callbacks=callbacks)
        took = time.perf_counter() - t0
        out[label] = {"trials": trials, "seconds": took, "per_trial_ms": 1000 * took / trials}
    return out


def ensure_mlflow_optuna() -> str:
    """bench/.mlflow-venv with mlflow (bench_vs_mlflow.py's), optuna and optuna-integration."""
    from bench_vs_mlflow import VENV, MLflow

    MLflow.ensure()
    py = str(VENV / "bin" / "python")
    probe = [py, "-c", "import optuna, optuna_integration.mlflow"]
    if subprocess.run(probe, capture_output=True).returncode != 0:
        log("installing optuna and optuna-integration into bench/.mlflow-venv (once)")
        subprocess.run(
            [py, "-m", "pip", "install", "--quiet", "optuna", "optuna-integration"], check=True
        )
    return py


def s3_mlflow(tmp: Path, trials: int, timeout: float) -> dict[str, Any]:
    from bench_vs_mlflow import MLFLOW_ENV

    py = ensure_mlflow_optuna()
    out: dict[str, Any] = {}
    cases = {
        "alone": None,
        "sqlite": f"sqlite:///{tmp / 's3-mlflow' / 'mlflow.db'}",
        "file": (tmp / "s3-mlflow" / "mlruns").as_uri(),
    }
    (tmp / "s3-mlflow").mkdir(exist_ok=True)
    for label, uri in cases.items():
        args = {"trials": trials, "timeout": timeout, "uri": uri}
        proc = subprocess.run(
            [py, str(WORKER), json.dumps(args)],
            capture_output=True,
            text=True,
            env={**os.environ, **MLFLOW_ENV},
            cwd=tmp / "s3-mlflow",
        )
        if proc.returncode != 0:
            raise RuntimeError(f"optuna+mlflow {label} failed: {proc.stderr[-3000:]}")
        out[label] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


# ------------------------------------------------------------------ S5


def quality(x: float, y: float, opt: tuple[float, float]) -> float:
    """The hidden objective: 1 at the optimum, falling off around it."""
    return math.exp(-((x - opt[0]) ** 2 + (y - opt[1]) ** 2) / 0.08)


def s5_search(tmp: Path, seeds: int) -> dict[str, Any]:
    import gitexp

    budget = {"param": "epochs", "min": 1, "max": 81, "eta": 3}
    space = {
        "x": {"distribution": "uniform", "min": 0, "max": 1},
        "y": {"distribution": "uniform", "min": 0, "max": 1},
    }
    grid = {"x": {"values": [0.25, 0.75]}, "y": {"values": [0.25, 0.75]}}
    results: dict[str, list[dict[str, Any]]] = {"successive_halving": [], "random": [], "grid": []}
    repo = tmp / "s5"
    make_repo(str(repo))
    for seed in range(seeds):
        rng = random.Random(f"hidden/{seed}")
        opt = (rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9))
        spent = {"n": 0.0, "runs": 0}

        def fn(params: dict[str, Any], epochs: Any, run: Any, opt: Any = opt, spent: Any = spent):
            # what training for `epochs` shows of the configuration's quality: the
            # same curve for everyone, and noise that shrinks as the budget grows
            e = float(epochs)
            noise = random.Random(f"{params['x']}/{params['y']}/{e}").gauss(0, 0.15)
            spent["n"] += e
            spent["runs"] += 1
            return quality(params["x"], params["y"], opt) * (1 - math.exp(-e / 10)) + noise / e**0.5

        for method, sp, trials in (
            ("successive_halving", space, 81),
            ("random", space, 5),  # 5 x 81 = 405, the budget successive halving spends
            ("grid", grid, None),  # 4 x 81 = 324 (the grid that fits)
        ):
            spent["n"], spent["runs"] = 0.0, 0
            best = gitexp.sweep(
                fn,
                sp,
                method=method,
                metric="objective",
                budget=budget,
                trials=trials,
                seed=seed,
                repo=repo,
                experiment=f"s5-{method}",
            )
            assert best is not None
            q = quality(best["params"]["x"], best["params"]["y"], opt)
            results[method].append(
                {"seed": seed, "budget": spent["n"], "runs": spent["runs"], "best_true": q}
            )
    summary = {}
    for method, rows in results.items():
        summary[method] = {
            "budget": statistics.mean(r["budget"] for r in rows),
            "runs": statistics.mean(r["runs"] for r in rows),
            "best_true_mean": statistics.mean(r["best_true"] for r in rows),
            "best_true_median": statistics.median(r["best_true"] for r in rows),
            "best_true_min": min(r["best_true"] for r in rows),
        }
    return {"seeds": seeds, "summary": summary, "rows": results}


# ------------------------------------------------------------------ main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    ap.add_argument("--skip-mlflow", action="store_true", help="no Optuna + MLflow figures")
    ap.add_argument("--only", default=None, metavar="S1,S3,...", help="run only these parts")
    args = ap.parse_args()
    only = {p.strip().upper() for p in args.only.split(",")} if args.only else None
    quick = args.quick
    figures: dict[str, Any] = {"when": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}
    figures["load_before"] = os.getloadavg()

    def want(part: str) -> bool:
        return only is None or part in only

    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as d:
        tmp = Path(d)
        if want("S1"):
            log("S1: driver overhead per command trial")
            figures["S1"] = s1_overhead(tmp, (5, 20) if quick else (10, 60), 1 if quick else 3)
        if want("S2"):
            n = 100 if quick else 1000
            log(f"S2: {n} trials of a trivial function through gitexp.sweep")
            figures["S2"] = s2_function(tmp, n)
        if want("S3"):
            n = 100 if quick else 1000
            log(f"S3: {n} Optuna trials, alone and with gitexp.OptunaCallback")
            figures["S3"] = s3_optuna_here(tmp, n)
            if not args.skip_mlflow:
                log(f"S3: {n} Optuna trials with MLflowCallback (bench/.mlflow-venv)")
                figures["S3-mlflow"] = s3_mlflow(tmp, n, 30.0 if quick else 120.0)
        if want("S4"):
            log("S4: -j 2 against -j 1 on sleeping trials")
            figures["S4"] = s4_parallel(tmp, 4 if quick else 8, 0.5 if quick else 1.0)
        if want("S5"):
            seeds = 3 if quick else 10
            log(f"S5: successive halving against grid and random, {seeds} seeds")
            figures["S5"] = s5_search(tmp, seeds)
    figures["load_after"] = os.getloadavg()
    print(report(figures))
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"sweep-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(figures, indent=2, default=str))
    log(f"figures written to {path}")
    return 0


def report(f: dict[str, Any]) -> str:
    lines = [f"bench_sweep.py, {f['when']}; load average before {f['load_before'][0]:.2f}"]
    if "S1" in f:
        s = f["S1"]
        lines += [
            "",
            f"S1 driver overhead per command trial (`true`, sizes {s['sizes']}, slope of medians):",
            f"  wall per trial            {s['wall_per_trial_ms']:8.1f} ms",
            f"  of which spawning `true`  {s['spawn_wall_ms']:8.1f} ms",
            f"  overhead (goal <= 20 ms)  {s['overhead_wall_ms']:8.1f} ms",
            f"  CPU per trial             {s['cpu_per_trial_ms']:8.1f} ms "
            f"(overhead {s['overhead_cpu_ms']:.1f} ms)",
            f"  baseline: `true` recorded as a run by run_command, no sweep: "
            f"{s['run_wall_ms']:.1f} ms wall, {s['run_cpu_ms']:.1f} ms CPU",
            f"  the sweep's own share     {s['driver_wall_ms']:8.1f} ms wall, "
            f"{s['driver_cpu_ms']:.1f} ms CPU",
            f"  fixed cost of a sweep     {s['fixed_s']:8.2f} s",
        ]
    if "S2" in f:
        s = f["S2"]
        lines += [
            "",
            f"S2 gitexp.sweep, {s['trials']} trials of a trivial function: "
            f"{s['seconds']:.2f} s, {s['per_trial_ms']:.1f} ms per trial",
            f"  baseline: the same runs through start_run, no sweep: {s['start_run_ms']:.1f} ms "
            f"per run (the sweep's own share: {s['per_trial_ms'] - s['start_run_ms']:.1f} ms)",
        ]
    if "S3" in f:
        s = f["S3"]
        a, g = s["alone"]["per_trial_ms"], s["gitexp"]["per_trial_ms"]
        lines += [
            "",
            f"S3 Optuna {s['optuna']} (RandomSampler), {s['alone']['trials']} trials, "
            "ms per trial:",
            f"  Optuna alone                      {a:8.2f}",
            f"  + gitexp.OptunaCallback           {g:8.2f}   (tracking: {g - a:.2f} ms)",
        ]
        m = f.get("S3-mlflow")
        if m:
            base = m["alone"]["per_trial_ms"]
            lines.append(f"  Optuna {m['alone']['optuna']} alone (MLflow's venv)    {base:8.2f}")
            for label in ("sqlite", "file"):
                r = m[label]
                lines.append(
                    f"  + MLflowCallback, {label:<6} store     {r['per_trial_ms']:8.2f}   "
                    f"(tracking: {r['per_trial_ms'] - base:.2f} ms; {r['trials']} trials, "
                    f"MLflow {r['mlflow']})"
                )
            for label in ("sqlite", "file"):
                ratio = (g - a) / (m[label]["per_trial_ms"] - base)
                lines.append(f"  git-exp's tracking / MLflow's ({label}): {ratio:.3f}")
    if "S4" in f:
        s = f["S4"]
        lines += [
            "",
            f"S4 {s['trials']} trials sleeping {s['sleep_s']} s: -j 1 {s['j1_s']:.2f} s, "
            f"-j 2 {s['j2_s']:.2f} s, speed-up {s['speedup']:.2f}x (ideal 2x); without the "
            f"sweep's fixed {s['fixed_s']:.2f} s: {s['speedup_trials']:.2f}x",
        ]
    if "S5" in f:
        s = f["S5"]
        lines += [
            "",
            f"S5 hidden optimum, {s['seeds']} seeds "
            "(true value of the reported best, 1 = optimum):",
            "  method               budget  runs  mean   median  worst",
        ]
        for method, r in s["summary"].items():
            lines.append(
                f"  {method:<20} {r['budget']:6.0f} {r['runs']:5.0f}  {r['best_true_mean']:.3f}  "
                f"{r['best_true_median']:.3f}   {r['best_true_min']:.3f}"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
