"""What the fluent API and ``MlflowClient`` share: the repository they record
into, the current experiment, the runs this process has open (by run id), the
fluent stack of active runs, and every operation as a call on git-exp's own API
(``gitexp.start_run``, ``Run.log_*``, the leaderboard, the CAS).

MLflow's names come from :mod:`gitexp.interop.mlflow_names`; MLflow filter
strings are translated by :mod:`gitexp.interop.mlflow_filter`.
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from gitexp import records as fmt
from gitexp.errors import GitExpError, RunStateError, UnsupportedCall, UsageError
from gitexp.interop import mlflow_names as names
from gitexp.mlflow.entities import (
    ActiveRun,
    Experiment,
    FileInfo,
    Metric,
    Run,
    RunData,
    RunInfo,
)
from gitexp.tracking import Run as GitExpRun

ENV_EXPERIMENT_NAME = "MLFLOW_EXPERIMENT_NAME"
ENV_EXPERIMENT_ID = "MLFLOW_EXPERIMENT_ID"


@dataclass
class OpenRun:
    """A run this process records through the shim."""

    run: GitExpRun
    name: str | None
    tags: dict[str, str] = field(default_factory=dict)  # MLflow key -> value, as tagged
    started: int | None = None  # milliseconds since the epoch


class Session:
    """The shim's state in this process."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.repo: str | None = None
        self.experiment: str | None = None
        self.created: set[str] = set()  # experiments named in this process
        self.open: dict[str, OpenRun] = {}
        self.fluent: list[str] = []  # run ids, innermost last
        self.last_run: str | None = None

    # ------------------------------------------------------------ where
    def repo_path(self) -> str:
        from gitexp.tracking import ENV_REPO, ENV_RUN_REF

        if self.repo is not None:
            return self.repo
        if os.environ.get(ENV_RUN_REF) and os.environ.get(ENV_REPO):
            return os.environ[ENV_REPO]
        return "."

    def set_tracking_uri(self, uri: str | os.PathLike[str]) -> None:
        text = os.fspath(uri)
        path = text
        if text.startswith("file:"):
            path = urllib.parse.unquote(urllib.parse.urlparse(text).path)
        elif "://" in text or text.startswith(("sqlite:", "databricks", "postgresql", "mysql")):
            raise UnsupportedCall(
                f"mlflow.set_tracking_uri({text!r})",
                "git-exp records into the git repository; give a path inside one, or drop the call",
            )
        probe = os.path.abspath(path)
        while not os.path.exists(probe) and os.path.dirname(probe) != probe:
            probe = os.path.dirname(probe)
        from gitexp.git import open_repo  # NotARepository when it is none

        open_repo(probe).close()
        self.repo = probe

    def tracking_uri(self) -> str:
        from gitexp.git import open_repo

        with open_repo(self.repo_path()) as repo:
            where = repo.work_tree or repo.git_dir
        return "file://" + os.path.abspath(where)

    # ------------------------------------------------------- experiments
    def set_experiment(self, name: str | None, experiment_id: str | None) -> Experiment:
        chosen = experiment_id if experiment_id is not None else name
        if chosen is None:
            raise UsageError("mlflow.set_experiment needs experiment_name or experiment_id")
        exp = names.experiment_of(str(chosen))
        fmt.validate_experiment(exp)
        with self.lock:
            self.experiment = exp
            self.created.add(exp)
        return experiment_entity(exp)

    def create_experiment(self, name: str) -> str:
        exp = names.experiment_of(name)
        fmt.validate_experiment(exp)
        with self.lock:
            self.created.add(exp)
        return exp

    def current_experiment(self) -> str | None:
        if self.experiment is not None:
            return self.experiment
        for var in (ENV_EXPERIMENT_NAME, ENV_EXPERIMENT_ID):
            if os.environ.get(var):
                return names.experiment_of(os.environ[var])
        return None

    def experiments(self) -> list[str]:
        from gitexp.catalog import indexed_store
        from gitexp.leaderboard import select

        with indexed_store(self.repo_path()) as store:
            table = select(store)
            found = set(table.table.column("experiment").to_pylist())
        return sorted(found | self.created)

    # -------------------------------------------------------------- runs
    def start(
        self,
        run_id: str | None = None,
        experiment_id: str | None = None,
        run_name: str | None = None,
        nested: bool = False,
        parent_run_id: str | None = None,
        tags: Mapping[str, Any] | None = None,
        description: str | None = None,
        fluent: bool = True,
        call: str = "mlflow.start_run",
    ) -> OpenRun:
        import gitexp

        with self.lock:
            if fluent and self.fluent and not nested and run_id is None:
                raise UsageError(
                    f"run {self.fluent[-1]} is already active: end it with mlflow.end_run(), "
                    "or start a nested run with start_run(nested=True)"
                )
            if run_id is not None:
                return self._resume(run_id, fluent, call)
            tag_values = {str(k): names.param_text(v) for k, v in (tags or {}).items()}
            name = run_name or tag_values.pop(names.RUN_NAME_TAG, None)
            tag_values.pop(names.RUN_NAME_TAG, None)
            note = description or tag_values.pop(names.NOTE_TAG, None)
            parent = parent_run_id or (
                self.fluent[-1] if fluent and nested and self.fluent else None
            )
            if parent:
                tag_values[names.PARENT_RUN_TAG] = parent
            tag_list = [_tag(k, v, call) for k, v in tag_values.items()]
            experiment = names.experiment_of(experiment_id) if experiment_id else None
            run = gitexp.start_run(
                experiment=experiment or self.current_experiment(),
                name=name,
                tags=tag_list,
                repo=self.repo_path(),
            )
            opened = OpenRun(run, name, dict(tag_values), int(time.time() * 1000))
            if note:
                run.note(note)
            self.open[run.id] = opened
            if fluent:
                self.fluent.append(run.id)
            return opened

    def _resume(self, run_id: str, fluent: bool, call: str) -> OpenRun:
        from gitexp.catalog import indexed_store
        from gitexp.tracking import resume_run

        if run_id in self.open:
            raise UsageError(f"{call}(run_id={run_id!r}): the run is already active")
        with indexed_store(self.repo_path()) as store:
            rec = store.read_settled(run_id)
        run = resume_run(str(rec.ref), self.repo_path())
        opened = OpenRun(
            run, rec.name, names.tag_pairs(rec.tags), names.millis(rec.info.get("start_time"))
        )
        self.open[run.id] = opened
        if fluent:
            self.fluent.append(run.id)
        return opened

    def active(self, start: bool = True) -> OpenRun:
        """The innermost fluent run; MLflow starts one when there is none."""
        with self.lock:
            if self.fluent:
                return self.open[self.fluent[-1]]
            if not start:
                raise RunStateError("no active run: call mlflow.start_run() first")
            return self.start()

    def target(self, run_id: str | None, call: str) -> OpenRun:
        """The run a logging call writes: ``run_id`` when given, else the active one."""
        if run_id is None:
            return self.active()
        with self.lock:
            opened = self.open.get(run_id)
        if opened is None:
            raise RunStateError(
                f"{call}: run {run_id} is not being recorded by this process "
                "(mlflow.start_run(run_id=...) resumes it)"
            )
        return opened

    def end(
        self,
        run_id: str,
        status: str = "FINISHED",
        exc: tuple[Any, Any, Any] | None = None,
    ) -> None:
        with self.lock:
            opened = self.open.pop(run_id, None)
            if run_id in self.fluent:
                self.fluent.remove(run_id)
            self.last_run = run_id
        if opened is None:
            return
        if exc is not None and exc[0] is not None:
            opened.run.__exit__(exc[0], exc[1], exc[2])
            return
        final = names.END_STATUS.get(str(status).upper())
        if final is None:
            raise UsageError(
                f"mlflow.end_run: unknown status {status!r} (FINISHED, FAILED, KILLED)"
            )
        opened.run.finish(final)

    def end_fluent(self, status: str = "FINISHED") -> None:
        with self.lock:
            run_id = self.fluent[-1] if self.fluent else None
        if run_id is not None:
            self.end(run_id, status)

    def close_active(
        self,
        run_id: str,
        tp: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """``with mlflow.start_run():`` leaving its block."""
        if run_id not in self.open:
            return
        self.end(run_id, exc=(tp, value, tb) if tp is not None else None)

    def active_entity(self, opened: OpenRun) -> ActiveRun:
        return ActiveRun(self.entity_of_open(opened), self.close_active)

    def entity_of_open(self, opened: OpenRun) -> Run:
        run = opened.run
        tags = dict(opened.tags)
        if opened.name:
            tags[names.RUN_NAME_TAG] = opened.name
        return Run(
            RunInfo(
                run_id=run.id,
                experiment_id=run.experiment,
                run_name=opened.name,
                status="RUNNING",
                start_time=opened.started,
                end_time=None,
                artifact_uri=names.run_uri(run.id),
            ),
            RunData(metrics={}, params=names.flat_params(run.params), tags=tags),
        )

    # ------------------------------------------------------------- logging
    def log_params(self, run_id: str | None, params: Mapping[str, Any], call: str) -> None:
        opened = self.target(run_id, call)
        if not isinstance(params, Mapping):
            raise UsageError(f"{call} takes a dict of param name to value")
        have = names.flat_params(opened.run.params)
        new: dict[str, Any] = {}
        for key, value in params.items():
            key = str(key)
            stored = names.stored_param(value)
            old = have.get(key)
            if old is not None and old != names.param_text(stored):
                raise UsageError(
                    f"{call}: param {key!r} was logged as {old!r} already; MLflow params "
                    f"do not change (new value {names.param_text(stored)!r})"
                )
            new[key] = stored
        opened.run.log_params(new)

    def log_metric(
        self,
        run_id: str | None,
        key: str,
        value: Any,
        step: int | None,
        timestamp: int | None,
        call: str,
    ) -> None:
        opened = self.target(run_id, call)
        at = None if timestamp is None else float(timestamp) / 1000.0
        opened.run.log_metric(key, _number(value, key), 0 if step is None else step, timestamp=at)

    def log_metrics(
        self,
        run_id: str | None,
        metrics: Mapping[str, Any],
        step: int | None,
        timestamp: int | None,
        call: str,
    ) -> None:
        opened = self.target(run_id, call)
        if not isinstance(metrics, Mapping):
            raise UsageError(f"{call} takes a dict of metric name to value")
        at = None if timestamp is None else float(timestamp) / 1000.0
        for key, value in metrics.items():
            opened.run.log_metric(
                key, _number(value, key), 0 if step is None else step, timestamp=at
            )

    def set_tags(self, run_id: str | None, tags: Mapping[str, Any], call: str) -> None:
        if run_id is not None and run_id not in self.open:
            self._tag_recorded(run_id, tags, call)
            return
        opened = self.target(run_id, call)
        for key, raw in tags.items():
            key, value = str(key), names.param_text(raw)
            if key == names.NOTE_TAG:
                opened.run.note(value)
                opened.tags[key] = value
                continue
            if key == names.RUN_NAME_TAG:
                if value != opened.name:
                    raise UnsupportedCall(
                        f"{call}({names.RUN_NAME_TAG!r}, ...) after the run started",
                        "name the run in start_run(run_name=...)",
                    )
                continue
            text = _tag(key, value, call)
            old = opened.tags.get(key)
            if old is not None and old != value:
                opened.run.remove_tags(names.tag_text(key, old))
            opened.run.set_tags(text)
            opened.tags[key] = value

    def _tag_recorded(self, run_id: str, tags: Mapping[str, Any], call: str) -> None:
        """Tags on a run this process does not record: a commit on its ref."""
        from gitexp.catalog import indexed_store
        from gitexp.maintenance import edit

        with indexed_store(self.repo_path()) as store:
            rec = store.read_settled(run_id)
            have = names.tag_pairs(rec.tags)
            add, remove = [], []
            for key, raw in tags.items():
                key, value = str(key), names.param_text(raw)
                if key in have and have[key] != value:
                    remove.append(names.tag_text(key, have[key]))
                add.append(_tag(key, value, call))
            edit(store, str(rec.ref), add_tags=add, remove_tags=remove)

    def delete_tag(self, run_id: str | None, key: str, call: str) -> None:
        if run_id is not None and run_id not in self.open:
            from gitexp.catalog import indexed_store
            from gitexp.maintenance import edit

            with indexed_store(self.repo_path()) as store:
                rec = store.read_settled(run_id)
                have = names.tag_pairs(rec.tags)
                if key not in have:
                    raise UsageError(f"{call}: run {run_id} has no tag {key!r}")
                edit(store, str(rec.ref), remove_tags=[names.tag_text(key, have[key])])
            return
        opened = self.target(run_id, call)
        if key not in opened.tags:
            raise UsageError(f"{call}: the run has no tag {key!r}")
        opened.run.remove_tags(names.tag_text(key, opened.tags.pop(key)))

    def log_artifact(
        self, run_id: str | None, local_path: str, artifact_path: str | None, call: str
    ) -> None:
        opened = self.target(run_id, call)
        path = os.fspath(local_path)
        base = os.path.basename(os.path.normpath(os.path.abspath(path)))
        name = _join(artifact_path, base)
        if os.path.isdir(path):
            self._log_tree(opened, path, name)
        else:
            opened.run.log_artifact(path, name=name)

    def log_artifacts(
        self, run_id: str | None, local_dir: str, artifact_path: str | None, call: str
    ) -> None:
        opened = self.target(run_id, call)
        if not os.path.isdir(local_dir):
            raise UsageError(f"{call}: {local_dir} is not a directory")
        self._log_tree(opened, os.fspath(local_dir), artifact_path or "")

    def _log_tree(self, opened: OpenRun, directory: str, prefix: str) -> None:
        """Each file under ``directory`` as its own artifact, at ``prefix/<path>``
        (MLflow's layout: later files land beside earlier ones, as in MLflow)."""
        from gitexp.capture import walk_files

        walk = walk_files(directory)
        for rel, full in walk.files:
            opened.run.log_artifact(full, name=_join(prefix, rel))

    def log_file(self, run_id: str | None, artifact_file: str, write: Any, call: str) -> None:
        """Write a file with ``write(path)`` in a temporary directory, then log it
        as ``artifact_file``."""
        opened = self.target(run_id, call)
        name = fmt.normalize_artifact_path(artifact_file)
        with tempfile.TemporaryDirectory(prefix="gitexp-mlflow-") as tmp:
            path = os.path.join(tmp, os.path.basename(name))
            write(path)
            opened.run.log_artifact(path, name=name)

    # ------------------------------------------------------------- reading
    def sync(self, run_ids: Iterable[str] | None = None) -> None:
        """Commit what open runs logged so far, so that reading finds it."""
        with self.lock:
            opened = (
                list(self.open.values())
                if run_ids is None
                else [self.open[r] for r in run_ids if r in self.open]
            )
        for o in opened:
            o.run.checkpoint()

    def record(self, run_id: str) -> Any:
        from gitexp.catalog import indexed_store

        self.sync([run_id])
        with indexed_store(self.repo_path()) as store:
            return store.read_settled(run_id)

    def get_run(self, run_id: str) -> Run:
        return run_entity(self.record(run_id))

    def metric_history(self, run_id: str, key: str) -> list[Metric]:
        from gitexp.catalog import indexed_store
        from gitexp.metrics import key_arrays

        self.sync([run_id])
        with indexed_store(self.repo_path()) as store:
            rec = store.read_settled(run_id)
            table = store.read_metrics(rec)
        arrays = key_arrays(table).get(key)
        if arrays is None:
            return []
        steps, values, times = arrays
        points = sorted(
            zip(times.tolist(), steps.tolist(), values.tolist()), key=lambda p: (p[0], p[1])
        )
        return [Metric(key, float(v), round(t / 1000), int(s)) for t, s, v in points]

    def search(
        self,
        experiment_ids: Sequence[str] | None,
        filter_string: str | None,
        max_results: int | None,
        order_by: Sequence[str] | None,
        run_view_type: int = 1,
    ) -> list[dict[str, Any]]:
        """Rows of the runs an MLflow search selects, newest first (through the
        leaderboard service, with the filter translated to ``--where``)."""
        from gitexp.catalog import indexed_store
        from gitexp.interop.mlflow_filter import to_sort, to_where
        from gitexp.leaderboard import Query, leaderboard

        if run_view_type == 2:  # DELETED_ONLY: git-exp keeps no deleted runs to show
            return []
        where = to_where(filter_string)
        if experiment_ids:
            exps = [names.experiment_of(str(e)) for e in experiment_ids]
            listed = "[" + ", ".join(_literal(e) for e in exps) + "]"
            clause = f"experiment in {listed}"
            where = clause if where is None else f"({clause}) and ({where})"
        self.sync()
        with indexed_store(self.repo_path()) as store:
            board = leaderboard(
                store,
                Query(where=where, sort=to_sort(order_by), limit=max_results, every_param=True),
            )
            assert board.runs is not None
            return [dict(r) for r in board.runs.rows()]

    # ----------------------------------------------------------- artifacts
    def artifact_files(self, run_id: str) -> list[tuple[str, str, int, int]]:
        """Every output file of a run: (path, BLAKE3, size, mode), directories expanded."""
        from gitexp.catalog import indexed_store

        rec = self.record(run_id)
        with indexed_store(self.repo_path()) as store:
            return _output_files(store, rec)

    def list_artifacts(self, run_id: str, path: str | None) -> list[FileInfo]:
        prefix = fmt.normalize_artifact_path(path) + "/" if path else ""
        out: dict[str, FileInfo] = {}
        for name, _, size, _ in self.artifact_files(run_id):
            if not name.startswith(prefix):
                continue
            head, sep, _ = name[len(prefix) :].partition("/")
            full = prefix + head
            out[full] = FileInfo(full, True, None) if sep else FileInfo(full, False, size)
        return [out[k] for k in sorted(out)]

    def download(self, run_id: str, path: str | None, dst_path: str | None) -> str:
        """Restore ``path`` (a file or a directory; the whole run when empty) of a
        run's artifacts under ``dst_path`` (a new temporary directory when None);
        every byte verified. Returns the local path of ``path``."""
        from gitexp.catalog import indexed_store

        want = fmt.normalize_artifact_path(path) if path else ""
        files = self.artifact_files(run_id)
        chosen = [f for f in files if not want or f[0] == want or f[0].startswith(want + "/")]
        if not chosen:
            raise UsageError(f"run {run_id} has no artifact {want!r}")
        dest = os.path.abspath(dst_path or tempfile.mkdtemp(prefix="gitexp-artifacts-"))
        root = os.path.realpath(dest)
        with indexed_store(self.repo_path()) as store:
            for name, key, _, mode in chosen:
                out = os.path.realpath(os.path.join(dest, *name.split("/")))
                if not out.startswith(root + os.sep):
                    raise UsageError(f"artifact {name!r} leaves the destination; refused")
                os.makedirs(os.path.dirname(out), exist_ok=True)
                store.cas.restore(key, out, mode)
        return os.path.join(dest, *want.split("/")) if want else dest


def _output_files(store: Any, rec: Any) -> list[tuple[str, str, int, int]]:
    from gitexp.remotes import listing_files

    out = []
    for entry in rec.artifacts:
        if entry.role != "output":
            continue
        if entry.kind == "dir":
            label = f"{rec.ref.short}: {entry.path}"
            for rel, key, size, mode in listing_files(store.cas.get_bytes(entry.blake3), label):
                out.append((f"{entry.path}/{rel}", key, size, mode))
        else:
            out.append((entry.path, entry.blake3, entry.size, entry.mode))
    return sorted(out)


def _join(prefix: str | None, name: str) -> str:
    return fmt.normalize_artifact_path(f"{prefix.strip('/')}/{name}" if prefix else name)


def _literal(text: str) -> str:
    from gitexp.interop.mlflow_filter import text_literal

    return text_literal(text)


def _number(value: Any, key: str) -> Any:
    """A metric value: MLflow takes anything ``float()`` takes (a one-element tensor)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return value
    if hasattr(value, "item") and getattr(value, "ndim", None) in (0, None):
        return value.item()
    if hasattr(value, "numel") and value.numel() == 1:
        return value.item()
    return value


def _tag(key: str, value: str, call: str) -> str:
    """The git-exp tag of an MLflow tag, or a UsageError that names the call."""
    if "=" in key:
        raise UsageError(f"{call}: a tag name with '=' ({key!r}) cannot be a git-exp tag")
    text = names.tag_text(key, value)
    try:
        return fmt.validate_tag(text)
    except GitExpError as exc:
        raise UsageError(f"{call}({key!r}, ...): {exc}") from exc


def experiment_entity(name: str) -> Experiment:
    return Experiment(experiment_id=name, name=name)


def run_entity(rec: Any) -> Run:
    """An MLflow ``Run`` of a git-exp run record."""
    info = rec.info
    tags = names.tag_pairs(rec.tags)
    if rec.name:
        tags[names.RUN_NAME_TAG] = rec.name
    notes = info.get("notes") or []
    if notes and isinstance(notes[-1], Mapping):
        tags[names.NOTE_TAG] = str(notes[-1].get("text", ""))
    return Run(
        RunInfo(
            run_id=rec.run_id,
            experiment_id=rec.experiment,
            run_name=rec.name,
            status=names.mlflow_status(rec.status),
            start_time=names.millis(info.get("start_time")),
            end_time=names.millis(info.get("end_time")),
            artifact_uri=names.run_uri(rec.run_id),
            user_id=str(info.get("user") or ""),
        ),
        RunData(
            metrics=dict(rec.summary.final_values()),
            params=names.flat_params(rec.params),
            tags=tags,
        ),
    )


def row_entity(row: Mapping[str, Any]) -> Run:
    """An MLflow ``Run`` of a leaderboard row (search_runs(output_format="list"))."""
    tags = names.tag_pairs(row.get("tags") or [])
    if row.get("name"):
        tags[names.RUN_NAME_TAG] = row["name"]
    return Run(
        RunInfo(
            run_id=row["id"],
            experiment_id=row["experiment"],
            run_name=row.get("name"),
            status=names.mlflow_status(str(row.get("status"))),
            start_time=names.millis(row.get("start")),
            end_time=names.end_millis(row.get("start"), row.get("duration")),
            artifact_uri=names.run_uri(row["id"]),
        ),
        RunData(
            metrics={
                k[8:]: v for k, v in row.items() if k.startswith("metrics.") and v is not None
            },
            params={k[7:]: names.param_text(v) for k, v in row.items() if k.startswith("params.")},
            tags=tags,
        ),
    )


def frame(rows: Sequence[Mapping[str, Any]]) -> Any:
    """search_runs' pandas DataFrame: MLflow's columns, params as text."""
    try:
        import pandas as pd
    except ImportError as exc:
        from gitexp.errors import MissingExtra

        raise MissingExtra("mlflow.search_runs as a DataFrame", "mlflow", "pandas") from exc
    records = []
    for row in rows:
        start = names.millis(row.get("start"))
        end = names.end_millis(row.get("start"), row.get("duration"))
        out: dict[str, Any] = {
            "run_id": row["id"],
            "experiment_id": row["experiment"],
            "status": names.mlflow_status(str(row.get("status"))),
            "artifact_uri": names.run_uri(row["id"]),
            "start_time": pd.Timestamp(start, unit="ms", tz="UTC") if start is not None else pd.NaT,
            "end_time": pd.Timestamp(end, unit="ms", tz="UTC") if end is not None else pd.NaT,
        }
        for k, v in row.items():
            if k.startswith("metrics."):
                out[k] = v
        for k, v in row.items():
            if k.startswith("params."):
                out[k] = names.param_text(v)
        tags = names.tag_pairs(row.get("tags") or [])
        if row.get("name"):
            tags[names.RUN_NAME_TAG] = row["name"]
        for k, v in tags.items():
            out[f"tags.{k}"] = v
        records.append(out)
    columns = list(names.RUN_COLUMNS)
    for prefix in ("metrics.", "params.", "tags."):
        columns += sorted({k for r in records for k in r if k.startswith(prefix)})
    df = pd.DataFrame.from_records(records, columns=columns)
    for col in (c for c in columns if c.startswith("metrics.")):
        df[col] = df[col].astype("float64")
    return df


SESSION = Session()
