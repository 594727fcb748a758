"""Runs as a whole: create, update (checkpoint, finish, tag), read, resolve, list.

Write order, always: CAS objects first, then git objects (blobs, trees, the
commit), then the ref, moved by compare-and-swap. A crash at any point leaves
only unreferenced objects, never a ref that points at something missing.

Live state: a process writing a run keeps a *spool* under
``.git/exp/live/<run-id>/<writer-id>/``: numbered entries (a JSON delta and a
Parquet segment) flushed every fraction of a second, and committed to the run's
ref at checkpoints. ``run.json``'s ``writers`` map records the last entry each
writer committed, so replaying a dead writer's spool is idempotent. The next
command that reads a run whose writers are all dead finalises it as
``crashed`` with everything they spooled.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gitexp import records as fmt
from gitexp.cas import LocalStore
from gitexp.errors import (
    AmbiguousRun,
    FormatError,
    GitExpError,
    InvalidName,
    ObjectMissing,
    RunConflict,
    RunNotFound,
    StoreError,
)
from gitexp.git import MODE_FILE, MODE_TREE, GitRepo
from gitexp.records import (
    ARTIFACTS_JSON,
    CODE_JSON,
    ENV_JSON,
    METRICS_DIR,
    NAMESPACE,
    PARAMS_JSON,
    RUN_JSON,
    SUMMARY_JSON,
    ArtifactEntry,
    ExpRef,
    Summary,
)

MAX_RETRIES = 50
BATCH_READS = 32  # read_listings of this many runs or more goes through git cat-file
BATCH_SIZE = 5000  # ... this many runs per git cat-file process
PASS_THROUGH_BYTES = 1 << 20  # a spool segment this large is committed without re-encoding
MERGE_ROWS = 1 << 20  # small spool segments are merged into segments of about this many rows
REMOTE_STALE_SECONDS = 30 * 60  # a run from another host is crashed after this silence
START_JSON = "start.json"  # a new run's first state, in its writer's spool until its ref exists
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")


# ------------------------------------------------------------------ deltas


@dataclass
class RunDelta:
    """A change to a run: what a checkpoint, finish, tag or note applies."""

    run: dict[str, Any] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)
    tags_add: list[str] = field(default_factory=list)
    tags_remove: list[str] = field(default_factory=list)
    notes: list[dict[str, str]] = field(default_factory=list)
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
        if not _SHA_RE.match(start.code_commit):
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


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
# run.json fields that come from the system, not the user: a command line, cwd or
# error text may hold bytes that are not UTF-8, kept exactly by JSON escapes
_SYSTEM_TEXT = ("command", "cwd", "cwd_rel", "error", "config")


def _parse_record(repo: GitRepo, ref: ExpRef, sha: str, listing: bool = False) -> RunRecord:
    info = repo.commit_info(sha)
    return _record_from(
        repo, ref, sha, info.tree, repo.read_tree(info.tree), repo.read_blob, listing
    )


LISTING_FILES = (RUN_JSON, PARAMS_JSON, SUMMARY_JSON, CODE_JSON)  # what a listing reads


def check_run(repo: GitRepo, ref: ExpRef, sha: str) -> None:
    """Raise FormatError (or StoreError) when the commit ``sha`` is not a run every
    git-exp reader can read as ``ref``: the checks of :meth:`ExpStore.read`, all of
    them, for a run that is not in this repository yet (what ``pull`` brings)."""
    _parse_record(repo, ref, sha)


def _record_from(
    repo: GitRepo,
    ref: ExpRef,
    sha: str,
    tree: str,
    entries: Mapping[str, tuple[int, str]],
    read_blob: Callable[[str], bytes],
    listing: bool,
) -> RunRecord:
    """A run record from its tree's entries; every check of a run tree is here."""
    where = f"run {ref.short} ({sha[:12]})"

    def load(name: str, default: Any) -> Any:
        if name not in entries:
            return default
        data = read_blob(entries[name][1])
        value = fmt.parse_json(data, f"{where}: {name}")
        if name in (RUN_JSON, PARAMS_JSON, SUMMARY_JSON) and _SURROGATE_ESCAPE.search(data):
            # git-exp writes names, tags, params and metric keys as valid Unicode
            # only; a tree from elsewhere that escapes lone surrogates cannot be
            # listed or compared (Parquet, terminals): refuse it like any bad tree
            shown = (
                {k: v for k, v in value.items() if k not in _SYSTEM_TEXT}
                if isinstance(value, dict) and name == RUN_JSON
                else value
            )
            if fmt.has_surrogates(json.dumps(shown, ensure_ascii=False)):
                raise FormatError(f"{where}: {name} holds text that is not valid Unicode")
        return value

    if RUN_JSON not in entries:
        raise FormatError(f"{where} has no run.json: it is not a git-exp run")
    run = load(RUN_JSON, {})
    if not isinstance(run, dict):
        raise FormatError(f"{where}: run.json is not an object")
    fmt.check_version(run, where)
    params = load(PARAMS_JSON, {})
    env = {} if listing else load(ENV_JSON, {})
    code = load(CODE_JSON, {})
    for name, value in ((PARAMS_JSON, params), (ENV_JSON, env), (CODE_JSON, code)):
        if not isinstance(value, dict):
            raise FormatError(f"{where}: {name} is not an object")
    for key in ("tags", "notes", "command"):
        if not isinstance(run.get(key) or [], list):
            raise FormatError(f"{where}: run.json '{key}' is not a list")
    if not isinstance(run.get("status", "running"), str):
        raise FormatError(f"{where}: run.json 'status' is not text")
    segments: list[tuple[str, str]] = []
    if not listing and METRICS_DIR in entries and entries[METRICS_DIR][0] == MODE_TREE:
        segs = repo.read_tree(entries[METRICS_DIR][1])
        segments = sorted((n, s) for n, (_, s) in segs.items() if n.endswith(".parquet"))
    return RunRecord(
        ref=ref,
        sha=sha,
        info=run,
        params=params,
        summary=Summary.from_json(load(SUMMARY_JSON, {})),
        artifacts=[] if listing else fmt.manifest_from_json(load(ARTIFACTS_JSON, [])),
        env=env,
        code=code,
        segments=segments,
        tree=tree,
    )


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    text = json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v
    return text if len(text) <= 40 else text[:37] + "..."


