"""The store's records: a run as read (:class:`RunRecord`), a change to apply
(:class:`RunDelta`), a new run's first state (:class:`RunStart`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gitexp import records as fmt
from gitexp.errors import (
    FormatError,
    GitExpError,
)
from gitexp.records import (
    ArtifactEntry,
    ExpRef,
    Summary,
)

_SHA_RE = re.compile(r"[0-9a-f]{40}")  # always fullmatch


# ------------------------------------------------------------------ deltas


@dataclass
class RunDelta:
    """A change to a run: what a checkpoint, finish, tag or note applies."""

    run: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    tags_add: list[str] = field(default_factory=list)
    tags_remove: list[str] = field(default_factory=list)
    notes: list[dict[str, str]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)  # appended to alerts.json
    artifacts: list[ArtifactEntry] = field(default_factory=list)
    # Parquet bytes, or (mode, blob sha) of a segment already written as a git blob
    segments: list[bytes | tuple[int, str]] = field(default_factory=list)
    summary: Summary = field(default_factory=Summary)
    env: dict[str, Any] | None = None
    code: dict[str, Any] | None = None
    writer: tuple[str, int] | None = None

    def is_empty(self) -> bool:
        """True when applying it would change nothing."""
        return not (
            self.run
            or self.params
            or self.tags_add
            or self.tags_remove
            or self.notes
            or self.alerts
            or self.artifacts
            or self.segments
            or self.summary.metrics
            or self.summary.final
            or self.env is not None
            or self.code is not None
        )

    def absorb(self, other: RunDelta) -> None:
        """Fold a later delta into this one."""
        self.run.update(other.run)
        self.params = fmt.deep_merge(self.params, other.params)
        self.tags_add = [t for t in self.tags_add if t not in other.tags_remove] + other.tags_add
        self.tags_remove = [t for t in self.tags_remove if t not in other.tags_add] + (
            other.tags_remove
        )
        self.notes += other.notes
        self.alerts += other.alerts
        self.artifacts += other.artifacts
        self.segments += other.segments
        self.summary = self.summary.merge(other.summary)
        if other.env is not None:
            self.env = other.env
        if other.code is not None:
            self.code = other.code
        if other.writer is not None:
            self.writer = other.writer

    def to_json(self) -> dict[str, Any]:
        """The spool form (segments are stored beside it)."""
        return {
            "run": self.run,
            "params": self.params,
            "tags_add": self.tags_add,
            "tags_remove": self.tags_remove,
            "notes": self.notes,
            "alerts": self.alerts,
            "artifacts": fmt.manifest_to_json(self.artifacts),
            "summary": self.summary.to_json(),
            "env": self.env,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunDelta:
        """Inverse of :meth:`to_json`."""
        return cls(
            run=dict(data.get("run") or {}),
            params=dict(data.get("params") or {}),
            tags_add=list(data.get("tags_add") or []),
            tags_remove=list(data.get("tags_remove") or []),
            notes=list(data.get("notes") or []),
            alerts=list(data.get("alerts") or []),
            artifacts=fmt.manifest_from_json(data.get("artifacts") or []),
            summary=Summary.from_json(data.get("summary") or {}),
            env=data.get("env"),
        )


@dataclass
class RunStart:
    """A new run's first state: what its first commit holds besides what was
    logged. Kept by its writer (in memory, and in the spool as ``start.json``)
    until the run's ref exists, so that a run ending within its first second is
    written as one commit, and a writer killed before its first commit leaves
    enough for the next command to record the run as crashed."""

    ref: ExpRef
    run: dict[str, Any]
    params: dict[str, Any]
    code: dict[str, Any]
    code_commit: str
    env: dict[str, Any]
    artifacts: list[ArtifactEntry] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        """The spool form (``start.json``)."""
        return {
            "ref": str(self.ref),
            "run": self.run,
            "params": self.params,
            "code": self.code,
            "code_commit": self.code_commit,
            "env": self.env,
            "artifacts": fmt.manifest_to_json(self.artifacts),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunStart:
        """Inverse of :meth:`to_json`; raises FormatError on anything malformed."""
        try:
            start = cls(
                ref=ExpRef.from_ref(str(data["ref"])),
                run=dict(data["run"]),
                params=dict(data["params"]),
                code=dict(data["code"]),
                code_commit=str(data["code_commit"]),
                env=dict(data["env"]),
                artifacts=fmt.manifest_from_json(data.get("artifacts") or []),
            )
        except (KeyError, TypeError, ValueError, GitExpError) as exc:
            raise FormatError(f"start.json is malformed: {exc}") from exc
        if not _SHA_RE.fullmatch(start.code_commit):
            raise FormatError("start.json is malformed: code_commit is not a commit id")
        return start

    def record(self) -> RunRecord:
        """The run as its first commit would hold it, before anything was logged."""
        return RunRecord(
            ref=self.ref,
            sha="",
            info=dict(self.run),
            params=dict(self.params),
            summary=Summary(),
            artifacts=list(self.artifacts),
            env=dict(self.env),
            code=dict(self.code),
            segments=[],
            tree="",
        )


# ----------------------------------------------------------------- records


@dataclass
class RunRecord:
    """One run as read from its ref."""

    ref: ExpRef
    sha: str
    info: dict[str, Any]
    params: dict[str, Any]
    summary: Summary
    artifacts: list[ArtifactEntry]
    env: dict[str, Any]
    code: dict[str, Any]
    segments: list[tuple[str, str]]  # (name, blob sha) in order
    tree: str
    alerts: list[dict[str, Any]] = field(default_factory=list)  # alerts.json (not in listings)

    @property
    def run_id(self) -> str:
        """The generated id."""
        return self.ref.run_id

    @property
    def experiment(self) -> str:
        """The experiment (group) name."""
        return self.ref.experiment

    @property
    def status(self) -> str:
        """running, finished, failed, crashed or killed."""
        return str(self.info.get("status", "running"))

    @property
    def name(self) -> str | None:
        """The human name, if one was given."""
        return self.info.get("name")

    @property
    def tags(self) -> list[str]:
        """Tags, sorted."""
        return list(self.info.get("tags") or [])

    @property
    def code_commit(self) -> str | None:
        """The commit holding the code that produced the run."""
        return self.code.get("commit")

    def inputs(self) -> list[ArtifactEntry]:
        """Manifest entries with role ``input``."""
        return [a for a in self.artifacts if a.role == "input"]
