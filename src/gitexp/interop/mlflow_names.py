"""MLflow's names, in one place: how an MLflow run's status, tags, params and
columns map onto a git-exp run. Used by the ``gitexp.mlflow`` shim and by
``git exp import mlflow``; neither spells an MLflow name itself.

- statuses: ``finished``/``failed``/``killed``/``running`` are ``FINISHED``/
  ``FAILED``/``KILLED``/``RUNNING``; ``crashed`` shows as ``FAILED`` and
  ``pruned`` (a sweep trial stopped early) as ``FINISHED``;
- experiments: an MLflow experiment id *is* the git-exp experiment name
  (``"0"`` and ``"Default"`` mean git-exp's ``default``);
- run ids: the git-exp run id (``20261122-143022-7f3a9c``);
- params: MLflow keeps every param as text (``str(value)``); git-exp keeps the
  value, and shows MLflow its text. An imported param's text becomes a number,
  boolean or null only when that value's text is exactly the original
  (:func:`param_value`): ``"0.01"`` is 0.01, ``"007"`` stays text;
- tags: MLflow's ``key -> value`` is the git-exp tag ``key=value`` (a plain
  git-exp tag ``baseline`` is MLflow's ``baseline -> ""``); the system tags
  ``mlflow.runName`` and ``mlflow.note.content`` are the run's name and notes.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Iterable, Mapping
from typing import Any

from gitexp import records as fmt

# run statuses
TO_MLFLOW_STATUS = {
    "running": "RUNNING",
    "finished": "FINISHED",
    "failed": "FAILED",
    "killed": "KILLED",
    "crashed": "FAILED",
    "pruned": "FINISHED",
}
# MLflow's final statuses as git-exp's (RUNNING and SCHEDULED runs are not imported)
FROM_MLFLOW_STATUS = {"FINISHED": "finished", "FAILED": "failed", "KILLED": "killed"}
# an MLflow status in a filter: the git-exp statuses it stands for
STATUS_MEANS = {
    "FINISHED": ("finished", "pruned"),
    "FAILED": ("failed", "crashed"),
    "KILLED": ("killed",),
    "RUNNING": ("running",),
    "SCHEDULED": (),
}
END_STATUS = {"FINISHED": "finished", "FAILED": "failed", "KILLED": "killed"}

# system tags
RUN_NAME_TAG = "mlflow.runName"
NOTE_TAG = "mlflow.note.content"
PARENT_RUN_TAG = "mlflow.parentRunId"
USER_TAG = "mlflow.user"
SOURCE_NAME_TAG = "mlflow.source.name"
SOURCE_TYPE_TAG = "mlflow.source.type"
GIT_COMMIT_TAG = "mlflow.source.git.commit"
LOGGED_MODELS_TAG = "mlflow.log-model.history"
SYSTEM_PREFIX = "mlflow."

# experiments
DEFAULT_EXPERIMENT_ID = "0"
DEFAULT_EXPERIMENT_NAME = "Default"

# the columns of search_runs' DataFrame, before params.*, metrics.* and tags.*
RUN_COLUMNS = ("run_id", "experiment_id", "status", "artifact_uri", "start_time", "end_time")
RUNS_URI = "runs:/"
LIFECYCLE_ACTIVE = "active"


def experiment_of(experiment_id_or_name: str) -> str:
    """The git-exp experiment an MLflow experiment id or name stands for."""
    if experiment_id_or_name in (DEFAULT_EXPERIMENT_ID, DEFAULT_EXPERIMENT_NAME):
        return fmt.DEFAULT_EXPERIMENT
    return experiment_id_or_name


def mlflow_status(status: str) -> str:
    """The MLflow status of a git-exp status."""
    return TO_MLFLOW_STATUS.get(status, status.upper())


def param_text(value: Any) -> str:
    """A param as MLflow shows it: ``str(value)`` (MLflow keeps params as text)."""
    return value if isinstance(value, str) else str(value)


def param_value(text: str) -> Any:
    """The value an MLflow param's text stands for, when nothing is lost: an int,
    float, bool or None whose ``str()`` is exactly ``text``; else the text."""
    if text in ("True", "False"):
        return text == "True"
    if text == "None":
        return None
    try:
        number: Any = int(text)
    except ValueError:
        try:
            number = float(text)
        except ValueError:
            return text
        if not math.isfinite(number):
            return text
    return number if str(number) == text else text


def stored_param(value: Any) -> Any:
    """A param value as git-exp stores what MLflow would keep as ``str(value)``:
    numbers, text, booleans, None and lists of them as they are; anything else
    (a dict, an estimator object) as its text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)) and all(
        v is None or isinstance(v, (bool, int, float, str)) for v in value
    ):
        return list(value)
    if (
        type(value).__module__ == "numpy"
        and hasattr(value, "item")
        and getattr(value, "ndim", 1) == 0
    ):
        return value.item()
    return str(value)


def tag_text(key: str, value: Any) -> str:
    """The git-exp tag for an MLflow tag: ``key=value`` (``key`` for an empty value)."""
    text = "" if value is None else str(value)
    return f"{key}={text}" if text else key


def tag_pairs(tags: Iterable[str]) -> dict[str, str]:
    """git-exp tags as MLflow's ``key -> value`` (``a=b`` is a -> b; ``a`` is a -> "")."""
    out: dict[str, str] = {}
    for t in tags:
        key, _, value = t.partition("=")
        out[key] = value
    return out


def run_uri(run_id: str, path: str = "") -> str:
    """``runs:/<run-id>/<path>``."""
    return f"{RUNS_URI}{run_id}/{path}".rstrip("/")


def parse_run_uri(uri: str) -> tuple[str, str] | None:
    """(run id, artifact path) of a ``runs:/`` URI; None for anything else."""
    if not uri.startswith(RUNS_URI):
        return None
    rest = uri[len(RUNS_URI) :].strip("/")
    run_id, _, path = rest.partition("/")
    return run_id, path


def millis(iso: str | None) -> int | None:
    """An ISO-8601 time as MLflow's milliseconds since the epoch."""
    when = fmt.parse_iso(iso) if iso else None
    return None if when is None else round(when.timestamp() * 1000)


def iso_of_millis(ms: float) -> str:
    """Milliseconds since the epoch as git-exp's ISO-8601 text, always with six
    fraction digits, so that it orders as text against stored start times."""
    when = _dt.datetime.fromtimestamp(ms / 1000.0, tz=_dt.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def end_millis(start: str | None, duration: Any) -> int | None:
    """A run's end time in milliseconds, from its start and duration."""
    begin = millis(start)
    if begin is None or not isinstance(duration, (int, float)) or isinstance(duration, bool):
        return None
    return begin + round(float(duration) * 1000)


def flat_params(params: Mapping[str, Any]) -> dict[str, str]:
    """A run's params as MLflow shows them: flattened keys, text values."""
    return {k: param_text(v) for k, v in fmt.flatten(params).items()}