def commit_message(
    verb: str, ref: ExpRef, run: Mapping[str, Any], params: Mapping[str, Any], summary: Summary
) -> str:
    """A readable commit message: ``git log refs/experiments/...`` is useful alone."""
    title = run.get("name") or " ".join(run.get("command") or []) or ""
    subject = f"{verb} {ref.short}"
    if title:
        subject += f": {title}"
    if len(subject) > 100:
        subject = subject[:97] + "..."
    lines = [subject, "", f"status: {run.get('status')}"]
    if run.get("exit_code") is not None:
        lines[-1] += f" (exit {run['exit_code']})"
    if run.get("duration") is not None:
        lines[-1] += f" after {run['duration']:.1f}s"
    if run.get("command"):
        lines.append("command: " + " ".join(run["command"]))
    flat = fmt.flatten(params)
    if flat:
        shown = ", ".join(f"{k}={_fmt_value(v)}" for k, v in sorted(flat.items())[:12])
        more = f" (+{len(flat) - 12} more)" if len(flat) > 12 else ""
        lines.append(f"params: {shown}{more}")
    finals = summary.final_values()
    if finals:
        shown = ", ".join(f"{k}={v:.6g}" for k, v in sorted(finals.items())[:12])
        more = f" (+{len(finals) - 12} more)" if len(finals) > 12 else ""
        lines.append(f"metrics: {shown}{more}")
    if run.get("tags"):
        lines.append("tags: " + ", ".join(run["tags"]))
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------- process ids


def _proc_stat(pid: int) -> list[bytes] | None:
    """Fields of /proc/<pid>/stat after the command name (Linux), or None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
        return data[data.rindex(b")") + 2 :].split()
    except (OSError, ValueError):
        return None


def process_start(pid: int) -> str | None:
    """An identifier of a process's start (Linux: clock ticks since boot), to
    tell a live owner from a recycled pid."""
    fields = _proc_stat(pid)
    return fields[19].decode() if fields and len(fields) > 19 else None


def pid_alive(pid: int, start: str | None) -> bool:
    """True when process ``pid`` runs and is the one that started at ``start``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    fields = _proc_stat(pid)
    if fields and fields[0] in (b"Z", b"X"):
        return False  # a zombie: dead, only not reaped yet
    if start is not None:
        now = process_start(pid)
        if now is not None and now != start:
            return False
        if now is None and os.path.isdir("/proc/self"):
            return False  # zombie or gone between the two checks
    return True


# ------------------------------------------------------------------ store


