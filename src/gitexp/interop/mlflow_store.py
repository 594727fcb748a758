"""``git exp import mlflow``: the runs of an MLflow store, read through MLflow's own
client (the ``mlflow`` extra), recorded as git-exp runs.

A store is an ``mlruns`` directory, a ``sqlite:///`` database (or the path of an
``.db`` file), or a tracking server URL (``http://host:5000``). Each MLflow run
becomes one git-exp run with its params, every point of every metric (steps
and times as MLflow recorded them), its tags, name, notes, status and times, and
its artifacts in the CAS; MLflow 3 logged models go in as artifacts of the run
that logged them, under the model's name. Runs that are still running, and
deleted runs, are left out. See :mod:`gitexp.interop.imported` for what makes
importing again add nothing.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import urllib.parse
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from gitexp import records as fmt
from gitexp.errors import ForeignStoreError, GitExpError, MissingExtra, UsageError
from gitexp.interop import mlflow_names as names
from gitexp.interop.imported import (
    ImportedRun,
    Importer,
    ImportReport,
    Point,
    first_line,
    tag_pairs_as_tags,
)
from gitexp.store import ExpStore

PAGE = 1000
FILE_STORE_OPT_IN = "MLFLOW_ALLOW_FILE_STORE"  # MLflow 3 reads an mlruns directory only with it
NO_TELEMETRY = "MLFLOW_DISABLE_TELEMETRY"  # reading a store sends nothing anywhere else


def tracking_uri(source: str) -> str:
    """The MLflow tracking URI for what the user gave: a URI as it is, an existing
    directory as a ``file://`` store, an existing ``.db`` file as ``sqlite:///``."""
    if "://" in source or source.startswith(("sqlite:", "file:")):
        if source.startswith("sqlite:///"):
            path = source[len("sqlite:///") :]
            if not os.path.isfile(path if os.path.isabs(path) else os.path.abspath(path)):
                raise ForeignStoreError(f"no MLflow database at {path}")
        if source.startswith("file:"):
            path = urllib.parse.urlparse(source).path
            if not os.path.isdir(path):
                raise ForeignStoreError(f"no MLflow store directory at {path}")
        return source
    if os.path.isdir(source):
        return "file://" + os.path.abspath(source)
    if os.path.isfile(source):
        return "sqlite:///" + os.path.abspath(source)
    raise ForeignStoreError(f"{source}: no such MLflow store (a directory, a .db file or a URL)")


def shown_uri(uri: str) -> str:
    """A URI without the credentials it may carry (what ``origin`` records)."""
    parts = urllib.parse.urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=host))


@contextlib.contextmanager
def _quiet_mlflow(uri: str) -> Iterator[None]:
    """MLflow's own warnings and logging off while we read, and the file store
    allowed (MLflow 3 refuses to open an ``mlruns`` directory otherwise)."""
    import logging

    before = os.environ.get(FILE_STORE_OPT_IN)
    os.environ.setdefault(NO_TELEMETRY, "true")
    if uri.startswith("file:"):
        os.environ[FILE_STORE_OPT_IN] = "true"
    logger = logging.getLogger("mlflow")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
        if uri.startswith("file:"):
            if before is None:
                os.environ.pop(FILE_STORE_OPT_IN, None)
            else:
                os.environ[FILE_STORE_OPT_IN] = before


def _client(uri: str) -> Any:
    try:
        from mlflow.tracking import MlflowClient
    except ImportError as exc:
        raise MissingExtra("importing from MLflow", "mlflow", "mlflow") from exc
    return MlflowClient(tracking_uri=uri)


def _pages(fetch: Callable[[str | None], Any]) -> Iterator[Any]:
    token: str | None = None
    while True:
        page = fetch(token)
        yield from page
        token = getattr(page, "token", None)
        if not token:
            return


