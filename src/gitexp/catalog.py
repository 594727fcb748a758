"""The run catalog: a derived table with one row per run, for fast listing.

Stored as ``.git/exp/catalog/runs.parquet``. Never the source of truth: it is
rebuilt from refs whenever it is missing, unreadable, or of another version,
and ``git exp reindex`` rebuilds it on demand.

Incremental update: a run ref is a loose file ``refs/experiments/<exp>/<id>``
(or a line of ``packed-refs``). The catalog remembers each ref's sha and file
mtime; an update re-reads only refs whose file is new, changed, or too recent
to trust (the "racy git" rule: a file modified within RACY_SECONDS of the
catalog's build may have changed again within the same timestamp tick), and
``packed-refs`` only when that file changed. Writers never take a lock: the
catalog is replaced atomically (temp file + rename), and a concurrent update
at worst redoes work.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from gitexp import format as fmt
from gitexp.errors import GitExpError, InvalidName
from gitexp.format import ExpRef
from gitexp.store import ExpStore, RunRecord

CATALOG_VERSION = 1
RACY_SECONDS = 2.0
_COLUMNS = [
    "ref",
    "sha",
    "mtime_ns",
    "packed",
    "id",
    "experiment",
    "name",
    "status",
    "start",
    "duration",
    "exit_code",
    "tags",
    "fingerprint",
    "code_commit",
    "params",
    "metrics",
]


@dataclass
class CatalogRow:
    """One run as the catalog holds it (params and metrics flattened, as JSON text)."""

    ref: str
    sha: str
    mtime_ns: int
    packed: bool
    data: dict[str, Any]


def _row_data(rec: RunRecord) -> dict[str, Any]:
    return {
        "id": rec.run_id,
        "experiment": rec.experiment,
        "name": rec.name,
        "status": rec.status,
        "start": rec.info.get("start_time"),
        "duration": rec.info.get("duration"),
        "exit_code": rec.info.get("exit_code"),
        "tags": rec.tags,
        "fingerprint": rec.info.get("fingerprint"),
        "code_commit": rec.code_commit,
        "params": json.dumps(fmt.flatten(rec.params), ensure_ascii=False, allow_nan=True),
        "metrics": json.dumps(rec.summary.final_values(), allow_nan=True),
    }


def _scan_loose(refs_root: str) -> Iterator[tuple[str, int]]:
    """(ref name, mtime_ns) of every loose ref under refs/experiments."""
    stack = [(refs_root, fmt.NAMESPACE)]
    while stack:
        d, prefix = stack.pop()
        try:
            entries = list(os.scandir(d))
        except FileNotFoundError:
            continue
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                stack.append((e.path, f"{prefix}{e.name}/"))
            elif not e.name.endswith(".lock"):
                try:
                    mtime = e.stat(follow_symlinks=False).st_mtime_ns
                except FileNotFoundError:
                    continue
                yield prefix + e.name, mtime


def _read_loose(common: str, ref: str) -> str | None:
    try:
        with open(os.path.join(common, *ref.split("/")), "rb") as f:
            text = f.read().strip().decode("ascii", "replace")
    except FileNotFoundError:
        return None
    return text if len(text) == 40 else None


def _read_packed(common: str) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        with open(os.path.join(common, "packed-refs"), "rb") as f:
            for line in f:
                if line[:1] in (b"#", b"^"):
                    continue
                parts = line.strip().split(b" ", 1)
                if len(parts) == 2 and parts[1].startswith(b"refs/experiments/"):
                    out[parts[1].decode("utf-8", "replace")] = parts[0].decode("ascii")
    except FileNotFoundError:
        pass
    return out


class Catalog:
    """The catalog of one store."""

    def __init__(self, store: ExpStore) -> None:
        self.store = store
        self.common = store.repo.common_dir
        self.dir = os.path.join(store.repo.exp_dir, "catalog")
        self.path = os.path.join(self.dir, "runs.parquet")
        self.reads = 0  # runs read from git objects by the last update (for tests/benchmarks)

    # ------------------------------------------------------------ persistence
    def _load(self) -> tuple[dict[str, CatalogRow], dict[str, Any]]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.ParquetFile(self.path).read(use_threads=False)
        except (FileNotFoundError, OSError, pa.ArrowException):
            return {}, {}
        meta = json.loads((table.schema.metadata or {}).get(b"gitexp", b"{}"))
        if meta.get("version") != CATALOG_VERSION or set(_COLUMNS) - set(table.column_names):
            return {}, {}
        cols = {c: table.column(c).to_pylist() for c in _COLUMNS}
        rows = {}
        for i, ref in enumerate(cols["ref"]):
            rows[ref] = CatalogRow(
                ref,
                cols["sha"][i],
                cols["mtime_ns"][i],
                cols["packed"][i],
                {c: cols[c][i] for c in _COLUMNS[4:]},
            )
        return rows, meta

    def _save(self, rows: dict[str, CatalogRow], meta: dict[str, Any]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        ordered = list(rows.values())
        data: dict[str, Any] = {
            "ref": [r.ref for r in ordered],
            "sha": [r.sha for r in ordered],
            "mtime_ns": pa.array([r.mtime_ns for r in ordered], pa.int64()),
            "packed": pa.array([r.packed for r in ordered], pa.bool_()),
        }
        types = {"duration": pa.float64(), "exit_code": pa.int64(), "tags": pa.list_(pa.string())}
        for c in _COLUMNS[4:]:
            data[c] = pa.array([r.data.get(c) for r in ordered], types.get(c, pa.string()))
        table = pa.table(data).replace_schema_metadata(
            {"gitexp": json.dumps({**meta, "version": CATALOG_VERSION})}
        )
        os.makedirs(self.dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix="runs-", suffix=".parquet", dir=self.dir)
        os.close(fd)
        try:
            pq.write_table(table, tmp, compression="zstd")
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    # ---------------------------------------------------------------- update
    def update(self, problems: list[str] | None = None) -> list[CatalogRow]:
        """Bring the catalog up to date with the refs; return every row.

        A run that cannot be read is left out (its error goes to ``problems``).
        """
        started = time.time_ns()
        rows, meta = self._load()
        racy_ns = int(meta.get("built_ns", 0)) - int(RACY_SECONDS * 1e9)
        packed_path = os.path.join(self.common, "packed-refs")
        try:
            pst = os.stat(packed_path)
            packed_sig = [pst.st_mtime_ns, pst.st_size]
        except FileNotFoundError:
            packed_sig = None
        packed_changed = packed_sig != meta.get("packed_sig") or (
            packed_sig is not None and packed_sig[0] >= racy_ns
        )
        old_packed = {r.ref: r.sha for r in rows.values() if r.packed}
        packed = _read_packed(self.common) if packed_changed else old_packed

        current: dict[str, tuple[str, int, bool]] = {}  # ref -> (sha, mtime, packed)
        changed = False
        loose = dict(_scan_loose(os.path.join(self.common, "refs", "experiments")))
        for ref, sha in packed.items():
            if ref not in loose:
                current[ref] = (sha, 0, True)
        for ref, mtime in loose.items():
            row = rows.get(ref)
            if row is not None and not row.packed and row.mtime_ns == mtime:
                if mtime < racy_ns:
                    current[ref] = (row.sha, mtime, False)
                    continue
                changed = True  # re-read a racy ref: save, so it is not racy next time
            sha = _read_loose(self.common, ref)
            if sha is not None:
                current[ref] = (sha, mtime, False)
        new_rows: dict[str, CatalogRow] = {}
        self.reads = 0
        for ref, (sha, mtime, is_packed) in current.items():
            row = rows.get(ref)
            if row is not None and row.sha == sha:
                if row.mtime_ns != mtime or row.packed != is_packed:
                    changed = True
                row.mtime_ns, row.packed = mtime, is_packed
                new_rows[ref] = row
                continue
            changed = True
            try:
                exp_ref = ExpRef.from_ref(ref)
                rec = self.store.read(exp_ref, sha)
            except GitExpError as exc:
                if problems is not None and not isinstance(exc, InvalidName):
                    problems.append(f"{ref[len(fmt.NAMESPACE) :]}: {exc}")
                continue
            self.reads += 1
            new_rows[ref] = CatalogRow(ref, sha, mtime, is_packed, _row_data(rec))
        if set(new_rows) != set(rows):
            changed = True
        # runs still "running" may have died: settle them (cheap: only those rows)
        for ref, row in list(new_rows.items()):
            if row.data.get("status") == "running":
                try:
                    rec = self.store.settle(self.store.read(ExpRef.from_ref(ref), row.sha))
                except GitExpError:
                    continue
                if rec.sha != row.sha or rec.status != "running":
                    row.sha, row.data = rec.sha, _row_data(rec)
                    row.mtime_ns = 0  # re-stat next time
                    changed = True
        if changed or meta.get("packed_sig") != packed_sig:
            with contextlib.suppress(OSError):  # a read-only repository still lists runs
                self._save(new_rows, {"built_ns": started, "packed_sig": packed_sig})
        return list(new_rows.values())

    def rebuild(self) -> int:
        """Drop the catalog and build it again from refs; return the number of runs."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        return len(self.update())


def rows_from_catalog(
    rows: Sequence[CatalogRow],
    experiment: str | None = None,
    status: Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Leaderboard rows (as query.row_of makes them) for the catalog rows matching filters."""
    out = []
    prefix = f"{experiment}/" if experiment else None
    for r in rows:
        d = r.data
        if prefix and not (d["experiment"] == experiment or d["experiment"].startswith(prefix)):
            continue
        if status and d["status"] not in status:
            continue
        if tags and not all(t in (d["tags"] or []) for t in tags):
            continue
        row = {
            k: d[k]
            for k in (
                "id",
                "experiment",
                "name",
                "status",
                "start",
                "duration",
                "exit_code",
                "fingerprint",
                "code_commit",
            )
        }
        row["tags"] = list(d["tags"] or [])
        row["ref"] = r.ref
        row["sha"] = r.sha
        for k, v in json.loads(d["params"] or "{}").items():
            row[f"params.{k}"] = v
        for k, v in json.loads(d["metrics"] or "{}").items():
            row[f"metrics.{k}"] = v
        out.append(row)
    out.sort(key=lambda r: (r["start"] or "", r["id"]), reverse=True)
    return out
