"""MLflow's tracking API over git-exp: ``import gitexp.mlflow as mlflow``.

An MLflow script runs unchanged apart from that line and records git-exp runs
(refs under ``refs/experiments/``, artifacts in the CAS): ``set_experiment``,
``start_run`` (``run_name``, nested runs, tags, ``run_id`` to resume),
``end_run``, ``active_run``, ``log_param(s)``, ``log_metric(s)`` (``step``,
``timestamp``), ``set_tag(s)``, ``log_artifact(s)``, ``log_dict``,
``log_text``, ``log_figure``, ``log_image``, ``get_run``, ``search_runs`` (a
pandas DataFrame with MLflow's columns; MLflow filter strings), ``MlflowClient``,
``mlflow.sklearn`` and ``mlflow.pytorch`` (``log_model``/``load_model``) and
``autolog()`` for scikit-learn. Under ``git exp run`` the first run attaches
to the run the command records.

Every other MLflow name raises :class:`gitexp.errors.UnsupportedCall`, which
names it: nothing is silently skipped. docs/migrating.md has the whole list.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from typing import Any

from gitexp import __version__ as _gitexp_version
from gitexp.errors import UnsupportedCall
from gitexp.mlflow import _files
from gitexp.mlflow._session import SESSION as _S
from gitexp.mlflow._session import experiment_entity as _experiment_entity
from gitexp.mlflow.entities import ActiveRun, Experiment, Run

__version__ = f"{_gitexp_version}+gitexp"

__all__ = [
    "ActiveRun",
    "MlflowClient",
    "MlflowException",
    "active_run",
    "autolog",
    "create_experiment",
    "delete_tag",
    "end_run",
    "get_artifact_uri",
    "get_experiment",
    "get_experiment_by_name",
    "get_run",
    "get_tracking_uri",
    "last_active_run",
    "log_artifact",
    "log_artifacts",
    "log_dict",
    "log_figure",
    "log_image",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "log_text",
    "search_experiments",
    "search_runs",
    "set_experiment",
    "set_tag",
    "set_tags",
    "set_tracking_uri",
    "start_run",
]

# submodules a script reaches as attributes (``mlflow.sklearn.log_model``)
_SUBMODULES = ("artifacts", "client", "entities", "exceptions", "pytorch", "sklearn", "tracking")


def _unsupported_args(call: str, **given: Any) -> None:
    """Arguments we have no mapping for raise, unless left at their default (None)."""
    for name, value in given.items():
        if value is not None and value is not False:
            raise UnsupportedCall(f"{call}({name}=...)")


# ----------------------------------------------------------- experiments


def set_experiment(
    experiment_name: str | None = None, experiment_id: str | None = None, **kwargs: Any
) -> Experiment:
    """Record the following runs in this experiment (its id is its name)."""
    _unsupported_args("mlflow.set_experiment", **kwargs)
    return _S.set_experiment(experiment_name, experiment_id)


def create_experiment(
    name: str,
    artifact_location: str | None = None,
    tags: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> str:
    """Name an experiment; returns its id, which is its name."""
    _unsupported_args(
        "mlflow.create_experiment", artifact_location=artifact_location, tags=tags, **kwargs
    )
    return _S.create_experiment(name)


def get_experiment(experiment_id: str) -> Experiment:
    """The experiment of that id (its name)."""
    from gitexp.interop.mlflow_names import experiment_of

    return _experiment_entity(experiment_of(experiment_id))


def get_experiment_by_name(name: str) -> Experiment | None:
    """The experiment of that name, None when it has no runs and was not set here."""
    from gitexp.interop.mlflow_names import experiment_of

    exp = experiment_of(name)
    return _experiment_entity(exp) if exp in _S.experiments() else None


def search_experiments(
    view_type: int = 1,
    max_results: int | None = None,
    filter_string: str | None = None,
    order_by: list[str] | None = None,
) -> list[Experiment]:
    """The experiments that have runs (and those named in this process)."""
    _unsupported_args("mlflow.search_experiments", filter_string=filter_string, order_by=order_by)
    found = [_experiment_entity(e) for e in _S.experiments()]
    return found[:max_results] if max_results is not None else found


# ------------------------------------------------------------------ runs


def start_run(
    run_id: str | None = None,
    experiment_id: str | None = None,
    run_name: str | None = None,
    nested: bool = False,
    parent_run_id: str | None = None,
    tags: Mapping[str, Any] | None = None,
    description: str | None = None,
    log_system_metrics: bool | None = None,
) -> ActiveRun:
    """Start a run (a nested one with ``nested=True``), or resume ``run_id``.
    Use it as a context manager: the run ends with the block."""
    _unsupported_args("mlflow.start_run", log_system_metrics=log_system_metrics)
    opened = _S.start(
        run_id=run_id,
        experiment_id=experiment_id,
        run_name=run_name,
        nested=nested,
        parent_run_id=parent_run_id,
        tags=tags,
        description=description,
    )
    return _S.active_entity(opened)


def end_run(status: str = "FINISHED") -> None:
    """End the active run (``FINISHED``, ``FAILED`` or ``KILLED``)."""
    _S.end_fluent(status)


def active_run() -> ActiveRun | None:
    """The active run, or None."""
    with _S.lock:
        run_id = _S.fluent[-1] if _S.fluent else None
        opened = _S.open.get(run_id) if run_id else None
    return _S.active_entity(opened) if opened is not None else None


def last_active_run() -> Run | None:
    """The active run, else the run this process ended last."""
    with _S.lock:
        run_id = _S.fluent[-1] if _S.fluent else _S.last_run
    return _S.get_run(run_id) if run_id else None


def get_run(run_id: str) -> Run:
    """A run, as MLflow's ``Run`` (``info``, ``data``)."""
    return _S.get_run(run_id)


