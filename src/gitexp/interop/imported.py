"""An imported run, written as an ordinary git-exp run: one ``import`` commit on
``refs/experiments/<experiment>/<run-id>``, its artifacts in the CAS, its metric
points in a Parquet segment, and ``run.json`` ``origin`` saying where it came from.

The run id is made from the run's start time and a hash of its identity in the
source (``mlflow:<run uuid>``, ``tensorboard:<event file names>``), so the same
source run always gets the same id: importing again finds it (in any experiment)
and adds nothing, and two imports racing create the ref once (compare-and-swap).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from gitexp import records as fmt
from gitexp.capture import record_path
from gitexp.errors import GitExpError
from gitexp.records import ArtifactEntry, ExpRef
from gitexp.store import ExpStore, RunDelta

ORIGIN = "origin"  # the run.json field
VERB = "import"  # the commit verb


@dataclass
class Point:
    """One metric point of a source run."""

    key: str
    step: int
    value: float
    time: float  # seconds since the epoch


@dataclass
class ImportedRun:
    """A run of another tool, as git-exp will record it.

    ``identity`` names the run in its source, for good (the key importing
    again is checked against); ``origin`` is what ``run.json`` ``origin``
    records; ``artifacts`` are (name in the run, local path) pairs, files or
    directories; ``code_commit`` a commit the source says the code was at,
    used when this repository has it.
    """

    identity: str
    experiment: str
    start: float
    origin: dict[str, Any]
    name: str | None = None
    status: str = "finished"
    end: float | None = None
    params: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    notes: list[tuple[float, str]] = field(default_factory=list)
    points: list[Point] = field(default_factory=list)
    artifacts: list[tuple[str, str]] = field(default_factory=list)
    code_commit: str | None = None
    user: str | None = None


@dataclass
class ImportReport:
    """What an import did."""

    imported: list[str] = field(default_factory=list)  # experiment/run-id of new runs
    already: list[str] = field(default_factory=list)  # source runs imported before
    skipped: list[str] = field(default_factory=list)  # source runs left out, with the reason
    warnings: list[str] = field(default_factory=list)


def first_line(exc: BaseException) -> str:
    """The first line of an error from another tool, for one-line messages."""
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def _when(ts: float) -> _dt.datetime:
    return _dt.datetime.fromtimestamp(ts, tz=_dt.timezone.utc)


def run_id_for(identity: str, start: float) -> str:
    """The run id an imported run gets: its start time and 12 hex digits of the
    SHA-256 of its identity in the source."""
    digest = hashlib.sha256(identity.encode("utf-8")).hexdigest()[:12]
    return _when(start).strftime("%Y%m%d-%H%M%S-") + digest


class Importer:
    """Writes imported runs into one store; knows the run ids it already holds."""

    def __init__(self, store: ExpStore) -> None:
        self.store = store
        self.store.repo.require_head()  # NoCommits before anything is read or written
        self.ids: dict[str, ExpRef] = {ref.run_id: ref for ref in store.list_refs()}
        self._code: dict[str | None, tuple[dict[str, Any], str]] = {}

    def existing(self, identity: str, start: float) -> ExpRef | None:
        """The run an earlier import made of this source run, if any."""
        return self.ids.get(run_id_for(identity, start))

    def _code_of(self, commit: str | None) -> tuple[dict[str, Any], str]:
        """(code.json, code commit): the source's commit when this repository has
        it, else HEAD now."""
        if commit not in self._code:
            repo = self.store.repo
            use = None
            if commit and fmt._HEX_RE.match(commit) and len(commit) == 40:
                try:
                    if repo.has_object(commit):
                        repo.commit_info(commit)
                        use = commit
                except GitExpError:
                    use = None
            head = repo.require_head()
            sha = use or head
            code: dict[str, Any] = {
                "head": head,
                "branch": repo.branch(),
                "remotes": repo.remotes(),
                "dirty": False,
                "snapshot": None,
                "commit": sha,
                "tree": repo.commit_info(sha).tree,
                "changed": [],
                "large_files": [],
                "unreadable": [],
                "diff_stat": "",
            }
            self._code[commit] = (code, sha)
        return self._code[commit]

    def write(self, run: ImportedRun) -> ExpRef | None:
        """Record ``run``; None when it was imported before (here, or by a
        concurrent import that made its ref first)."""
        from gitexp.metrics import Rows, build_table, summarize, to_parquet

        run_id = run_id_for(run.identity, run.start)
        if run_id in self.ids:
            return None
        fmt.validate_experiment(run.experiment)
        ref = ExpRef(run.experiment, run_id)
        entries: list[ArtifactEntry] = []
        for name, path in run.artifacts:
            hashed = record_path(path, name, "output", self.store.cas, store=True)
            entries.append(hashed.entry)
        code, commit = self._code_of(run.code_commit)
        start_iso = fmt.iso(_when(run.start))
        end_iso = fmt.iso(_when(run.end)) if run.end is not None else start_iso
        origin = {**run.origin, "imported": fmt.iso(fmt.utc_now())}
        info: dict[str, Any] = {
            "name": fmt.validate_run_name(run.name),
            "status": run.status,
            "start_time": start_iso,
            "heartbeat": end_iso,
            "end_time": end_iso,
            "command": [],
            "cwd_rel": None,
            "tags": sorted({fmt.validate_tag(t) for t in run.tags}),
            ORIGIN: origin,
        }
        if run.user:
            info["user"] = run.user
        params: dict[str, Any] = {}
        for key, value in run.params.items():
            fmt.set_dotted(params, key, fmt.to_jsonable(value, key))
        start = self.store.start_state(ref, info, params, code, commit, {}, entries)
        delta = RunDelta(
            notes=[
                {"time": fmt.iso(_when(t)) or "", "text": fmt.validate_note(text)}
                for t, text in run.notes
            ]
        )
        if run.points:
            rows = Rows()
            ids: dict[str, int] = {}
            for p in sorted(run.points, key=lambda p: (p.time, p.step)):
                kid = ids.get(p.key)
                if kid is None:
                    from gitexp.metrics import check_metric_key

                    kid = ids[check_metric_key(p.key)] = len(rows.names)
                    rows.names.append(p.key)
                rows.keys.append(kid)
                rows.steps.append(_step(p))
                rows.values.append(float(p.value))
                rows.times.append(float(p.time))
            table = build_table(rows)
            delta.summary = summarize(table)
            delta.segments = [to_parquet(table)]
        sha = self.store.commit_first(start, delta, VERB)
        if sha is None:  # another import made it meanwhile
            return None
        self.ids[run_id] = ref
        return ref


def _step(p: Point) -> int:
    from gitexp.metrics import check_step

    return check_step(p.step, p.key)


def tag_pairs_as_tags(
    pairs: Mapping[str, str], report: ImportReport, where: str, skip: Iterable[str] = ()
) -> list[str]:
    """MLflow-style ``key -> value`` tags as git-exp tags (``key=value``); a pair
    git-exp cannot hold as a tag (a ``,``, a newline, over 200 characters) is
    reported (``origin`` keeps every tag of the source anyway)."""
    from gitexp.interop.mlflow_names import tag_text

    out = []
    for key, value in sorted(pairs.items()):
        if key in skip:
            continue
        text = tag_text(key, value)
        try:
            fmt.validate_tag(text)
        except GitExpError as exc:
            report.warnings.append(f"{where}: tag {key!r} kept in origin only ({exc})")
            continue
        out.append(text)
    return out
