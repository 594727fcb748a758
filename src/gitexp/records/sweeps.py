"""The sweep record's names and its document, sweep format 1 (docs/format.md, Sweeps).

Pure: no I/O. A sweep lives at ``refs/sweeps/<sweep-id>``; each commit's tree
holds ``sweep.json`` and the sweep file as given (``spec.yaml``, ``spec.toml``
or ``spec.json``). Reading one from git is ``gitexp.sweeps.record``; checking
one a remote serves before taking it is ``gitexp.remotes.namespaces``: both
check the document here.
"""

from __future__ import annotations

import re
from typing import Any

from gitexp.errors import FormatError
from gitexp.records.jsonform import versioned

SWEEP_NAMESPACE = "refs/sweeps/"
SWEEP_JSON = "sweep.json"
SWEEP_FORMAT = 1
SPEC_NAMES = {".yaml": "spec.yaml", ".yml": "spec.yaml", ".toml": "spec.toml", ".json": "spec.json"}
_ID_RE = re.compile(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{6,}")  # always fullmatch


def is_sweep_id(text: str) -> bool:
    """Whether ``text`` has the shape of a sweep id (that of a run id)."""
    return isinstance(text, str) and bool(_ID_RE.fullmatch(text))


def sweep_ref_problem(ref: str) -> str:
    """Why ``ref`` is not a sweep's ref ('' when it is)."""
    if not ref.startswith(SWEEP_NAMESPACE):
        return f"not under {SWEEP_NAMESPACE}"
    if not is_sweep_id(ref[len(SWEEP_NAMESPACE) :]):
        return "not a sweep ref: its name is not a sweep id (like 20261206-035400-1a2b3c)"
    return ""


def check_sweep_json(data: Any, sweep_id: str) -> dict[str, Any]:
    """``sweep.json``, parsed, as every reader of sweep format 1 takes it.

    Raises:
        FormatError: it is not an object.
        UnsupportedFormat: it is another sweep format.
    """
    if not isinstance(data, dict):
        raise FormatError(f"sweep {sweep_id}: sweep.json is not an object")
    return versioned(data, f"sweep {sweep_id}", "sweep", SWEEP_FORMAT)
