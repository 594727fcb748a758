"""The sweep record: ``refs/sweeps/<sweep-id>``, one commit per update.

Each commit's tree holds ``sweep.json`` (format version 1: the spec, method,
seed, code commit, status, each trial's state, the best trial) and the sweep
file as it was given (``spec.yaml``, ``spec.toml`` or ``spec.json``). The
ref's history is the sweep's audit trail; updates are compare-and-swap, like
run refs. docs/format.md describes it.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from gitexp import records as fmt
from gitexp.errors import FormatError, RunStateError, StoreError, SweepNotFound
from gitexp.git import GitRepo
from gitexp.records.sweeps import (
    SPEC_NAMES,
    SWEEP_FORMAT,
    SWEEP_JSON,
    SWEEP_NAMESPACE,
    check_sweep_json,
    is_sweep_id,
)

MODE_BLOB = 0o100644


@dataclass
class SweepRecord:
    """A sweep as recorded: ``data`` is ``sweep.json``; ``sha`` the commit it was read from."""

    id: str
    data: dict[str, Any]
    sha: str | None = None
    spec_file: tuple[str, bytes] | None = None  # (name in the tree, bytes)
    written_code: str | None = None  # the code commit of the commit ``sha`` (a parent of it)
    _trials: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict, repr=False)

    @property
    def ref(self) -> str:
        """The sweep's ref."""
        return SWEEP_NAMESPACE + self.id

    @property
    def trials(self) -> list[dict[str, Any]]:
        """One entry per (trial, rung), in that order."""
        return [self._trials[k] for k in sorted(self._trials)]

    def set_trial(self, entry: Mapping[str, Any]) -> None:
        """Record (or replace) the state of one (trial, rung)."""
        self._trials[(int(entry["trial"]), int(entry.get("rung", 0)))] = dict(entry)

    def to_json(self) -> dict[str, Any]:
        """``sweep.json`` as data."""
        return {**self.data, "format": SWEEP_FORMAT, "id": self.id, "trials": self.trials}


def validate_id(sweep_id: str) -> str:
    """A sweep id has the shape of a run id; anything else is no sweep here."""
    if not is_sweep_id(sweep_id):
        raise SweepNotFound(f"no sweep {sweep_id!r} (sweep ids look like 20261206-035400-1a2b3c)")
    return sweep_id


def write(repo: GitRepo, record: SweepRecord, message: str) -> str:
    """Commit the record on its ref; return the sha.

    The parents are the previous commit of the ref and, when the sweep's code
    commit is new to the record (the first commit, or a resume after the code
    changed), that code commit: like a run, pushing the sweep's ref pushes the
    code its trials run (a Dask worker fetches it from there), and gc never
    loses it.
    """
    entries = {SWEEP_JSON: (MODE_BLOB, repo.write_blob(fmt.canonical_json(record.to_json())))}
    if record.spec_file is not None:
        name, raw = record.spec_file
        entries[name] = (MODE_BLOB, repo.write_blob(raw))
    tree = repo.write_tree(entries)
    code = record.data.get("code_commit")
    for _ in range(20):
        old = repo.get_ref(record.ref)
        parents = [old] if old else []
        if isinstance(code, str) and code != record.written_code and repo.has_object(code):
            parents.append(code)
        sha = repo.write_commit(tree, parents, message)
        if repo.set_ref(record.ref, old, sha, message):
            record.sha = sha
            record.written_code = code if isinstance(code, str) else None
            return sha
    raise FormatError(f"could not update {record.ref}: it keeps moving")


@contextlib.contextmanager
def driving(repo: GitRepo, sweep_id: str) -> Iterator[None]:
    """Hold the sweep's driver lock while its trials run.

    One driver at a time writes a sweep's ref: the lock is an ``flock`` on
    ``.git/exp/sweeps/<id>.driver``, which the kernel releases when the driver
    dies however it dies. Holding it, a ``refs/sweeps/<id>.lock`` left behind
    is the dead driver's (killed mid-update) and is removed at once instead of
    after git's stale-lock age: ``git exp sweep resume`` right after a SIGKILL
    works. A second driver of the same sweep is refused.
    """
    validate_id(sweep_id)
    folder = os.path.join(repo.exp_dir, "sweeps")
    path = os.path.join(folder, sweep_id + ".driver")
    try:
        os.makedirs(folder, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        raise StoreError(f"cannot lock sweep {sweep_id}: {exc.strerror or exc}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.pread(fd, 32, 0).decode("ascii", "replace").strip() or "?"
            raise RunStateError(
                f"sweep {sweep_id} is being run by another process (pid {pid})"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode("ascii"), 0)
        repo.break_ref_lock(SWEEP_NAMESPACE + sweep_id)
        yield
    finally:
        os.close(fd)  # releases the flock


def read(repo: GitRepo, sweep_id: str) -> SweepRecord:
    """The sweep's latest recorded state."""
    validate_id(sweep_id)
    ref = SWEEP_NAMESPACE + sweep_id
    sha = repo.get_ref(ref)
    if sha is None:
        raise SweepNotFound(f"no sweep {sweep_id} in this repository (git exp sweep list)")
    return _parse(repo, sweep_id, sha)


def _parse(repo: GitRepo, sweep_id: str, sha: str) -> SweepRecord:
    info = repo.commit_info(sha)
    entries = repo.read_tree(info.tree)
    if SWEEP_JSON not in entries:
        raise FormatError(f"sweep {sweep_id} ({sha[:12]}) has no {SWEEP_JSON}")
    raw = repo.read_blob(entries[SWEEP_JSON][1], fmt.MAX_DOC_BYTES)
    data = check_sweep_json(fmt.parse_json(raw, f"sweep {sweep_id}: sweep.json"), sweep_id)
    trials = data.pop("trials", []) or []
    spec_file = None
    for name in sorted(set(SPEC_NAMES.values())):
        if name in entries:
            spec_file = (name, repo.read_blob(entries[name][1], fmt.MAX_DOC_BYTES))
    code = data.get("code_commit")
    record = SweepRecord(sweep_id, data, sha, spec_file, code if isinstance(code, str) else None)
    for entry in trials:
        if isinstance(entry, dict) and isinstance(entry.get("trial"), int):
            record.set_trial(entry)
    return record


def list_ids(repo: GitRepo) -> dict[str, str]:
    """Sweep id -> commit sha, for every sweep in the repository."""
    out = {}
    for name, sha in repo.refs_under(SWEEP_NAMESPACE).items():
        sweep_id = name[len(SWEEP_NAMESPACE) :] if name.startswith(SWEEP_NAMESPACE) else name
        if is_sweep_id(sweep_id):
            out[sweep_id] = sha
    return out


def read_all(repo: GitRepo) -> list[SweepRecord]:
    """Every sweep, newest first."""
    return [_parse(repo, i, sha) for i, sha in sorted(list_ids(repo).items(), reverse=True)]
