"""The dashboard's JSON API as plain functions over the services.

Every answer is JSON-ready data (NaN and infinities as the strings the CLI's
``--json`` prints). Listing is :func:`gitexp.leaderboard.leaderboard`; one run
is :func:`gitexp.show.describe`; two runs are
:func:`gitexp.rundiff.diff_records`; tags and notes are
:func:`gitexp.maintenance.edit` (the same commit as ``git exp tag``/``note``).
Nothing here parses a query, sorts or compares on its own.

One :class:`Dashboard` serves one repository; its store is shared by the
server's threads under a lock (dulwich objects are not thread-safe), and the
metric tables of the last runs read are kept, keyed by commit, so a page that
polls a live run reads each checkpoint once.
"""

from __future__ import annotations

import hashlib
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gitexp.errors import GitExpError, RunNotFound, UsageError
from gitexp.leaderboard import Query, leaderboard
from gitexp.store import ExpStore, RunDelta, RunRecord
from gitexp.ui.series import check_points, downsample

DEFAULT_LIMIT = 100
MAX_LIMIT = 100_000
MAX_RUNS_PER_CURVE_REQUEST = 200
MAX_TEXT = 256 * 1024  # a log shown in the page: its first 256 KiB
MAX_CODE_DIFF = 512 * 1024
METRIC_CACHE = 64  # the points of at most this many run commits kept in memory ...
METRIC_CACHE_BYTES = 512 << 20  # ... and at most this many bytes of them


class NotFound(RunNotFound):
    """A path the API does not serve, or an artifact not in the run's manifest."""


def jsonable(value: Any) -> Any:
    """``value`` with NaN and infinities as strings: valid JSON for a browser."""
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def _split(text: str | None) -> list[str]:
    return [p.strip() for p in (text or "").split(",") if p.strip()]


def _int(text: str | None, name: str, default: int | None) -> int | None:
    if text is None or text == "":
        return default
    try:
        return int(text)
    except ValueError:
        raise UsageError(f"{name} must be a whole number, not {text[:40]!r}") from None


def query_of(args: Mapping[str, str], default_limit: int | None = DEFAULT_LIMIT) -> Query:
    """The leaderboard query of the API's parameters (the names of ``git exp log``)."""
    limit = _int(args.get("limit"), "limit", default_limit)
    offset = _int(args.get("offset"), "offset", 0) or 0
    if limit is not None and limit > MAX_LIMIT:
        raise UsageError(f"limit must be at most {MAX_LIMIT}")
    group = args.get("group_by")
    tags = _split(args.get("tag"))
    if args.get("sweep"):
        from gitexp.sweeps import sweep_tag
        from gitexp.sweeps.record import validate_id

        tags.append(sweep_tag(validate_id(args["sweep"])))
    return Query(
        experiment=args.get("experiment") or None,
        status=_split(args.get("status")),
        tags=tags,
        unless_tags=_split(args.get("unless_tag")),
        where=args.get("where") or None,
        sort=args.get("sort") or None,
        limit=limit,
        offset=offset,
        columns=_split(args.get("columns")) or None,
        group_by=_split(group) if group else None,
        baseline=args.get("baseline") or None,
        every_param=not args.get("columns"),
    )


def _nbytes(arrays: Mapping[str, tuple[Any, Any, Any]]) -> int:
    return sum(int(a.nbytes) for triple in arrays.values() for a in triple)


def _merged(
    old: Mapping[str, tuple[Any, Any, Any]], new: Mapping[str, tuple[Any, Any, Any]]
) -> dict[str, tuple[Any, Any, Any]]:
    """Two sets of key arrays as one, each key in step order."""
    import numpy as np

    out = dict(old)
    for key, (s, v, t) in new.items():
        if key in out:
            s0, v0, t0 = out[key]
            s, v, t = np.concatenate([s0, s]), np.concatenate([v0, v]), np.concatenate([t0, t])
            order = np.argsort(s, kind="stable")
            s, v, t = s[order], v[order], t[order]
        out[key] = (s, v, t)
    return out


