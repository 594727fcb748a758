"""Keeping a store healthy: ``fsck`` (verify), ``gc`` (free), ``rm`` (retention),
and after-the-fact edits (tags, notes).

All of it returns data; the CLI renders it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from gitexp import records as fmt
from gitexp.cas import parse_dir_listing
from gitexp.errors import FormatError, GitExpError, RunConflict, StoreError, UsageError
from gitexp.git import GitRepo
from gitexp.records import ArtifactEntry, ExpRef
from gitexp.records.models import MODELS_NAMESPACE, VERSION_JSON, VERSIONS_DIR, version_artifact
from gitexp.store import ExpStore, RunDelta
from gitexp.store.spool import read_start, spool_artifacts, spool_mtime

DEFAULT_GRACE = 24 * 3600  # seconds an unreferenced CAS object is kept before gc frees it
TMP_GRACE = 3600  # seconds a leftover temporary file is kept
# while a run is in progress here, objects written this recently before gc started
# are kept whatever the grace: a writer puts an object in the store a moment before
# its spool (or its ref) names it
LIVE_WINDOW = 600.0
CLOCK_SLACK = 0.1  # file timestamps come from a coarser clock than time.time()
RESERVED_GRACE = 60.0  # seconds an empty live directory (a run id reserved) is kept


# --------------------------------------------------------------------- refs


def referenced_keys(
    store: ExpStore, entries: Iterable[ArtifactEntry], problems: list[str] | None = None
) -> set[str]:
    """CAS keys an artifact list needs: files, dir listings and the files they list.

    A directory whose listing cannot be read is noted in ``problems``: the files
    it lists are unknown, so nothing may be freed.
    """
    keys: set[str] = set()
    for e in entries:
        if e.kind == "dir":
            keys.add(e.blake3)
            if not e.stored:
                continue
            try:
                listing = store.cas.get_bytes(e.blake3)
                keys.update(key for _, key, _, _ in parse_dir_listing(listing))
            except (StoreError, ValueError, UnicodeDecodeError) as exc:
                if problems is not None:
                    problems.append(f"{e.role} {e.path}: listing unreadable: {exc}")
                continue
        elif e.stored:
            keys.add(e.blake3)
    return keys


MANIFEST_BATCH = 2000  # run tips whose manifests gc reads through one git cat-file batch
_MAX_PRELOAD = 8 << 20  # a larger object is read on its own (bounded memory)


@contextlib.contextmanager
def _preloaded_manifests(repo: GitRepo, tips: Sequence[str]) -> Iterator[None]:
    """Serve what gc reads of the runs at ``tips`` from memory: each tip commit,
    its tree, its ``run.json`` and ``artifacts.json``, and its first parent's
    commit and tree (where a run's history stops), read by ``git cat-file`` in
    three batches instead of one object at a time. Commits further back (runs
    with checkpoints) are read as before."""
    first, roots = repo.cat_commits_and_trees(tips, _MAX_PRELOAD)
    parents: dict[str, None] = {}
    blobs: dict[str, None] = {}
    for commit in first[0::2]:
        if commit is not None and commit[1] == "commit" and isinstance(commit[2], bytes):
            for line in commit[2].split(b"\n\n", 1)[0].split(b"\n"):
                if line.startswith(b"parent "):
                    parents[line[7:].decode("ascii", "replace")] = None
                    break
    for _, entries in roots.values():
        for doc in (fmt.RUN_JSON, fmt.ARTIFACTS_JSON):
            if doc in entries:
                blobs[entries[doc][1]] = None
    second = repo.cat_batch([*parents, *(f"{p}^{{tree}}" for p in parents), *blobs], _MAX_PRELOAD)
    with repo.preloaded((), read=[*first, *second]):
        yield


def _run_refs(store: ExpStore) -> dict[str, str]:
    """Every local ref that holds runs: our namespace plus remote-tracking copies."""
    out = dict(store.repo.refs_under(fmt.NAMESPACE))
    for name, sha in store.repo.refs_under("refs/remotes/").items():
        if "/experiments/" in name:
            out[name] = sha
    return out


def model_keys(store: ExpStore, problems: list[str]) -> set[str]:
    """CAS keys the registered model versions need: each version's artifact and
    everything its run recorded (the run tree kept in the registry), so that a
    model outlives the run it came from. Only the tips are read: a model's
    versions are never removed, so its tip lists all of them."""
    repo = store.repo
    keys: set[str] = set()
    for name, tip in repo.refs_under(MODELS_NAMESPACE).items():
        try:
            found = repo.lookup_path(repo.commit_info(tip).tree, VERSIONS_DIR)
            if found is None:
                continue
            names = []
            for _, (_, sub) in sorted(repo.read_tree(found[1]).items()):
                names += [f"{sub}:{VERSION_JSON}", f"{sub}:run/{fmt.ARTIFACTS_JSON}"]
            for what, got in zip(names, repo.cat_batch(names, fmt.MAX_DOC_BYTES)):
                if got is None:
                    continue
                if isinstance(got[2], int):
                    raise FormatError(f"{name}: {what} is {got[2]:,} bytes, too large to read")
                data = fmt.parse_json(got[2], f"{name}: {what}")
                entries = (
                    fmt.manifest_from_json(data)
                    if isinstance(data, list)
                    else [version_artifact(data, f"{name}: {what}")]
                )
                found_problems: list[str] = []
                keys |= referenced_keys(store, entries, found_problems)
                problems += [f"{name}: {p}" for p in found_problems]
        except GitExpError as exc:
            problems.append(f"{name}: {exc}")
    return keys


def live_keys(store: ExpStore) -> tuple[set[str], bool]:
    """Keys referenced by runs in progress (spooled, not yet committed), and
    whether any run is in progress here (a writer alive, or a run starting).

    Each spool entry is read on its own: one committed and removed while we
    read is on the run's ref (read after this), and the entries after it count.
    """
    keys: set[str] = set()
    active = False
    root = os.path.join(store.repo.exp_dir, "live")
    try:
        run_ids = os.listdir(root)
    except (FileNotFoundError, NotADirectoryError):
        return keys, active
    for run_id in run_ids:
        writers = store.writers_of(run_id)
        if not writers and os.path.isdir(store.live_root(run_id)):
            active = True  # reserved: a run starting, its first objects on the way
        for d, _, alive in writers:
            active = active or alive
            with contextlib.suppress(GitExpError):
                keys |= referenced_keys(store, spool_artifacts(d))
            try:  # a new run's config, large code files: not on a ref yet
                start = read_start(d)
            except GitExpError:
                continue
            if start is not None:
                keys |= referenced_keys(store, start.artifacts)
    return keys, active


# --------------------------------------------------------------------- fsck


@dataclass
class RunCheck:
    """fsck's verdict on one run."""

    run: str
    sha: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when nothing is wrong."""
        return not self.problems


def fsck(store: ExpStore, runs: Sequence[str] = (), verify_data: bool = True) -> list[RunCheck]:
    """Verify every run (or the given ones): the tree parses, the format version
    is known, metric segments read, the code commit is present, and every CAS
    object the run refers to is present with the right BLAKE3."""
    from gitexp.metrics import MAX_SEGMENT_BYTES, from_parquet

    targets: list[tuple[ExpRef, str]]
    if runs:
        targets = []
        for address in runs:
            ref = store.resolve(address)
            targets.append((ref, store.repo.get_ref(str(ref)) or ""))
    else:
        targets = sorted(store.list_refs().items())
    verified: dict[str, str | None] = {}

    def check_key(key: str, what: str) -> str | None:
        if key not in verified:
            try:
                if verify_data:
                    store.cas.verify(key)
                elif not store.cas.has(key):
                    raise StoreError(f"object {key[:12]} is not in the local store")
                verified[key] = None
            except GitExpError as exc:
                verified[key] = str(exc)
        problem = verified[key]
        return f"{what}: {problem}" if problem else None

    out = []
    for ref, sha in targets:
        check = RunCheck(ref.short, sha)
        out.append(check)
        try:
            rec = store.read(ref, sha)
        except GitExpError as exc:
            check.problems.append(str(exc))
            continue
        for name, blob in rec.segments:
            try:
                data = store.repo.read_blob(blob, MAX_SEGMENT_BYTES)
                from_parquet(data, f"metrics/{name}")
            except GitExpError as exc:
                check.problems.append(str(exc))
        commit = rec.code_commit
        if not commit:
            check.problems.append("code.json names no code commit")
        elif not store.repo.has_object(commit):
            check.problems.append(f"code commit {commit[:12]} is missing from the repository")
        for e in rec.artifacts:
            if e.kind == "dir":
                problem = check_key(e.blake3, f"{e.role} {e.path} (listing)")
                if problem:
                    check.problems.append(problem)
                    continue
                if not e.stored:
                    continue
                for path, key, _, _ in parse_dir_listing(store.cas.get_bytes(e.blake3)):
                    problem = check_key(key, f"{e.role} {e.path}/{path}")
                    if problem:
                        check.problems.append(problem)
            elif e.stored:
                problem = check_key(e.blake3, f"{e.role} {e.path}")
                if problem:
                    check.problems.append(problem)
    return out


# ----------------------------------------------------------------------- gc


@dataclass
class GcReport:
    """What gc freed (or would free, with ``dry_run``)."""

    objects_removed: int = 0
    bytes_removed: int = 0
    objects_kept: int = 0
    young_kept: int = 0
    temp_removed: int = 0
    runs_settled: int = 0  # crashed runs finalised on the way
    spools_removed: int = 0  # live spools of dead writers whose run is gone
    git_packed: bool = False
    dry_run: bool = False
    # runs (or revisions of them) that could not be read: nothing is freed then,
    # since they may need any object
    problems: list[str] = field(default_factory=list)
    # crashed runs that could not be finalised now (their ref is locked by a writer
    # killed mid-update, or moving): their spools stay, and so do the objects in them
    postponed: list[str] = field(default_factory=list)


def gc(
    store: ExpStore, grace: float = DEFAULT_GRACE, dry_run: bool = False, pack: bool = True
) -> GcReport:
    """Free CAS objects that no run on any local ref, and no registered model
    version, references.

    Objects younger than ``grace`` seconds, and objects referenced by runs in
    progress, are kept, so a run being written never loses an object. Leftover
    temporary files and lock files of killed writers older than an hour (or
    ``grace``, when shorter) are removed.
    Loose git objects are packed by ``git gc`` unless ``pack`` is False.
    """
    report = GcReport(dry_run=dry_run)
    now = time.time()
    if not dry_run:
        # a run whose writers died is finalised first, so that what they spooled is
        # on its ref; a dead writer's spool whose run is gone (removed, or never
        # created: killed while starting) holds nothing anyone can read

        def unrecorded(run_id: str, exc: GitExpError) -> None:
            where = report.postponed if isinstance(exc, RunConflict) else report.problems
            where.append(f"{run_id}: {exc}")

        # runs whose writer was killed before their first commit are recorded first
        report.runs_settled += len(store.adopt_orphans(on_error=unrecorded))
        # which runs still say `running`: their run.json only, read in batches
        # through git cat-file (a million runs one by one through dulwich took 20
        # minutes); unreadable runs are reported below
        refs = sorted(store.list_refs().items())
        running = [
            (ref, sha)
            for ref, sha, rec in store.read_listings(refs)
            if not isinstance(rec, GitExpError) and rec.status == "running"
        ]
        for ref, sha in running:
            try:
                rec = store.read(ref, sha)
            except StoreError:
                continue  # unreadable: reported below, with the manifests
            try:
                if store.settle(rec).status != "running":
                    report.runs_settled += 1
            except RunConflict as exc:
                report.postponed.append(f"{ref.short}: {exc}")
            except GitExpError as exc:
                report.problems.append(f"{ref.short}: {exc}")
    report.spools_removed = _remove_orphan_spools(store, min(grace, TMP_GRACE), dry_run, now)
    # The order makes it safe beside live runs. 1. The candidates: objects older
    # than the grace and than gc itself (an object written from now on is not one).
    # 2. Live spools: what runs in progress hold. 3. Refs: an artifact a checkpoint
    # moves from a spool onto its ref while we look is seen in one place or the
    # other. A writer puts an object before its spool names it: while a run is in
    # progress, objects of the LIVE_WINDOW before gc started are kept.
    started = time.time() - CLOCK_SLACK
    candidates: list[tuple[str, str, float, int]] = []  # key, path, mtime, size
    for key in list(store.cas.iter_keys()):
        path = store.cas.path_for(key)
        try:
            st = os.stat(path)
        except FileNotFoundError:
            continue
        if now - st.st_mtime < grace or st.st_mtime >= started:
            report.young_kept += 1
            continue
        candidates.append((key, path, st.st_mtime, st.st_size))
    keep, active = live_keys(store)
    tips = list(_run_refs(store).items())
    for start in range(0, len(tips), MANIFEST_BATCH):
        part = tips[start : start + MANIFEST_BATCH]
        with _preloaded_manifests(store.repo, [tip for _, tip in part]):
            for name, tip in part:
                try:  # refs/remotes/<remote>/experiments/<exp>/<id> reads like our own refs
                    ref = ExpRef.from_ref(fmt.NAMESPACE + name.split("experiments/", 1)[1])
                except (GitExpError, IndexError):
                    continue
                try:
                    for sha in store.iter_history(tip):
                        try:  # the manifest only: a bad summary or tags need no object
                            artifacts = store.read_artifacts(ref, sha)
                        except GitExpError as exc:
                            report.problems.append(f"{ref.short} at {sha[:12]}: {exc}")
                            continue
                        found: list[str] = []
                        keep |= referenced_keys(store, artifacts, found)
                        report.problems += [f"{ref.short} at {sha[:12]}: {p}" for p in found]
                except GitExpError as exc:
                    report.problems.append(f"{ref.short}: {exc}")
                    continue
    keep |= model_keys(store, report.problems)  # a model version outlives its run's ref
    for key, path, mtime, size in candidates:
        if key in keep or report.problems:
            # a run that cannot be read may need any object: free nothing then
            report.objects_kept += 1
            continue
        if active and mtime >= started - LIVE_WINDOW:
            report.young_kept += 1
            continue
        if dry_run:
            report.objects_removed += 1
            report.bytes_removed += size
        elif _free(path, started):
            report.objects_removed += 1
            report.bytes_removed += size
        else:
            report.young_kept += 1
    tmp = store.cas.tmp
    if os.path.isdir(tmp):
        for name in os.listdir(tmp):
            path = os.path.join(tmp, name)
            try:
                if now - os.stat(path).st_mtime < min(grace, TMP_GRACE):
                    continue
            except FileNotFoundError:
                continue
            report.temp_removed += 1
            if not dry_run:
                if os.path.isdir(path):
                    shutil.rmtree(path, ignore_errors=True)
                else:
                    os.unlink(path)
    for lock in store.repo.stale_locks(min(grace, TMP_GRACE)):
        report.temp_removed += 1
        if not dry_run:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock)
    if pack and not dry_run:
        proc = subprocess.run(
            ["git", "gc", "--quiet"],
            cwd=store.repo.work_tree or store.repo.git_dir,
            capture_output=True,
        )
        report.git_packed = proc.returncode == 0
    return report


def _free(path: str, started: float) -> bool:
    """Remove a CAS object unless it was touched since gc started; True when removed.

    A writer that stores an object already present renews its mtime (and counts
    it as stored): the object is first moved aside, then looked at again, and
    put back when it was renewed meanwhile. A renewal after the move finds no
    object, and the writer writes it again.
    """
    aside = f"{path}.gc{os.getpid()}"
    try:
        os.chmod(path, 0o644)
        os.rename(path, aside)
    except FileNotFoundError:
        return False
    try:
        renewed = os.stat(aside).st_mtime >= started
    except FileNotFoundError:
        return False
    if renewed:
        os.chmod(aside, 0o444)
        if os.path.exists(path):  # written again meanwhile: same bytes
            os.unlink(aside)
        else:
            os.rename(aside, path)
        return False
    os.unlink(aside)
    return True


def _remove_orphan_spools(store: ExpStore, min_age: float, dry_run: bool, now: float) -> int:
    """Remove spools of dead writers whose run has no ref here; return how many."""
    root = os.path.join(store.repo.exp_dir, "live")
    if not os.path.isdir(root):
        return 0
    have = {ref.run_id for ref in store.list_refs()}
    removed = 0
    for run_id in sorted(os.listdir(root)):
        if run_id in have:
            continue
        writers = store.writers_of(run_id)
        for d, _, alive in writers:
            if alive or now - spool_mtime(d) < min_age:
                continue
            try:
                if read_start(d) is not None:
                    continue  # a run killed before its first commit, not recorded yet
            except GitExpError:
                pass  # a start that cannot be read cannot be recorded either

            removed += 1
            if not dry_run:
                shutil.rmtree(d, ignore_errors=True)
        run_dir = os.path.join(root, run_id)
        with contextlib.suppress(OSError):
            # one that was empty already is a run starting (its id reserved, its
            # writer on the way) unless it is old: left by a writer killed while starting
            young = now - os.stat(run_dir).st_mtime < RESERVED_GRACE
            if not dry_run and (writers or not young):
                os.rmdir(run_dir)
    return removed


# ----------------------------------------------------------------------- rm

parse_age = fmt.parse_age  # ``30d`` -> seconds (records.times)


def select_for_removal(
    store: ExpStore,
    runs: Sequence[str] = (),
    experiment: str | None = None,
    older_than: str | None = None,
    statuses: Sequence[str] = (),
    where: str | None = None,
    tags: Sequence[str] = (),
    unless_tags: Sequence[str] = (),
) -> list[ExpRef]:
    """The runs ``rm`` would delete: named ones, or those matching every filter
    (the leaderboard's filters, with the same meaning as for listing, and an age).

    A running run is never selected by filters unless ``statuses`` asks for it.
    """
    from gitexp.leaderboard import Query, select

    if runs:
        return sorted({store.resolve(r) for r in runs})
    if not (
        experiment is not None or older_than or statuses or where is not None or tags or unless_tags
    ):
        raise UsageError("name the runs to remove, or give filters to select them")
    query = Query(
        experiment=experiment, status=statuses, tags=tags, unless_tags=unless_tags, where=where
    )
    table = select(store, query)
    cutoff = time.time() - parse_age(older_than) if older_than else None
    t = table.table
    out = []
    for ref, status, start in zip(
        t.column("ref").to_pylist(), t.column("status").to_pylist(), t.column("start").to_pylist()
    ):
        if cutoff is not None:
            when = fmt.parse_iso(start)
            if when is None or when.timestamp() > cutoff:
                continue
        if status == "running" and not statuses:
            continue  # never remove a live run unless asked for running runs by status
        out.append(ExpRef.from_ref(ref))
    return sorted(out)


def remove(store: ExpStore, refs: Sequence[ExpRef]) -> list[str]:
    """Delete run refs locally; their objects stay until ``gc``."""
    removed = []
    for ref in refs:
        if store.delete(ref):
            removed.append(ref.short)
    return removed


# ------------------------------------------------------------------- edits


def edit(
    store: ExpStore,
    address: str,
    add_tags: Sequence[str] = (),
    remove_tags: Sequence[str] = (),
    note: str | None = None,
) -> str:
    """Tag, untag or annotate a recorded run (a new commit on its ref)."""
    ref = store.resolve(address)
    delta = RunDelta(
        tags_add=[fmt.validate_tag(t) for t in add_tags],
        tags_remove=list(remove_tags),
        notes=[{"time": fmt.iso(fmt.utc_now()) or "", "text": fmt.validate_note(note)}]
        if note
        else [],
    )
    if delta.is_empty():
        raise UsageError("nothing to change: give tags to add or remove, or a note")
    verb = "note" if note and not (add_tags or remove_tags) else "tag"
    return store.update(ref, delta, verb)


def report_json(checks: Sequence[RunCheck]) -> list[dict[str, Any]]:
    """fsck results as JSON data."""
    return [{"run": c.run, "sha": c.sha, "ok": c.ok, "problems": c.problems} for c in checks]
