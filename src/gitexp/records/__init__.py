"""Format version 1: names, refs, canonical JSON and the run-tree files.

Pure: no I/O. Everything that turns a run into bytes in a git tree, or bytes
back into a run, goes through here, so that the format is defined in one place
(and written down in ``docs/format.md``).
"""

from __future__ import annotations

import datetime as _dt
import enum
import json
import math
import os
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import PurePath, PurePosixPath
from typing import Any

from gitexp.errors import FormatError, InvalidName, InvalidValue, UnsupportedFormat

FORMAT_VERSION = 1
NAMESPACE = "refs/experiments/"
DEFAULT_EXPERIMENT = "default"

# Paths inside a run tree.
RUN_JSON = "run.json"
PARAMS_JSON = "params.json"
SUMMARY_JSON = "summary.json"
ARTIFACTS_JSON = "artifacts.json"
ENV_JSON = "env.json"
CODE_JSON = "code.json"
METRICS_DIR = "metrics"

STATUSES = ("running", "finished", "failed", "crashed", "killed")
FINAL_STATUSES = ("finished", "failed", "crashed", "killed")
ROLES = ("output", "input", "log", "config", "code")

MAX_NAME_LEN = 200
MAX_KEY_LEN = 250

_RUN_ID_RE = re.compile(r"^\d{8}-\d{6}-[0-9a-f]{6,}$")
_BAD_REF_CHARS = set(" ~^:?*[\\\x7f")
_HEX_RE = re.compile(r"^[0-9a-f]{64}$")


# ---------------------------------------------------------------- names & refs


def _has_control(text: str) -> bool:
    return any(unicodedata.category(c) == "Cc" for c in text)


