"""One session of real MLflow for the shim and importer tests (tests/func/test_mlflow_*).

``mlflow_world`` (session-scoped) starts a real ``mlflow server`` on 127.0.0.1 and,
while it boots, runs the scripts of tests/func/mlflow_scripts under real MLflow
(tests/mlflow_driver.py) into three stores: an ``mlruns`` directory (every
script), a ``sqlite:///`` database and the server (two scripts each); what
MLflow recorded is read back through MLflow's own client into ``real``.
Meanwhile the same scripts, with ``import mlflow`` changed to
``import gitexp.mlflow as mlflow``, run in a git repository (``shim_repo``).

MLflow missing: the tests skip, or fail under GITEXP_REQUIRE_SERVERS=1 (CI).
The server is stopped when the session ends.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from servers import free_port, require

TESTS = Path(__file__).resolve().parent
SCRIPTS = TESTS / "func" / "mlflow_scripts"
ORDER = ["basic.py", "client.py", "sklearn_model.py", "sklearn_autolog.py", "search.py"]
SMALL = ["basic.py", "sklearn_model.py"]
BIN = os.path.dirname(sys.executable)


@dataclass
class MlflowWorld:
    base: Path
    file_store: Path
    sqlite_uri: str
    server_url: str
    real: dict[str, list[dict[str, Any]]]  # store label -> runs as MLflow's client reads them
    shim_repo: Path
    env: dict[str, str]

    def real_by_name(self, label: str) -> dict[str, dict[str, Any]]:
        return {r["name"]: r for r in self.real[label]}


def _env(base: Path) -> dict[str, str]:
    home = base / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(
        "[user]\n\tname = Test User\n\temail = test@example.com\n[init]\n\tdefaultBranch = main\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "GITEXP_", "MLFLOW_"))}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        GIT_CONFIG_NOSYSTEM="1",
        TZ="UTC",
        PATH=BIN + os.pathsep + env.get("PATH", ""),
        MLFLOW_ALLOW_FILE_STORE="true",
        PYTHONWARNINGS="ignore",
        MLFLOW_DISABLE_TELEMETRY="true",
    )
    return env


SHIM_RUNNER = """
import os, runpy, sys
root = sys.argv[1]
for script in sys.argv[2:]:
    where = os.path.join(root, "work", os.path.basename(script)[:-3])
    os.makedirs(where)
    os.chdir(where)
    runpy.run_path(script, run_name="__main__")
"""


@pytest.fixture(scope="session")
def mlflow_world(tmp_path_factory) -> Any:
    require(importlib.util.find_spec("mlflow") is not None, "MLflow (pip install mlflow)")
    base = tmp_path_factory.mktemp("mlflow-world")
    env = _env(base)
    port = free_port()
    server_url = f"http://127.0.0.1:{port}"
    log = open(base / "server.log", "w")  # open for the session: the server writes to it
    server = subprocess.Popen(
        [
            os.path.join(BIN, "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backend-store-uri",
            f"file://{base}/server-store",
            "--artifacts-destination",
            str(base / "server-artifacts"),
            "--workers",
            "1",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=base,
    )
    try:
        sqlite_uri = f"sqlite:///{base}/mlflow.db"
        # two drivers side by side: the mlruns directory, and the database then the server
        # (which boots meanwhile)
        sections = {
            "file": [f"file=file://{base}/mlruns={','.join(ORDER)}"],
            "db": [f"sqlite={sqlite_uri}=basic.py", f"server={server_url}={','.join(SMALL)}"],
        }
        drivers = {
            name: subprocess.Popen(
                [
                    sys.executable,
                    str(TESTS / "mlflow_driver.py"),
                    str(base / f"real-{name}.json"),
                    str(base / f"real-{name}"),
                    *args,
                ],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                env=env,
            )
            for name, args in sections.items()
        }
        shim_repo = base / "shim"
        shim_repo.mkdir()
        for args in (["init", "-q"], ["commit", "-q", "--allow-empty", "-m", "start"]):
            subprocess.run(["git", *args], cwd=shim_repo, env=env, check=True)
        scripts = []
        for name in ORDER:
            text = (SCRIPTS / name).read_text()
            assert "\nimport mlflow\n" in text, name
            changed = base / "shim-scripts" / name
            changed.parent.mkdir(exist_ok=True)
            changed.write_text(
                text.replace("\nimport mlflow\n", "\nimport gitexp.mlflow as mlflow\n")
            )
            scripts.append(str(changed))
        shim = subprocess.run(
            [sys.executable, "-c", SHIM_RUNNER, str(shim_repo), *scripts],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert shim.returncode == 0, shim.stdout + shim.stderr
        real: dict[str, Any] = {}
        for name, driver in drivers.items():
            try:
                output, _ = driver.communicate(timeout=600)
            except subprocess.TimeoutExpired:
                driver.kill()
                output, _ = driver.communicate()
            if driver.returncode != 0:
                log.flush()
                server_log = (base / "server.log").read_text()[-3000:]
                pytest.fail(f"real MLflow failed:\n{output[-5000:]}\nserver:\n{server_log}")
            real.update(json.loads((base / f"real-{name}.json").read_text()))
        yield MlflowWorld(
            base=base,
            file_store=base / "mlruns",
            sqlite_uri=sqlite_uri,
            server_url=server_url,
            real=real,
            shim_repo=shim_repo,
            env=env,
        )
    finally:
        server.terminate()  # uvicorn drains for seconds on SIGTERM: a test server needs not
        try:
            server.wait(1)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def gitexp_runs(repo: Path) -> dict[str, dict[str, Any]]:
    """Every run of a repository, as the same data the driver dumps from MLflow."""
    from gitexp.interop import mlflow_names as names
    from gitexp.mlflow._session import _output_files
    from gitexp.store import ExpStore

    out: dict[str, dict[str, Any]] = {}
    with ExpStore(repo) as store:
        for ref in store.list_refs():
            rec = store.read(ref)
            table = store.read_metrics(rec)
            metrics: dict[str, list[list[Any]]] = {}
            for key, step, value, time in zip(
                table.column("key").to_pylist(),
                table.column("step").to_pylist(),
                table.column("value").to_pylist(),
                table.column("time").cast("int64").to_pylist(),
            ):
                metrics.setdefault(key, []).append([step, round(time / 1000), value])
            artifacts = {
                path: hashlib.sha256(store.cas.get_bytes(key)).hexdigest()
                for path, key, _, _ in _output_files(store, rec)
            }
            out[rec.name or rec.run_id] = {
                "run_id": rec.run_id,
                "experiment": rec.experiment,
                "name": rec.name,
                "status": names.mlflow_status(rec.status),
                "start_time": names.millis(rec.info.get("start_time")),
                "end_time": names.millis(rec.info.get("end_time")),
                "params": names.flat_params(rec.params),
                "tags": names.tag_pairs(rec.tags),
                "metrics": {k: sorted(v) for k, v in metrics.items()},
                "artifacts": artifacts,
                "origin": rec.info.get("origin"),
                "notes": [n["text"] for n in rec.info.get("notes") or []],
            }
    return out


def user_tags(tags: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in tags.items() if not k.startswith("mlflow.")}
