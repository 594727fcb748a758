"""The ref namespaces push and pull carry, and the rule each one's refs follow.

Adding a namespace is one entry in :data:`SHARED`: its prefix, how one of its
refs may move, how a ref from a remote is checked before it is taken, and
whether its tips name CAS objects (artifacts) to move with them. Everything
else (the advertisement, fetching by tip, the scratch-repository push,
per-remote state, statuses) is the same for all.

Runs (``refs/experiments/``) move by fast-forward only (compare-and-swap on
both sides); a run from a remote is taken only when every reader of git-exp
can read it (:func:`check_runs`: the checks of ``ExpStore.read`` and a manifest
parsed entry by entry); their artifacts travel through the artifact store.
Sweep records (``refs/sweeps/``) move the same way, with whole pushes and
pulls only, each checked as ``gitexp.sweeps.record`` reads it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gitexp import records as fmt
from gitexp.errors import GitExpError, InvalidName, StoreError
from gitexp.git import GitRepo
from gitexp.records import NAMESPACE, ArtifactEntry, ExpRef
from gitexp.records.sweeps import (
    SPEC_NAMES,
    SWEEP_JSON,
    SWEEP_NAMESPACE,
    check_sweep_json,
    sweep_ref_problem,
)
from gitexp.remotes.objects import manifest_entries
from gitexp.remotes.progress import Progress, ProgressFn, no_progress
from gitexp.store import ExpStore, check_run, parse_record, record_from

if TYPE_CHECKING:
    from gitexp.catalog import RowChunk
    from gitexp.remotes.checkers import CheckHelpers

CHECK_BATCH = 2000  # refs whose objects are read in one git cat-file batch (bounded memory)


@dataclass
class Taken:
    """What a pull keeps of a fetched run it checked, for the artifact downloads:
    small, for 100,000 of them (its catalog row is in :attr:`Checked.rows`)."""

    sha: str
    artifacts: list[ArtifactEntry]  # its manifest, every entry valid


@dataclass
class Checked:
    """What checking fetched refs found: why some cannot be taken, and what was
    read of the others (for the artifact downloads, and their catalog rows)."""

    refused: dict[str, str] = field(default_factory=dict)  # ref -> why
    records: dict[str, Taken] = field(default_factory=dict)  # ref -> what was read
    rows: list[RowChunk] = field(default_factory=list)  # the catalog rows of ``records``

    def add(self, other: Checked) -> None:
        """Take in what another check (of other refs) found."""
        self.refused.update(other.refused)
        self.records.update(other.records)
        self.rows += other.rows


# (store, [(ref, sha)], progress, helper processes or None) -> Checked
CheckFn = Callable[
    [ExpStore, Sequence[tuple[str, str]], ProgressFn, "CheckHelpers | None"], Checked
]


@dataclass(frozen=True)
class Namespace:
    """A family of refs that push and pull carry."""

    prefix: str  # "refs/experiments/"
    what: str  # how one ref is named to the user: "run"
    name_problem: Callable[[str], str]  # why a ref name is not one of ours ('' when it is)
    check: CheckFn  # fetched refs: why each cannot be taken, and what was read
    artifacts: bool  # its tips name CAS objects that travel through the artifact store
    selectable: bool  # -e / --since / RUN... select among its refs (partial pulls)
    rule: str = "fast-forward"  # the only rule so far: a ref moves forward, by compare-and-swap


def _run_name_problem(name: str) -> str:
    try:
        ExpRef.from_ref(name)
    except InvalidName as exc:
        return f"not a run ref: {exc}"
    return ""


def not_a_run(repo: GitRepo, sha: str, name: str) -> str:
    """Why a fetched ref cannot be taken as a run ('' when it can).

    Every file of the run tree must read as ``ExpStore.read`` reads it (bounded,
    typed, valid Unicode), and every manifest entry must parse: one malformed run
    is refused by name, never taken in to break listing for everyone. The
    artifacts' bytes are checked later, one by one, when pull downloads them.
    """
    if not repo.has_object(sha):
        return "its commit did not arrive"
    try:
        info = repo.commit_info(sha)
        found = repo.lookup_path(info.tree, fmt.RUN_JSON)
        if found is None:
            return "not a git-exp run (no run.json)"
        limit = fmt.doc_limit(fmt.RUN_JSON)
        run = fmt.parse_json(repo.read_blob(found[1], limit), fmt.RUN_JSON, limit)
        if not isinstance(run, dict):
            return "run.json is not an object"
        fmt.check_version(run, "the run")
        found = repo.lookup_path(info.tree, fmt.PARAMS_JSON)
        if found is not None and not isinstance(
            fmt.parse_json(repo.read_blob(found[1], fmt.MAX_DOC_BYTES), fmt.PARAMS_JSON), dict
        ):
            return "params.json is not an object"
    except StoreError as exc:
        return str(exc)
    # a manifest git-exp cannot read would break every command that lists runs
    _, refused = manifest_entries(repo, sha, "")
    if refused:
        return "; ".join(f"artifact {r.path}: {r.reason}" for r in refused[:3]) + (
            f" (+{len(refused) - 3} more)" if len(refused) > 3 else ""
        )
    try:  # then every other check a reader makes
        check_run(repo, ExpRef.from_ref(name), sha)
    except StoreError as exc:
        return str(exc)
    return ""


_RUN_FILES = (
    fmt.RUN_JSON,
    fmt.PARAMS_JSON,
    fmt.ENV_JSON,
    fmt.CODE_JSON,
    fmt.SUMMARY_JSON,
    fmt.ARTIFACTS_JSON,
    fmt.METRICS_DIR,
)


# the largest object a batch keeps in memory: a larger one (refused or not) is
# read on its own, through the bounded reads of ExpStore.read
_MAX_READ = 8 << 20


ReadObjects = list[tuple[str, str, bytes | int] | None]
# commit sha -> (root tree sha, its entries), for the commits that are commits
RootTrees = dict[str, tuple[str, dict[str, tuple[int, str]]]]


def _read_runs(repo: GitRepo, shas: Sequence[str]) -> tuple[ReadObjects, RootTrees]:
    """The objects reading runs ``shas`` whole reads, in two ``git cat-file``
    batches: the commits and root trees, then every object those trees name,
    once (one ``env.json`` and one ``code.json`` serve a whole sweep). Also
    the root trees, parsed."""
    first, roots = repo.cat_commits_and_trees(shas, _MAX_READ)  # the others: one by one
    wanted: dict[str, None] = {}
    for _, entries in roots.values():
        for name in _RUN_FILES:
            if name in entries:
                wanted[entries[name][1]] = None
    return ([*first, *repo.cat_batch(list(wanted), _MAX_READ)] if wanted else first), roots


def check_batch(
    repo: GitRepo,
    part: Sequence[tuple[str, str]],
    parsed: dict[tuple[str, str], Any],
    done: Callable[[int], None] = lambda i: None,
) -> Checked:
    """Check one batch of fetched runs (at most CHECK_BATCH), its objects read in
    two ``git cat-file`` batches. ``parsed``: documents shared between runs
    (see :func:`gitexp.store.record_from`); ``done(i)`` after each run."""
    from gitexp.catalog import row_chunk, row_data  # not for a push, nor a no-op pull

    out = Checked()
    rows: list[tuple[str, str, dict[str, Any]]] = []
    objects, roots = _read_runs(repo, [sha for _, sha in part])
    with repo.preloaded((), read=objects):
        for i, (name, sha) in enumerate(part):
            done(i)
            try:
                ref = ExpRef.from_ref(name)
                if sha in roots:  # the commit and its tree, read and parsed already
                    tree, entries = roots[sha]
                    rec = record_from(repo, ref, sha, tree, entries, repo.read_blob, False, parsed)
                else:
                    rec = parse_record(repo, ref, sha, parsed=parsed)
            except (StoreError, InvalidName):
                problem = not_a_run(repo, sha, name) or "the run cannot be read"
                out.refused[name] = problem
                continue
            rows.append((name, sha, row_data(rec)))
            out.records[name] = Taken(sha, rec.artifacts)
    if rows:  # the catalog's rows, as Arrow columns: made here, on this core
        out.rows.append(row_chunk(rows))
    return out


def check_runs(
    store: ExpStore,
    items: Sequence[tuple[str, str]],
    progress: ProgressFn = no_progress,
    helpers: CheckHelpers | None = None,
) -> Checked:
    """Check fetched runs, their objects read in batches through ``git cat-file``.

    A run that reads whole (``ExpStore.read``, which parses the manifest strictly)
    is taken, and its record kept for the catalog; one that does not is checked
    step by step (:func:`not_a_run`) for the reason to give. With ``helpers``
    (processes started by the fetch for a large one), they check their share
    of ``items`` at the same time, on the other cores.
    """
    with store.repo.cat_session():  # one git cat-file for all the batches
        return _check_runs(store.repo, items, progress, helpers)


def _check_runs(
    repo: GitRepo,
    items: Sequence[tuple[str, str]],
    progress: ProgressFn,
    helpers: CheckHelpers | None,
) -> Checked:
    out = Checked()
    total = len(items)
    mine, theirs = helpers.share(items) if helpers is not None else (items, None)
    scale = total / len(mine) if mine else 1.0  # the helpers go as fast: progress of all
    parsed: dict[tuple[str, str], Any] = {}  # env.json, code.json: one blob for many runs
    for start in range(0, len(mine), CHECK_BATCH):

        def done(i: int, start: int = start) -> None:
            if (start + i) % 500 == 0:
                progress(Progress("checking runs", min(int((start + i) * scale), total), total))

        out.add(check_batch(repo, mine[start : start + CHECK_BATCH], parsed, done))
    if theirs is not None:
        assert helpers is not None
        for got in helpers.results():
            out.add(got)
        # what a helper could not answer for (it died, say) is checked here
        rest = [(n, s) for n, s in theirs if n not in out.records and n not in out.refused]
        for start in range(0, len(rest), CHECK_BATCH):
            out.add(check_batch(repo, rest[start : start + CHECK_BATCH], parsed))
    if total:
        progress(Progress("checking runs", total, total))
    return out


def _sweep_problem(repo: GitRepo, sha: str, name: str) -> str:
    """Why a fetched ref cannot be taken as a sweep record ('' when it can): the
    reads of ``gitexp.sweeps.record`` (bounded), the same document checks."""
    sweep_id = name[len(SWEEP_NAMESPACE) :]
    try:
        info = repo.commit_info(sha)
        entries = repo.read_tree(info.tree)
        if SWEEP_JSON not in entries:
            return f"not a sweep record (no {SWEEP_JSON})"
        raw = repo.read_blob(entries[SWEEP_JSON][1], fmt.MAX_DOC_BYTES)
        check_sweep_json(fmt.parse_json(raw, f"sweep {sweep_id}: {SWEEP_JSON}"), sweep_id)
        for spec in sorted(set(SPEC_NAMES.values()) & set(entries)):
            repo.read_blob(entries[spec][1], fmt.MAX_DOC_BYTES)
    except GitExpError as exc:
        return str(exc)
    return ""


def check_sweeps(
    store: ExpStore,
    items: Sequence[tuple[str, str]],
    progress: ProgressFn = no_progress,
    helpers: CheckHelpers | None = None,
) -> Checked:
    """Check fetched sweep records (a handful: one by one)."""
    out = Checked()
    for name, sha in items:
        problem = _sweep_problem(store.repo, sha, name)
        if problem:
            out.refused[name] = problem
    return out


RUNS = Namespace(
    prefix=NAMESPACE,
    what="run",
    name_problem=_run_name_problem,
    check=check_runs,
    artifacts=True,
    selectable=True,
)

# Sweep records (refs/sweeps/<id>) go with full pushes and pulls: a teammate who
# pulls a sweep's trials gets the sweep. No artifacts (the large code files of a
# sweep's dirty work tree go to the store only with a cluster executor).
SWEEPS = Namespace(
    prefix=SWEEP_NAMESPACE,
    what="sweep",
    name_problem=sweep_ref_problem,
    check=check_sweeps,
    artifacts=False,
    selectable=False,
)

# Every namespace push and pull carry, in this order. One line each.
SHARED: tuple[Namespace, ...] = (RUNS, SWEEPS)
SHARED_PREFIXES = tuple(ns.prefix for ns in SHARED)
ARTIFACT_PREFIXES = tuple(ns.prefix for ns in SHARED if ns.artifacts)  # their artifacts travel


def namespace_of(ref: str) -> Namespace | None:
    """The shared namespace ``ref`` belongs to, or None."""
    for ns in SHARED:
        if ref.startswith(ns.prefix):
            return ns
    return None


def name_problem(ref: str) -> str:
    """Why ``ref`` cannot be pushed or taken as it is named ('' when it can)."""
    space = namespace_of(ref)
    return space.name_problem(ref) if space is not None else "not in a shared namespace"
