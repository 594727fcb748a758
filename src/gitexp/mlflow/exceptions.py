"""``mlflow.exceptions``: ``MlflowException`` is git-exp's own error base, so that
``except MlflowException`` catches what the shim raises."""

from __future__ import annotations

from gitexp.errors import GitExpError as MlflowException

__all__ = ["MlflowException"]
