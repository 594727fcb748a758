"""Weights & Biases' logging API over git-exp: ``import gitexp.wandb as wandb``.

The loop people copy from W&B's docs records a git-exp run, offline, with no
account::

    run = wandb.init(project="mnist", config={"lr": 0.01}, tags=["baseline"])
    for epoch in range(10):
        wandb.log({"loss": loss, "acc": acc})
    run.summary["best_acc"] = best
    wandb.finish()

- ``init(project, name, config, tags, group, job_type, notes, id/resume)``: the
  project is the git-exp experiment, ``config`` the params, ``group`` and
  ``job_type`` the tags ``group=...`` and ``job_type=...``, ``notes`` a note;
  ``id`` with ``resume`` resumes a git-exp run by its id. Under ``git exp run``
  it attaches to the run the command records.
- ``wandb.config`` / ``run.config``: the params (``config.lr``, ``config["lr"]``,
  ``config.update(...)``, assignment logs the param).
- ``log(dict, step=None, commit=None)``: numbers become metric points at W&B's
  step (one past the last ``log`` unless ``commit=False`` or ``step=`` says
  otherwise); nested dicts become ``a/b`` keys; ``wandb.Image`` and
  ``wandb.Table`` values become artifacts (``media/images/<key>_<step>.png``,
  ``media/tables/<key>_<step>.table.json``).
- ``run.summary``: reading gives each metric's last value (or its final one);
  assigning records a final value (``log_summary``).
- ``finish(exit_code)``, ``wandb.save(path)``, ``wandb.Artifact`` with
  ``add_file``/``add_dir`` and ``run.log_artifact``; ``login()`` returns True
  (there is no account).

- ``wandb.alert(title, text, level, wait_duration)`` (and ``run.alert``):
  ``run.alert()`` of git-exp: recorded in the run and sent to the alert hook
  and webhooks (``AlertLevel.INFO``/``WARN``/``ERROR`` or their names); an
  alert with a title sent less than ``wait_duration`` ago is not sent again.

Every other call raises :class:`gitexp.errors.UnsupportedCall`, which names it.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import enum
import glob
import hashlib
import json
import os
import tempfile
import threading
import time
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from types import TracebackType
from typing import Any

from gitexp import records as fmt
from gitexp.errors import InvalidValue, RunStateError, UnsupportedCall, UsageError
from gitexp.tracking import Run as GitExpRun

__all__ = [
    "AlertLevel",
    "Artifact",
    "Image",
    "Run",
    "Table",
    "alert",
    "finish",
    "init",
    "log",
    "log_artifact",
    "login",
    "save",
]

_lock = threading.RLock()
_current: Run | None = None


def _unsupported_args(call: str, **given: Any) -> None:
    for name, value in given.items():
        if value is not None:
            raise UnsupportedCall(f"{call}({name}=...)")


# ---------------------------------------------------------------- media


class AlertLevel(str, enum.Enum):
    """W&B's alert levels."""

    INFO = "INFO"
    WARN = "WARN"
    ERROR = "ERROR"


_LEVELS = {"info": "info", "warn": "warning", "warning": "warning", "error": "error"}


def _alert_level(level: Any) -> str:
    name = str(level.value if isinstance(level, enum.Enum) else level or "info").lower()
    if name not in _LEVELS:
        raise InvalidValue(f"wandb.alert: level {level!r} is not INFO, WARN or ERROR")
    return _LEVELS[name]


def _seconds(wait: Any) -> float:
    if isinstance(wait, _dt.timedelta):
        return wait.total_seconds()
    return float(wait)


class Image:
    """An image to log: a numpy array (HxW, HxWx3, HxWx4), a PIL image or a
    file path; stored as PNG (a path: as it is)."""

    def __init__(
        self, data_or_path: Any, mode: str | None = None, caption: str | None = None, **kwargs: Any
    ) -> None:
        _unsupported_args("wandb.Image", **kwargs)
        self._data = data_or_path
        self._mode = mode
        self.caption = caption

    def _write(self, directory: str, stem: str) -> str:
        """Write the image into ``directory``; return the file's path."""
        if isinstance(self._data, (str, os.PathLike)):
            src = os.fspath(self._data)
            if not os.path.isfile(src):
                raise UsageError(f"wandb.Image: no file {src}")
            return src
        try:
            from PIL import Image as PILImage
        except ImportError as exc:
            from gitexp.errors import MissingExtra

            raise MissingExtra("wandb.Image", "mlflow", "pillow") from exc
        data = self._data
        if not isinstance(data, PILImage.Image):
            import numpy as np

            arr = np.asarray(data)
            if arr.dtype.kind == "f":
                arr = (np.clip(arr, 0, 1) * 255).round()
            if arr.ndim == 3 and arr.shape[2] == 1:
                arr = arr[:, :, 0]
            data = PILImage.fromarray(arr.astype(np.uint8), mode=self._mode)
        path = os.path.join(directory, stem + ".png")
        data.save(path, format="PNG")
        return path