def _signature(delta: RunDelta) -> str:
    """Changes when a live run's writers spool more."""
    import json

    if delta.is_empty():
        return ""
    text = json.dumps(delta.summary.to_json(), sort_keys=True, default=str)
    return hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:16]


@dataclass
class Artifact:
    """An artifact of a run, as its manifest gives it: the bytes are the CAS object ``blake3``."""

    path: str
    blake3: str
    size: int


class Dashboard:
    """The API of one repository."""

    def __init__(self, repo: str | os.PathLike[str] = ".") -> None:
        from gitexp.catalog import indexed_store

        self.repo = os.fspath(repo)
        self.store: ExpStore = indexed_store(repo)
        self.lock = threading.RLock()
        self._metrics: OrderedDict[str, dict[str, tuple[Any, Any, Any]]] = OrderedDict()
        self._metric_bytes = 0

    def warm(self) -> None:
        """Bring the catalog up to date and load what the first page asks for
        (pyarrow, numpy, the index of runs), so that the first page is as quick
        as the next ones. A problem is left for the page to show."""
        try:
            self.runs({"limit": "1"})
            self.facets()
        except GitExpError:
            pass

    def close(self) -> None:
        """Close the store."""
        with self.lock:
            self.store.close()

    # -------------------------------------------------------------- listing
    def runs(
        self, args: Mapping[str, str], default_limit: int | None = DEFAULT_LIMIT
    ) -> dict[str, Any]:
        """``GET /api/runs``: the leaderboard, records as ``git exp log --json`` prints them."""
        query = query_of(args, default_limit)
        with self.lock:
            board = leaderboard(self.store, query)
        extra = ("ids",) if board.grouped else ("id", "ref", "sha")
        rows = [
            {c: r.get(c) for c in board.columns} | {k: r.get(k) for k in extra} for r in board.rows
        ]
        digest = hashlib.sha1(usedforsecurity=False)
        digest.update(str(board.total).encode())
        for r in rows:
            digest.update(str(r.get("sha") or r.get("ids")).encode())
            if not board.grouped and r.get("status") == "running":
                digest.update(self._live_row(r, board.columns).encode())
        return jsonable(  # type: ignore[no-any-return]
            {
                "runs": rows,
                "total": board.total,
                "columns": board.columns,
                "grouped": board.grouped,
                "baseline": dict(board.baseline) if board.baseline is not None else None,
                "problems": board.problems,
                "in_repository": board.runs_in_repository,
                "version": digest.hexdigest(),
            }
        )

    def _live_row(self, row: dict[str, Any], columns: Sequence[str]) -> str:
        """Give the metric columns of a running run's row what its writers spooled
        since its last commit (the catalog holds the last commit); its signature."""
        try:
            with self.lock:
                rec = self.store.read_settled(str(row.get("ref")))
                delta = self.store.pending(rec, points=False)
        except GitExpError:
            return ""
        if delta.is_empty():
            return ""
        finals = rec.summary.merge(delta.summary).final_values()
        for col in columns:
            if col.startswith("metrics.") and col[len("metrics.") :] in finals:
                row[col] = finals[col[len("metrics.") :]]
        return _signature(delta)

    def _live(
        self, rec: RunRecord, arrays: dict[str, tuple[Any, Any, Any]] | None = None
    ) -> tuple[RunRecord, dict[str, tuple[Any, Any, Any]], str]:
        """A run with what its live writers spooled since its last commit: the
        record (summary merged), its points (``arrays``: its committed points,
        when the caller has them), and a signature of the spooled part."""
        from dataclasses import replace

        from gitexp.metrics import concat, from_parquet, key_arrays

        if arrays is None:
            arrays = self._key_arrays(rec)
        delta = self.store.pending(rec)
        if delta.is_empty():
            return rec, arrays, ""
        segments = [from_parquet(b, "spool entry") for b in delta.segments if isinstance(b, bytes)]
        if segments:
            arrays = _merged(arrays, key_arrays(concat(segments)))
        return replace(rec, summary=rec.summary.merge(delta.summary)), arrays, _signature(delta)

    def facets(self) -> dict[str, Any]:
        """``GET /api/facets``: what the filters and pickers offer: experiments,
        statuses, tags, param and metric keys (from the catalog, through the leaderboard)."""
        from gitexp import records as fmt
        from gitexp.leaderboard import select

        with self.lock:
            table = select(self.store, Query())
            experiments = table.distinct("experiment")
            tags = table.distinct("tags")
            keys = sorted(table.keys)
        return {
            "experiments": experiments,
            "statuses": list(fmt.STATUSES),
            "tags": tags,
            "params": [k for k in keys if k.startswith("params.")],
            "metrics": [k for k in keys if k.startswith("metrics.")],
            "runs": len(table),
        }

    # -------------------------------------------------------------- one run
    def _get(self, address: str) -> RunRecord:
        if not address or len(address) > 512:
            raise RunNotFound("no such run")
        return self.store.read_settled(address)

    def run(self, address: str) -> dict[str, Any]:
        """``GET /api/runs/<run>``: what ``git exp show --json`` prints."""
        from gitexp.show import describe

        with self.lock:
            rec, arrays, live = self._live(self._get(address))
            data = describe(self.store, rec, arrays=arrays)
        data["version"] = f"{rec.sha}:{live}"
        data["logs"] = [a["path"] for a in data["artifacts"] if a.get("role") == "log"]
        return jsonable(data)  # type: ignore[no-any-return]

    def diff(self, a: str, b: str, with_code: bool = True) -> dict[str, Any]:
        """``GET /api/diff?a=&b=``: what ``git exp diff --json --code`` prints."""
        from gitexp.rundiff import diff_records

        with self.lock:
            ra, rb = self._get(a), self._get(b)
            data = diff_records(self.store, ra, rb)
            source = ""
            if with_code and data["code"]["a"] and data["code"]["b"]:
                try:
                    source = self.store.repo.diff_text(data["code"]["a"], data["code"]["b"])
                except GitExpError as exc:
                    source = f"(no source diff: {exc})"
        if len(source) > MAX_CODE_DIFF:
            source = source[:MAX_CODE_DIFF] + "\n… (cut: the diff is longer)"
        data["code"]["source_diff"] = source
        return jsonable(data)  # type: ignore[no-any-return]

    # -------------------------------------------------------------- curves
    def _key_arrays(self, rec: RunRecord) -> dict[str, tuple[Any, Any, Any]]:
        return self._read_points([rec])[0]

    def _read_points(self, recs: Sequence[RunRecord]) -> list[dict[str, tuple[Any, Any, Any]]]:
        """The points of runs (committed), from memory or read, the ones not in
        memory through one git cat-file batch (C git reads and inflates the
        segments; pyarrow decodes them)."""
        from gitexp.metrics import key_arrays

        got: dict[str, dict[str, tuple[Any, Any, Any]]] = {}
        missing: list[RunRecord] = []
        for rec in recs:
            cached = self._metrics.get(rec.sha)
            if cached is not None:
                self._metrics.move_to_end(rec.sha)
                got[rec.sha] = cached
            elif not rec.segments:
                got[rec.sha] = {}
            elif rec.sha not in (m.sha for m in missing):
                missing.append(rec)
        shas = [m.sha for m in missing]
        tables = self.store.read_metrics_many(shas, dictionary_keys=True) if missing else []
        for rec, table in zip(missing, tables):
            arrays = got[rec.sha] = key_arrays(table)
            self._keep(rec.sha, arrays)
        return [got[rec.sha] for rec in recs]

    def _keep(self, sha: str, arrays: dict[str, tuple[Any, Any, Any]]) -> None:
        size = _nbytes(arrays)
        if size > METRIC_CACHE_BYTES:  # too big to keep: read again when asked again
            return
        self._metrics[sha] = arrays
        self._metric_bytes += size
        while len(self._metrics) > METRIC_CACHE or self._metric_bytes > METRIC_CACHE_BYTES:
            _, old = self._metrics.popitem(last=False)
            self._metric_bytes -= _nbytes(old)

    def metrics(
        self, runs: Sequence[str], keys: Sequence[str] | None = None, max_points: int | None = None
    ) -> dict[str, Any]:
        """``GET /api/metrics?runs=a,b&keys=k&max_points=N``: the series of each run
        and key, downsampled to at most N buckets (min and max kept)."""
        if not runs:
            raise UsageError("give runs=<run>[,<run>...]")
        if len(runs) > MAX_RUNS_PER_CURVE_REQUEST:
            raise UsageError(f"at most {MAX_RUNS_PER_CURVE_REQUEST} runs at a time")
        points = check_points(max_points)
        out = []
        with self.lock:
            recs = [self._get(a) for a in runs]
            committed = self._read_points(recs)  # the runs not in memory, read at once
            for rec, stored in zip(recs, committed):
                rec, arrays, _ = self._live(rec, stored)
                for key in sorted(arrays) if keys is None else keys:
                    if key not in arrays:
                        continue
                    steps, values, times = arrays[key]
                    series = downsample(steps, values, times, points)
                    series.update(
                        run=rec.run_id,
                        experiment=rec.experiment,
                        name=rec.info.get("name"),
                        status=rec.info.get("status"),
                        key=key,
                    )
                    out.append(series)
        return {"series": out, "max_points": points}

    # ------------------------------------------------------------ artifacts
    def artifact(self, address: str, path: str) -> Artifact:
        """The artifact ``path`` of a run, found in its manifest only (anything else: NotFound)."""
        with self.lock:
            rec = self._get(address)
            for entry in rec.artifacts:
                if entry.path == path and entry.kind == "file" and entry.stored:
                    if not self.store.cas.has(entry.blake3):
                        raise NotFound(f"the bytes of {path!r} are not in the local store")
                    return Artifact(entry.path, entry.blake3, entry.size)
        raise NotFound("no such artifact in the run's manifest")

    # ---------------------------------------------------------------- edits
    def edit(
        self,
        address: str,
        add_tags: Sequence[str] = (),
        remove_tags: Sequence[str] = (),
        note: str | None = None,
    ) -> dict[str, Any]:
        """``POST /api/runs/<run>/tags`` and ``/notes``: the commit of ``git exp tag``/``note``."""
        from gitexp.maintenance import edit

        with self.lock:
            sha = edit(self.store, address, add_tags, remove_tags, note)
        return {"sha": sha}

    def sweeps(self) -> list[dict[str, Any]]:
        """``GET /api/sweeps``: the sweeps of the repository (``git exp sweep list``)."""
        from gitexp.sweeps import list_sweeps

        return jsonable(list_sweeps(self.repo))  # type: ignore[no-any-return]  # its own store

    def sweep(self, sweep_id: str) -> dict[str, Any]:
        """``GET /api/sweeps/<id>``: one sweep as ``git exp sweep show --json`` prints it."""
        from gitexp.sweeps import describe
        from gitexp.sweeps.record import validate_id

        return jsonable(describe(validate_id(sweep_id), self.repo))  # type: ignore[no-any-return]


def read_verified(
    store: ExpStore, artifact: Artifact, head: int | None = None
) -> Generator[bytes, None, None]:
    """The bytes of an artifact in chunks, checked against its BLAKE3 as they go
    (:meth:`gitexp.cas.LocalStore.iter_verified`: a damaged object never arrives
    whole). With ``head``, only the first ``head`` bytes come out, after the
    whole object was verified."""
    chunks = store.cas.iter_verified(artifact.blake3)
    if head is None:
        yield from chunks
        return
    kept = bytearray()
    for data in chunks:
        if len(kept) < head:
            kept += data[: head - len(kept)]
    yield bytes(kept)
