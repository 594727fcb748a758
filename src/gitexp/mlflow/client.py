"""``MlflowClient``: the same calls as the fluent API, on runs named by id."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gitexp.errors import UnsupportedCall
from gitexp.mlflow import _files
from gitexp.mlflow._session import SESSION, Session, experiment_entity, row_entity
from gitexp.mlflow.entities import Experiment, FileInfo, Metric, Param, Run, RunTag


class PagedList(list[Any]):
    """A list of results with MLflow's ``token`` (always None: one page holds all)."""

    token: str | None = None


def _none(call: str, **given: Any) -> None:
    for name, value in given.items():
        if value is not None:
            raise UnsupportedCall(f"{call}({name}=...)")


class MlflowClient:
    """MLflow's client over git-exp. ``tracking_uri`` is a path in a git
    repository (default: the fluent API's)."""

    def __init__(
        self, tracking_uri: str | os.PathLike[str] | None = None, registry_uri: str | None = None
    ) -> None:
        _none("MlflowClient", registry_uri=registry_uri)
        self._s: Session = SESSION
        if tracking_uri is not None:
            session = Session()
            session.set_tracking_uri(tracking_uri)
            self._s = session

    # --------------------------------------------------------- experiments
    def create_experiment(
        self, name: str, artifact_location: str | None = None, tags: Mapping[str, Any] | None = None
    ) -> str:
        _none("MlflowClient.create_experiment", artifact_location=artifact_location, tags=tags)
        return self._s.create_experiment(name)

    def get_experiment(self, experiment_id: str) -> Experiment:
        from gitexp.interop.mlflow_names import experiment_of

        return experiment_entity(experiment_of(experiment_id))

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        from gitexp.interop.mlflow_names import experiment_of

        exp = experiment_of(name)
        return experiment_entity(exp) if exp in self._s.experiments() else None

    def search_experiments(
        self,
        view_type: int = 1,
        max_results: int | None = None,
        filter_string: str | None = None,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList:
        _none("MlflowClient.search_experiments", filter_string=filter_string, order_by=order_by)
        found = [experiment_entity(e) for e in self._s.experiments()]
        return PagedList(found[:max_results] if max_results is not None else found)

    # ---------------------------------------------------------------- runs
    def create_run(
        self,
        experiment_id: str,
        start_time: int | None = None,
        tags: Mapping[str, Any] | None = None,
        run_name: str | None = None,
    ) -> Run:
        """Start a run (not the fluent API's active run); end it with ``set_terminated``."""
        _none("MlflowClient.create_run", start_time=start_time)
        opened = self._s.start(
            experiment_id=experiment_id,
            run_name=run_name,
            tags=tags,
            fluent=False,
            call="MlflowClient.create_run",
        )
        return self._s.entity_of_open(opened)

    def get_run(self, run_id: str) -> Run:
        return self._s.get_run(run_id)

    def set_terminated(
        self, run_id: str, status: str | None = None, end_time: int | None = None
    ) -> None:
        _none("MlflowClient.set_terminated", end_time=end_time)
        self._s.end(run_id, status or "FINISHED")

    def search_runs(
        self,
        experiment_ids: Sequence[str],
        filter_string: str = "",
        run_view_type: int = 1,
        max_results: int = 1000,
        order_by: list[str] | None = None,
        page_token: str | None = None,
    ) -> PagedList:
        _none("MlflowClient.search_runs", page_token=page_token)
        rows = self._s.search(
            list(experiment_ids), filter_string, max_results, order_by, run_view_type
        )
        return PagedList(row_entity(r) for r in rows)

    def get_metric_history(self, run_id: str, key: str) -> list[Metric]:
        return self._s.metric_history(run_id, key)

    # ------------------------------------------------------------- logging
    def log_param(self, run_id: str, key: str, value: Any, synchronous: bool | None = None) -> Any:
        self._s.log_params(run_id, {key: value}, "MlflowClient.log_param")
        return value

    def log_metric(
        self,
        run_id: str,
        key: str,
        value: float,
        timestamp: int | None = None,
        step: int | None = None,
        synchronous: bool | None = None,
        dataset_name: str | None = None,
        dataset_digest: str | None = None,
        model_id: str | None = None,
    ) -> None:
        _none(
            "MlflowClient.log_metric",
            dataset_name=dataset_name,
            dataset_digest=dataset_digest,
            model_id=model_id,
        )
        self._s.log_metric(run_id, key, value, step, timestamp, "MlflowClient.log_metric")

    def log_batch(
        self,
        run_id: str,
        metrics: Iterable[Metric] = (),
        params: Iterable[Param] = (),
        tags: Iterable[RunTag] = (),
        synchronous: bool | None = None,
    ) -> None:
        call = "MlflowClient.log_batch"
        params = list(params)
        if params:
            self._s.log_params(run_id, {p.key: p.value for p in params}, call)
        for m in metrics:
            self._s.log_metric(run_id, m.key, m.value, m.step, m.timestamp, call)
        tags = list(tags)
        if tags:
            self._s.set_tags(run_id, {t.key: t.value for t in tags}, call)

    def set_tag(self, run_id: str, key: str, value: Any, synchronous: bool | None = None) -> None:
        self._s.set_tags(run_id, {key: value}, "MlflowClient.set_tag")

    def delete_tag(self, run_id: str, key: str) -> None:
        self._s.delete_tag(run_id, key, "MlflowClient.delete_tag")

    def log_artifact(self, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
        self._s.log_artifact(run_id, local_path, artifact_path, "MlflowClient.log_artifact")

    def log_artifacts(self, run_id: str, local_dir: str, artifact_path: str | None = None) -> None:
        self._s.log_artifacts(run_id, local_dir, artifact_path, "MlflowClient.log_artifacts")

    def log_dict(self, run_id: str, dictionary: Mapping[str, Any], artifact_file: str) -> None:
        writer = _files.dict_writer(dictionary, artifact_file)
        self._s.log_file(run_id, artifact_file, writer, "MlflowClient.log_dict")

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        self._s.log_file(run_id, artifact_file, _files.text_writer(text), "MlflowClient.log_text")

    def log_figure(
        self,
        run_id: str,
        figure: Any,
        artifact_file: str,
        *,
        save_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        call = "MlflowClient.log_figure"
        writer = _files.figure_writer(figure, artifact_file, save_kwargs, call)
        self._s.log_file(run_id, artifact_file, writer, call)

    def log_image(
        self,
        run_id: str,
        image: Any,
        artifact_file: str | None = None,
        key: str | None = None,
        step: int | None = None,
        timestamp: int | None = None,
        synchronous: bool | None = None,
    ) -> None:
        call = "MlflowClient.log_image"
        _none(call, key=key, step=step, timestamp=timestamp)
        if artifact_file is None:
            raise TypeError("MlflowClient.log_image needs artifact_file")
        self._s.log_file(run_id, artifact_file, _files.image_writer(image, call), call)

    # ----------------------------------------------------------- artifacts
    def list_artifacts(self, run_id: str, path: str | None = None) -> list[FileInfo]:
        return self._s.list_artifacts(run_id, path)

    def download_artifacts(self, run_id: str, path: str, dst_path: str | None = None) -> str:
        return self._s.download(run_id, path, dst_path)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        raise UnsupportedCall(f"MlflowClient.{name}")