class Table:
    """A table to log: ``columns`` and rows (``data``), or a pandas ``dataframe``;
    stored as W&B's table JSON (``{"columns": [...], "data": [[...], ...]}``)."""

    def __init__(
        self,
        columns: Sequence[str] | None = None,
        data: Sequence[Sequence[Any]] | None = None,
        rows: Sequence[Sequence[Any]] | None = None,
        dataframe: Any = None,
        **kwargs: Any,
    ) -> None:
        _unsupported_args("wandb.Table", **kwargs)
        if dataframe is not None:
            self.columns = [str(c) for c in dataframe.columns]
            self.data = dataframe.values.tolist()
        else:
            self.data = [list(r) for r in (data if data is not None else rows or [])]
            width = len(self.data[0]) if self.data else 0
            self.columns = list(columns) if columns is not None else [f"c{i}" for i in range(width)]

    def add_data(self, *row: Any) -> None:
        """Append one row."""
        if len(row) != len(self.columns):
            raise UsageError(
                f"wandb.Table.add_data: {len(row)} values for {len(self.columns)} columns"
            )
        self.data.append(list(row))

    def _write(self, directory: str, stem: str) -> str:
        path = os.path.join(directory, stem + ".table.json")
        with open(path, "w") as f:
            json.dump({"columns": self.columns, "data": self.data}, f, default=_plain)
        return path


def _plain(value: Any) -> Any:
    if hasattr(value, "item"):
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)


