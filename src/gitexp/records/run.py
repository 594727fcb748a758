"""``run.json``, ``env.json`` and ``code.json`` as typed, frozen records.

Each record reads the JSON object of its file (``from_json``) and writes it back
(``to_json``) unchanged: fields this release does not know are kept in
``extra`` and written back as they were, as docs/format.md requires of every
reader that rewrites a file. A field of the wrong type is read as absent rather
than trusted: these files come from other people's clones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, TypeVar

from gitexp.errors import UnsupportedFormat
from gitexp.records.names import FORMAT_VERSION

_R = TypeVar("_R", bound="_Record")


# readers of one JSON value: the typed value, or _ABSENT when it has the wrong type
# (null reads as None where a field may be null)


def _text(value: Any) -> Any:
    return value if value is None or isinstance(value, str) else _ABSENT


def _int(value: Any) -> Any:
    ok = value is None or (isinstance(value, int) and not isinstance(value, bool))
    return value if ok else _ABSENT


def _number(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return _ABSENT
    return value


def _flag(value: Any) -> Any:
    return value if isinstance(value, bool) else _ABSENT


def _texts(value: Any) -> Any:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return _ABSENT
    return tuple(value)


def _object(value: Any) -> Any:
    return dict(value) if isinstance(value, Mapping) else _ABSENT


def _text_map(value: Any) -> Any:
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        return _ABSENT
    return dict(value)


_ABSENT = object()


@dataclass(frozen=True)
class _Record:
    """The shared read/write of a record: known fields typed, the rest in ``extra``.

    A known field whose value has the wrong type reads as its default and its
    raw value stays in ``extra``, so that writing the record back loses nothing.
    """

    extra: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    present: frozenset[str] = field(default=frozenset(), repr=False, compare=False)

    # JSON name -> reader returning the typed value, or _ABSENT for a wrong type
    _FIELDS: ClassVar[dict[str, Any]] = {}

    @classmethod
    def from_json(cls: type[_R], data: Mapping[str, Any]) -> _R:
        """Read the file's JSON object (anything that is not an object reads as empty)."""
        data = data if isinstance(data, Mapping) else {}
        kwargs: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in data.items():
            read = cls._FIELDS.get(key)
            typed = _ABSENT if read is None else read(value)
            if typed is _ABSENT:
                extra[key] = value
            else:
                kwargs[key] = typed
        return cls(extra=extra, present=frozenset(kwargs), **kwargs)

    def to_json(self) -> dict[str, Any]:
        """The JSON object: every known field that was read or is set, and the others
        as they were read."""
        out = dict(self.extra)
        defaults = {f.name: f for f in fields(self)}
        for key in self._FIELDS:
            value = getattr(self, key)
            f = defaults[key]
            default = f.default_factory() if f.default_factory is not MISSING else f.default
            if key not in self.present and value == default:
                continue
            out[key] = _plain(value)
        return out


def _plain(value: Any) -> Any:
    """A record value as JSON data: tuples as lists, nested records as objects."""
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if hasattr(value, "__dataclass_fields__"):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    return value


@dataclass(frozen=True)
class Note:
    """One entry of ``run.json`` ``notes``."""

    time: str | None
    text: str


def _notes(value: Any) -> Any:
    if not isinstance(value, list) or not all(
        isinstance(n, Mapping)
        and set(n) == {"time", "text"}
        and isinstance(n["text"], str)
        and isinstance(n["time"], (str, type(None)))
        for n in value
    ):
        return _ABSENT
    return tuple(Note(n["time"], n["text"]) for n in value)


def _writers(value: Any) -> Any:
    if not isinstance(value, Mapping) or not all(
        isinstance(n, int) and not isinstance(n, bool) for n in value.values()
    ):
        return _ABSENT
    return dict(value)


