"""Runs the MLflow scripts of tests/func/mlflow_scripts under REAL MLflow, then dumps
what MLflow recorded, read back through MLflow's own client, as JSON.

    python mlflow_driver.py OUT.json WORKDIR LABEL=URI=SCRIPT,SCRIPT ...

Each LABEL section sets the tracking URI, runs its scripts (each in its own
directory, in the order given) and dumps every run of that store. A section
whose URI is a server URL waits for the server to answer first. Used by
tests/mlflow_world.py; the same scripts run through gitexp.mlflow there.
"""

from __future__ import annotations

import hashlib
import json
import os
import runpy
import sys
import tempfile
import time
import urllib.request

SCRIPTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "func", "mlflow_scripts")


def wait_http(url: str, timeout: float = 120) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"no MLflow server answers at {url}")


def files_of(root: str) -> dict[str, str]:
    out = {}
    for dirpath, _, names in os.walk(root):
        for name in names:
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            with open(full, "rb") as f:
                out[rel] = hashlib.sha256(f.read()).hexdigest()
    return out


def dump(uri: str) -> list[dict]:
    import mlflow
    from mlflow import MlflowClient

    client = MlflowClient(uri)
    runs = []
    for exp in client.search_experiments():
        for run in client.search_runs([exp.experiment_id], max_results=1000):
            rid = run.info.run_id
            metrics = {}
            for key in run.data.metrics:
                history = client.get_metric_history(rid, key)
                metrics[key] = sorted({(m.step, m.timestamp, m.value) for m in history})
            with tempfile.TemporaryDirectory() as tmp:
                artifacts = {}
                if client.list_artifacts(rid):
                    root = mlflow.artifacts.download_artifacts(
                        run_id=rid, artifact_path="", dst_path=tmp, tracking_uri=uri
                    )
                    artifacts = files_of(root)
            models = {}
            for m in client.search_logged_models(experiment_ids=[exp.experiment_id]):
                if m.source_run_id == rid:
                    with tempfile.TemporaryDirectory() as tmp:
                        where = mlflow.artifacts.download_artifacts(
                            artifact_uri=m.artifact_location, dst_path=tmp, tracking_uri=uri
                        )
                        models[m.name] = sorted(files_of(where))
            runs.append(
                {
                    "run_id": rid,
                    "experiment": exp.name,
                    "name": run.data.tags.get("mlflow.runName"),
                    "status": run.info.status,
                    "start_time": run.info.start_time,
                    "end_time": run.info.end_time,
                    "params": run.data.params,
                    "tags": run.data.tags,
                    "metrics": metrics,
                    "artifacts": artifacts,
                    "models": models,
                }
            )
    return runs


def main() -> None:
    out, work, *sections = sys.argv[1:]
    os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"
    import mlflow

    result = {}
    for section in sections:
        label, uri, scripts = section.split("=", 2)
        if uri.startswith("http"):
            wait_http(uri)
        mlflow.set_tracking_uri(uri)
        for script in scripts.split(","):
            where = os.path.join(work, label, script.removesuffix(".py"))
            os.makedirs(where)
            os.chdir(where)
            runpy.run_path(os.path.join(SCRIPTS, script), run_name="__main__")
        result[label] = dump(uri)
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()