def has_surrogates(text: str) -> bool:
    """True when ``text`` holds lone surrogates: bytes that were not UTF-8 (a file
    name or argument Python decoded with ``surrogateescape``). No UTF-8 file, git
    tree or Parquet column can hold them."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _not_utf8(what: str, text: str) -> str:
    return f"{what} {text!r} is not valid Unicode text (undecodable bytes)"


def validate_experiment(name: str) -> str:
    """Return ``name`` if it is a valid experiment name, else raise InvalidName.

    Experiment names become ref path components, so they follow
    ``git check-ref-format`` and a few rules of our own: no leading dash (it
    would read as an option), no empty component, at most 200 characters.
    """
    if not isinstance(name, str) or not name:
        raise InvalidName("experiment name must not be empty", str(name))
    shown = repr(name)
    if len(name) > MAX_NAME_LEN:
        raise InvalidName(f"experiment name is longer than {MAX_NAME_LEN} characters", name)
    if _has_control(name):
        raise InvalidName(f"experiment name {shown} contains control characters", name)
    if has_surrogates(name):
        raise InvalidName(_not_utf8("experiment name", name), name)
    bad = sorted({c for c in name if c in _BAD_REF_CHARS})
    if bad:
        raise InvalidName(
            f"experiment name {shown} contains characters git refs forbid: {' '.join(bad)!r}"
            " (use letters, digits, '-', '_', '.', and '/' for a hierarchy)",
            name,
        )
    if "@{" in name or name == "@":
        raise InvalidName(f"experiment name {shown} contains '@{{' or is '@'", name)
    if ".." in name:
        raise InvalidName(f"experiment name {shown} contains '..'", name)
    if name != unicodedata.normalize("NFC", name):
        raise InvalidName(f"experiment name {shown} is not in Unicode NFC form", name)
    for part in name.split("/"):
        if not part:
            raise InvalidName(f"experiment name {shown} has an empty path component", name)
        if part.startswith((".", "-")):
            raise InvalidName(
                f"experiment name {shown}: a component may not start with '.' or '-'", name
            )
        if _RUN_ID_RE.match(part):
            raise InvalidName(
                f"experiment name {shown}: a component may not have the shape of a run id", name
            )
        if part.endswith((".lock", ".")):
            raise InvalidName(
                f"experiment name {shown}: a component may not end with '.lock' or '.'", name
            )
        if is_run_id(part):
            # refs/experiments/<exp>/<run-id> is a run's ref: a name that uses it as a
            # directory collides with that run (git cannot have both)
            raise InvalidName(
                f"experiment name {shown}: a component may not look like a run id ({part})",
                name,
            )
    return name


def validate_run_name(name: str | None) -> str | None:
    """Check a human run name: any text without control characters, bounded."""
    if name is None:
        return None
    if not isinstance(name, str):
        raise InvalidName(f"run name must be text, not {type(name).__name__}", str(name))
    if len(name) > MAX_NAME_LEN:
        raise InvalidName(f"run name is longer than {MAX_NAME_LEN} characters", name)
    if _has_control(name):
        raise InvalidName(f"run name {name!r} contains control characters", name)
    if has_surrogates(name):
        raise InvalidName(_not_utf8("run name", name), name)
    return name


def validate_tag(tag: str) -> str:
    """Tags are short labels: non-empty, no control characters, no commas."""
    if not isinstance(tag, str) or not tag.strip():
        raise InvalidName("tag must be non-empty text", str(tag))
    if len(tag) > MAX_NAME_LEN or _has_control(tag) or "," in tag:
        raise InvalidName(f"tag {tag!r} is too long or contains control characters or ','", tag)
    if has_surrogates(tag):
        raise InvalidName(_not_utf8("tag", tag), tag)
    return tag


def validate_note(text: Any) -> str:
    """A note: any text that a UTF-8 file can hold."""
    if not isinstance(text, str):
        raise InvalidValue(f"a note is text, not {type(text).__name__}")
    if has_surrogates(text):
        raise InvalidValue(_not_utf8("note", text[:40]))
    return text


def is_run_id(text: str) -> bool:
    """True when ``text`` has the shape of a generated run id."""
    return bool(_RUN_ID_RE.match(text))


def new_run_id(now: _dt.datetime | None = None) -> str:
    """A run id: UTC start time (to the second) plus 24 random bits from the OS.

    ``os.urandom`` is used rather than ``random`` so that a training script that
    seeds the global RNG still gets distinct ids.
    """
    now = now or _dt.datetime.now(_dt.timezone.utc)
    return now.strftime("%Y%m%d-%H%M%S-") + os.urandom(3).hex()


@dataclass(frozen=True, order=True)
class ExpRef:
    """A run's ref: ``refs/experiments/<experiment>/<run_id>``."""

    experiment: str
    run_id: str

    def __post_init__(self) -> None:
        validate_experiment(self.experiment)
        if not is_run_id(self.run_id):
            raise InvalidName(f"{self.run_id!r} is not a run id", self.run_id)

    def __str__(self) -> str:
        return f"{NAMESPACE}{self.experiment}/{self.run_id}"

    @property
    def short(self) -> str:
        """``<experiment>/<run-id>``, the form shown to users."""
        return f"{self.experiment}/{self.run_id}"

    @classmethod
    def from_ref(cls, ref: str) -> ExpRef:
        """Parse a full ref name; raise InvalidName when it is not a run ref."""
        if not ref.startswith(NAMESPACE):
            raise InvalidName(f"{ref!r} is not under {NAMESPACE}", ref)
        rest = ref[len(NAMESPACE) :]
        experiment, _, run_id = rest.rpartition("/")
        if not experiment:
            raise InvalidName(f"{ref!r} has no experiment component", ref)
        return cls(experiment, run_id)


# ------------------------------------------------------------- canonical JSON