class ExpStore:
    """The run store of one repository: git objects and refs plus the local CAS."""

    def __init__(self, path: str | os.PathLike[str] = ".") -> None:
        from gitexp.git import open_repo

        self.repo = open_repo(path)
        self.cas = LocalStore(self.repo.exp_dir)
        self.host = socket.gethostname()
        self._closed = False
        # tip_index(prefix) -> [(ref, sha)]: the refs whose tip sha starts with the
        # prefix, from an index a higher layer keeps (the catalog); None: read refs
        self.tip_index: Callable[[str], list[tuple[str, str]]] | None = None

    def close(self) -> None:
        """Release the repository (idempotent)."""
        if not self._closed:
            self._closed = True
            self.cas.stat_cache.close()
            self.repo.close()

    def __enter__(self) -> ExpStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---------------------------------------------------------------- refs
    def list_refs(self, experiment: str | None = None) -> dict[ExpRef, str]:
        """Every run ref (optionally of one experiment and its sub-experiments)."""
        prefix = NAMESPACE
        if experiment:
            fmt.validate_experiment(experiment)
            prefix = f"{NAMESPACE}{experiment}/"
        out: dict[ExpRef, str] = {}
        for name, sha in self.repo.refs_under(prefix).items():
            try:
                out[ExpRef.from_ref(name)] = sha
            except InvalidName:
                continue  # not a run ref (some other tool's ref under the namespace)
        return out

    def resolve(self, address: str) -> ExpRef:
        """Find the run an address names: run id, experiment/run-id, full ref,
        or an unambiguous prefix (4+ hex digits) of one of its commit shas.

        Exact forms read one ref; a run id lists ref names only; a sha prefix
        asks :attr:`tip_index` when one is set (the catalog: no ref is read),
        and falls back to reading every ref when it finds nothing. A run whose
        writer died before its first commit is recorded first, then found.
        """
        try:
            return self._resolve(address)
        except RunNotFound:
            if not self.adopt_orphans(on_error=_ignore):
                raise
        return self._resolve(address)

    def _resolve(self, address: str) -> ExpRef:
        if not isinstance(address, str) or not address.strip():
            raise RunNotFound("no run given")
        address = address.strip()
        if len(address) > 1000:  # longer than any ref git-exp makes
            raise RunNotFound(f"no run matches {_shown(address)} (it is {len(address)} characters)")
        if address.startswith(NAMESPACE):
            try:
                ref = ExpRef.from_ref(address)
            except InvalidName as exc:
                raise RunNotFound(f"{_shown(address)} is not a run ref") from exc
            if self.repo.get_ref(str(ref)) is not None:
                return ref
            raise RunNotFound(f"no run at {address}")
        # experiment/run-id, or git's short form experiments/<exp>/<id> (git log --decorate)
        for full in (NAMESPACE + address, "refs/" + address):
            if full.startswith(NAMESPACE) and fmt.is_run_id(full.rsplit("/", 1)[-1]):
                try:
                    ref = ExpRef.from_ref(full)
                except InvalidName:
                    continue
                if self.repo.get_ref(full) is not None:
                    return ref
        if fmt.is_run_id(address):
            names = [n for n in self.repo.ref_names_under(NAMESPACE) if n.endswith("/" + address)]
            matches = []
            for n in names:
                with contextlib.suppress(InvalidName):
                    matches.append(ExpRef.from_ref(n))
            if len(matches) == 1:
                return matches[0]
            if len(matches) > 1:
                raise AmbiguousRun(
                    f"run id {address} exists in several experiments: "
                    + ", ".join(sorted(r.short for r in matches)),
                    sorted(r.short for r in matches),
                )
        low = address.lower()
        if len(low) >= 4 and all(c in "0123456789abcdef" for c in low):
            hits: set[ExpRef] = set()
            if self.tip_index is not None:
                for name, _ in self.tip_index(low):
                    with contextlib.suppress(InvalidName):
                        hits.add(ExpRef.from_ref(name))
            if not hits:
                refs = self.list_refs()
                hits = {r for r, sha in refs.items() if sha.startswith(low)}
                if not hits:
                    hits = {
                        r for r, sha in refs.items() for c in self.history(sha) if c.startswith(low)
                    }
            if len(hits) == 1:
                return hits.pop()
            if len(hits) > 1:
                names = sorted(r.short for r in hits)
                raise AmbiguousRun(
                    f"{address} is ambiguous: it matches {len(names)} runs: "
                    + ", ".join(names[:10]),
                    names,
                )
        if low and len(low) < 4 and all(c in "0123456789abcdef" for c in low):
            raise RunNotFound(
                f"no run matches {address!r}: a commit sha prefix needs at least 4 hex digits"
            )
        raise RunNotFound(
            f"no run matches {_shown(address)} (give a run id, experiment/run-id, a ref, "
            "or a commit sha prefix; 'git exp log' lists runs)"
        )

    def history(self, sha: str) -> list[str]:
        """The run's own commits, newest first (stops at the code commit)."""
        out = []
        current: str | None = sha
        while current:
            out.append(current)
            info = self.repo.commit_info(current)
            if not info.parents:
                break
            parent = info.parents[0]
            try:
                entries = self.repo.read_tree(self.repo.commit_info(parent).tree)
            except StoreError:
                break
            current = parent if RUN_JSON in entries and len(out) < 10_000 else None
        return out

    # ---------------------------------------------------------------- read
    def read(self, ref: ExpRef, sha: str | None = None) -> RunRecord:
        """Read a run at its current tip (or at ``sha``)."""
        if sha is None:
            sha = self.repo.get_ref(str(ref))
            if sha is None:
                raise RunNotFound(f"no run at {ref}")
        return _parse_record(self.repo, ref, sha)

    def read_listing(self, ref: ExpRef, sha: str) -> RunRecord:
        """Read what a listing shows of a run (run.json, params, summary, code):
        its ``env``, ``artifacts`` and ``segments`` are left empty. For the catalog."""
        return _parse_record(self.repo, ref, sha, listing=True)

    def read_listings(
        self, items: Sequence[tuple[ExpRef, str]]
    ) -> Iterator[tuple[ExpRef, str, RunRecord | GitExpError]]:
        """:meth:`read_listing` of many runs, each (ref, sha, record or the error
        that refused it). Many runs are read through one ``git cat-file --batch``
        (two round trips for all of them); a few, or without git, one by one."""
        done = 0
        if len(items) >= BATCH_READS:
            try:
                for start in range(0, len(items), BATCH_SIZE):  # bounded memory
                    yield from self._read_listings_batch(items[start : start + BATCH_SIZE])
                    done = start + BATCH_SIZE
                return
            except StoreError:
                pass  # no usable git binary: dulwich reads the rest
        for ref, sha in items[done:]:
            try:
                yield ref, sha, self.read_listing(ref, sha)
            except GitExpError as exc:
                yield ref, sha, exc

    def _read_listings_batch(
        self, items: Sequence[tuple[ExpRef, str]]
    ) -> list[tuple[ExpRef, str, RunRecord | GitExpError]]:
        trees = self.repo.cat_batch([f"{sha}^{{tree}}" for _, sha in items])
        parsed: list[tuple[str, dict[str, tuple[int, str]]] | None] = []
        wanted: list[str] = []
        for got in trees:
            if got is None or got[1] != "tree":
                parsed.append(None)
                continue
            entries = self.repo.parse_tree(got[2])
            parsed.append((got[0], entries))
            wanted += [entries[n][1] for n in LISTING_FILES if n in entries]
        unique = list(dict.fromkeys(wanted))
        blobs = {
            sha: got[2]
            for sha, got in zip(unique, self.repo.cat_batch(unique))
            if got is not None and got[1] == "blob"
        }

        def read_blob(sha: str) -> bytes:
            if sha not in blobs:
                raise ObjectMissing(f"git object {sha} is missing from the repository", sha)
            return blobs[sha]

        out: list[tuple[ExpRef, str, RunRecord | GitExpError]] = []
        for (ref, sha), p in zip(items, parsed):
            try:
                if p is None:
                    rec: RunRecord | GitExpError = _parse_record(self.repo, ref, sha, True)
                else:
                    rec = _record_from(self.repo, ref, sha, p[0], p[1], read_blob, True)
            except GitExpError as exc:
                rec = exc
            out.append((ref, sha, rec))
        return out

    def get(self, address: str) -> RunRecord:
        """Resolve an address, settle the run if its writers died, and read it."""
        ref = self.resolve(address)
        return self.settle(self.read(ref))

    def iter_records(
        self,
        experiment: str | None = None,
        settle: bool = True,
        problems: list[str] | None = None,
    ) -> Iterator[RunRecord]:
        """Every run (optionally of one experiment), settled.

        With ``problems`` given, a run that cannot be read is skipped and its
        error appended there instead of ending the iteration. Settling also
        records the runs whose writer died before their first commit.
        """
        if settle:
            self.adopt_orphans(None if problems is None else _note_problem(problems))
        for ref, sha in sorted(self.list_refs(experiment).items()):
            try:
                rec = _parse_record(self.repo, ref, sha)
                yield self.settle(rec) if settle else rec
            except StoreError as exc:
                if problems is None:
                    raise
                problems.append(f"{ref.short}: {exc}")

    def read_metrics(self, record: RunRecord) -> Any:
        """All metric points of a run as one Arrow table (segments concatenated)."""
        from gitexp.metrics import concat, from_parquet

        return concat(
            [
                from_parquet(self.repo.read_blob(sha), f"run {record.ref.short}: metrics/{name}")
                for name, sha in record.segments
            ]
        )

    # --------------------------------------------------------------- write
    def start_state(
        self,
        ref: ExpRef,
        run: Mapping[str, Any],
        params: Mapping[str, Any],
        code: dict[str, Any],
        code_commit: str,
        env: Mapping[str, Any],
        artifacts: Iterable[ArtifactEntry] = (),
    ) -> RunStart:
        """A new run's first state, with the fields every ``run.json`` has."""
        info = {**run, "id": ref.run_id, "experiment": ref.experiment}
        info["format"] = fmt.FORMAT_VERSION
        info.setdefault("status", "running")
        info.setdefault("tags", [])
        info.setdefault("notes", [])
        info.setdefault("links", {})
        info.setdefault("writers", {})
        entries = list(artifacts)
        info["fingerprint"] = self._fingerprint(info, params, code, entries)
        return RunStart(ref, info, dict(params), code, code_commit, dict(env), entries)

    def create(
        self,
        experiment: str,
        run: dict[str, Any],
        params: Mapping[str, Any],
        code: dict[str, Any],
        code_commit: str,
        env: Mapping[str, Any],
        artifacts: Iterable[ArtifactEntry] = (),
    ) -> tuple[ExpRef, str]:
        """Write a run's first commit (parent: the code commit) and create its ref."""
        fmt.validate_experiment(experiment)
        for _ in range(MAX_RETRIES):
            ref = ExpRef(experiment, run.get("id") or fmt.new_run_id())
            start = self.start_state(ref, run, params, code, code_commit, env, artifacts)
            sha = self.commit_first(start)
            if sha is not None:
                return ref, sha
            run = {**run, "id": None}  # id collision: draw a new one
        raise RunConflict(f"could not create a run in {experiment}", experiment)

    def commit_first(
        self, start: RunStart, delta: RunDelta | None = None, verb: str = "start"
    ) -> str | None:
        """Write a run's first commit (its start state with ``delta`` applied, on
        the code commit) and create its ref; None when the ref exists already."""
        sha = self._build(start.ref, start.record(), start.code_commit, delta or RunDelta(), verb)
        assert sha is not None  # a first commit always has a new tree
        if self.repo.set_ref(str(start.ref), None, sha, f"git-exp: {verb} run"):
            return sha
        return None

    def _fingerprint(
        self,
        run: Mapping[str, Any],
        params: Mapping[str, Any],
        code: Mapping[str, Any],
        artifacts: Iterable[ArtifactEntry],
    ) -> str:
        from gitexp.capture import fingerprint

        inputs = {a.path: a.blake3 for a in artifacts if a.role == "input"}
        return fingerprint(str(code.get("tree") or ""), params, inputs, run.get("command") or [])

    def update(self, ref: ExpRef, delta: RunDelta, verb: str = "checkpoint") -> str:
        """Apply a delta as a new commit on the run's ref (compare-and-swap, retried).

        Returns the new tip. A delta whose writer entry was already applied by
        a concurrent replay is applied only once.
        """
        name = str(ref)
        for attempt in range(MAX_RETRIES):
            tip = self.repo.get_ref(name)
            if tip is None:
                raise RunNotFound(f"no run at {name}")
            new = self._build(ref, _parse_record(self.repo, ref, tip), tip, delta, verb)
            if new is None:
                return tip
            if self.repo.set_ref(name, tip, new, f"git-exp: {verb}"):
                return new
            time.sleep(random.uniform(0.001, 0.01) * (1 + attempt))
        raise RunConflict(
            f"run {ref.short} kept changing under us; {verb} was not applied (try again)", name
        )

    def _build(
        self, ref: ExpRef, rec: RunRecord, parent: str, delta: RunDelta, verb: str
    ) -> str | None:
        """The commit of ``rec`` with ``delta`` applied, on ``parent``; None when it
        would change nothing. ``rec`` without a tree is a run's start state: every
        file of the run tree is written."""
        first = not rec.tree
        run = dict(rec.info)
        writers = dict(run.get("writers") or {})
        if delta.writer is not None:
            wid, seq = delta.writer
            if writers.get(wid, -1) >= seq:
                return None  # already applied (a replay raced us)
            writers[wid] = seq
        run.update(delta.run)
        run["writers"] = writers
        tags = [t for t in (run.get("tags") or []) if t not in delta.tags_remove]
        tags += [t for t in delta.tags_add if t not in tags]
        run["tags"] = sorted(tags)
        if delta.notes:
            run["notes"] = list(run.get("notes") or []) + delta.notes
        if run.get("end_time") and run.get("start_time"):
            end = fmt.parse_iso(run["end_time"])
            start = fmt.parse_iso(run["start_time"])
            if end and start:
                run["duration"] = round((end - start).total_seconds(), 6)
        params = fmt.deep_merge(rec.params, delta.params) if delta.params else rec.params
        artifacts = {(a.role, a.path): a for a in rec.artifacts}
        for a in delta.artifacts:
            artifacts[(a.role, a.path)] = a
        summary = rec.summary.merge(delta.summary)
        code = delta.code if delta.code is not None else rec.code
        env = delta.env if delta.env is not None else rec.env
        run["fingerprint"] = self._fingerprint(run, params, code, artifacts.values())
        changes: dict[str, Any] = {
            RUN_JSON: fmt.canonical_json(run),
            PARAMS_JSON: fmt.canonical_json(params),
            SUMMARY_JSON: fmt.canonical_json(summary.to_json()),
            ARTIFACTS_JSON: fmt.canonical_json(fmt.manifest_to_json(artifacts.values())),
        }
        if first or delta.code is not None:
            changes[CODE_JSON] = fmt.canonical_json(code)
        if first or delta.env is not None:
            changes[ENV_JSON] = fmt.canonical_json(env)
        next_index = 0
        if rec.segments:
            next_index = max(int(n.split(".")[0]) for n, _ in rec.segments) + 1
        for i, seg in enumerate(delta.segments):
            changes[f"{METRICS_DIR}/{next_index + i:06d}.parquet"] = seg
        tree = self.repo.update_tree(rec.tree or None, changes)
        if tree == rec.tree:
            return None
        msg = commit_message(verb, ref, run, params, summary)
        return self.repo.write_commit(tree, [parent], msg)

    def delete(self, ref: ExpRef) -> bool:
        """Remove a run's ref (its objects stay until gc)."""
        sha = self.repo.get_ref(str(ref))
        if sha is None:
            raise RunNotFound(f"no run at {ref}")
        return self.repo.delete_ref(str(ref), sha)

    # ---------------------------------------------------------- live state
    def live_root(self, run_id: str) -> str:
        """Directory of a run's live writers on this machine."""
        return os.path.join(self.repo.exp_dir, "live", run_id)

    def open_writer(self, ref: ExpRef, start: RunStart | None = None) -> SpoolWriter:
        """Register this process as a writer of ``ref`` (its spool directory);
        with ``start``, of a new run whose first commit is still to be written."""
        return SpoolWriter(self, ref, start)

    def reserve_run_id(self, ref: ExpRef) -> bool:
        """Claim a new run's id on this machine: False when a run in progress here
        holds it (its live directory exists) or a run ref of that name exists."""
        root = os.path.join(self.repo.exp_dir, "live")
        try:
            os.makedirs(root, exist_ok=True)
            os.mkdir(self.live_root(ref.run_id))
        except FileExistsError:
            return False
        except OSError as exc:
            raise StoreError(f"cannot write {root}: {exc.strerror or exc}") from exc
        if self.repo.get_ref(str(ref)) is not None:
            _rmdir_quiet(self.live_root(ref.run_id))
            return False
        return True

    def release_run_id(self, ref: ExpRef) -> None:
        """Give back an id :meth:`reserve_run_id` claimed for a run that was not started."""
        _rmdir_quiet(self.live_root(ref.run_id))

    def writers_of(self, run_id: str) -> list[tuple[str, dict[str, Any], bool]]:
        """(directory, owner info, alive) of every writer spool of a run here."""
        root = self.live_root(run_id)
        out = []
        try:
            names = sorted(os.listdir(root))
        except FileNotFoundError:
            return []
        for name in names:
            d = os.path.join(root, name)
            owner = _read_owner(d)
            if owner is None:
                # a writer dir without owner.json is being created right now or was
                # abandoned mid-creation; treat as alive while it is young
                try:
                    young = time.time() - os.stat(d).st_mtime < 60
                except FileNotFoundError:
                    continue
                out.append((d, {}, young))
                continue
            alive = owner.get("host") == self.host and pid_alive(
                int(owner.get("pid", -1)), owner.get("start")
            )
            if owner.get("host") != self.host:
                alive = time.time() - spool_mtime(d) < REMOTE_STALE_SECONDS
            out.append((d, owner, alive))
        return out

    def settle(self, record: RunRecord) -> RunRecord:
        """Finalise a ``running`` run whose writers are all dead as ``crashed``.

        Everything the dead writers spooled is committed first. Runs from other
        hosts, and runs with no writer spool in this repository (fetched from a
        clone on the same host: only their own repository knows whether they
        live), are never rewritten; they read as crashed once their heartbeat is
        older than 30 minutes.
        """
        if record.status != "running":
            return record
        local = record.info.get("host") in (None, self.host)
        writers = self.writers_of(record.run_id) if local else []
        if not writers:
            if local:
                # another command may have settled it a moment ago: it removes the
                # spool last, so the ref already says so
                record = self._reread(record)
                if record.status != "running":
                    return record
            beat = fmt.parse_iso(record.info.get("heartbeat") or record.info.get("start_time"))
            if beat and time.time() - beat.timestamp() > REMOTE_STALE_SECONDS:
                record.info = {**record.info, "status": "crashed"}
            return record
        if any(alive for _, _, alive in writers):
            return record
        last_beat = 0.0
        logs: list[ArtifactEntry] = []
        for d, _, _ in writers:
            last_beat = max(last_beat, spool_mtime(d))
            try:
                self.replay(record.ref, d)
                logs += self._output_logs(d)
            except (FormatError, StoreError):
                if os.path.isdir(d):
                    raise
                # a concurrent command settled the run and removed this spool
        current = self._reread(record)
        if current.status == "running":
            end = fmt.iso(_from_ts(last_beat) if last_beat else fmt.utc_now())
            have = {(a.role, a.path) for a in current.artifacts}
            delta = RunDelta(
                run={"status": "crashed", "end_time": end},
                artifacts=[a for a in logs if (a.role, a.path) not in have],
            )
            with contextlib.suppress(RunConflict):
                self.update(record.ref, delta, verb="crash")
        for d, _, _ in writers:
            shutil.rmtree(d, ignore_errors=True)
        _rmdir_quiet(self.live_root(record.run_id))
        return self._reread(record)

    def adopt_orphans(
        self, on_error: Callable[[str, GitExpError], None] | None = None
    ) -> list[ExpRef]:
        """Record the runs whose writer died before their first commit.

        Such a run has no ref, only its writer's spool with ``start.json``: its
        ref is created from it, then the run is settled as ``crashed`` with what
        the writer spooled. Returns the runs recorded. A run that cannot be
        recorded now (its ref is locked by a writer killed mid-update, its
        ``start.json`` is damaged) stays as it is and goes to ``on_error`` with
        its run id, or raises when there is no ``on_error``. Cheap when nothing
        runs: one directory listing.
        """
        root = os.path.join(self.repo.exp_dir, "live")
        try:
            run_ids = sorted(os.listdir(root))
        except (FileNotFoundError, NotADirectoryError):
            return []
        adopted: list[ExpRef] = []
        for run_id in run_ids:
            for d, _, alive in self.writers_of(run_id):
                if alive or not os.path.exists(os.path.join(d, START_JSON)):
                    continue
                try:
                    ref = self._adopt(run_id, d)
                except GitExpError as exc:
                    if on_error is None:
                        raise
                    on_error(run_id, exc)
                    continue
                if ref is not None:
                    adopted.append(ref)
        return adopted

    def _adopt(self, run_id: str, writer_dir: str) -> ExpRef | None:
        path = os.path.join(writer_dir, START_JSON)
        start = read_start(writer_dir)
        if start is None:
            return None  # its writer's first commit, a moment ago, or another adopter
        if start.ref.run_id != run_id:
            raise FormatError(f"{path} names run {start.ref.short}, not {run_id}")
        for attempt in range(MAX_RETRIES):
            # None: another command is creating it right now (it holds the lock)
            if self.repo.get_ref(str(start.ref)) or self.commit_first(start):
                break
            time.sleep(random.uniform(0.001, 0.01) * (1 + attempt))
        else:
            raise RunConflict(f"run {start.ref.short} could not be recorded now", str(start.ref))
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self.settle(self.read(start.ref))
        return start.ref

    def _reread(self, record: RunRecord) -> RunRecord:
        """The run at its ref's tip now (``record`` itself when the ref has not moved)."""
        tip = self.repo.get_ref(str(record.ref))
        if tip is None or tip == record.sha:
            return record
        return self.read(record.ref, tip)

    def _output_logs(self, writer_dir: str) -> list[ArtifactEntry]:
        """The output a killed ``git exp run`` had captured, as ``log`` artifacts."""
        from gitexp.capture import record_path

        out = []
        for label in ("stdout.log", "stderr.log"):
            path = os.path.join(writer_dir, "output", label)
            if os.path.isfile(path):
                out.append(record_path(path, f"logs/{label}", "log", self.cas, True).entry)
        return out

    def replay(self, ref: ExpRef, writer_dir: str) -> None:
        """Commit every spool entry of a writer that its run does not hold yet."""
        wid = os.path.basename(writer_dir)
        rec = self.read(ref)
        done = int((rec.info.get("writers") or {}).get(wid, -1))
        entries = [s for s in list_spool(writer_dir) if s > done]
        if not entries:
            return
        delta = load_spool(writer_dir, entries, self.repo.write_blob)
        self.update(ref, delta, verb="recover")


