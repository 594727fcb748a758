"""``git exp fetch`` and ``pull``: run refs through git, then the artifacts they need, verified."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gitexp.cas.remote import RemoteStore
from gitexp.errors import (
    Diverged,
    GitExpError,
    IntegrityError,
    ObjectMissing,
    RemoteError,
    RunNotFound,
    UsageError,
)
from gitexp.git import FetchedPack, GitRepo, RefListing, SyncStatus
from gitexp.records import NAMESPACE
from gitexp.remotes.checkers import CheckHelpers
from gitexp.remotes.config import STORE_KEY, Remote, is_remote, open_store, resolve_remote
from gitexp.remotes.namespaces import (
    ARTIFACT_PREFIXES,
    RUNS,
    SHARED,
    SHARED_PREFIXES,
    Namespace,
    Taken,
    name_problem,
)
from gitexp.remotes.objects import (
    Refusal,
    each_in_pool,
    listing_files,
    referenced_keys,
    run_objects,
    runs_objects,
    transfer_workers,
)
from gitexp.remotes.progress import Meter, Progress, ProgressFn, no_progress
from gitexp.remotes.push import local_refs
from gitexp.remotes.selection import Selection, refspec_prefixes
from gitexp.remotes.state import SyncState, SyncTip
from gitexp.store import ExpStore

if TYPE_CHECKING:
    from gitexp.catalog import RowChunk

_TAKEN = (SyncStatus.NEW, SyncStatus.UPDATED)
_IN_SYNC = (*_TAKEN, SyncStatus.UP_TO_DATE)
WARM_FROM = 500  # from this many runs to fetch, the catalog's imports are done during the fetch
PACKED_FROM = 16  # from this many new refs on, a fetch writes them to packed-refs at once


@dataclass
class RefFetch:
    """What fetch did to one local ref."""

    ref: str
    old: str | None
    new: str
    status: SyncStatus
    reason: str = ""


@dataclass
class FetchResult:
    """What ``fetch`` (or the first half of ``pull``) did."""

    remote: Remote
    refs: list[RefFetch] = field(default_factory=list)
    # what was read of the refs taken, for the downloads, and their catalog rows
    records: dict[str, Taken] = field(default_factory=dict, repr=False)
    rows: list[RowChunk] = field(default_factory=list, repr=False)
    fresh_clone: bool = False  # there was no ref of the namespaces here before
    # the remote's refs under the ``also`` prefixes, from the same listing
    also: dict[str, str] | None = None
    # nothing moved here or there since every shared ref was last in sync,
    # artifacts included (:class:`SyncTip`): nothing was read but the listing
    at_tip: bool = False
    # a whole fetch that left the local refs equal to the remote's: them
    whole: dict[str, str] | None = field(default=None, repr=False)

    def in_sync(self) -> list[RefFetch]:
        """Refs whose local run now equals the remote one."""
        return [r for r in self.refs if r.status in ("new", "updated", "up to date")]

    def refused(self) -> list[RefFetch]:
        """Refs the remote served that were not taken."""
        return [r for r in self.refs if r.status == "refused"]

    def error(self) -> GitExpError | None:
        """The error to exit with: refused runs first, then diverged ones."""
        if self.refused():
            return IntegrityError(
                f"{len(self.refused())} run(s) from {self.remote.label} refused (see above)"
            )
        bad = [r.ref for r in self.refs if r.status == "diverged"]
        if bad:
            return Diverged(
                f"{len(bad)} run(s) diverged from the remote and were left as they are here",
                bad,
            )
        return None


def _moved(name: str, old: str | None, new: str, ok: bool, status: SyncStatus) -> RefFetch:
    if ok:
        return RefFetch(name, old, new, status)
    return RefFetch(
        name, old, new, SyncStatus.SKIPPED, "the run changed here while fetching; fetch again"
    )


def _unadvertised(exc: RemoteError) -> bool:
    """True when a fetch failed because a tip moved on the remote meanwhile."""
    text = str(exc).lower()
    return "not our ref" in text or "unadvertised" in text or "couldn't find remote ref" in text


def fetch(
    store: ExpStore,
    remote: str | None = None,
    progress: ProgressFn = no_progress,
    selection: Selection | None = None,
    index: bool = True,
    prefix: str = NAMESPACE,
    also: Sequence[str] = (),
) -> FetchResult:
    """Bring the remote's runs into ``refs/experiments/``; never overwrite diverged ones.

    ``selection``: only some of them (an experiment, a start date, named runs).
    ``prefix``: only the runs whose refs start with it, and only those refs are
    listed on the remote (one run's full ref, say: a sweep's driver takes each
    trial's run as it ends).
    Only refs that differ from the local ones are looked at: their objects are
    fetched (those not here already), each fetched run is checked before it is
    taken, and the catalog is given what was read (``index``; ``pull`` does
    that after the downloads, see :func:`index_fetched`). ``also``: more ref
    prefixes to list in the same connection (``refs/models/``, whose sync has
    its own rules): their refs are in ``result.also``, nothing else is done
    with them.
    """
    if not prefix.startswith(NAMESPACE):
        raise UsageError(f"fetch: {prefix!r} is not under {NAMESPACE}")
    repo = store.repo
    sel = selection or Selection()
    if prefix != NAMESPACE:
        sel = dataclasses.replace(sel, prefixes=[prefix])
    if remote is not None and not is_remote(repo, remote):
        # `git exp pull RUN`: the first word is a run of the default remote
        sel = dataclasses.replace(sel, runs=[remote, *sel.runs])
        remote = None
    rem = resolve_remote(repo, remote)
    result = FetchResult(rem)
    if not sel.partial and rem.name:
        # a clone of some experiments (git exp clone -e): their runs, as git fetch brings
        prefixes = refspec_prefixes(repo.config_get_all("remote", rem.name, "fetch"))
        if prefixes:
            sel = dataclasses.replace(sel, prefixes=prefixes)
    spaces = [ns for ns in SHARED if ns.selectable or not sel.partial]
    progress(Progress("fetching runs"))
    here = SyncTip(repo, rem).here(repo, SHARED_PREFIXES) if not sel.partial else None
    listings: list[RefListing] = []

    def advertised() -> dict[str, str]:
        listed = [prefix] if prefix != NAMESPACE else [ns.prefix for ns in spaces]
        adv = repo.remote_refs(rem.url, [*listed, *also], rem.ssh_command)
        listings.append(adv)
        if also:
            result.also = {r: s for r, s in adv.items() if r.startswith(tuple(also))}
        out: dict[str, str] = {}
        for ns in spaces:
            mine = {r: s for r, s in adv.items() if r.startswith(ns.prefix)}
            out.update(sel.pick(mine) if ns.selectable and sel.partial else mine)
        return out

    wanted = advertised()
    if here is not None and SyncTip.listed(listings[0], here):
        # all was in sync, and nothing moved on either side since
        result.refs = [RefFetch(n, s, s, SyncStatus.UP_TO_DATE) for n, s in sorted(wanted.items())]
        result.at_tip = True
        return result
    local: dict[str, str] = {}
    for ns in spaces:
        local.update(local_refs(store, ns.prefix))
    fresh_clone = not local
    differing: dict[str, str] = {}
    for name, sha in sorted(wanted.items()):
        if local.get(name) == sha:
            result.refs.append(RefFetch(name, sha, sha, SyncStatus.UP_TO_DATE))
            continue
        problem = name_problem(name)
        if problem:
            result.refs.append(RefFetch(name, None, sha, SyncStatus.REFUSED, problem))
            continue
        differing[name] = sha
    wanted_shas = sorted(set(differing.values()))
    # into a clone with no run yet, every tip is missing (asking git costs 0.3 s
    # for 100,000: it looks in every pack and directory for each); one that is
    # here after all is sent again
    missing = wanted_shas if fresh_clone else sorted(set(wanted_shas) - repo.present(wanted_shas))
    with CheckHelpers.start(repo, len(differing)) or contextlib.nullcontext() as helpers:
        _fetch_and_take(
            store, rem, result, local, differing, missing, spaces, advertised, progress, helpers
        )
    result.refs.sort(key=lambda r: r.ref)
    result.fresh_clone = fresh_clone
    if not sel.partial:
        after = dict(local)
        after.update({r.ref: r.new for r in result.refs if r.status in _TAKEN})
        if after == wanted and all(r.status in _IN_SYNC for r in result.refs):
            result.whole = after
    if any(r.status in _TAKEN for r in result.refs):
        repo.auto_pack()
        if index:
            index_fetched(store, result, progress)
    return result


def _fetch_objects(
    repo: GitRepo,
    rem: Remote,
    differing: dict[str, str],
    missing: list[str],
    advertised: Callable[[], dict[str, str]],
    progress: ProgressFn,
) -> tuple[dict[str, str], FetchedPack | None]:
    """Download the objects of the ``missing`` tips; return the refs that differ
    (``differing``, or what they point at now when one moved on the remote
    meanwhile and the remote was listed again), and the pack kept for them
    when ``git fetch-pack`` fetched it (see :meth:`GitRepo.fetch_objects`)."""
    if not missing:
        return differing, None

    def text(t: str) -> None:
        progress(Progress("fetching runs", text=t))

    try:
        pack = repo.fetch_objects(rem.url, missing, rem.ssh_command, progress=text)
    except RemoteError as exc:
        if not _unadvertised(exc):
            raise
        # a run moved on the remote between its advertisement and the fetch
        again = advertised()
        differing = {n: again[n] for n in differing if n in again}
        wanted_shas = sorted(set(differing.values()))
        missing = sorted(set(wanted_shas) - repo.present(wanted_shas))
        pack = repo.fetch_objects(rem.url, missing, rem.ssh_command, progress=text)
    return differing, pack


def _fetch_and_take(
    store: ExpStore,
    rem: Remote,
    result: FetchResult,
    local: Mapping[str, str],
    differing: dict[str, str],
    missing: list[str],
    spaces: Sequence[Namespace],
    advertised: Callable[[], dict[str, str]],
    progress: ProgressFn,
    helpers: CheckHelpers | None,
) -> None:
    """Fetch the objects of the refs that differ, check what arrived (with the
    ``helpers``, when a large fetch started them) and take what passes."""
    repo = store.repo
    warming = None
    if len(missing) >= WARM_FROM:
        from gitexp.catalog import import_in_background

        warming = import_in_background()  # while git downloads: the catalog is written next
    try:
        differing, pack = _fetch_objects(repo, rem, differing, missing, advertised, progress)
    finally:
        if warming is not None:
            warming.join()
    try:
        _take(store, rem, result, local, differing, spaces, progress, helpers, pack)
    finally:
        if pack is not None:
            pack.release()  # the refs exist now (or none will): gc may repack it


def _take(
    store: ExpStore,
    rem: Remote,
    result: FetchResult,
    local: Mapping[str, str],
    differing: dict[str, str],
    spaces: Sequence[Namespace],
    progress: ProgressFn,
    helpers: CheckHelpers | None,
    pack: FetchedPack | None,
) -> None:
    """Check the runs that arrived and take those that pass."""
    repo = store.repo
    if pack is not None:  # git fetch-pack brought every tip asked for (or failed)
        here = set(differing.values())
    else:
        here = repo.present(sorted(set(differing.values()))) if differing else set()
    # what each differing ref is to us, before anything is taken
    take: dict[str, list[tuple[str, str]]] = {}
    for name, sha in differing.items():
        old = local.get(name)
        if sha not in here:
            result.refs.append(
                RefFetch(name, old, sha, SyncStatus.REFUSED, "its commit did not arrive")
            )
        elif old is None or repo.is_ancestor(old, sha):
            take.setdefault(name.split("/", 2)[1], []).append((name, sha))
        elif repo.is_ancestor(sha, old):
            result.refs.append(RefFetch(name, old, sha, SyncStatus.LOCAL_AHEAD))
        else:
            result.refs.append(
                RefFetch(
                    name,
                    old,
                    sha,
                    SyncStatus.DIVERGED,
                    "both sides have commits the other lacks; the local run was kept",
                )
            )
    for ns in spaces:
        items = take.get(ns.prefix.split("/")[1], [])
        if not items:
            continue
        checked = ns.check(store, items, progress, helpers if ns is RUNS else None)
        # the pack's completeness, checked by git while the runs were: a ref may
        # point only at objects whose whole history is here
        incomplete = pack.finish() if pack is not None else None
        if incomplete:
            checked.refused.update({n: incomplete for n, _ in items})
            checked.records.clear()
            checked.rows.clear()
        result.records.update(checked.records)
        result.rows += checked.rows
        new = {n: s for n, s in items if n not in checked.refused and local.get(n) is None}
        progress(Progress("taking runs", 0, len(items)))
        # many runs new here: created together, in one write to packed-refs
        created = set(repo.add_new_refs(new)) if len(new) > PACKED_FROM else set()
        for name, sha in items:
            old = local.get(name)
            if name in checked.refused:
                result.refs.append(
                    RefFetch(name, old, sha, SyncStatus.REFUSED, checked.refused[name])
                )
            elif name in created:
                result.refs.append(RefFetch(name, None, sha, SyncStatus.NEW))
            elif old is None:
                ok = repo.set_ref(name, None, sha, f"git-exp: fetch from {rem.label}")
                result.refs.append(_moved(name, None, sha, ok, SyncStatus.NEW))
            else:
                ok = repo.set_ref(name, old, sha, f"git-exp: fetch from {rem.label}")
                result.refs.append(_moved(name, old, sha, ok, SyncStatus.UPDATED))


def index_fetched(store: ExpStore, result: FetchResult, progress: ProgressFn = no_progress) -> None:
    """Give the catalog the runs a fetch took (read already, to check them), so
    that the first listing after a pull reads none of them again. Without a
    catalog yet, one is built only when these are all the runs there are."""
    from gitexp.catalog import Catalog

    if not any(r.status in _TAKEN for r in result.refs):
        return
    cat = Catalog(store)
    if not (cat.exists() or result.fresh_clone):
        return  # the next listing builds it, as it would have
    # each row was read at the sha it names: the catalog takes it while the ref is there
    progress(Progress("indexing runs", 0, sum(len(c) for c in result.rows)))
    with contextlib.suppress(GitExpError, OSError):  # an index, never a reason to fail
        cat.update(known=result.rows)


# -------------------------------------------------------------------- pull


@dataclass
class PullResult:
    """What ``pull`` did: the fetch, then the artifact downloads."""

    fetch: FetchResult
    objects: int = 0
    nbytes: int = 0
    runs_checked: int = 0  # runs whose manifest was read (the others were in sync)
    refused: list[Refusal] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)  # not in the remote store
    no_store: bool = False
    skipped: bool = False  # --no-artifacts
    store_error: GitExpError | None = None  # the store failed after the runs were fetched

    def error(self) -> GitExpError | None:
        """Refused artifacts first (they are an attack or damage), then a store
        that failed, then divergence."""
        if self.refused or self.fetch.refused():
            parts = []
            if self.fetch.refused():
                parts.append(f"{len(self.fetch.refused())} run(s)")
            if self.refused:
                parts.append(f"{len(self.refused)} artifact(s)")
            return IntegrityError(
                f"{' and '.join(parts)} refused (see above); nothing of them was written "
                "outside the local store"
            )
        if self.store_error is not None:
            return self.store_error
        return self.fetch.error()


@dataclass
class RunArtifacts:
    """What ``fetch_run_artifacts`` did: one run's objects into the local CAS."""

    run: str
    remote: Remote | None = None  # None when everything was here already
    objects: int = 0  # downloaded
    nbytes: int = 0
    present: int = 0  # referenced objects that were here already
    refused: list[Refusal] = field(default_factory=list)
    unavailable: list[str] = field(default_factory=list)

    def error(self) -> GitExpError | None:
        """Refused artifacts first, then objects the remote store lacks."""
        if self.refused:
            return IntegrityError(
                f"{len(self.refused)} artifact(s) of {self.run} refused (see above); nothing "
                "of them was written outside the local store"
            )
        if self.unavailable:
            return ObjectMissing(
                f"{len(self.unavailable)} artifact object(s) of {self.run} are in neither "
                "the local store nor the remote's"
            )
        return None


def fetch_run_artifacts(
    store: ExpStore, run: str, remote: str | None = None, progress: ProgressFn = no_progress
) -> RunArtifacts:
    """Download every stored artifact and input of one run into the local CAS,
    verified by BLAKE3 (``git exp get RUN``). No remote is needed when all
    of them are here already."""
    ref = store.resolve(run)
    sha = store.repo.get_ref(str(ref))
    if sha is None:
        raise RunNotFound(f"no run at {ref}")
    result = RunArtifacts(ref.short)
    refs = {str(ref): sha}
    objs = run_objects(store.repo, sha, ref.short)
    result.refused += objs.refused
    keys = referenced_keys(store, refs)
    here = [k for k in keys if store.cas.has(k)]
    listings_here = all(store.cas.has(k) for k, _ in objs.dirs)
    if len(here) == len(keys) and listings_here:
        result.present = len(here)
        return result
    rem = resolve_remote(store.repo, remote)
    result.remote = rem
    remote_store = open_store(rem, store.repo.work_tree or store.repo.git_dir)
    if remote_store is None:
        raise ObjectMissing(
            f"{ref.short}: {len(keys) - len(here)} object(s) are not in the local store, and "
            f"remote {rem.label} has no artifact store (git config remote.{rem.label}."
            f"{STORE_KEY} <url>)"
        )
    result.refused = []  # download_objects reports the manifest's refusals again
    download_objects(store, remote_store, [(str(ref), sha)], progress, result)
    result.present = len(here)
    return result


def download_objects(
    store: ExpStore,
    remote_store: RemoteStore,
    targets: list[tuple[str, str]],  # (ref, sha)
    progress: ProgressFn,
    result: PullResult | RunArtifacts,
    known: Mapping[str, Any] | None = None,
) -> set[str]:
    """Download the objects of runs' manifests, verified, into the local CAS.

    Returns the refs whose every object is now here (none refused, none
    missing from the store). ``known``: records read already (ref -> RunRecord).
    """
    cas = store.cas
    files: list[tuple[str, str, str]] = []  # key, label, ref
    dirs: list[tuple[str, str, str]] = []
    optional: set[str] = set()  # listings of directories whose files were not stored
    sizes: dict[str, int] = {}  # the most bytes each may hold: downloads stop past it
    incomplete: set[str] = set()
    if len(targets) > 1:
        progress(Progress("reading manifests", 0, len(targets)))
    objects = runs_objects(
        store,
        dict(targets),
        known,
        progress=lambda d, t: progress(Progress("reading manifests", d, t)),
    )
    for name, _sha in targets:
        objs = objects[name]
        for key, size in objs.sizes.items():
            sizes[key] = max(size, sizes.get(key, 0))
        result.refused += objs.refused
        if objs.refused:
            incomplete.add(name)
        short = name[len(NAMESPACE) :]
        files += [(k, label, name) for k, label in objs.files]
        dirs += [(k, label, name) for k, label in objs.dirs]
        files += [(k, f"{short}: (directory listing)", name) for k in objs.optional]
        optional.update(objs.optional)

    def get(key: str, label: str, ref: str) -> bool:
        if cas.has(key):
            return True
        try:
            n = remote_store.download(cas, key, size=sizes.get(key))
        except IntegrityError as exc:
            run, _, path = label.partition(": ")
            result.refused.append(Refusal(run, path, str(exc)))
            incomplete.add(ref)
            return False
        except ObjectMissing:
            if key not in optional:
                result.unavailable.append(label)
                incomplete.add(ref)
            return False
        result.objects += 1
        result.nbytes += n
        return True

    # listings first: they name the files of directory entries
    todo_dirs = [d for d in dirs if not cas.has(d[0])]
    for i, (key, label, ref) in enumerate(dirs):
        if todo_dirs:
            progress(Progress("downloading listings", i + 1, len(dirs), result.nbytes))
        if not get(key, label, ref):
            continue
        try:
            rows = listing_files(cas.get_bytes(key), label)
        except IntegrityError as exc:
            run, _, path = label.partition(": ")
            result.refused.append(Refusal(run, path, str(exc).removeprefix(label + ": ")))
            incomplete.add(ref)
            continue
        files += [(k, f"{label}/{p}", ref) for p, k, _, _ in rows]
        for _, k, size, _ in rows:
            sizes[k] = max(size, sizes.get(k, 0))
    first: dict[str, tuple[str, list[str]]] = {}
    for key, label, ref in files:
        if key in first:
            first[key][1].append(ref)
        else:
            first[key] = (label, [ref])
    todo = [(k, label, refs) for k, (label, refs) in first.items() if not cas.has(k)]
    total = len(todo)

    meter = Meter(progress, "downloading artifacts", total)

    # the transfers may run in threads; the bookkeeping happens here, in order
    def fetch_one(
        item: tuple[str, str, list[str]],
    ) -> tuple[str, str, list[str], BaseException | int]:
        key, label, refs = item
        try:
            return (
                key,
                label,
                refs,
                remote_store.download(cas, key, meter.add_bytes, sizes.get(key)),
            )
        except (IntegrityError, ObjectMissing) as exc:
            return key, label, refs, exc
        finally:
            meter.finish_one()

    with cas.batch():
        for key, label, refs, outcome in each_in_pool(
            transfer_workers(remote_store, len(todo)), fetch_one, todo
        ):
            if isinstance(outcome, IntegrityError):
                run, _, path = label.partition(": ")
                result.refused.append(Refusal(run, path, str(outcome)))
                incomplete.update(refs)
            elif isinstance(outcome, ObjectMissing):
                if key not in optional:
                    result.unavailable.append(label)
                    incomplete.update(refs)
            else:
                result.objects += 1
                result.nbytes += int(outcome)
    return {name for name, _ in targets if name not in incomplete}


def pull(
    store: ExpStore,
    remote: str | None = None,
    artifacts: bool = True,
    progress: ProgressFn = no_progress,
    selection: Selection | None = None,
    also: Sequence[str] = (),
) -> PullResult:
    """``fetch``, then download the CAS objects of the runs now in sync with the remote.

    Runs the per-remote state knows in sync at their sha (their artifacts here
    already) are not looked at again. ``selection``: only some of the remote's runs.
    ``also``: as for :func:`fetch`.
    """
    fetched = fetch(store, remote, progress, selection, index=False, also=also)
    result = PullResult(fetched)
    try:
        if artifacts:
            complete = _download(store, result, progress)
            if complete and fetched.whole is not None and result.error() is None:
                # every ref here on the remote and every artifact here: the next
                # whole push or pull with nothing new stops after the listing
                SyncTip(store.repo, fetched.remote).save(fetched.whole, SHARED_PREFIXES)
        else:
            result.skipped = True
    finally:
        # after the downloads: the catalog then trusts the refs file it reads
        # (written moments before, it would be read again by the next listing)
        index_fetched(store, fetched, progress)
    return result


def _download(store: ExpStore, result: PullResult, progress: ProgressFn) -> bool:
    """Download the artifacts of the runs the fetch left in sync; True when
    every one of them is here now (or there is no store to download from)."""
    fetched = result.fetch
    repo = store.repo
    if not fetched.remote.store_url:
        result.no_store = True
        return True
    if fetched.at_tip:
        return True  # every artifact was here, and no run moved since
    state = SyncState(repo, fetched.remote)
    synced = state.synced
    # a run known in sync at this sha was here with its artifacts, unless this
    # fetch created its ref (it was removed here since: rm, archive): look again
    targets = [
        (r.ref, r.new)
        for r in fetched.in_sync()
        if r.ref.startswith(ARTIFACT_PREFIXES)
        and (r.status != SyncStatus.UP_TO_DATE or synced.get(r.ref) != r.new)
    ]
    result.runs_checked = len(targets)
    if not targets:
        return True  # (the store is not even opened)
    try:
        remote_store = open_store(fetched.remote, repo.work_tree or repo.git_dir)
        if remote_store is None:
            result.no_store = True
            return True
        complete = download_objects(
            store, remote_store, targets, progress, result, known=fetched.records
        )
        for ref, sha in targets:
            if ref in complete:
                state.mark(ref, sha)
        state.save()
        return len(complete) == len(targets)
    except RemoteError as exc:
        result.store_error = RemoteError(
            f"runs fetched, artifacts not downloaded: {exc} (pull again, or git exp get RUN, "
            "once the store answers)",
            fetched.remote.url,
        )
        return False