def _encode_float(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def decode_float(value: Any) -> float | None:
    """Inverse of the float encoding used in summaries: strings for NaN/inf."""
    if value is None:
        return None
    if isinstance(value, str):
        return float(value.replace("Infinity", "inf"))
    return float(value)


def to_jsonable(value: Any, key: str = "") -> Any:
    """Convert a param value to plain JSON data, or raise InvalidValue naming ``key``.

    numpy scalars and arrays, dates, paths, enums, sets and tuples have a
    natural JSON form; NaN and infinities become the strings ``"NaN"``,
    ``"Infinity"`` and ``"-Infinity"``. Anything else is refused rather than
    stored as an unreadable repr.
    """
    if isinstance(value, str):
        if has_surrogates(value):
            raise InvalidValue(f"param {key!r}: " + _not_utf8("text", value[:40]), key)
        return value
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return _encode_float(value)
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                if isinstance(k, (int, float, bool)):
                    k = str(k)
                else:
                    raise InvalidValue(f"param {key!r}: mapping key {k!r} is not text", key)
            if has_surrogates(k):
                raise InvalidValue(f"param {key!r}: " + _not_utf8("key", k), key)
            sub = f"{key}.{k}" if key else k
            out[k] = to_jsonable(v, sub)
        return out
    if isinstance(value, (list, tuple)):
        return [to_jsonable(v, f"{key}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        items = [to_jsonable(v, key) for v in value]
        return sorted(items, key=lambda x: json.dumps(x, sort_keys=True))
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value, key)
    # numpy without importing it: scalars have .item(), arrays have .tolist()
    module = type(value).__module__
    if module == "numpy":
        dtype = getattr(value, "dtype", None)
        if dtype is not None and dtype.kind == "f" and dtype.itemsize < 8:
            # float16/float32: the shortest decimal that reads back as the same value,
            # as numpy prints it (np.float32(0.1) -> 0.1, not 0.10000000149011612)
            if value.ndim == 0:
                return _encode_float(float(str(value)))
            return [to_jsonable(v, f"{key}[{i}]") for i, v in enumerate(value)]
        if hasattr(value, "tolist"):
            return to_jsonable(value.tolist(), key)
    raise InvalidValue(
        f"param {key!r}: a {type(value).__name__} has no JSON form "
        "(convert it to a number, text, list or dict first)",
        key,
    )


def canonical_json(data: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, 2-space indent, UTF-8, trailing newline.

    Readable in ``git show`` and stable, so equal data gives equal git blobs.
    """
    text = json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)
    try:
        return (text + "\n").encode("utf-8")
    except UnicodeEncodeError:
        # text from the system that is not UTF-8 (an argument or path in the command,
        # cwd or environment): JSON's \u escapes keep it exactly, in ASCII
        text = json.dumps(data, sort_keys=True, indent=2, ensure_ascii=True, allow_nan=False)
        return (text + "\n").encode("ascii")


def compact_json(data: Any) -> bytes:
    """Canonical JSON on one line, for hashing."""
    text = json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # as in canonical_json
        return json.dumps(
            data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
        ).encode("ascii")


def parse_json(data: bytes, what: str) -> Any:
    """Parse a JSON file from a run tree or raise FormatError naming it."""
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FormatError(f"{what} does not parse as JSON: {exc}") from exc


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts into dotted keys (``{"opt": {"lr": 1}}`` -> ``opt.lr``)."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, name + "."))
        else:
            out[name] = v
    return out


def set_dotted(target: dict[str, Any], key: str, value: Any) -> None:
    """Set ``a.b.c`` in a nested dict, creating the intermediate dicts."""
    if has_surrogates(key):
        raise InvalidValue(_not_utf8("param name", key), key)
    parts = key.split(".")
    node = target
    for part in parts[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            node[part] = nxt
        node = nxt
    node[parts[-1]] = value


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``update`` into a copy of ``base``; nested dicts merge, values replace."""
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out


def utc_now() -> _dt.datetime:
    """The current time, timezone-aware UTC, to the microsecond."""
    return _dt.datetime.now(_dt.timezone.utc)


def iso(ts: _dt.datetime | None) -> str | None:
    """ISO-8601 UTC text with a ``Z`` suffix."""
    if ts is None:
        return None
    return ts.astimezone(_dt.timezone.utc).isoformat().replace("+00:00", "Z")


def parse_iso(text: str | None) -> _dt.datetime | None:
    """Inverse of :func:`iso`."""
    if not text:
        return None
    return _dt.datetime.fromisoformat(text.replace("Z", "+00:00"))


# ------------------------------------------------------------- artifact paths


def normalize_artifact_path(path: str) -> str:
    """Normalise a manifest path; refuse absolute paths and ``..`` components."""
    if not isinstance(path, str) or not path:
        raise InvalidName("artifact path must not be empty", str(path))
    if _has_control(path):
        raise InvalidName(f"artifact path {path!r} contains control characters", path)
    if has_surrogates(path):
        raise InvalidName(_not_utf8("artifact path", path), path)
    text = path.replace("\\", "/")
    if text.startswith("/") or re.match(r"^[A-Za-z]:/", text):
        raise InvalidName(f"artifact path {path!r} is absolute; give a relative name", path)
    parts = [p for p in PurePosixPath(text).parts if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise InvalidName(f"artifact path {path!r} contains '..'", path)
    if not parts:
        raise InvalidName(f"artifact path {path!r} names nothing", path)
    return "/".join(parts)


# ------------------------------------------------------------ run-tree records


@dataclass
class ArtifactEntry:
    """One line of ``artifacts.json``."""

    path: str
    blake3: str
    size: int
    mode: int = 0o100644
    role: str = "output"
    source: str | None = None  # where an input came from (repo-relative or absolute)
    kind: str = "file"  # "file" or "dir" (a Merkle root over a listing stored in the CAS)
    files: int | None = None  # number of files under a "dir" entry
    stored: bool = True  # False: only the hash was recorded (inputs not copied to the CAS)

    def to_json(self) -> dict[str, Any]:
        """The manifest entry as JSON data (optional fields omitted when unset)."""
        out: dict[str, Any] = {
            "path": self.path,
            "blake3": self.blake3,
            "size": self.size,
            "mode": f"{self.mode:o}",
            "role": self.role,
        }
        if self.source is not None:
            out["source"] = self.source
        if self.kind != "file":
            out["kind"] = self.kind
            out["files"] = self.files
        if not self.stored:
            out["stored"] = False
        return out

    @classmethod
    def from_json(cls, data: Any) -> ArtifactEntry:
        """Parse and check one manifest entry (names from outside are validated)."""
        if not isinstance(data, dict):
            raise FormatError("artifacts.json: an entry is not an object")
        try:
            path = normalize_artifact_path(data["path"])
            digest = str(data["blake3"])
            size = int(data["size"])
            mode = int(str(data.get("mode", "100644")), 8)
            role = str(data.get("role", "output"))
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"artifacts.json: malformed entry {data!r}: {exc}") from exc
        if not _HEX_RE.match(digest):
            raise FormatError(f"artifacts.json: {path}: {digest!r} is not a BLAKE3 hex digest")
        if size < 0:
            raise FormatError(f"artifacts.json: {path}: negative size")
        if role not in ROLES:
            raise FormatError(f"artifacts.json: {path}: unknown role {role!r}")
        kind = str(data.get("kind", "file"))
        if kind not in ("file", "dir"):
            raise FormatError(f"artifacts.json: {path}: unknown kind {kind!r}")
        files = data.get("files")
        source = data.get("source")
        if (files is not None and not isinstance(files, int)) or (
            source is not None and not isinstance(source, str)
        ):
            raise FormatError(f"artifacts.json: {path}: malformed 'files' or 'source'")
        return cls(
            path=path,
            blake3=digest,
            size=size,
            mode=mode,
            role=role,
            source=source,
            kind=kind,
            files=files,
            stored=bool(data.get("stored", True)),
        )


def manifest_to_json(entries: Iterable[ArtifactEntry]) -> list[dict[str, Any]]:
    """``artifacts.json`` content, sorted by (role, path) for stable diffs."""
    return [e.to_json() for e in sorted(entries, key=lambda e: (e.role, e.path))]


def manifest_from_json(data: Any) -> list[ArtifactEntry]:
    """Parse ``artifacts.json`` content."""
    if not isinstance(data, list):
        raise FormatError("artifacts.json is not a list")
    return [ArtifactEntry.from_json(d) for d in data]


@dataclass
class MetricSummary:
    """Summary of one metric key: what ``summary.json`` holds per key."""

    last: float
    last_step: int
    last_time: float  # seconds since the epoch of the last point
    min: float
    max: float
    count: int

    def to_json(self) -> dict[str, Any]:
        """JSON data with NaN/inf encoded as text."""
        return {
            "last": _encode_float(self.last),
            "last_step": self.last_step,
            "last_time": self.last_time,
            "min": _encode_float(self.min),
            "max": _encode_float(self.max),
            "count": self.count,
        }

    @classmethod
    def from_json(cls, data: Any) -> MetricSummary:
        """Parse one summary entry."""
        if not isinstance(data, dict):
            raise FormatError(f"summary.json: malformed entry {data!r}")
        try:
            return cls(
                last=decode_float(data["last"]) or 0.0,
                last_step=int(data["last_step"]),
                last_time=float(data.get("last_time", 0.0)),
                min=decode_float(data["min"]) or 0.0,
                max=decode_float(data["max"]) or 0.0,
                count=int(data["count"]),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"summary.json: malformed entry {data!r}") from exc

    def merge(self, other: MetricSummary) -> MetricSummary:
        """Combine two summaries of disjoint point sets of the same key."""
        later = (
            other
            if (other.last_time, other.last_step)
            >= (
                self.last_time,
                self.last_step,
            )
            else self
        )
        return MetricSummary(
            last=later.last,
            last_step=later.last_step,
            last_time=later.last_time,
            min=_nanmin(self.min, other.min),
            max=_nanmax(self.max, other.max),
            count=self.count + other.count,
        )


def _nanmin(a: float, b: float) -> float:
    if math.isnan(a):
        return b
    if math.isnan(b):
        return a
    return min(a, b)


def _nanmax(a: float, b: float) -> float:
    if math.isnan(a):
        return b
    if math.isnan(b):
        return a
    return max(a, b)


@dataclass
class Summary:
    """``summary.json``: per-key metric summaries plus explicitly logged final metrics."""

    metrics: dict[str, MetricSummary] = field(default_factory=dict)
    final: dict[str, float] = field(default_factory=dict)

    def merge(self, other: Summary) -> Summary:
        """A new summary combining this one and ``other`` (other's finals win)."""
        metrics = dict(self.metrics)
        for k, s in other.metrics.items():
            metrics[k] = metrics[k].merge(s) if k in metrics else s
        final = dict(self.final)
        final.update(other.final)
        return Summary(metrics, final)

    def final_values(self) -> dict[str, float]:
        """The number to show per metric: an explicit final, else the last value."""
        out = {k: s.last for k, s in self.metrics.items()}
        out.update(self.final)
        return out

    def to_json(self) -> dict[str, Any]:
        """JSON data for ``summary.json``."""
        return {
            "metrics": {k: s.to_json() for k, s in sorted(self.metrics.items())},
            "final": {k: _encode_float(v) for k, v in sorted(self.final.items())},
        }

    @classmethod
    def from_json(cls, data: Any) -> Summary:
        """Parse ``summary.json``."""
        if not isinstance(data, dict):
            raise FormatError("summary.json is not an object")
        metrics, final = data.get("metrics", {}), data.get("final", {})
        if not isinstance(metrics, dict) or not isinstance(final, dict):
            raise FormatError("summary.json: 'metrics' and 'final' must be objects")
        try:
            return cls(
                {str(k): MetricSummary.from_json(v) for k, v in metrics.items()},
                {str(k): decode_float(v) or 0.0 for k, v in final.items()},
            )
        except (TypeError, ValueError) as exc:
            raise FormatError(f"summary.json: malformed value: {exc}") from exc


def check_version(run_json: Mapping[str, Any], where: str) -> None:
    """Refuse a run written in a format this release does not read."""
    version = run_json.get("format")
    if version != FORMAT_VERSION:
        raise UnsupportedFormat(
            f"{where} is in git-exp format version {version!r}; this release reads version "
            f"{FORMAT_VERSION} (upgrade git-exp to read it)",
            version,
        )