class Artifact:
    """A W&B artifact: files and directories logged together under its name."""

    def __init__(
        self,
        name: str,
        type: str,
        description: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        _unsupported_args("wandb.Artifact", **kwargs)
        self.name = fmt.normalize_artifact_path(name)
        self.type = type
        self.description = description
        self.metadata = dict(metadata or {})
        self._entries: list[tuple[str, str]] = []  # (path in the artifact, local path)

    def add_file(self, local_path: str, name: str | None = None, **kwargs: Any) -> None:
        """Add a file (under ``name``, default its base name)."""
        _unsupported_args("wandb.Artifact.add_file", **kwargs)
        if not os.path.isfile(local_path):
            raise UsageError(f"wandb.Artifact.add_file: no file {local_path}")
        self._entries.append((name or os.path.basename(local_path), local_path))

    def add_dir(self, local_path: str, name: str | None = None, **kwargs: Any) -> None:
        """Add a directory's files (under ``name``, default the artifact's root)."""
        _unsupported_args("wandb.Artifact.add_dir", **kwargs)
        if not os.path.isdir(local_path):
            raise UsageError(f"wandb.Artifact.add_dir: no directory {local_path}")
        self._entries.append((name or "", local_path))

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        raise UnsupportedCall(f"wandb.Artifact.{name}")


# ---------------------------------------------------------- config, summary


class Config(MutableMapping[str, Any]):
    """A run's config: its params. Reading gives them (nested ones as dicts),
    setting an item or an attribute logs the param."""

    def __init__(self, run: GitExpRun) -> None:
        object.__setattr__(self, "_run", run)

    def _params(self) -> dict[str, Any]:
        run: GitExpRun = self._run
        return run.params

    def __getitem__(self, key: str) -> Any:
        return self._params()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._run.log_params({key: value})

    def __delitem__(self, key: str) -> None:
        raise UnsupportedCall("del wandb.config[...]", "a logged param stays")

    def __iter__(self) -> Iterator[str]:
        return iter(self._params())

    def __len__(self) -> int:
        return len(self._params())

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        params = self._params()
        if name in params:
            return params[name]
        raise AttributeError(f"wandb.config has no key {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def update(  # type: ignore[override]
        self, d: Any = None, allow_val_change: bool | None = None, **kwargs: Any
    ) -> None:
        """Log several params (a dict, an argparse Namespace, or keywords)."""
        self._run.log_params({**_as_dict(d), **kwargs})

    def setdefaults(self, d: Mapping[str, Any]) -> None:
        """Log the params not set yet."""
        have = self._params()
        self._run.log_params({k: v for k, v in d.items() if k not in have})

    def as_dict(self) -> dict[str, Any]:
        """The params, as a dict."""
        return dict(self._params())

    def __repr__(self) -> str:
        return f"wandb.Config({self._params()!r})"


def _as_dict(d: Any) -> dict[str, Any]:
    if d is None:
        return {}
    if isinstance(d, argparse.Namespace):
        return dict(vars(d))
    if isinstance(d, Mapping):
        return dict(d)
    if isinstance(d, (str, os.PathLike)) and os.path.isfile(d):
        import yaml

        with open(d) as f:
            loaded = yaml.safe_load(f) or {}
        if not isinstance(loaded, dict):
            raise UsageError(f"wandb config file {d} does not hold a mapping")
        return {
            k: (
                v["value"]
                if isinstance(v, dict) and set(v) <= {"value", "desc"} and "value" in v
                else v
            )
            for k, v in loaded.items()
        }
    raise UsageError(
        f"a wandb config is a dict, an argparse Namespace or a YAML file, not {type(d).__name__}"
    )


class Summary(MutableMapping[str, Any]):
    """A run's summary: each metric's last logged value, or the final value set
    here (``summary["best"] = 0.9`` records it with ``log_summary``)."""

    def __init__(self, run: Run) -> None:
        self._owner = run

    def _values(self) -> dict[str, Any]:
        return {**self._owner._last, **self._owner._final}

    def __getitem__(self, key: str) -> Any:
        return self._values()[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __delitem__(self, key: str) -> None:
        raise UnsupportedCall("del run.summary[...]")

    def __iter__(self) -> Iterator[str]:
        return iter(self._values())

    def __len__(self) -> int:
        return len(self._values())

    def update(self, d: Any = None, **kwargs: Any) -> None:  # type: ignore[override]
        """Record final values."""
        values = {**_as_dict(d), **kwargs}
        self._owner._run.log_summary(values)
        self._owner._final.update({k: float(v) for k, v in values.items()})

    def __repr__(self) -> str:
        return f"wandb.Summary({self._values()!r})"


# ------------------------------------------------------------------ runs


class Run:
    """What ``wandb.init`` returns (and ``wandb.run`` is): a git-exp run behind
    W&B's names."""

    def __init__(
        self,
        run: GitExpRun,
        project: str | None,
        group: str | None,
        job_type: str | None,
        name: str | None = None,
    ) -> None:
        self._run = run
        self._name = name
        self._step = 0
        self._last: dict[str, float] = {}
        self._final: dict[str, float] = {}
        self._saves: list[str] = []
        self._finished = False
        self._alerted: dict[str, float] = {}  # alert title -> when it was last sent
        self.project = project or run.experiment
        self.group = group
        self.job_type = job_type
        self.config = Config(run)
        self.summary = Summary(self)

    @property
    def id(self) -> str:
        """The git-exp run id."""
        return self._run.id

    @property
    def name(self) -> str | None:
        """The run's name."""
        return self._name

    @property
    def dir(self) -> str:
        """A directory for files to ``save`` (the working directory)."""
        return os.getcwd()

    @property
    def step(self) -> int:
        """The step the next ``log`` writes at."""
        return self._step

    @property
    def url(self) -> None:
        """None: there is no server."""
        return None

    @property
    def offline(self) -> bool:
        """True: everything stays in the repository."""
        return True

    def log(
        self, data: Mapping[str, Any], step: int | None = None, commit: bool | None = None
    ) -> None:
        """Log values at W&B's step: numbers as metric points, images and tables as artifacts."""
        if not isinstance(data, Mapping):
            raise UsageError("wandb.log takes a dict")
        with _lock:
            if step is not None:
                if isinstance(step, bool) or not isinstance(step, int) or step < 0:
                    raise UsageError(
                        f"wandb.log: step must be a non-negative integer, not {step!r}"
                    )
                at = step
                self._step = max(self._step, step)  # an earlier step is logged, not dropped
            else:
                at = self._step
            numbers: dict[str, Any] = {}
            for key, value in _flatten(data).items():
                if isinstance(value, (Image, Table)):
                    self._log_media(key, value, at)
                    continue
                numbers[key] = _number(key, value)
            if numbers:
                self._run.log_metrics(numbers, step=at)
                self._last.update({k: float(v) for k, v in numbers.items()})
            if (step is None and commit is not False) or commit is True:
                self._step = max(self._step, at + 1)

    def _log_media(self, key: str, value: Image | Table, step: int) -> None:
        kind = "images" if isinstance(value, Image) else "tables"
        safe = key.replace("/", "_")
        with tempfile.TemporaryDirectory(prefix="gitexp-wandb-") as tmp:
            path = value._write(tmp, f"{safe}_{step}")
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()[:8]
            ext = ".table.json" if isinstance(value, Table) else os.path.splitext(path)[1] or ".png"
            self._run.log_artifact(path, name=f"media/{kind}/{safe}_{step}_{digest}{ext}")

    def log_artifact(
        self,
        artifact_or_path: Artifact | str,
        name: str | None = None,
        type: str | None = None,
        aliases: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> Artifact | None:
        """Store an ``Artifact``'s files (or a path) under the artifact's name."""
        _unsupported_args("wandb.Run.log_artifact", **kwargs)
        if isinstance(artifact_or_path, Artifact):
            art = artifact_or_path
            for inner, local in art._entries:
                target = f"{art.name}/{inner}".rstrip("/")
                self._run.log_artifact(local, name=target)
            return art
        path = os.fspath(artifact_or_path)
        self._run.log_artifact(path, name=name or os.path.basename(os.path.abspath(path)))
        return None

    def save(self, glob_str: str, base_path: str | None = None, policy: str = "live") -> list[str]:
        """Store the files matching ``glob_str`` now and again when the run finishes."""
        self._saves.append(glob_str)
        return self._store_saved(glob_str, base_path)

    def _store_saved(self, pattern: str, base_path: str | None = None) -> list[str]:
        out = []
        for path in sorted(glob.glob(pattern, recursive=True)):
            if os.path.isfile(path):
                rel = os.path.relpath(path, base_path) if base_path else path
                name = fmt.normalize_artifact_path(
                    os.path.basename(path) if rel.startswith("..") or os.path.isabs(rel) else rel
                )
                self._run.log_artifact(path, name=name)
                out.append(path)
        return out

    def finish(self, exit_code: int | None = None, quiet: bool | None = None) -> None:
        """End the run (``failed`` for a non-zero ``exit_code``)."""
        global _current
        with _lock:
            if self._finished:
                return
            self._finished = True
            for pattern in self._saves:
                self._store_saved(pattern)
            self._run.finish("finished" if not exit_code else "failed")
            if _current is self:
                _current = None

    def alert(self, title: str, text: str, level: Any = None, wait_duration: Any = None) -> None:
        """Raise an alert (git-exp's ``run.alert``), unless one with this title went
        less than ``wait_duration`` (seconds or a timedelta) ago."""
        lvl = _alert_level(level)
        now = time.monotonic()
        if wait_duration is not None:
            last = self._alerted.get(title)
            if last is not None and now - last < _seconds(wait_duration):
                return
        self._alerted[title] = now
        self._run.alert(title, text, lvl)

    def __enter__(self) -> Run:
        return self

    def __exit__(
        self, tp: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.finish(exit_code=0 if tp is None else 1)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        raise UnsupportedCall(f"wandb.Run.{name}")

    def __repr__(self) -> str:
        return f"<gitexp.wandb.Run {self._run.experiment}/{self._run.id}>"


def _flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + "/"))
        else:
            out[name] = value
    return out


def _number(key: str, value: Any) -> Any:
    """A metric value: a number, a numpy scalar or a one-element tensor; other
    W&B media (histograms, audio, plots) and text are not supported."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return value
    if hasattr(value, "item") and (
        getattr(value, "ndim", 0) == 0 or getattr(value, "numel", lambda: 0)() == 1
    ):
        return value.item()
    if isinstance(value, str):
        raise InvalidValue(
            f"wandb.log: {key!r} is text; git-exp logs numbers (log text as a param)", key
        )
    raise UnsupportedCall(
        f"wandb.log of a {type(value).__name__} ({key!r})",
        "log numbers, wandb.Image or wandb.Table",
    )


# -------------------------------------------------------------- module API


def init(
    project: str | None = None,
    entity: str | None = None,
    config: Any = None,
    name: str | None = None,
    notes: str | None = None,
    tags: Sequence[str] | None = None,
    group: str | None = None,
    job_type: str | None = None,
    mode: str | None = None,
    dir: str | None = None,
    id: str | None = None,
    resume: bool | str | None = None,
    reinit: bool | str | None = None,
    config_exclude_keys: Sequence[str] | None = None,
    config_include_keys: Sequence[str] | None = None,
    allow_val_change: bool | None = None,
    save_code: bool | None = None,
    anonymous: str | None = None,
    settings: Any = None,
    **kwargs: Any,
) -> Run:
    """Start a run (or, with ``id`` and ``resume``, go on with a git-exp run).

    ``project`` is the experiment (default: git-exp's ``default``); ``entity`` is
    ignored (there is no account). With a run active, ``init`` returns it unless
    ``reinit`` asks for a new one.
    """
    global _current
    import gitexp

    _unsupported_args("wandb.init", settings=settings, anonymous=anonymous, **kwargs)
    if mode == "disabled":
        raise UnsupportedCall("wandb.init(mode='disabled')", "leave wandb.init out instead")
    with _lock:
        if _current is not None and not _current._finished:
            if not reinit:
                return _current
            if reinit in (True, "finish_previous"):
                _current.finish()
            elif reinit != "create_new":
                raise UnsupportedCall(f"wandb.init(reinit={reinit!r})")
        params = _as_dict(config)
        if config_include_keys:
            params = {k: v for k, v in params.items() if k in set(config_include_keys)}
        if config_exclude_keys:
            params = {k: v for k, v in params.items() if k not in set(config_exclude_keys)}
        tag_list = list(tags or [])
        if group:
            tag_list.append(f"group={group}")
        if job_type:
            tag_list.append(f"job_type={job_type}")
        repo = dir or "."
        if id is not None:
            run = _resume(id, resume, repo)
            if params:
                run.log_params(params)
            if tag_list:
                run.set_tags(tag_list)
        else:
            if resume == "must":
                raise UsageError("wandb.init(resume='must') needs the id of the run to resume")
            run = gitexp.start_run(
                experiment=project, name=name, params=params, tags=tag_list, repo=repo
            )
        if notes:
            run.note(notes)
        current = Run(run, project, group, job_type, name)
        _current = current
        return current


def _resume(run_id: str, resume: bool | str | None, repo: str) -> GitExpRun:
    from gitexp.catalog import indexed_store
    from gitexp.errors import RunNotFound

    if not resume:
        raise UnsupportedCall(
            "wandb.init(id=...) for a new run",
            "git-exp draws run ids; give resume=True to go on with a run",
        )
    from gitexp.tracking import resume_run

    try:
        with indexed_store(repo) as store:
            rec = store.read_settled(run_id)
    except RunNotFound as exc:
        raise UsageError(f"wandb.init(id={run_id!r}, resume=...): no such run") from exc
    return resume_run(str(rec.ref), repo)


def _active(call: str) -> Run:
    with _lock:
        if _current is None or _current._finished:
            raise RunStateError(f"{call}: no active run: call wandb.init() first")
        return _current


def log(
    data: Mapping[str, Any],
    step: int | None = None,
    commit: bool | None = None,
    sync: bool | None = None,
) -> None:
    """Log values on the active run."""
    _active("wandb.log").log(data, step=step, commit=commit)


def finish(exit_code: int | None = None, quiet: bool | None = None) -> None:
    """End the active run (nothing to end: nothing to do, as in W&B)."""
    with _lock:
        current = _current
    if current is not None:
        current.finish(exit_code=exit_code)


def save(glob_str: str, base_path: str | None = None, policy: str = "live") -> list[str]:
    """Store files matching ``glob_str`` as artifacts of the active run."""
    return _active("wandb.save").save(glob_str, base_path, policy)


def log_artifact(
    artifact_or_path: Artifact | str,
    name: str | None = None,
    type: str | None = None,
    aliases: Sequence[str] | None = None,
) -> Artifact | None:
    """Store an artifact's files on the active run."""
    return _active("wandb.log_artifact").log_artifact(
        artifact_or_path, name=name, type=type, aliases=aliases
    )


def login(*args: Any, **kwargs: Any) -> bool:
    """git-exp has no account to log in to: returns True."""
    return True


def alert(title: str, text: str, level: Any = None, wait_duration: Any = None) -> None:
    """Raise an alert on the active run (see :meth:`Run.alert`)."""
    _active("wandb.alert").alert(title, text, level, wait_duration)


def __getattr__(name: str) -> Any:
    if name == "run":
        with _lock:
            return _current if _current is not None and not _current._finished else None
    if name == "config":
        return _active("wandb.config").config
    if name == "summary":
        return _active("wandb.summary").summary
    if name.startswith("_"):
        raise AttributeError(f"module 'gitexp.wandb' has no attribute {name!r}")
    raise UnsupportedCall(f"wandb.{name}")


def __dir__() -> list[str]:
    return sorted([*__all__, "config", "run", "summary"])
