"""What every framework integration shares: which run it logs into, params and
metrics in the forms runs take, and files stored as artifacts. No framework is
imported here."""

from __future__ import annotations

import enum
import importlib
import math
import os
import tempfile
import warnings
import weakref
from collections.abc import Callable, Iterable, Mapping
from types import ModuleType
from typing import Any

from gitexp.errors import MissingExtra
from gitexp.tracking import GitExpWarning, Run, active_run, start_run

# runs that an integration started itself: another integration object does not
# adopt them as "the active run" (a second model.fit in a notebook gets its own run)
_started: weakref.WeakSet[Run] = weakref.WeakSet()


def require(
    module: str | tuple[str, ...], what: str, extra: str, package: str | None = None
) -> ModuleType:
    """Import a framework (the first of several names that is installed), or raise
    MissingExtra naming the extra when none is. A framework that is there but
    fails to import (a Keras backend that is missing) raises its own error."""
    names = (module,) if isinstance(module, str) else module
    for name in names:
        try:
            return importlib.import_module(name)
        except ModuleNotFoundError as exc:
            missing = exc.name or ""
            if not (name == missing or name.startswith(missing + ".")):  # a dependency of it
                raise
    raise MissingExtra(what, extra, package or names[0].split(".")[0])


class RunBinding:
    """The run an integration logs into, found when it is first needed: the run
    given, else the active run (under ``git exp run``, the run it started), else
    a new run, which this binding owns: it is left open when training ends (what
    the script logs next goes there too) and finished by :meth:`finish` or when
    the interpreter exits."""

    def __init__(
        self,
        run: Run | None,
        experiment: str | None,
        name: str | None,
        tags: Iterable[str] | None,
        repo: str | os.PathLike[str] | None,
    ) -> None:
        self._run = run
        self._given = run
        self._experiment = experiment
        self._name = name
        self._tags = list(tags or [])
        self._repo = repo
        self.owned = False

    def __deepcopy__(self, memo: dict[int, Any]) -> RunBinding:
        """A copy (scikit-learn's ``clone`` of an estimator that holds the callback)
        finds its run anew; a run given explicitly is shared, never copied."""
        return RunBinding(self._given, self._experiment, self._name, self._tags, self._repo)

    @property
    def bound(self) -> bool:
        """True once the run is known."""
        return self._run is not None

    @property
    def run(self) -> Run:
        """The run logged into last (even when finished since); found or started
        now if there is none yet."""
        return self._run if self._run is not None else self.get()

    def get(self) -> Run:
        """The run, found or started now if it is not known yet (or started anew
        when the run this binding started was finished)."""
        run = self._run
        if run is not None and not (self.owned and run._finished):
            return run
        active = active_run()
        if active is not None and active not in _started and run is None:
            self._run = active
            return active
        run = start_run(
            experiment=self._experiment, name=self._name, tags=self._tags, repo=self._repo
        )
        if not run._attached:  # under git exp run, start_run attached to that run
            self.owned = True
            _started.add(run)
        self._run = run
        return run

    def finish(self, status: str = "finished") -> None:
        """Finish the run if this binding started it; a run it was given, or found
        active, is left to its owner."""
        if self._run is not None and self.owned:
            self._run.finish(status)

    def commit(self) -> None:
        """Commit what was logged to the run's ref (training ended)."""
        if self._run is not None and not self._run._finished:
            self._run.checkpoint()


def plain(value: Any) -> Any:
    """A framework's config value as plain JSON data: mappings and sequences kept,
    numbers (numpy and torch scalars and arrays too), text, None, an enum's value;
    anything else as its ``str`` (a dtype, a class, a callable)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return value
    if isinstance(value, enum.Enum):
        return plain(value.value)
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, (set, frozenset)):
        return sorted((plain(v) for v in value), key=repr)
    if type(value).__name__ == "Namespace" and hasattr(value, "__dict__"):
        return plain(vars(value))
    if getattr(value, "shape", None) is not None and callable(getattr(value, "tolist", None)):
        try:  # numpy and torch scalars and arrays
            return plain(value.tolist())
        except (TypeError, ValueError, RuntimeError):
            pass
    return str(value)


def scalars(values: Mapping[str, Any], prefix: str = "") -> dict[str, float]:
    """The numeric scalars of a framework's logs, as floats (text and arrays left out)."""
    out: dict[str, float] = {}
    for key, value in values.items():
        if isinstance(value, (str, bytes)) or value is None:
            continue
        shape = getattr(value, "shape", None)
        if shape is not None and tuple(shape) not in ((), (1,)):
            continue
        try:
            out[prefix + str(key)] = float(value)
        except (TypeError, ValueError, RuntimeError):
            continue
    return out


def log_params(run: Run, params: Mapping[str, Any]) -> None:
    """Record a framework's params (converted with :func:`plain`), if there are any."""
    converted = plain(params)
    if converted:
        run.log_params(converted)


def number(text: str) -> Any:
    """A number given as text in a framework's config (``"3"``, ``"0.100000001"``),
    as an int or a float to float32 precision; other text unchanged."""
    try:
        return int(text)
    except ValueError:
        pass
    try:
        x = float(text)
    except ValueError:
        return text
    if math.isfinite(x):
        return float(f"{x:.7g}")
    return text


def log_saved(run: Run, name: str, save: Callable[[str], None]) -> None:
    """Store a file that ``save(path)`` writes (a model) as the artifact ``name``,
    through a temporary directory: nothing is written in the user's work tree."""
    with tempfile.TemporaryDirectory(prefix="gitexp-") as tmp:
        path = os.path.join(tmp, os.path.basename(name))
        save(path)
        run.log_artifact(path, name=name)


class FileLog:
    """Files (checkpoints) stored as artifacts, each once per content state: a
    file logged again unchanged is skipped, a rewritten one is stored again."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        self._seen: dict[str, tuple[int, int]] = {}

    def log(self, run: Run, paths: Iterable[str | os.PathLike[str] | None]) -> None:
        for raw in paths:
            if not raw:
                continue
            path = os.path.abspath(os.fspath(raw))
            try:
                st = os.stat(path)
            except OSError:
                continue
            state = (st.st_mtime_ns, st.st_size)
            if self._seen.get(path) == state:
                continue
            self._seen[path] = state
            run.log_artifact(path, name=f"{self.folder}/{os.path.basename(path)}")


def warn_once(holder: Any, attr: str, message: str) -> None:
    """A GitExpWarning, once per integration object and kind."""
    if not getattr(holder, attr, False):
        setattr(holder, attr, True)
        warnings.warn(f"git-exp: {message}", GitExpWarning, stacklevel=3)