def search_runs(
    experiment_ids: list[str] | None = None,
    filter_string: str = "",
    run_view_type: int = 1,
    max_results: int = 100000,
    order_by: list[str] | None = None,
    output_format: str = "pandas",
    search_all_experiments: bool = False,
    experiment_names: list[str] | None = None,
) -> Any:
    """Runs as a pandas DataFrame with MLflow's columns (``run_id``,
    ``experiment_id``, ``status``, ``start_time``, ``params.X``, ``metrics.Y``,
    ``tags.Z`` ...), or a list of ``Run`` with ``output_format="list"``.

    ``filter_string`` is MLflow's filter language, translated to git-exp's
    ``--where`` (docs/query.md); without experiments, those of the active
    experiment (``set_experiment``), else every run.
    """
    from gitexp.mlflow._session import frame, row_entity

    ids = list(experiment_ids or []) + list(experiment_names or [])
    if not ids and not search_all_experiments:
        current = _S.current_experiment()
        ids = [current] if current else []
    rows = _S.search(ids, filter_string, max_results, order_by, run_view_type)
    if output_format == "list":
        return [row_entity(r) for r in rows]
    if output_format != "pandas":
        raise UnsupportedCall(f"mlflow.search_runs(output_format={output_format!r})")
    return frame(rows)


# --------------------------------------------------------------- logging


def log_param(key: str, value: Any, synchronous: bool | None = None) -> Any:
    """Record one param (MLflow params do not change once logged)."""
    _S.log_params(None, {key: value}, "mlflow.log_param")
    return value


def log_params(
    params: Mapping[str, Any], synchronous: bool | None = None, run_id: str | None = None
) -> None:
    """Record params."""
    _S.log_params(run_id, params, "mlflow.log_params")


def log_metric(
    key: str,
    value: float,
    step: int | None = None,
    synchronous: bool | None = None,
    timestamp: int | None = None,
    run_id: str | None = None,
    model_id: str | None = None,
    dataset: Any = None,
) -> None:
    """Log one point of a metric (``step`` 0 by default, as MLflow;
    ``timestamp`` in milliseconds)."""
    _unsupported_args("mlflow.log_metric", model_id=model_id, dataset=dataset)
    _S.log_metric(run_id, key, value, step, timestamp, "mlflow.log_metric")


def log_metrics(
    metrics: Mapping[str, float],
    step: int | None = None,
    synchronous: bool | None = None,
    run_id: str | None = None,
    timestamp: int | None = None,
    model_id: str | None = None,
    dataset: Any = None,
) -> None:
    """Log several metrics at one step."""
    _unsupported_args("mlflow.log_metrics", model_id=model_id, dataset=dataset)
    _S.log_metrics(run_id, metrics, step, timestamp, "mlflow.log_metrics")


def set_tag(key: str, value: Any, synchronous: bool | None = None) -> None:
    """Tag the active run (the git-exp tag ``key=value``)."""
    _S.set_tags(None, {key: value}, "mlflow.set_tag")


