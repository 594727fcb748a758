"""The MLflow side of bench_vs_mlflow.py, run by the interpreter of bench/.mlflow-venv.

Usage: python mlflow_worker.py MODE 'JSON-ARGS'   (prints one JSON object)

Each mode takes ``uri`` (a ``file:`` or ``sqlite:`` tracking URI); the
experiment ``bench`` is created on first use. Imports only mlflow and the
standard library, so it runs in the MLflow virtualenv, not git-exp's.
"""

from __future__ import annotations

import json
import mmap
import os
import statistics
import sys
import time


def _mlflow(uri: str):
    import mlflow

    mlflow.set_tracking_uri(uri)
    mlflow.set_experiment("bench")
    return mlflow


def w1(uri: str, steps: int, cap_s: float) -> dict:
    """3 metrics x steps: one log_metric call per point (stopping at cap_s),
    then the same points through log_batch."""
    mlflow = _mlflow(uri)
    from mlflow.entities import Metric

    keys = ("loss", "acc", "lr")
    with mlflow.start_run():
        n = 0
        t0 = time.perf_counter()
        for step in range(steps):
            for k in keys:
                mlflow.log_metric(k, 1.0 / (step + 1), step=step)
                n += 1
            if time.perf_counter() - t0 > cap_s:
                break
        per_call_s = time.perf_counter() - t0
    client = mlflow.tracking.MlflowClient()
    with mlflow.start_run() as run:
        now = int(time.time() * 1000)
        points = [Metric(k, 1.0 / (s + 1), now, s) for s in range(steps) for k in keys]
        t0 = time.perf_counter()
        for i in range(0, len(points), 1000):  # MLflow's limit per batch
            client.log_batch(run.info.run_id, metrics=points[i : i + 1000])
        batched_s = time.perf_counter() - t0
    return {
        "per_call_points": n,
        "per_call_pps": n / per_call_s,
        "batched_points": len(points),
        "batched_pps": len(points) / batched_s,
    }


def w2(uri: str, n: int, artifact: str) -> dict:
    """Runs with 10 params, 3 metrics x 100 steps and one 1 KB artifact."""
    mlflow = _mlflow(uri)
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        with mlflow.start_run():
            mlflow.log_params({f"p{j}": j * i for j in range(10)})
            for step in range(100):
                mlflow.log_metrics(
                    {"loss": 1 / (step + 1), "acc": step / 100, "lr": 0.1}, step=step
                )
            mlflow.log_artifact(artifact)
        times.append(time.perf_counter() - t0)
    return {"median_ms": statistics.median(times) * 1000, "runs": n}


def w3_create(uri: str, start: int, n: int, total: int, cap_s: float) -> dict:
    """Runs start..n-1 with params lr, seed and last metrics loss, acc, as fast as
    the client API allows (create_run + log_batch + set_terminated), until cap_s."""
    mlflow = _mlflow(uri)
    from mlflow.entities import Metric, Param

    client = mlflow.tracking.MlflowClient()
    exp_id = mlflow.get_experiment_by_name("bench").experiment_id
    t0 = time.perf_counter()
    done = start
    for i in range(start, n):
        if time.perf_counter() - t0 > cap_s:
            break
        run = client.create_run(exp_id)
        now = int(time.time() * 1000)
        client.log_batch(
            run.info.run_id,
            metrics=[Metric("loss", 1 / (i + 1), now, 0), Metric("acc", i / total, now, 0)],
            params=[Param("lr", str(i / total)), Param("seed", str(i))],
        )
        client.set_terminated(run.info.run_id)
        done = i + 1
    return {"created": done, "seconds": time.perf_counter() - t0}


def ui_create(uri: str, runs_file: str, start: int, cap_s: float) -> dict:
    """The runs of ``runs_file`` (JSON lines of ``{"name", "params", "metrics", "status"}``,
    bench_ui.py writes it) from number ``start`` on, until ``cap_s``: the same runs the
    git-exp side of bench_ui.py lists."""
    mlflow = _mlflow(uri)
    from mlflow.entities import Metric, Param

    client = mlflow.tracking.MlflowClient()
    exp_id = mlflow.get_experiment_by_name("bench").experiment_id
    with open(runs_file) as f:
        runs = [json.loads(line) for line in f]
    t0 = time.perf_counter()
    done = start
    for i in range(start, len(runs)):
        if time.perf_counter() - t0 > cap_s:
            break
        r = runs[i]
        run = client.create_run(exp_id, run_name=r["name"])
        now = int(time.time() * 1000)
        client.log_batch(
            run.info.run_id,
            metrics=[Metric(k, v, now, 99) for k, v in r["metrics"].items()],
            params=[Param(k, str(v)) for k, v in r["params"].items()],
        )
        client.set_terminated(run.info.run_id, status=r["status"])
        done = i + 1
    return {"created": done, "seconds": time.perf_counter() - t0, "experiment_id": exp_id}


def w3_query(uri: str) -> dict:
    """What a fresh process pays to list every run with params and metrics, sorted."""
    mlflow = _mlflow(uri)
    df = mlflow.search_runs(order_by=["metrics.acc DESC"], max_results=100_000)
    return {"rows": len(df)}


def w4(uri: str, path: str, n: int) -> dict:
    """The same big file logged as an artifact of n runs."""
    mlflow = _mlflow(uri)
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        with mlflow.start_run():
            mlflow.log_artifact(path)
        times.append(time.perf_counter() - t0)
    return {"times": times}


def w6_child(uri: str, counter: str, run_file: str) -> dict:
    """Log a point every millisecond until killed; the count goes to a shared file."""
    mlflow = _mlflow(uri)
    with open(counter, "r+b") as f:
        shared = mmap.mmap(f.fileno(), 8)
    run = mlflow.start_run()
    with open(run_file, "w") as f:
        f.write(run.info.run_id)
    i = 0
    while True:
        mlflow.log_metric("x", float(i), step=i)
        i += 1
        shared[:8] = i.to_bytes(8, "little")
        time.sleep(0.001)


def w6_count(uri: str, run_id: str) -> dict:
    """Points kept and status of a run, read by a fresh process."""
    mlflow = _mlflow(uri)
    client = mlflow.tracking.MlflowClient()
    history = client.get_metric_history(run_id, "x")
    return {"kept": len(history), "status": client.get_run(run_id).info.status}


MODES = {
    "w1": w1,
    "w2": w2,
    "w3_create": w3_create,
    "w3_query": w3_query,
    "ui_create": ui_create,
    "w4": w4,
    "w6_child": w6_child,
    "w6_count": w6_count,
}


def main() -> None:
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("DO_NOT_TRACK", "true")
    mode, args = sys.argv[1], json.loads(sys.argv[2])
    result = MODES[mode](**args)
    sys.stdout.write("\n" + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