def import_mlflow(
    store: ExpStore,
    source: str,
    experiment: str | None = None,
    only: Sequence[str] = (),
    progress: Callable[[str], None] | None = None,
) -> ImportReport:
    """Import the runs of an MLflow store.

    Args:
        store: the git-exp store to record into.
        source: an ``mlruns`` directory, a ``.db`` file, or a tracking URI.
        experiment: the git-exp experiment every run goes to; by default each
            MLflow experiment's runs go to the git-exp experiment of the same
            name (MLflow's ``Default`` to ``default``).
        only: MLflow experiment names or ids to import (default: all of them).
        progress: called with one line per run imported.

    Raises:
        MissingExtra: MLflow is not installed.
        ForeignStoreError: the store cannot be opened or read.
        InvalidName: an MLflow experiment name is no valid git-exp experiment
            (and no ``experiment`` was given).
    """
    if experiment is not None:
        fmt.validate_experiment(experiment)
    uri = tracking_uri(source)
    importer = Importer(store)
    report = ImportReport()
    with _quiet_mlflow(uri):
        client = _client(uri)
        try:
            experiments = list(
                _pages(lambda t: client.search_experiments(max_results=PAGE, page_token=t))
            )
        except GitExpError:
            raise
        except Exception as exc:
            raise ForeignStoreError(
                f"cannot read MLflow store {shown_uri(uri)}: {first_line(exc)}"
            ) from exc
        if only:
            wanted = set(only)
            experiments = [e for e in experiments if e.name in wanted or e.experiment_id in wanted]
            missing = (
                wanted - {e.name for e in experiments} - {e.experiment_id for e in experiments}
            )
            if missing:
                raise UsageError(f"no MLflow experiment {sorted(missing)[0]!r} in {shown_uri(uri)}")
        targets = {}
        for exp in experiments:
            dest = experiment or names.experiment_of(exp.name)
            try:
                fmt.validate_experiment(dest)
            except GitExpError as exc:
                raise type(exc)(
                    f"MLflow experiment {exp.name!r} cannot be a git-exp experiment ({exc}); "
                    "name the experiment to import into"
                ) from exc
            targets[exp.experiment_id] = dest
        for exp in experiments:
            _import_experiment(
                client, uri, exp, targets[exp.experiment_id], importer, report, progress
            )
    return report


def _import_experiment(
    client: Any,
    uri: str,
    exp: Any,
    dest: str,
    importer: Importer,
    report: ImportReport,
    progress: Callable[[str], None] | None,
) -> None:
    try:
        runs = list(
            _pages(
                lambda t: client.search_runs([exp.experiment_id], max_results=PAGE, page_token=t)
            )
        )
    except Exception as exc:
        raise ForeignStoreError(
            f"cannot list the runs of MLflow experiment {exp.name!r}: {first_line(exc)}"
        ) from exc
    models = _logged_models(client, exp.experiment_id)
    starts = {r.info.run_id: r.info.start_time for r in runs}
    for run in reversed(runs):  # oldest first
        label = f"{exp.name}/{run.info.run_id}"
        identity = "mlflow:" + run.info.run_id
        start = (run.info.start_time or 0) / 1000.0
        if importer.existing(identity, start) is not None:
            report.already.append(label)
            continue
        status = names.FROM_MLFLOW_STATUS.get(run.info.status)
        if status is None:
            report.skipped.append(f"{label}: status {run.info.status} (import it when it ends)")
            continue
        try:
            ref = _import_run(client, uri, exp, dest, run, status, starts, models, importer, report)
        except GitExpError as exc:
            if isinstance(exc, (ForeignStoreError, UsageError)):
                report.skipped.append(f"{label}: {exc}")
                continue
            raise
        if ref is None:
            report.already.append(label)
        else:
            report.imported.append(ref.short)
            if progress is not None:
                progress(f"{label} -> {ref.short}")


def _logged_models(client: Any, experiment_id: str) -> dict[str, list[Any]]:
    """MLflow 3 logged models of an experiment, by the run that logged them."""
    if not hasattr(client, "search_logged_models"):
        return {}
    out: dict[str, list[Any]] = {}
    try:
        for m in _pages(
            lambda t: client.search_logged_models(
                experiment_ids=[experiment_id], max_results=100, page_token=t
            )
        ):
            if m.source_run_id:
                out.setdefault(m.source_run_id, []).append(m)
    except Exception as exc:
        raise ForeignStoreError(f"cannot list the logged models: {first_line(exc)}") from exc
    return out


