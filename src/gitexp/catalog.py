"""The run catalog: a derived, columnar table with one row per run, for fast listing.

Stored as ``.git/exp/catalog/runs.parquet`` (layout in docs/format.md, "The
catalog"). Never the source of truth: it is rebuilt from refs whenever it is
missing, unreadable, or of another version, and ``git exp reindex`` rebuilds it
on demand.

Columns: the ref, its sha and the bookkeeping of the incremental update; the
base columns (id, experiment, name, status, start, ...); the run's flattened
params and final metrics as JSON text (``params``, ``metrics``: the exact
values rows are made of); and a *typed* column ``params.<key>`` /
``metrics.<key>`` for each key whose values are of one scalar type (bool,
int64, float64, string) in every run that has it, so that sorting and
filtering read one Arrow column instead of decoding every run's JSON. Keys of
mixed types, and keys beyond the :data:`MAX_TYPED` most common, are only in
the JSON columns, which the slower paths decode.

Incremental update: a run ref is a loose file ``refs/experiments/<exp>/<id>``
(or a line of ``packed-refs``). Git and dulwich change a loose ref by writing
``<ref>.lock`` and renaming it over the ref, which changes the directory's
mtime; so a directory whose mtime is unchanged, and older than the last build
by more than RACY_SECONDS (the "racy git" rule: a change within the same
timestamp tick keeps the mtime), holds the same refs with the same shas, and
its files are not even stat'ed. In a changed directory, each ref file's mtime
is compared with the catalog's, and only new or changed refs are read from
git. ``packed-refs`` is read only when its size or mtime changed. Writers never
take a lock: the catalog is replaced atomically (temp file + rename), and a
concurrent update at worst redoes work.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gitexp import columns
from gitexp import records as fmt
from gitexp.errors import GitExpError, InvalidName
from gitexp.records import ExpRef
from gitexp.store import ExpStore, RunRecord

if TYPE_CHECKING:
    from gitexp.git import RefScan

CATALOG_VERSION = 2
RACY_SECONDS = 2.0
MAX_TYPED = 256  # typed params./metrics. columns at most (the most common keys)
MERGE_EVERY = 10_000  # a build turns this many runs read into Arrow rows at a time
# from this many rows on, sort and compare in Arrow; below, plain Python is quicker
# than importing pyarrow.compute (50-100 ms of a warm listing)
ARROW_ROWS = 20_000

# bookkeeping columns, then the base columns every row has
_REF_COLUMNS = ["ref", "sha", "mtime_ns", "packed"]
BASE_COLUMNS = [
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
]
JSON_COLUMNS = ["params", "metrics"]
_FIXED = _REF_COLUMNS + BASE_COLUMNS + JSON_COLUMNS
_PREFIX = {"params": "params.", "metrics": "metrics."}


def _arrow_types() -> dict[str, Any]:
    import pyarrow as pa

    return {
        "ref": pa.string(),
        "sha": pa.string(),
        "mtime_ns": pa.int64(),
        "packed": pa.bool_(),
        "id": pa.string(),
        "experiment": pa.string(),
        "name": pa.string(),
        "status": pa.string(),
        "start": pa.string(),
        "duration": pa.float64(),
        "exit_code": pa.int64(),
        "tags": pa.list_(pa.string()),
        "fingerprint": pa.string(),
        "code_commit": pa.string(),
        "params": pa.string(),
        "metrics": pa.string(),
    }


def _kind(v: Any) -> str | None:
    """The typed-column kind of a value, or None when only JSON can hold it."""
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int" if -(2**63) <= v < 2**63 else None
    if isinstance(v, float):
        return "float"
    if isinstance(v, str):
        return "str"
    return None


def _kind_type(kind: str) -> Any:
    import pyarrow as pa

    return {"bool": pa.bool_(), "int": pa.int64(), "float": pa.float64(), "str": pa.string()}[kind]


def _type_kind(t: Any) -> str:
    import pyarrow as pa

    if pa.types.is_boolean(t):
        return "bool"
    if pa.types.is_integer(t):
        return "int"
    if pa.types.is_floating(t):
        return "float"
    return "str"


def _dumps(values: Mapping[str, Any]) -> str:
    return json.dumps(values, ensure_ascii=False, allow_nan=True)


def _row_data(rec: RunRecord) -> dict[str, Any]:
    """A run as one catalog row (params and metrics as dicts, not yet JSON)."""
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
        "params": fmt.flatten(rec.params),
        "metrics": rec.summary.final_values(),
    }


def row_data(rec: RunRecord) -> dict[str, Any]:
    """What the catalog keeps of a run (for :meth:`Catalog.update`'s ``known``):
    far smaller than the record, so a caller holding 100,000 runs' worth holds that."""
    return _row_data(rec)


def row_of(rec: RunRecord) -> dict[str, Any]:
    """The one run -> row builder: a run as the flat dict :meth:`RunTable.rows`
    gives (base columns, ``ref``, ``sha``, ``params.*``, ``metrics.*``)."""
    data = _row_data(rec)
    row: dict[str, Any] = {c: data[c] for c in BASE_COLUMNS if c != "tags"}
    row["tags"] = list(data["tags"] or [])
    row["ref"] = str(rec.ref)
    row["sha"] = rec.sha
    row.update(_keyed(data))
    return row


def _keyed(data: Mapping[str, Any]) -> dict[str, Any]:
    """``params.<k>``/``metrics.<k>`` -> value, for one row's data."""
    out: dict[str, Any] = {}
    for col, prefix in _PREFIX.items():
        for k, v in data[col].items():
            out[prefix + k] = v
    return out


# the catalog file each path had when last read (inode, mtime, size) and its table: a
# long-lived process (the dashboard, a notebook) reads 100,000 rows again only when
# the file changed (0.25 s a read at 100,000 runs). Arrow tables are immutable.
_LOADED: dict[str, tuple[tuple[int, int, int], Any, dict[str, Any]]] = {}
LOADED_KEPT = 4  # repositories


class Catalog:
    """The catalog of one store."""

    def __init__(self, store: ExpStore) -> None:
        self.store = store
        self.common = store.repo.common_dir
        self.dir = os.path.join(store.repo.exp_dir, "catalog")
        self.path = os.path.join(self.dir, "runs.parquet")
        self.tips_path = os.path.join(self.dir, "tips.txt")
        self.reads = 0  # runs read from git objects by the last update (for tests/benchmarks)
        # ref -> (sha, error) of the runs the last update could not read
        self.skipped: dict[str, tuple[str, str]] = {}
        self._known: Sequence[RowChunk] = ()

    # ------------------------------------------------------------ persistence
    def _load(self) -> tuple[Any, dict[str, Any]]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            st = os.stat(self.path)
        except OSError:
            return None, {}
        stamp = (st.st_ino, st.st_mtime_ns, st.st_size)
        kept = _LOADED.get(self.path)
        if kept is not None and kept[0] == stamp:  # the file read last time, unchanged
            return kept[1], copy.deepcopy(kept[2])
        try:
            table = pq.ParquetFile(self.path).read(use_threads=False)
            meta = json.loads((table.schema.metadata or {}).get(b"gitexp", b"{}"))
        except (OSError, ValueError, pa.ArrowException):
            return None, {}
        if (
            not isinstance(meta, dict)
            or meta.get("version") != CATALOG_VERSION
            or table.column_names[: len(_FIXED)] != _FIXED
            or not isinstance(meta.get("keys"), dict)
        ):
            return None, {}
        table = table.replace_schema_metadata(None)
        _LOADED.pop(self.path, None)
        _LOADED[self.path] = (stamp, table, copy.deepcopy(meta))
        while len(_LOADED) > LOADED_KEPT:
            del _LOADED[next(iter(_LOADED))]
        return table, meta

    def _save(self, table: Any, meta: dict[str, Any]) -> None:
        import pyarrow.parquet as pq

        table = table.replace_schema_metadata(
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
    def exists(self) -> bool:
        """True when a catalog has been written (it may be stale)."""
        return os.path.exists(self.path)

    def update(
        self,
        problems: list[str] | None = None,
        known: Sequence[RowChunk] = (),
    ) -> RunTable:
        """Bring the catalog up to date with the refs; return every run, newest first.

        A run that cannot be read is left out (its error goes to ``problems``).
        ``known``: rows of runs a caller has just read (:func:`row_chunk`), each
        taken as it is when its ref is still at that sha instead of the run
        being read again (``pull`` knows exactly which refs it moved, and read
        them to check them).
        """
        self._known = known
        started = time.time_ns()
        # runs whose writer died before their first commit get their ref first (one
        # that cannot be recorded now is, like a run that cannot be settled, left to
        # the next command)
        self.store.adopt_orphans(on_error=lambda run_id, exc: None)
        table, meta = self._load()
        racy_ns = int(meta.get("built_ns", 0)) - int(RACY_SECONDS * 1e9)
        packed_sig, packed_changed, packed_digest = self._packed_state(meta, racy_ns, started)
        scan = self.store.repo.scan_loose_refs(
            fmt.NAMESPACE, meta.get("dirs", {}) if table is not None else {}, racy_ns
        )
        self.reads = 0
        old_skipped = meta.get("skipped", {}) if isinstance(meta.get("skipped"), dict) else {}
        changed = table is None or packed_changed or not scan.unchanged
        keys: dict[str, int] = dict(meta.get("keys", {}))
        self.skipped = {}
        if changed:
            table, keys = self._reconcile(table, keys, scan, packed_changed, old_skipped)
        else:
            self.skipped = dict(old_skipped)
        if problems is not None:
            problems.extend(
                f"{ref[len(fmt.NAMESPACE) :]}: {m}" for ref, (_, m) in self.skipped.items()
            )
        table, keys, settled = self._settle_running(table, keys)
        if changed or settled:
            table = _default_order(table)  # stored in that order: a warm read needs no sort
        nothing = not meta and table.num_rows == 0  # no runs, no catalog: write no .git/exp
        if (changed or settled or scan.dirs != meta.get("dirs")) and not nothing:
            state = {
                "built_ns": started,
                "packed_sig": packed_sig,
                "packed_digest": packed_digest,
                "dirs": scan.dirs,
            }
            with contextlib.suppress(OSError):  # a read-only repository still lists runs
                self._save(table, {**state, "keys": keys, "skipped": self.skipped})
                self._save_tips(table, state)
        elif not nothing and not os.path.exists(self.tips_path):
            state = {k: meta.get(k) for k in ("built_ns", "packed_sig", "packed_digest", "dirs")}
            with contextlib.suppress(OSError):
                self._save_tips(table, state)
        return RunTable(table, keys)

    def _packed_state(
        self, meta: Mapping[str, Any], racy_ns: int, now_ns: int | None = None
    ) -> tuple[Any, bool, str | None]:
        """(packed-refs' [mtime_ns, size] or None, whether it may differ from
        ``meta``'s, the digest of its bytes to record when it was written less
        than RACY_SECONDS before ``now_ns``). The file is read (hashed) at most
        once, and before its refs are: a later change makes the digest differ,
        never the reverse."""
        repo = self.store.repo
        sig = repo.packed_refs_signature()
        digest: list[str | None] = []  # read once, when needed

        def bytes_digest() -> str | None:
            if not digest:
                digest.append(repo.packed_refs_digest())
            return digest[0]

        if sig != meta.get("packed_sig"):
            changed = True
        elif sig is None or sig[0] < racy_ns:
            changed = False
        else:
            # written within the racy window: the same mtime and size may hide
            # a change; its bytes say whether there was one
            known = meta.get("packed_digest")
            changed = not known or known != bytes_digest()
        # written moments ago (a pull's new refs): the next update trusts its bytes
        window = int(RACY_SECONDS * 1e9)
        recent = now_ns is not None and sig is not None and sig[0] >= now_ns - window
        return sig, changed, bytes_digest() if recent else None

    def _save_tips(self, table: Any, state: Mapping[str, Any]) -> None:
        """``tips.txt``: the state of the refs the catalog was built from (one JSON
        line), then ``<sha> <ref>`` of every run, unreadable ones included, by sha."""
        pairs = sorted(
            [
                *zip(table.column("sha").to_pylist(), table.column("ref").to_pylist()),
                *((sha, ref) for ref, (sha, _) in self.skipped.items()),
            ]
        )
        body = json.dumps(state) + "\n" + "".join(f"{sha} {ref}\n" for sha, ref in pairs)
        fd, tmp = tempfile.mkstemp(prefix="tips-", suffix=".txt", dir=self.dir)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(body)
            os.replace(tmp, self.tips_path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def _fresh_tips(self, prefix: str) -> list[tuple[str, str]] | None:
        """The runs whose tip starts with ``prefix`` from ``tips.txt``, when the
        refs are provably unchanged since it was written (no pyarrow, no ref
        read: a few stat calls); None when it cannot be trusted."""
        import bisect

        try:
            with open(self.tips_path, encoding="utf-8") as f:
                state = json.loads(f.readline())
                lines = f.read().splitlines()
            racy_ns = int(state["built_ns"]) - int(RACY_SECONDS * 1e9)
            dirs = state["dirs"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        _, packed_changed, _ = self._packed_state(state, racy_ns)
        if (
            packed_changed
            or not self.store.repo.scan_loose_refs(fmt.NAMESPACE, dirs, racy_ns).unchanged
        ):
            return None
        out = []
        for line in lines[bisect.bisect_left(lines, prefix) :]:
            if not line.startswith(prefix):
                break
            sha, _, ref = line.partition(" ")
            out.append((ref, sha))
        return out

    def _reconcile(
        self,
        table: Any,
        keys: dict[str, int],
        scan: RefScan,
        packed_changed: bool,
        old_skipped: Mapping[str, Any],
    ) -> tuple[Any, dict[str, int]]:
        """The catalog table after reading what changed in the refs."""
        if table is None:
            table, keys = _empty_table(), {}
        old_refs: list[str] = table.column("ref").to_pylist()
        old_sha: list[str] = table.column("sha").to_pylist()
        old_mtime: list[int] = table.column("mtime_ns").to_pylist()
        old_packed: list[bool] = table.column("packed").to_pylist()
        index = {ref: i for i, ref in enumerate(old_refs)}

        current: dict[str, tuple[str, int, bool]] = {}  # ref -> (sha, mtime, packed)
        loose_names = set(scan.loose)
        for i, ref in enumerate(old_refs):  # loose refs of unchanged directories
            if not old_packed[i] and scan.dir_of(ref) in scan.kept:
                current[ref] = (old_sha[i], old_mtime[i], False)
                loose_names.add(ref)
        packed = (
            self.store.repo.packed_refs(fmt.NAMESPACE)
            if packed_changed
            else {ref: old_sha[i] for i, ref in enumerate(old_refs) if old_packed[i]}
        )
        for ref, sha in packed.items():
            if ref not in loose_names:
                current[ref] = (sha, 0, True)
        racy_ns = scan.racy_ns
        for ref, mtime in scan.loose.items():
            at = index.get(ref)
            if at is not None and not old_packed[at] and old_mtime[at] == mtime and mtime < racy_ns:
                current[ref] = (old_sha[at], mtime, False)
                continue
            loose_sha = self.store.repo.read_loose_ref(ref)
            if loose_sha is not None:
                current[ref] = (loose_sha, mtime, False)

        keep: list[int] = []
        keep_mtime: list[int] = []
        keep_packed: list[bool] = []
        to_read: list[tuple[ExpRef, str]] = []
        known, known_refs = self._known_rows()  # ref -> (sha, chunk, row); each chunk's refs
        hinted: dict[int, list[int]] = {}  # chunk -> its rows taken as they are
        where: dict[str, tuple[int, bool]] = {}
        for ref, (sha, mtime, is_packed) in current.items():
            found = index.get(ref)
            if found is not None and old_sha[found] == sha:
                keep.append(found)
                keep_mtime.append(mtime)
                keep_packed.append(is_packed)
                continue
            seen = old_skipped.get(ref)
            if isinstance(seen, list) and len(seen) == 2 and seen[0] == sha:
                self.skipped[ref] = (sha, str(seen[1]))  # unreadable before, unchanged since
                continue
            hint = known.get(ref)
            if hint is not None and hint[0] == sha:
                hinted.setdefault(hint[1], []).append(hint[2])  # read and checked by the caller
            else:
                try:
                    to_read.append((ExpRef.from_ref(ref), sha))
                except InvalidName:
                    continue  # not a run's name: not listed, not a problem
            where[ref] = (mtime, is_packed)
        kept = set(keep)
        dropped = [i for i in range(len(old_refs)) if i not in kept]
        table, keys = _merge(table, keys, keep, keep_mtime, keep_packed, dropped, [])
        new: list[tuple[str, str, int, bool, dict[str, Any]]] = []
        added: list[Added] = []
        for at, positions in hinted.items():
            chunk = self._known[at]
            if len(positions) == len(chunk):  # every row of it (a pull's usual case)
                mark = [where[r] for r in known_refs[at]]
                added.append((chunk, [m for m, _ in mark], [p for _, p in mark]))
            else:
                new += [(r, sha, *where[r], d) for r, sha, d in chunk.rows(sorted(positions))]
        for exp_ref, sha, rec in self.store.read_listings(to_read):
            ref = str(exp_ref)
            if isinstance(rec, GitExpError):
                self.skipped[ref] = (sha, str(rec))
                continue
            self.reads += 1
            new.append((ref, sha, *where[ref], _row_data(rec)))
            if len(new) >= MERGE_EVERY:  # rows as Arrow columns, not Python dicts, early
                table, keys = _append(table, keys, new)
                new = []
        if added:
            return _merge(table, keys, range(table.num_rows), None, None, [], new, added)
        return _append(table, keys, new)

    def _known_rows(self) -> tuple[dict[str, tuple[str, int, int]], list[list[str]]]:
        """ref -> (sha, chunk, row) of the rows the caller gave (``known``), and
        the refs of each chunk in order."""
        out: dict[str, tuple[str, int, int]] = {}
        refs_of: list[list[str]] = []
        for at, chunk in enumerate(self._known):
            refs = chunk.table.column("ref").to_pylist()
            shas = chunk.table.column("sha").to_pylist()
            for row, (ref, sha) in enumerate(zip(refs, shas)):
                out[ref] = (sha, at, row)
            refs_of.append(refs)
        return out, refs_of

    def _settle_running(self, table: Any, keys: dict[str, int]) -> tuple[Any, dict[str, int], bool]:
        """Rows of runs still ``running`` whose writers died, settled (cheap: only those)."""
        # a Python scan, not pyarrow.compute: importing that costs a warm listing 50-100 ms
        statuses = table.column("status").to_pylist()
        running = [i for i, st in enumerate(statuses) if st == "running"]
        if not running:
            return table, keys, False
        replace: dict[int, tuple[str, dict[str, Any]]] = {}
        refs = table.column("ref").to_pylist()
        shas = table.column("sha").to_pylist()
        for i in running:
            ref, sha = refs[i], shas[i]
            try:
                rec = self.store.settle(self.store.read(ExpRef.from_ref(ref), sha))
            except GitExpError:
                continue
            if rec.sha != sha or rec.status != "running":
                replace[i] = (rec.sha, _row_data(rec))
        if not replace:
            return table, keys, False
        n = table.num_rows
        keep = [i for i in range(n) if i not in replace]
        mtimes = table.column("mtime_ns").to_pylist()
        packed = table.column("packed").to_pylist()
        new = [
            (refs[i], sha, 0, packed[i], data)  # mtime 0: re-stat next time
            for i, (sha, data) in replace.items()
        ]
        kept_mtimes, kept_packed = [mtimes[i] for i in keep], [packed[i] for i in keep]
        merged, counts = _merge(table, keys, keep, kept_mtimes, kept_packed, list(replace), new)
        return merged, counts, True

    def tips(self, prefix: str) -> list[tuple[str, str]]:
        """(ref, sha) of the runs whose tip commit sha starts with ``prefix``,
        unreadable runs included: sha-prefix addresses without reading 100,000 refs."""
        fresh = self._fresh_tips(prefix)
        if fresh is not None:
            return fresh
        import pyarrow.compute as pc

        t = self.update().table
        hit = t.filter(pc.starts_with(t.column("sha"), prefix))
        out = list(zip(hit.column("ref").to_pylist(), hit.column("sha").to_pylist()))
        return out + [(r, sha) for r, (sha, _) in self.skipped.items() if sha.startswith(prefix)]

    def rebuild(self) -> int:
        """Drop the catalog and build it again from refs; return the number of runs."""
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        return len(self.update())


def _empty_table() -> Any:
    import pyarrow as pa

    types = _arrow_types()
    return columns.empty_table(pa.schema([(c, types[c]) for c in _FIXED]))


@dataclass
class RowChunk:
    """Catalog rows of some runs as Arrow columns, ready to be merged.

    ``table``: ``ref``, ``sha``, the base columns, and ``params`` / ``metrics``
    as JSON text. ``counts``: rows having each ``params.<k>`` / ``metrics.<k>``
    key; ``kinds``: the one typed-column kind of each key's values here (None:
    several, or one no typed column holds); ``typed``: a column (null where a
    run lacks the key) for each key of one kind, at most MAX_TYPED of them.
    Built where the runs were read (:func:`row_chunk`: a pull's helper
    processes, on the other cores), so that the catalog takes 100,000 fetched
    runs without turning a row into Python values again. Pickles as Arrow buffers.
    """

    table: Any
    counts: dict[str, int]
    kinds: dict[str, str | None]
    typed: dict[str, Any]

    def __len__(self) -> int:
        return int(self.table.num_rows)

    def rows(self, positions: Sequence[int]) -> list[tuple[str, str, dict[str, Any]]]:
        """Rows ``positions`` as (ref, sha, :func:`row_data`-shaped dict)."""
        part = self.table.take(columns.indices(positions))
        values = {c: part.column(c).to_pylist() for c in part.column_names}
        out = []
        for i in range(len(positions)):
            data = {c: values[c][i] for c in BASE_COLUMNS}
            for c in JSON_COLUMNS:
                data[c] = json.loads(values[c][i] or "{}")
            out.append((values["ref"][i], values["sha"][i], data))
        return out

    def typed_values(self, name: str, type_: Any) -> Any:
        """Key ``name``'s values as an array of ``type_`` (null where absent)."""
        import pyarrow as pa

        got = self.typed.get(name)
        if got is not None:
            return got
        if name not in self.counts:
            return pa.nulls(len(self), type_)
        # a key past this chunk's MAX_TYPED: from the JSON text (rare)
        col = "params" if name.startswith(_PREFIX["params"]) else "metrics"
        key = name[len(_PREFIX[col]) :]
        texts = self.table.column(col).to_pylist()
        return columns.array([json.loads(t or "{}").get(key) for t in texts], type_)


def row_chunk(rows: Sequence[tuple[str, str, Mapping[str, Any]]]) -> RowChunk:
    """``rows`` (ref, sha, :func:`row_data` of the run) as catalog rows: a :class:`RowChunk`."""
    import pyarrow as pa

    types = _arrow_types()
    keyed = [_keyed(d) for *_, d in rows]
    counts: dict[str, int] = {}
    kinds: dict[str, str | None] = {}
    for row in keyed:
        for name, v in row.items():
            kind = _kind(v)
            if name in counts:
                counts[name] += 1
                if kinds[name] != kind:
                    kinds[name] = None
            else:
                counts[name] = 1
                kinds[name] = kind
    cols: dict[str, Any] = {
        "ref": columns.array([r for r, *_ in rows], types["ref"]),
        "sha": columns.array([s for _, s, _ in rows], types["sha"]),
    }
    for c in BASE_COLUMNS:
        cols[c] = columns.array([d.get(c) for *_, d in rows], types[c])
    for c in JSON_COLUMNS:
        cols[c] = columns.array([_dumps(d[c]) for *_, d in rows], types[c])
    typed: dict[str, Any] = {}
    for name, kind in kinds.items():
        if kind is not None and len(typed) < MAX_TYPED:
            typed[name] = columns.array([r.get(name) for r in keyed], _kind_type(kind))
    return RowChunk(pa.table(cols), counts, kinds, typed)


# a chunk of new rows and their bookkeeping: each row's ref mtime and whether it is packed
Added = tuple[RowChunk, Sequence[int], Sequence[bool]]


def _merge(
    table: Any,
    keys: Mapping[str, int],
    keep: Sequence[int],
    keep_mtime: Sequence[int] | None,
    keep_packed: Sequence[bool] | None,
    dropped: Sequence[int],
    new: Sequence[tuple[str, str, int, bool, dict[str, Any]]],
    added: Sequence[Added] = (),
) -> tuple[Any, dict[str, int]]:
    """Rows ``keep`` of ``table`` (with new bookkeeping: None keeps the table's
    own ``mtime_ns`` / ``packed``, for rows kept whole and in order) plus the
    ``new`` rows, plus the rows of the ``added`` chunks.

    Key counts are kept exact (dropped rows' keys are decoded to count them
    out); a typed column stays typed while every value fits its type, and a new
    key gets a typed column when all its values share one scalar type and
    fewer than MAX_TYPED typed columns exist.
    """
    import pyarrow as pa

    counts = dict(keys)
    for col in JSON_COLUMNS:
        prefix = _PREFIX[col]
        for text in table.column(col).take(columns.indices(dropped)).to_pylist() if dropped else []:
            for k in json.loads(text or "{}"):
                name = prefix + k
                counts[name] = counts.get(name, 1) - 1
                if counts[name] <= 0:
                    del counts[name]
    parts: list[Added] = []
    if new:
        chunk = row_chunk([(ref, sha, d) for ref, sha, _, _, d in new])
        parts.append((chunk, [r[2] for r in new], [r[3] for r in new]))
    parts += added
    new_kinds: dict[str, set[str | None]] = {}
    for chunk, _, _ in parts:
        for name, n in chunk.counts.items():
            counts[name] = counts.get(name, 0) + n
            new_kinds.setdefault(name, set()).add(chunk.kinds[name])

    typed = {f.name: f.type for f in table.schema if f.name not in _FIXED}
    for name, t in list(typed.items()):
        kinds = new_kinds.get(name)
        if name not in counts or (kinds and kinds != {_type_kind(t)}):
            del typed[name]  # gone, or a value of another type: JSON only from now on
    for name, kinds in new_kinds.items():
        if name in typed or name in keys or len(typed) >= MAX_TYPED:
            continue  # an old key without a typed column stays so until a rebuild
        (kind,) = kinds if len(kinds) == 1 else (None,)
        if kind is not None:
            typed[name] = _kind_type(kind)

    in_order = len(keep) == table.num_rows and (
        keep == range(table.num_rows) or all(i == k for i, k in enumerate(keep))
    )
    kept = table if in_order else table.take(columns.indices(keep))
    types = _arrow_types()
    cols: dict[str, Any] = {}
    for c in _FIXED:
        if c == "mtime_ns" and keep_mtime is not None:
            old = columns.array(keep_mtime, types[c])
        elif c == "packed" and keep_packed is not None:
            old = columns.array(keep_packed, types[c])
        else:
            old = kept.column(c)
        pieces = _chunks(old)
        for chunk, mtimes, packed in parts:
            if c == "mtime_ns":
                pieces.append(columns.array(mtimes, types[c]))
            elif c == "packed":
                pieces.append(columns.array(packed, types[c]))
            else:
                pieces += _chunks(chunk.table.column(c))
        cols[c] = pa.chunked_array(pieces, types[c])
    for name, t in typed.items():
        if name in kept.column_names:
            old = kept.column(name)
        else:
            old = pa.nulls(kept.num_rows, t)
        pieces = _chunks(old) + [chunk.typed_values(name, t) for chunk, _, _ in parts]
        cols[name] = pa.chunked_array(pieces, t)
    merged = pa.table(cols).combine_chunks()
    return merged, counts


def _append(
    table: Any, keys: Mapping[str, int], new: Sequence[tuple[str, str, int, bool, dict[str, Any]]]
) -> tuple[Any, dict[str, int]]:
    """``table`` with the ``new`` rows after it (all its rows kept as they are)."""
    if not new:
        return table, dict(keys)
    return _merge(table, keys, range(table.num_rows), None, None, [], new)


def _chunks(arr: Any) -> list[Any]:
    return list(arr.chunks) if hasattr(arr, "chunks") else [arr]


def _default_order(table: Any) -> Any:
    """Newest first: by start time, then id, descending (runs with no start last)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if table.num_rows < 2:
        return table
    keys = pa.table(
        {
            "start": pc.fill_null(table.column("start"), columns.text("")),
            "id": table.column("id"),
            "ref": table.column("ref"),
        }
    )
    order = pc.sort_indices(
        keys, sort_keys=[("start", "descending"), ("id", "descending"), ("ref", "ascending")]
    )
    return table.take(order)


# ---------------------------------------------------------------- the view

ABSENT: Any = object()


class RunTable:
    """Runs as columns, in a definite order: the catalog, or a filtered, sorted part of it.

    Filters, sorts and slices work on Arrow columns; :meth:`rows` turns only
    the rows asked for into Python dicts (the shape ``query.row_of`` gives).
    """

    def __init__(self, table: Any, keys: Mapping[str, int], order: Any = None) -> None:
        self._table = table
        self._order = order  # row indices into _table, taken only when needed (sort, head)
        self.keys = keys  # every params./metrics. key of the whole catalog, with counts
        self._decoded: list[dict[str, Any]] | None = None
        self._values: dict[str, list[Any]] = {}

    @property
    def table(self) -> Any:
        """The runs as a pyarrow Table (catalog columns), in this view's order."""
        if self._order is not None:
            self._table, self._order = self._table.take(self._order), None
        return self._table

    def __len__(self) -> int:
        return len(self._order) if self._order is not None else int(self._table.num_rows)

    def derive(self, table: Any) -> RunTable:
        """A RunTable of ``table`` (a part of this one's), with the same keys."""
        return RunTable(table, self.keys)

    # -------------------------------------------------------------- columns
    def _json_only(self) -> list[str]:
        return [k for k in self.keys if k not in self.table.column_names]

    def columns(self) -> set[str]:
        """Every column name at least one of these runs has (base, params.*, metrics.*)."""
        names = {"ref", "sha", *BASE_COLUMNS}
        for name in self.table.column_names:
            if name not in _FIXED and self.table.column(name).null_count < len(self):
                names.add(name)
        if self._json_only():
            for row in self._decode():
                names.update(row)
        return names

    def _decode(self) -> list[dict[str, Any]]:
        """Each row's params and metrics as one dict of ``params.<k>``/``metrics.<k>``."""
        if self._decoded is None:
            out: list[dict[str, Any]] = []
            params = self.table.column("params").to_pylist()
            metrics = self.table.column("metrics").to_pylist()
            for p, m in zip(params, metrics):
                out.append(
                    _keyed({"params": json.loads(p or "{}"), "metrics": json.loads(m or "{}")})
                )
            self._decoded = out
        return self._decoded

    def values(self, name: str) -> list[Any]:
        """One value per row of column ``name``; ``ABSENT`` where a run has none."""
        cached = self._values.get(name)
        if cached is not None:
            return cached
        cols = self.table.column_names
        vals: list[Any]
        if name in cols and name not in JSON_COLUMNS:
            vals = self.table.column(name).to_pylist()
            if name not in _FIXED:
                vals = [ABSENT if v is None else v for v in vals]
        elif name.startswith(("params.", "metrics.")):
            vals = [row.get(name, ABSENT) for row in self._decode()]
        else:
            vals = [ABSENT] * len(self)
        self._values[name] = vals
        return vals

    def distinct(self, name: str) -> list[str]:
        """The distinct non-null values of a text column (``experiment``,
        ``status``) or of the ``tags`` lists, sorted: computed in Arrow, for the
        pickers of the dashboard."""
        import pyarrow.compute as pc

        col = self.table.column(name)
        if name == "tags":
            col = pc.list_flatten(col)
        return sorted(str(v) for v in pc.unique(col.drop_null()).to_pylist())

    # ------------------------------------------------------------ operations
    def filter(
        self,
        experiment: str | None = None,
        status: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        unless_tags: Sequence[str] | None = None,
    ) -> RunTable:
        """The runs of ``experiment`` (and those below it), with one of ``status``,
        every tag of ``tags`` and none of ``unless_tags``."""
        if not (experiment or status or tags or unless_tags):
            return self
        import pyarrow as pa
        import pyarrow.compute as pc

        mask = None

        def both(m: Any) -> Any:
            return m if mask is None else pc.and_(mask, m)

        t = self.table
        if experiment:
            exp = t.column("experiment")
            mask = both(
                pc.or_(
                    pc.equal(exp, columns.text(experiment)),
                    pc.starts_with(exp, f"{experiment}/"),
                )
            )
        if status:
            mask = both(
                pc.is_in(t.column("status"), value_set=columns.array(list(status), pa.string()))
            )
        for tag in tags or []:
            mask = both(_has_tag(t.column("tags"), tag))
        for tag in unless_tags or []:
            mask = both(pc.invert(_has_tag(t.column("tags"), tag)))
        return self if mask is None else self.derive(t.filter(mask))

    def reorder(self, order: Any) -> RunTable:
        """These runs in the order of ``order`` (row indices, a pyarrow array)."""
        return RunTable(self.table, self.keys, order)

    def slice(self, offset: int, length: int | None = None) -> RunTable:
        """Runs ``offset`` .. ``offset + length`` (to the end when ``length`` is None)."""
        if self._order is not None:
            return RunTable(self._table, self.keys, self._order.slice(offset, length))
        return self.derive(self._table.slice(offset, length))

    # ------------------------------------------------------- leaderboard help
    def differing_params(self) -> list[str]:
        """``params.*`` columns whose value is not the same (same type too) in every run."""
        import pyarrow as pa

        names = sorted(c for c in self.columns() if c.startswith("params."))
        out = []
        for name in names:
            if name in self.table.column_names and len(self) >= ARROW_ROWS:
                import pyarrow.compute as pc

                arr = self.table.column(name)
                if arr.null_count:
                    out.append(name)
                elif pa.types.is_floating(arr.type):
                    if pc.any(pc.is_nan(arr)).as_py():
                        out.append(name)  # NaN != NaN, as in Python
                    else:  # by value, as Python compares: 0.0 == -0.0
                        lo_hi = pc.min_max(arr)
                        if lo_hi["min"].as_py() != lo_hi["max"].as_py():
                            out.append(name)
                elif pc.count_distinct(arr).as_py() > 1:
                    out.append(name)
                continue
            vals = [None if v is ABSENT else v for v in self.values(name)]  # missing is None
            first = vals[0]
            if any(v != first or type(v) is not type(first) for v in vals):
                out.append(name)
        return out

    def view(self) -> list[LazyRow]:
        """One light row per run (``.get(column)``), reading only the columns used."""
        out = []
        for i in range(len(self)):
            r = LazyRow(self)
            r.i = i
            out.append(r)
        return out

    def rows(self) -> list[dict[str, Any]]:
        """The runs as flat dicts: base columns, ``ref``, ``sha``, ``params.*``, ``metrics.*``."""
        t = self.table
        base = {c: t.column(c).to_pylist() for c in BASE_COLUMNS}
        refs = t.column("ref").to_pylist()
        shas = t.column("sha").to_pylist()
        decoded = self._decode()
        out = []
        order = [c for c in BASE_COLUMNS if c != "tags"]
        for i in range(len(self)):
            row: dict[str, Any] = {c: base[c][i] for c in order}
            row["tags"] = list(base["tags"][i] or [])
            row["ref"] = refs[i]
            row["sha"] = shas[i]
            row.update(decoded[i])
            out.append(row)
        return out


def _has_tag(tags: Any, tag: str) -> Any:
    """A boolean mask: the rows whose tag list holds ``tag``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if hasattr(tags, "combine_chunks"):
        tags = tags.combine_chunks()
    flat = pc.list_flatten(tags)
    parents = pc.list_parent_indices(tags)
    hit = pc.filter(parents, pc.equal(flat, columns.text(tag)))
    mask = pc.is_in(columns.indices(range(len(tags))), value_set=hit.cast(pa.int64()))
    return mask


class LazyRow(Mapping[str, Any]):
    """Row ``i`` of a RunTable as a mapping, reading only the columns asked for."""

    def __init__(self, table: RunTable) -> None:
        self.t = table
        self.i = 0

    def get(self, key: str, default: Any = None) -> Any:
        v = self.t.values(key)[self.i]
        return default if v is ABSENT else v

    def __getitem__(self, key: str) -> Any:
        v = self.get(key, ABSENT)
        if v is ABSENT:
            raise KeyError(key)
        return v

    def __iter__(self) -> Iterator[str]:
        return iter(k for k in self.t.columns() if self.get(k, ABSENT) is not ABSENT)

    def __len__(self) -> int:
        return sum(1 for _ in self)


def tip_index(store: ExpStore) -> Callable[[str], list[tuple[str, str]]]:
    """The catalog's sha-prefix lookup for ``store`` (an ``ExpStore`` tip index):
    ``(ref, tip sha)`` of the runs whose tip starts with a prefix, or nothing
    when there is no catalog yet (a fresh clone's first lookup reads the refs
    instead of building it)."""
    cat = Catalog(store)

    def lookup(prefix: str) -> list[tuple[str, str]]:
        if not os.path.exists(cat.path):
            return []
        return cat.tips(prefix)

    return lookup


def warm_imports() -> None:
    """Import what a catalog write needs: pyarrow, its compute functions and
    Parquet writer (0.15-0.3 s), for a process about to wait anyway."""
    with contextlib.suppress(ImportError):
        import pyarrow.compute
        import pyarrow.parquet  # noqa: F401


def import_in_background() -> threading.Thread:
    """Import what a catalog write needs (pyarrow, its compute functions and
    Parquet writer: 0.15-0.3 s) in a thread, for a caller about to wait on
    something else (a pull, on git's download): the import then costs no time.
    The caller joins the thread before it returns (no import is left running
    while the interpreter exits)."""

    thread = threading.Thread(target=warm_imports, name="gitexp-catalog-imports", daemon=True)
    thread.start()
    return thread


def indexed_store(path: str | os.PathLike[str] = ".") -> ExpStore:
    """The run store of the repository at ``path``, resolving sha-prefix
    addresses through the catalog (given to the store's constructor)."""
    return ExpStore(path, tip_index=tip_index)
