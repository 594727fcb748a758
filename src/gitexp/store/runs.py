"""ExpStore: runs as a whole: create, update (checkpoint, finish, tag), read,
resolve, list, settle.

Write order, always: CAS objects first, then git objects (blobs, trees, the
commit), then the ref, moved by compare-and-swap. A crash at any point leaves
only unreferenced objects, never a ref that points at something missing.

The next command that reads a run whose writers (:mod:`gitexp.store.spool`) are
all dead finalises it as ``crashed`` with everything they spooled.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import random
import shutil
import socket
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from gitexp import records as fmt
from gitexp.cas import LocalStore
from gitexp.errors import (
    AmbiguousRun,
    FormatError,
    GitExpError,
    InvalidName,
    InvalidValue,
    ObjectMissing,
    RunConflict,
    RunNotFound,
    StoreError,
)
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
)
from gitexp.store.liveness import pid_alive
from gitexp.store.messages import commit_message
from gitexp.store.records import RunDelta, RunRecord, RunStart
from gitexp.store.spool import (
    START_JSON,
    SpoolWriter,
    list_spool,
    load_spool,
    read_owner,
    read_pending,
    read_start,
    rmdir_quiet,
    spool_mtime,
)
from gitexp.store.validate import LISTING_FILES, parse_record, read_manifest, record_from

MAX_RETRIES = 50
BATCH_READS = 32  # read_listings of this many runs or more goes through git cat-file
BATCH_SIZE = 5000  # ... this many runs per git cat-file process
DECODE_THREADS = max(1, min(4, os.cpu_count() or 1))  # read_metrics_many's Parquet decoders
HISTORY_LIMIT = 10_000  # commits history() lists by default (a run's audit trail)
REMOTE_STALE_SECONDS = 30 * 60  # a run from another host is crashed after this silence

# lookup(prefix) -> [(ref, sha)]: the run refs whose tip sha starts with prefix
TipLookup = Callable[[str], list[tuple[str, str]]]


class ExpStore:
    """The run store of one repository: git objects and refs plus the local CAS."""

    def __init__(
        self,
        path: str | os.PathLike[str] = ".",
        tip_index: Callable[[ExpStore], TipLookup] | None = None,
    ) -> None:
        """Open the store of the repository at ``path``.

        ``tip_index(store)`` gives the lookup sha prefixes are resolved through
        first: ``lookup(prefix) -> [(ref, tip sha)]``, from an index a higher
        layer keeps (the catalog: ``gitexp.catalog.indexed_store``). Without
        one, and whenever it finds nothing, every ref is read: the same answer,
        only slower.
        """
        from gitexp.git import open_repo

        self.repo = open_repo(path)
        self.cas = LocalStore(self.repo.exp_dir)
        self.host = socket.gethostname()
        self._closed = False
        self.tip_index: TipLookup | None = tip_index(self) if tip_index is not None else None

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
                        r
                        for r, sha in refs.items()
                        for c in self.iter_history(sha)
                        if c.startswith(low)
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

    def history(self, sha: str, limit: int | None = HISTORY_LIMIT) -> list[str]:
        """The run's own commits, newest first (stops at the code commit), at
        most ``limit`` of them (None: all; gc and sha-prefix lookup need all)."""
        return list(itertools.islice(self.iter_history(sha), limit))

    def iter_history(self, sha: str) -> Iterator[str]:
        """The run's own commits, newest first, every one of them."""
        current: str | None = sha
        while current:
            yield current
            info = self.repo.commit_info(current)
            if not info.parents:
                return
            parent = info.parents[0]
            try:
                entries = self.repo.read_tree(self.repo.commit_info(parent).tree)
            except StoreError:
                return
            current = parent if RUN_JSON in entries else None

    # ---------------------------------------------------------------- read
    def read(self, ref: ExpRef, sha: str | None = None) -> RunRecord:
        """Read a run at its current tip (or at ``sha``)."""
        if sha is None:
            sha = self.repo.get_ref(str(ref))
            if sha is None:
                raise RunNotFound(f"no run at {ref}")
        return parse_record(self.repo, ref, sha)

    def read_artifacts(self, ref: ExpRef, sha: str) -> list[ArtifactEntry]:
        """The manifest of the run commit ``sha``: what it needs of the artifact
        store (for gc, which reads every commit of every run)."""
        return read_manifest(self.repo, ref, sha)

    def read_listing(self, ref: ExpRef, sha: str) -> RunRecord:
        """Read what a listing shows of a run (run.json, params, summary, code):
        its ``env``, ``artifacts`` and ``segments`` are left empty. For the catalog."""
        return parse_record(self.repo, ref, sha, listing=True)

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
            if got is None or got[1] != "tree" or isinstance(got[2], int):
                parsed.append(None)
                continue
            entries = self.repo.parse_tree(got[2])
            parsed.append((got[0], entries))
            wanted += [entries[n][1] for n in LISTING_FILES if n in entries]
        unique = list(dict.fromkeys(wanted))
        most = max(fmt.doc_limit(name) for name in LISTING_FILES)
        blobs = {
            sha: got[2]
            for sha, got in zip(unique, self.repo.cat_batch(unique, most))
            if got is not None and got[1] == "blob"
        }

        def read_blob(sha: str, limit: int) -> bytes:
            if sha not in blobs:
                raise ObjectMissing(f"git object {sha} is missing from the repository", sha)
            got = blobs[sha]
            size = got if isinstance(got, int) else len(got)
            if size > limit or isinstance(got, int):
                raise FormatError(
                    f"git object {sha[:12]} is {size:,} bytes, more than {limit:,} allowed"
                )
            return got

        out: list[tuple[ExpRef, str, RunRecord | GitExpError]] = []
        for (ref, sha), p in zip(items, parsed):
            try:
                if p is None:
                    rec: RunRecord | GitExpError = parse_record(self.repo, ref, sha, True)
                else:
                    rec = record_from(self.repo, ref, sha, p[0], p[1], read_blob, True)
            except GitExpError as exc:
                rec = exc
            out.append((ref, sha, rec))
        return out

    def read_settled(self, address: str) -> RunRecord:
        """Resolve an address, settle the run if its writers died, and read it.

        Settling writes: a run whose writers are all dead is recorded as
        ``crashed`` (a commit on its ref) before it is returned. :meth:`read`
        reads a ref as it is and never writes."""
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
                rec = parse_record(self.repo, ref, sha)
                yield self.settle(rec) if settle else rec
            except StoreError as exc:
                if problems is None:
                    raise
                problems.append(f"{ref.short}: {exc}")

    def read_metrics(self, record: RunRecord) -> Any:
        """All metric points of a run as one Arrow table (segments concatenated)."""
        from gitexp.metrics import MAX_SEGMENT_BYTES, concat, from_parquet

        tables = []
        for name, sha in record.segments:
            where = f"run {record.ref.short}: metrics/{name}"
            try:
                data = self.repo.read_blob(sha, MAX_SEGMENT_BYTES)
            except FormatError as exc:
                raise FormatError(f"{where}: {exc}") from None
            tables.append(from_parquet(data, where))
        return concat(tables)

    def read_metrics_many(self, commits: Sequence[str], dictionary_keys: bool = False) -> list[Any]:
        """:meth:`read_metrics` of many run commits at once (a report of 1,000
        runs): their ``metrics/`` trees, then their segments, each through one
        ``git cat-file`` batch instead of a record parsed per run. A commit
        without metrics gives an empty table. ``dictionary_keys``: see
        :func:`gitexp.metrics.from_parquet`.

        Raises:
            StoreError: git could not read them; FormatError: a damaged segment.
        """
        from gitexp.metrics import MAX_SEGMENT_BYTES, concat, from_parquet

        trees = self.repo.cat_batch(
            [f"{sha}:{fmt.METRICS_DIR}" for sha in commits], fmt.MAX_DOC_BYTES
        )
        wanted: list[list[str]] = []
        for sha, got in zip(commits, trees):
            if got is None or got[1] != "tree":
                wanted.append([])
                continue
            if not isinstance(got[2], bytes):  # its size: over the bound
                raise FormatError(f"run commit {sha[:12]}: its metrics tree is too big to read")
            entries = self.repo.parse_tree(got[2])
            wanted.append([s for n, (_, s) in sorted(entries.items()) if n.endswith(".parquet")])
        blobs = self.repo.cat_batch([s for segs in wanted for s in segs], MAX_SEGMENT_BYTES)
        jobs: list[tuple[bytes, str]] = []
        for sha, segs in zip(commits, wanted):
            for seg in segs:
                got = blobs[len(jobs)]
                if got is None:
                    raise StoreError(f"run commit {sha[:12]}: metric segment {seg} is missing")
                if not isinstance(got[2], bytes):  # its size: over the bound
                    raise FormatError(
                        f"run commit {sha[:12]}: metric segment {seg} holds {got[2]} bytes, "
                        f"more than the {MAX_SEGMENT_BYTES} a segment may"
                    )
                jobs.append((got[2], f"run commit {sha[:12]}: segment {seg}"))

        def decode(job: tuple[bytes, str]) -> Any:
            return from_parquet(job[0], job[1], dictionary_keys)

        if len(jobs) >= DECODE_THREADS * 4:  # pyarrow decodes without the GIL: every core
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(DECODE_THREADS) as pool:
                decoded = list(pool.map(decode, jobs))
        else:
            decoded = [decode(j) for j in jobs]
        out, i = [], 0
        for segs in wanted:
            out.append(concat(decoded[i : i + len(segs)]))
            i += len(segs)
        return out

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
            self.repo.auto_pack()  # loose objects past the threshold: a background gc
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
            new = self._build(ref, parse_record(self.repo, ref, tip), tip, delta, verb)
            if new is None:
                return tip
            if self.repo.set_ref(name, tip, new, f"git-exp: {verb}"):
                self.repo.auto_pack()  # loose objects past the threshold: a background gc
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
        run_json = fmt.canonical_json(run)
        if len(run_json) > fmt.doc_limit(RUN_JSON):  # readers would refuse it
            raise InvalidValue(
                f"run {ref.short}: run.json would be {len(run_json):,} bytes, more than the "
                f"{fmt.doc_limit(RUN_JSON):,} a reader accepts (its notes, tags or command "
                "line are too long); nothing was written"
            )
        changes: dict[str, Any] = {
            RUN_JSON: run_json,
            PARAMS_JSON: fmt.canonical_json(params),
            SUMMARY_JSON: fmt.canonical_json(summary.to_json()),
            ARTIFACTS_JSON: fmt.canonical_json(fmt.manifest_to_json(artifacts.values())),
        }
        if delta.alerts:
            alerts = [*rec.alerts, *delta.alerts][: fmt.MAX_ALERTS]
            changes[fmt.ALERTS_JSON] = fmt.canonical_json(alerts)
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
            rmdir_quiet(self.live_root(ref.run_id))
            return False
        return True

    def release_run_id(self, ref: ExpRef) -> None:
        """Give back an id :meth:`reserve_run_id` claimed for a run that was not started."""
        rmdir_quiet(self.live_root(ref.run_id))

    def writers_of(self, run_id: str) -> list[tuple[str, dict[str, Any], bool]]:
        """(directory, owner info, alive) of every writer spool of a run here."""
        root = self.live_root(run_id)
        out: list[tuple[str, dict[str, Any], bool]] = []
        try:
            names = sorted(os.listdir(root))
        except FileNotFoundError:
            return []
        for name in names:
            d = os.path.join(root, name)
            owner = read_owner(d)
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

    def pending(self, record: RunRecord, points: bool = True) -> RunDelta:
        """What the writers of a ``running`` run on this machine spooled since its
        last commit (points as Parquet bytes, the summary of those points), read
        without changing anything: a live view between checkpoints. Empty for a
        run that is not running; without ``points``, the summary alone."""
        out = RunDelta()
        if record.status != "running":
            return out
        done = record.info.get("writers") or {}
        for d, _owner, _alive in self.writers_of(record.run_id):
            after = done.get(os.path.basename(d), -1)
            out.absorb(read_pending(d, int(after) if isinstance(after, int) else -1, points))
        out.writer = None
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
        rmdir_quiet(self.live_root(record.run_id))
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