def set_tags(tags: Mapping[str, Any], synchronous: bool | None = None) -> None:
    """Tag the active run."""
    _S.set_tags(None, tags, "mlflow.set_tags")


def delete_tag(key: str) -> None:
    """Remove a tag of the active run."""
    _S.delete_tag(None, key, "mlflow.delete_tag")


def log_artifact(
    local_path: str, artifact_path: str | None = None, run_id: str | None = None
) -> None:
    """Store a file (or a directory's files) as an artifact, under ``artifact_path``."""
    _S.log_artifact(run_id, local_path, artifact_path, "mlflow.log_artifact")


def log_artifacts(
    local_dir: str, artifact_path: str | None = None, run_id: str | None = None
) -> None:
    """Store every file of a directory as an artifact, under ``artifact_path``."""
    _S.log_artifacts(run_id, local_dir, artifact_path, "mlflow.log_artifacts")


def log_dict(dictionary: Mapping[str, Any], artifact_file: str, run_id: str | None = None) -> None:
    """Store a dict as a JSON (or, for ``.yml``/``.yaml``, YAML) artifact."""
    _S.log_file(
        run_id, artifact_file, _files.dict_writer(dictionary, artifact_file), "mlflow.log_dict"
    )


def log_text(text: str, artifact_file: str, run_id: str | None = None) -> None:
    """Store text as an artifact."""
    _S.log_file(run_id, artifact_file, _files.text_writer(text), "mlflow.log_text")


def log_figure(
    figure: Any, artifact_file: str, *, save_kwargs: Mapping[str, Any] | None = None
) -> None:
    """Store a matplotlib (or plotly) figure as an artifact."""
    call = "mlflow.log_figure"
    _S.log_file(
        None, artifact_file, _files.figure_writer(figure, artifact_file, save_kwargs, call), call
    )


def log_image(
    image: Any,
    artifact_file: str | None = None,
    key: str | None = None,
    step: int | None = None,
    timestamp: int | None = None,
    synchronous: bool | None = False,
) -> None:
    """Store a numpy array or a PIL image as an image artifact."""
    call = "mlflow.log_image"
    _unsupported_args(call, key=key, step=step, timestamp=timestamp)
    if artifact_file is None:
        raise TypeError("mlflow.log_image needs artifact_file")
    _S.log_file(None, artifact_file, _files.image_writer(image, call), call)


def get_artifact_uri(artifact_path: str | None = None) -> str:
    """``runs:/<run-id>/<artifact_path>`` of the active run (``load_model`` reads it)."""
    from gitexp.interop.mlflow_names import run_uri

    return run_uri(_S.active().run.id, artifact_path or "")


# ----------------------------------------------------------------- where


def set_tracking_uri(uri: str | os.PathLike[str]) -> None:
    """Record into the git repository at ``uri`` (a path, or a ``file:`` URI);
    any other URI raises: git-exp has no server."""
    _S.set_tracking_uri(uri)


def get_tracking_uri() -> str:
    """``file://`` and the repository's work tree."""
    return _S.tracking_uri()


def autolog(
    log_input_examples: bool = False,
    log_model_signatures: bool = True,
    log_models: bool = True,
    log_datasets: bool = True,
    log_traces: bool = True,
    disable: bool = False,
    exclusive: bool = False,
    disable_for_unsupported_versions: bool = False,
    silent: bool = False,
    extra_tags: Mapping[str, str] | None = None,
    exclude_flavors: list[str] | None = None,
) -> None:
    """Autologging for scikit-learn (the one library git-exp autologs):
    ``mlflow.sklearn.autolog`` with the same arguments."""
    if exclude_flavors and "sklearn" in exclude_flavors:
        return
    from gitexp.mlflow import sklearn

    sklearn.autolog(
        log_input_examples=log_input_examples,
        log_models=log_models,
        disable=disable,
        exclusive=exclusive,
        silent=silent,
        extra_tags=extra_tags,
    )


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"gitexp.mlflow.{name}")
    if name == "MlflowClient":
        from gitexp.mlflow.client import MlflowClient

        return MlflowClient
    if name == "MlflowException":
        from gitexp.mlflow.exceptions import MlflowException

        return MlflowException
    if name.startswith("_"):
        raise AttributeError(f"module 'gitexp.mlflow' has no attribute {name!r}")
    raise UnsupportedCall(f"mlflow.{name}")


def __dir__() -> list[str]:
    return sorted([*__all__, *_SUBMODULES])