def _import_run(
    client: Any,
    uri: str,
    exp: Any,
    dest: str,
    run: Any,
    status: str,
    starts: dict[str, int],
    models: dict[str, list[Any]],
    importer: Importer,
    report: ImportReport,
) -> Any:
    import mlflow.artifacts

    info, data = run.info, run.data
    run_id = info.run_id
    label = f"{exp.name}/{run_id}"
    tags = dict(data.tags)
    points: list[Point] = []
    try:
        for key in sorted(data.metrics):
            seen = set()
            for m in client.get_metric_history(run_id, key):
                # MLflow's own identity of a point (its SQL stores' key); the file store
                # can return one twice (a run with a logged model)
                point = (int(m.step), int(m.timestamp), float(m.value))
                if point in seen:
                    continue
                seen.add(point)
                points.append(Point(m.key, point[0], point[2], point[1] / 1000.0))
    except Exception as exc:
        raise ForeignStoreError(f"cannot read the metrics: {first_line(exc)}") from exc
    run_tags = tag_pairs_as_tags(
        tags,
        report,
        label,
        skip=[t for t in tags if t.startswith(names.SYSTEM_PREFIX)],
    )
    parent = tags.get(names.PARENT_RUN_TAG)
    if parent:
        from gitexp.interop.imported import run_id_for

        shown = (
            run_id_for("mlflow:" + parent, starts[parent] / 1000.0) if parent in starts else parent
        )
        run_tags.append(names.tag_text(names.PARENT_RUN_TAG, shown))
    notes = []
    if tags.get(names.NOTE_TAG):
        notes.append(((info.start_time or 0) / 1000.0, tags[names.NOTE_TAG]))
    origin: dict[str, Any] = {
        "tool": "mlflow",
        "uri": shown_uri(uri),
        "experiment_id": exp.experiment_id,
        "experiment": exp.name,
        "run_id": run_id,
        "tags": tags,
    }
    with tempfile.TemporaryDirectory(prefix="gitexp-import-") as tmp:
        artifacts: list[tuple[str, str]] = []
        try:
            if client.list_artifacts(run_id):
                root = mlflow.artifacts.download_artifacts(
                    run_id=run_id,
                    artifact_path="",
                    dst_path=os.path.join(tmp, "run"),
                    tracking_uri=uri,
                )
                for child in sorted(os.listdir(root)):
                    artifacts.append((child, os.path.join(root, child)))
            taken = {name for name, _ in artifacts}
            logged = []
            for i, model in enumerate(models.get(run_id, [])):
                name = model.name if model.name not in taken else f"{model.name}-{model.model_id}"
                taken.add(name)
                where = mlflow.artifacts.download_artifacts(
                    artifact_uri=model.artifact_location,
                    dst_path=os.path.join(tmp, f"model{i}"),
                    tracking_uri=uri,
                )
                artifacts.append((name, where))
                logged.append({"model_id": model.model_id, "name": model.name, "path": name})
            if logged:
                origin["models"] = logged
        except Exception as exc:
            raise ForeignStoreError(f"cannot download the artifacts: {first_line(exc)}") from exc
        imported = ImportedRun(
            identity="mlflow:" + run_id,
            experiment=dest,
            start=(info.start_time or 0) / 1000.0,
            end=info.end_time / 1000.0 if info.end_time else None,
            origin=origin,
            name=tags.get(names.RUN_NAME_TAG) or getattr(info, "run_name", None) or None,
            status=status,
            params={k: names.param_value(v) for k, v in data.params.items()},
            tags=run_tags,
            notes=notes,
            points=points,
            artifacts=artifacts,
            code_commit=tags.get(names.GIT_COMMIT_TAG),
            user=tags.get(names.USER_TAG) or info.user_id or None,
        )
        return importer.write(imported)
