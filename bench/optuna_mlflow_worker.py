"""The Optuna + MLflow side of bench_sweep.py, run by the interpreter of bench/.mlflow-venv.

Usage: python optuna_mlflow_worker.py 'JSON-ARGS'   (prints one JSON object)

Args: ``trials``, ``timeout`` (seconds: stop early, the figure is per trial),
``uri`` (a ``file:`` or ``sqlite:`` tracking URI, or null for Optuna alone).
The objective is the benchmark's trivial function; the sampler is Optuna's
RandomSampler, so what is measured is the study and the tracking, not TPE.
Imports only optuna, optuna-integration, mlflow and the standard library.
"""

from __future__ import annotations

import json
import sys
import time
import warnings


def main() -> None:
    args = json.loads(sys.argv[1])
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore")
    callbacks = []
    if args.get("uri"):
        from optuna_integration.mlflow import MLflowCallback

        callbacks.append(MLflowCallback(tracking_uri=args["uri"], metric_name="objective"))

    def objective(trial: optuna.Trial) -> float:
        x = trial.suggest_float("x", 0.0, 1.0)
        return (x - 0.3) ** 2

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    t0 = time.perf_counter()
    study.optimize(
        objective, n_trials=args["trials"], timeout=args.get("timeout"), callbacks=callbacks
    )
    took = time.perf_counter() - t0
    n = len(study.trials)
    versions = {"optuna": optuna.__version__}
    if args.get("uri"):
        import mlflow

        versions["mlflow"] = mlflow.__version__
    print(json.dumps({"trials": n, "seconds": took, "per_trial_ms": 1000 * took / n, **versions}))


if __name__ == "__main__":
    main()
