"""The model registry's names and files, registry format 1 (docs/format.md, Model registry).

Pure: no I/O. A model lives at ``refs/models/<name>``; each commit's tree holds
``model.json`` (the state) and ``versions/<N>/version.json`` (what version N
is), with the run's tree and the code's tree beside it.
"""

from __future__ import annotations

import re
from typing import Any

from gitexp.errors import InvalidName
from gitexp.records.artifacts import ArtifactEntry
from gitexp.records.jsonform import versioned

MODELS_NAMESPACE = "refs/models/"
MODEL_FORMAT = 1
MODEL_JSON = "model.json"
VERSIONS_DIR = "versions"
VERSION_JSON = "version.json"
RUN_TREE = "run"
CODE_TREE = "code"

STAGES = ("development", "staging", "production", "archived")
EXCLUSIVE_STAGES = ("staging", "production")  # at most one version holds each
FIRST_STAGE = "development"
LATEST = "latest"
OPS = ("register", "promote", "rollback")

MAX_MODEL_NAME = 100
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_VERSION_RE = re.compile(r"^v?([0-9]+)$")


def _check_name(text: Any, what: str) -> str:
    if not isinstance(text, str) or not text:
        raise InvalidName(f"{what} must not be empty", str(text))
    if len(text) > MAX_MODEL_NAME:
        raise InvalidName(f"{what} {text[:40]!r}… is longer than {MAX_MODEL_NAME} characters", text)
    if not _NAME_RE.match(text) or ".." in text or text.endswith((".", ".lock")):
        raise InvalidName(
            f"{what} {text!r} is not valid: use letters, digits, '-', '_' and '.', starting "
            "with a letter or digit (not ending with '.' or '.lock', no '..')",
            text,
        )
    return text


def validate_model_name(name: Any) -> str:
    """A model name: one ref component of letters, digits, ``-``, ``_``, ``.``."""
    return _check_name(name, "model name")


def validate_alias(alias: Any) -> str:
    """An alias: a model-name-like word that is not a stage, ``latest`` or a version."""
    _check_name(alias, "alias")
    if alias in STAGES or alias == LATEST or _VERSION_RE.match(alias):
        raise InvalidName(
            f"alias {alias!r} is reserved (stages, 'latest' and version numbers are)", alias
        )
    return str(alias)


def parse_version_number(text: Any) -> int | None:
    """``3``, ``"3"`` or ``"v3"`` -> 3; None for anything else."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text if text > 0 else None
    if isinstance(text, str):
        m = _VERSION_RE.match(text)
        if m and int(m.group(1)) > 0:
            return int(m.group(1))
    return None


def model_ref(name: str) -> str:
    """``refs/models/<name>``."""
    return MODELS_NAMESPACE + validate_model_name(name)


def version_dir(version: int) -> str:
    """``versions/<N>``: where version N's files are in the tree."""
    return f"{VERSIONS_DIR}/{version}"


def check_format(data: Any, what: str) -> dict[str, Any]:
    """``data`` as a registry document of a format this release reads."""
    return versioned(data, what, "registry", MODEL_FORMAT)


def version_artifact(data: Any, what: str) -> ArtifactEntry:
    """The artifact entry a ``version.json`` registers (checked like a manifest entry)."""
    doc = check_format(data, what)
    return ArtifactEntry.from_json(doc.get("artifact"))