@dataclass(frozen=True)
class RunInfo(_Record):
    """``run.json``: what the run is and how it went (docs/format.md, run.json)."""

    format: int | None = None
    id: str | None = None
    experiment: str | None = None
    name: str | None = None
    status: str = "running"
    start_time: str | None = None
    heartbeat: str | None = None
    end_time: str | None = None
    duration: float | None = None
    command: tuple[str, ...] = ()
    cwd: str | None = None
    cwd_rel: str | None = None
    config: str | None = None
    exit_code: int | None = None
    error: str | None = None
    host: str | None = None
    user: str | None = None
    tags: tuple[str, ...] = ()
    notes: tuple[Note, ...] = ()
    links: Mapping[str, Any] = field(default_factory=dict)
    writers: Mapping[str, int] = field(default_factory=dict)
    fingerprint: str | None = None

    _FIELDS: ClassVar[dict[str, Any]] = {
        "format": _int,
        "id": _text,
        "experiment": _text,
        "name": _text,
        "status": (lambda v: v if isinstance(v, str) else _ABSENT),
        "start_time": _text,
        "heartbeat": _text,
        "end_time": _text,
        "duration": _number,
        "command": _texts,
        "cwd": _text,
        "cwd_rel": _text,
        "config": _text,
        "exit_code": _int,
        "error": _text,
        "host": _text,
        "user": _text,
        "tags": _texts,
        "notes": _notes,
        "links": _object,
        "writers": _writers,
        "fingerprint": _text,
    }

    @property
    def finished(self) -> bool:
        """True once the run has a final status."""
        return self.status != "running"

    def check_version(self, where: str) -> None:
        """Refuse a run written in a format this release does not read."""
        if self.format != FORMAT_VERSION:
            raise UnsupportedFormat(
                f"{where} is in git-exp format version {self.format!r}; this release reads "
                f"version {FORMAT_VERSION} (upgrade git-exp to read it)",
                self.format,
            )


@dataclass(frozen=True)
class CodeInfo(_Record):
    """``code.json``: the code version the run was made from."""

    head: str | None = None
    branch: str | None = None
    remotes: Mapping[str, str] = field(default_factory=dict)
    dirty: bool = False
    snapshot: str | None = None
    commit: str | None = None
    tree: str | None = None
    changed: tuple[str, ...] = ()
    large_files: tuple[str, ...] = ()
    unreadable: tuple[str, ...] = ()
    diff_stat: str | None = None

    _FIELDS: ClassVar[dict[str, Any]] = {
        "head": _text,
        "branch": _text,
        "remotes": _text_map,
        "dirty": _flag,
        "snapshot": _text,
        "commit": _text,
        "tree": _text,
        "changed": _texts,
        "large_files": _texts,
        "unreadable": _texts,
        "diff_stat": _text,
    }


@dataclass(frozen=True)
class Gpu:
    """One GPU of ``env.json`` ``gpus``."""

    name: str | None
    driver: str | None
    memory: str | None


def _gpus(value: Any) -> Any:
    keys = {"name", "driver", "memory"}
    if not isinstance(value, list) or not all(
        isinstance(g, Mapping)
        and set(g) == keys
        and all(isinstance(g[k], (str, type(None))) for k in keys)
        for g in value
    ):
        return _ABSENT
    return tuple(Gpu(g["name"], g["driver"], g["memory"]) for g in value)


@dataclass(frozen=True)
class EnvInfo(_Record):
    """``env.json``: the environment the run's Python ran in."""

    python: Mapping[str, Any] = field(default_factory=dict)
    platform: Mapping[str, Any] = field(default_factory=dict)
    packages: tuple[str, ...] = ()
    cpu: Mapping[str, Any] = field(default_factory=dict)
    memory_bytes: int | None = None
    gpus: tuple[Gpu, ...] = ()
    variables: Mapping[str, str] = field(default_factory=dict)

    _FIELDS: ClassVar[dict[str, Any]] = {
        "python": _object,
        "platform": _object,
        "packages": _texts,
        "cpu": _object,
        "memory_bytes": _int,
        "gpus": _gpus,
        "variables": _text_map,
    }

    @property
    def package_versions(self) -> dict[str, str]:
        """``packages`` as name (lower case) -> version."""
        out = {}
        for item in self.packages:
            name, sep, version = item.partition("==")
            if sep:
                out[name.lower()] = version
        return out


def check_version(run_json: Mapping[str, Any], where: str) -> None:
    """Refuse a run written in a format this release does not read."""
    if type(run_json.get("format")) is int and run_json["format"] == FORMAT_VERSION:
        return  # the common case, without reading the whole record for one field
    RunInfo.from_json(run_json).check_version(where)
