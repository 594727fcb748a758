"""``mlflow.artifacts``: ``download_artifacts`` of a run's artifacts, restored
from the CAS with every byte verified."""

from __future__ import annotations

from typing import Any

from gitexp.errors import UnsupportedCall
from gitexp.mlflow._session import SESSION

__all__ = ["download_artifacts"]


def download_artifacts(
    artifact_uri: str | None = None,
    run_id: str | None = None,
    artifact_path: str | None = None,
    dst_path: str | None = None,
    tracking_uri: str | None = None,
    registry_uri: str | None = None,
) -> str:
    """The local path of a run's artifact (``run_id`` and ``artifact_path``, or a
    ``runs:/<run-id>/<path>`` URI), restored under ``dst_path``."""
    from gitexp.interop.mlflow_names import parse_run_uri

    if tracking_uri is not None or registry_uri is not None:
        raise UnsupportedCall("mlflow.artifacts.download_artifacts(tracking_uri=...)")
    if artifact_uri is not None:
        parsed = parse_run_uri(artifact_uri)
        if parsed is None:
            raise UnsupportedCall(
                f"mlflow.artifacts.download_artifacts({artifact_uri!r})", "give a runs:/ URI"
            )
        run_id, artifact_path = parsed
    if run_id is None:
        raise TypeError("download_artifacts needs artifact_uri or run_id")
    return SESSION.download(run_id, artifact_path, dst_path)


def __getattr__(name: str) -> Any:
    if name.startswith("_"):
        raise AttributeError(f"module 'gitexp.mlflow.artifacts' has no attribute {name!r}")
    raise UnsupportedCall(f"mlflow.artifacts.{name}")
