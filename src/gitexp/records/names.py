"""Names and refs: experiments, run ids, tags, notes, and the constants of format 1.

Pure: no I/O. What a name may hold and how a run's ref is spelled is decided here.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from gitexp.errors import InvalidName, InvalidValue

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
ALERTS_JSON = "alerts.json"  # present once the run raised an alert
METRICS_DIR = "metrics"

STATUSES = ("running", "finished", "failed", "crashed", "killed", "pruned")
FINAL_STATUSES = ("finished", "failed", "crashed", "killed")
ROLES = ("output", "input", "log", "config", "code")

MAX_NAME_LEN = 200
MAX_KEY_LEN = 250

_RUN_ID_RE = re.compile(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{6,}")  # always fullmatch
_BAD_REF_CHARS = set(" ~^:?*[\\\x7f")
_HEX_RE = re.compile(r"[0-9a-f]{64}")  # always fullmatch


_CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f]")  # Unicode's category Cc, exactly


def _has_control(text: str) -> bool:
    return _CONTROL_RE.search(text) is not None


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


_VALID_EXPERIMENTS: set[str] = set()  # names found valid in this process (bounded)


def validate_experiment(name: str) -> str:
    """Return ``name`` if it is a valid experiment name, else raise InvalidName.

    Experiment names become ref path components, so they follow
    ``git check-ref-format`` and a few rules of our own: no leading dash (it
    would read as an option), no empty component, at most 200 characters.
    """
    if not isinstance(name, str) or not name:
        raise InvalidName("experiment name must not be empty", str(name))
    if name in _VALID_EXPERIMENTS:  # checked already: 10,000 runs of one experiment, once
        return name
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
        if _RUN_ID_RE.fullmatch(part):
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
    if len(_VALID_EXPERIMENTS) < 100_000:
        _VALID_EXPERIMENTS.add(name)
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


MAX_NOTE_BYTES = 1 << 20  # run.json, which holds the notes, stays far below its bound


def validate_note(text: Any) -> str:
    """A note: any text that a UTF-8 file can hold, up to a MiB."""
    if not isinstance(text, str):
        raise InvalidValue(f"a note is text, not {type(text).__name__}")
    if has_surrogates(text):
        raise InvalidValue(_not_utf8("note", text[:40]))
    if len(text) > MAX_NOTE_BYTES // 4 and len(text.encode("utf-8")) > MAX_NOTE_BYTES:
        raise InvalidValue(f"a note is at most {MAX_NOTE_BYTES:,} bytes (UTF-8)")
    return text


def is_run_id(text: str) -> bool:
    """True when ``text`` has the shape of a generated run id."""
    return bool(_RUN_ID_RE.fullmatch(text))


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
