"""``mlflow.tracking``: ``from mlflow.tracking import MlflowClient`` works."""

from __future__ import annotations

from typing import Any

from gitexp.errors import UnsupportedCall
from gitexp.mlflow.client import MlflowClient

__all__ = ["MlflowClient"]


def __getattr__(name: str) -> Any:
    if name.startswith("_"):
        raise AttributeError(f"module 'gitexp.mlflow.tracking' has no attribute {name!r}")
    raise UnsupportedCall(f"mlflow.tracking.{name}")
