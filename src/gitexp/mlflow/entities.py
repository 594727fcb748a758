"""The MLflow objects scripts read: ``Run`` (``.info``, ``.data``), ``Experiment``,
``Metric``, ``FileInfo``, ``ModelInfo`` and the ``ActiveRun`` that ``start_run``
returns. Plain data made from git-exp runs; attributes as MLflow names them."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable


class ViewType:
    """MLflow's run and experiment views (git-exp has no deleted runs to show)."""

    ACTIVE_ONLY = 1
    DELETED_ONLY = 2
    ALL = 3


class RunStatus:
    """MLflow's run statuses."""

    RUNNING = "RUNNING"
    SCHEDULED = "SCHEDULED"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"


@dataclass(frozen=True)
class Metric:
    """One point of a metric: ``timestamp`` in milliseconds since the epoch."""

    key: str
    value: float
    timestamp: int
    step: int


@dataclass(frozen=True)
class Param:
    """A param as MLflow shows it: text."""

    key: str
    value: str


@dataclass(frozen=True)
class RunTag:
    """A tag as MLflow shows it."""

    key: str
    value: str


@dataclass
class RunInfo:
    """What a run is: ids, name, status and times (milliseconds since the epoch)."""

    run_id: str
    experiment_id: str
    run_name: str | None
    status: str
    start_time: int | None
    end_time: int | None
    artifact_uri: str
    user_id: str = ""
    lifecycle_stage: str = "active"

    @property
    def run_uuid(self) -> str:
        """MLflow's old name of ``run_id``."""
        return self.run_id


@dataclass
class RunData:
    """What a run holds: the last value of each metric, params and tags as text."""

    metrics: dict[str, float] = field(default_factory=dict)
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class Run:
    """An MLflow ``Run``: ``info`` and ``data``."""

    info: RunInfo
    data: RunData


class ActiveRun(Run):
    """The run ``start_run`` returns: a context manager that ends the run (with
    the traceback of an exception that escapes the block recorded)."""

    def __init__(self, run: Run, close: Callable[..., None]) -> None:
        super().__init__(run.info, run.data)
        self._close = close

    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self,
        tp: type[BaseException] | None,
        value: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._close(self.info.run_id, tp, value, tb)


@dataclass
class Experiment:
    """An MLflow experiment: its id is the git-exp experiment name."""

    experiment_id: str
    name: str
    artifact_location: str = ""
    lifecycle_stage: str = "active"
    tags: dict[str, str] = field(default_factory=dict)
    creation_time: int | None = None
    last_update_time: int | None = None


@dataclass(frozen=True)
class FileInfo:
    """An artifact listing entry."""

    path: str
    is_dir: bool
    file_size: int | None


@dataclass
class ModelInfo:
    """What ``log_model`` returns: ``model_uri`` loads the model back."""

    artifact_path: str
    model_uri: str
    run_id: str
    flavors: dict[str, Any] = field(default_factory=dict)
    utc_time_created: str = ""
    model_uuid: str = ""

    @property
    def name(self) -> str:
        """The model's name (its artifact path)."""
        return self.artifact_path