def _ignore(run_id: str, exc: GitExpError) -> None:
    """An ``on_error`` for callers that try again later (the next command does)."""


def _note_problem(problems: list[str]) -> Callable[[str, GitExpError], None]:
    """An ``on_error`` that appends ``"<run id>: <error>"`` to ``problems``."""

    def note(run_id: str, exc: GitExpError) -> None:
        problems.append(f"{run_id}: {exc}")

    return note


def _shown(text: str, limit: int = 80) -> str:
    """``text`` quoted for a one-line message, cut to ``limit`` characters."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + "..."


def _from_ts(ts: float) -> Any:
    import datetime as dt

    return dt.datetime.fromtimestamp(ts, dt.timezone.utc)


def spool_mtime(path: str) -> float:
    """The newest mtime of a spool directory and its entries (its last sign of life)."""
    try:
        return max(
            [os.stat(path).st_mtime]
            + [os.stat(os.path.join(path, n)).st_mtime for n in os.listdir(path)]
        )
    except FileNotFoundError:
        return 0.0


def _rmdir_quiet(path: str) -> None:
    with contextlib.suppress(OSError):
        os.rmdir(path)


def _read_owner(d: str) -> dict[str, Any] | None:
    try:
        with open(os.path.join(d, "owner.json"), encoding="utf-8") as f:
            data = json.load(f)
        return data if isinstance(data, dict) else None
    except (OSError, ValueError):
        return None


def _atomic_write(path: str, data: bytes) -> None:
    """Write a spool file: a temporary name, then rename (a reader never sees half).

    No fsync: the spool must survive a killed *process*, and the kernel keeps
    what was written for that; what must survive a machine crash is committed
    to git (refs are fsync'd) at checkpoints.
    """
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise StoreError(f"cannot write {path}: {exc.strerror or exc}") from exc


def read_start(writer_dir: str) -> RunStart | None:
    """The ``start.json`` of a writer's spool, or None when there is none.

    Raises:
        FormatError: it does not parse.
    """
    path = os.path.join(writer_dir, START_JSON)
    try:
        with open(path, encoding="utf-8") as f:
            return RunStart.from_json(json.load(f))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise FormatError(f"{path} is unreadable: {exc}") from exc


def list_spool(writer_dir: str) -> list[int]:
    """Sequence numbers of complete spool entries (their JSON exists), ascending."""
    try:
        names = os.listdir(writer_dir)
    except FileNotFoundError:
        return []
    return sorted(int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit())


def load_spool(
    writer_dir: str, seqs: list[int], write_blob: Callable[[bytes], str] | None = None
) -> RunDelta:
    """Merge spool entries into one delta (small segments concatenated).

    With ``write_blob``, each segment is written as a git blob as soon as it is
    read, and the delta holds ``(mode, sha)``: memory stays bounded by one
    segment however much a run spooled since its last commit.
    """
    from gitexp.metrics import merge_segments, segment_rows

    wid = os.path.basename(writer_dir)
    delta = RunDelta()
    small: list[tuple[bytes, str, int]] = []  # (segment bytes, where, rows) to be merged
    segments: list[bytes | tuple[int, str]] = []

    def keep(data: bytes) -> None:
        segments.append((MODE_FILE, write_blob(data)) if write_blob is not None else data)

    def merge_small() -> None:
        if len(small) == 1:  # nothing to merge with: the segment as it is
            keep(small[0][0])
        elif small:
            keep(merge_segments((d, w) for d, w, _ in small))
        small.clear()

    def add_small(data: bytes, where: str) -> None:
        small.append((data, where, segment_rows(data, where)))
        if sum(n for *_, n in small) >= MERGE_ROWS:  # bound memory and segment size
            merge_small()

    for seq in seqs:
        base = os.path.join(writer_dir, f"{seq:08d}")
        try:
            with open(base + ".json", encoding="utf-8") as f:
                part = RunDelta.from_json(json.load(f))
        except (OSError, ValueError) as exc:
            raise FormatError(f"spool entry {base}.json is unreadable: {exc}") from exc
        delta.absorb(part)
        if os.path.exists(base + ".parquet"):
            with open(base + ".parquet", "rb") as f:
                data = f.read()
            if len(data) >= PASS_THROUGH_BYTES:  # big enough to be a segment as it is
                merge_small()
                keep(data)
            else:
                add_small(data, f"spool entry {base}.parquet")
    merge_small()
    delta.segments = segments
    delta.writer = (wid, seqs[-1])
    return delta


class SpoolWriter:
    """This process's spool for one run: durable between checkpoints.

    The writer of a new run holds its :class:`RunStart` until the first
    commit, which creates the run's ref: at a checkpoint a second or so into
    the run, or at finish for a shorter run (its only commit).
    """

    def __init__(self, store: ExpStore, ref: ExpRef, start: RunStart | None = None) -> None:
        self.store = store
        self.ref = ref
        self.writer_id = f"{os.getpid()}-{os.urandom(4).hex()}"
        self.dir = os.path.join(store.live_root(ref.run_id), self.writer_id)
        self.start = start
        owner = {
            "pid": os.getpid(),
            "start": process_start(os.getpid()),
            "host": store.host,
            "ref": str(ref),
            "created": time.time(),
        }
        try:
            os.makedirs(self.dir, exist_ok=True)
            if start is not None:  # before owner.json: a dead owner's spool is complete
                _atomic_write(
                    os.path.join(self.dir, START_JSON), json.dumps(start.to_json()).encode()
                )
            _atomic_write(os.path.join(self.dir, "owner.json"), json.dumps(owner).encode())
        except (OSError, StoreError) as exc:
            shutil.rmtree(self.dir, ignore_errors=True)
            _rmdir_quiet(os.path.dirname(self.dir))
            if isinstance(exc, StoreError):
                raise
            raise StoreError(f"cannot write {self.dir}: {exc.strerror or exc}") from exc
        self.seq = 0
        self.committed = 0

    def write(self, delta: RunDelta, segment: bytes | None) -> int:
        """Write one entry durably; return its sequence number."""
        seq = self.seq + 1
        base = os.path.join(self.dir, f"{seq:08d}")
        try:
            if segment is not None:
                _atomic_write(base + ".parquet", segment)
            _atomic_write(base + ".json", json.dumps(delta.to_json()).encode())
        except StoreError:
            with contextlib.suppress(OSError):  # an entry without its JSON is not one
                os.unlink(base + ".parquet")
            raise
        self.seq = seq
        return seq

    def touch(self) -> None:
        """Heartbeat: the owner file's mtime says the writer is alive."""
        with contextlib.suppress(OSError):
            os.utime(os.path.join(self.dir, "owner.json"))

    def uncommitted(self) -> list[int]:
        """Entries written but not yet on the ref."""
        return [s for s in list_spool(self.dir) if s > self.committed]

    def commit(self, extra: RunDelta | None, verb: str) -> str | None:
        """Move spooled entries (and ``extra``) onto the ref; drop them from the spool.

        The first commit of a new run creates its ref (verb ``start``, or
        ``finish`` when the run ends before its first checkpoint).
        """
        seqs = self.uncommitted()
        delta = load_spool(self.dir, seqs, self.store.repo.write_blob) if seqs else RunDelta()
        if extra is not None:
            delta.absorb(extra)
        if seqs:
            delta.writer = (self.writer_id, seqs[-1])
        if self.start is not None:
            sha = self.store.commit_first(
                self.start, delta, "start" if verb == "checkpoint" else verb
            )
            if sha is None:
                raise RunConflict(
                    f"run {self.ref.short} was created by someone else meanwhile; "
                    "nothing of this run was recorded on it",
                    str(self.ref),
                )
            self.start = None
            with contextlib.suppress(FileNotFoundError):
                os.unlink(os.path.join(self.dir, START_JSON))
        elif delta.is_empty() and delta.writer is None:
            return None
        else:
            sha = self.store.update(self.ref, delta, verb)
        for s in seqs:
            for ext in (".json", ".parquet"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(os.path.join(self.dir, f"{s:08d}{ext}"))
        if seqs:
            self.committed = seqs[-1]
        return sha

    def close(self) -> None:
        """Remove the spool (call only after a final commit)."""
        shutil.rmtree(self.dir, ignore_errors=True)
        _rmdir_quiet(os.path.dirname(self.dir))
