"""``git exp fetch`` and ``pull``: run refs through git, then the artifacts they need, verified."""

from __future__ import annotations

from dataclasses import dataclass, field

from gitexp import records as fmt
from gitexp.cas.remote import RemoteStore
from gitexp.errors import (
    Diverged,
    GitExpError,
    IntegrityError,
    InvalidName,
    ObjectMissing,
    RemoteError,
    RunNotFound,
    StoreError,
    UsageError,
)
from gitexp.git import GitRepo, SyncStatus
from gitexp.records import NAMESPACE, ExpRef
from gitexp.remotes.config import STORE_KEY, Remote, open_store, resolve_remote
from gitexp.remotes.objects import (
    Refusal,
    each_in_pool,
    listing_files,
    manifest_entries,
    referenced_keys,
    run_objects,
)
from gitexp.remotes.progress import Meter, Progress, ProgressFn, no_progress
from gitexp.store import ExpStore, check_run


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


def _not_a_run(repo: GitRepo, sha: str, name: str) -> str:
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


def _moved(name: str, old: str | None, new: str, ok: bool, status: SyncStatus) -> RefFetch:
    if ok:
        return RefFetch(name, old, new, status)
    return RefFetch(
        name, old, new, SyncStatus.SKIPPED, "the run changed here while fetching; fetch again"
    )


def fetch(
    store: ExpStore,
    remote: str | None = None,
    progress: ProgressFn = no_progress,
    prefix: str = NAMESPACE,
) -> FetchResult:
    """Bring the remote's runs into ``refs/experiments/``; never overwrite diverged ones.

    ``prefix``: only the runs whose refs start with it (one run's full ref, say:
    a sweep's driver takes each trial's run as it ends)."""
    if not prefix.startswith(NAMESPACE):
        raise UsageError(f"fetch: {prefix!r} is not under {NAMESPACE}")
    repo = store.repo
    rem = resolve_remote(repo, remote)
    result = FetchResult(rem)
    progress(Progress("fetching runs"))
    remote_refs = repo.fetch(
        rem.url,
        prefix,
        ssh_command=rem.ssh_command,
        progress=lambda text: progress(Progress("fetching runs", text=text)),
    )
    # runs this repository does not have yet: created together, in one write
    fresh: dict[str, str] = {}
    for name, sha in remote_refs.items():
        try:
            ExpRef.from_ref(name)
        except InvalidName:
            continue
        if repo.get_ref(name) is None and not _not_a_run(repo, sha, name):
            fresh[name] = sha
    created = set(repo.add_new_refs(fresh)) if len(fresh) > 1 else set()
    for name, sha in sorted(remote_refs.items()):
        if name in created:
            result.refs.append(RefFetch(name, None, sha, SyncStatus.NEW))
            continue
        try:
            ExpRef.from_ref(name)
        except InvalidName as exc:
            result.refs.append(
                RefFetch(name, None, sha, SyncStatus.REFUSED, f"not a run ref: {exc}")
            )
            continue
        problem = _not_a_run(repo, sha, name)
        if problem:
            result.refs.append(RefFetch(name, repo.get_ref(name), sha, SyncStatus.REFUSED, problem))
            continue
        local = repo.get_ref(name)
        if local == sha:
            result.refs.append(RefFetch(name, local, sha, SyncStatus.UP_TO_DATE))
        elif local is None:
            ok = repo.set_ref(name, None, sha, f"git-exp: fetch from {rem.label}")
            result.refs.append(_moved(name, None, sha, ok, SyncStatus.NEW))
        elif repo.is_ancestor(local, sha):
            ok = repo.set_ref(name, local, sha, f"git-exp: fetch from {rem.label}")
            result.refs.append(_moved(name, local, sha, ok, SyncStatus.UPDATED))
        elif repo.is_ancestor(sha, local):
            result.refs.append(RefFetch(name, local, sha, SyncStatus.LOCAL_AHEAD))
        else:
            result.refs.append(
                RefFetch(
                    name,
                    local,
                    sha,
                    SyncStatus.DIVERGED,
                    "both sides have commits the other lacks; the local run was kept",
                )
            )
    return result


# -------------------------------------------------------------------- pull


@dataclass
class PullResult:
    """What ``pull`` did: the fetch, then the artifact downloads."""

    fetch: FetchResult
    objects: int = 0
    nbytes: int = 0
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
) -> None:
    """Download the objects of runs' manifests, verified, into the local CAS."""
    cas = store.cas
    files: list[tuple[str, str]] = []
    dirs: list[tuple[str, str]] = []
    optional: set[str] = set()  # listings of directories whose files were not stored
    sizes: dict[str, int] = {}  # the most bytes each may hold: downloads stop past it
    for name, sha in targets:
        short = name[len(NAMESPACE) :]
        objs = run_objects(store.repo, sha, short)
        for key, size in objs.sizes.items():
            sizes[key] = max(size, sizes.get(key, 0))
        result.refused += objs.refused
        files += objs.files
        dirs += objs.dirs
        files += [(k, f"{short}: (directory listing)") for k in objs.optional]
        optional.update(objs.optional)

    def get(key: str, label: str) -> bool:
        if cas.has(key):
            return True
        try:
            n = remote_store.download(cas, key, size=sizes.get(key))
        except IntegrityError as exc:
            run, _, path = label.partition(": ")
            result.refused.append(Refusal(run, path, str(exc)))
            return False
        except ObjectMissing:
            if key not in optional:
                result.unavailable.append(label)
            return False
        result.objects += 1
        result.nbytes += n
        return True

    # listings first: they name the files of directory entries
    total_dirs = len(dirs)
    for i, (key, label) in enumerate(dirs):
        progress(Progress("downloading listings", i + 1, total_dirs, result.nbytes))
        if not get(key, label):
            continue
        try:
            rows = listing_files(cas.get_bytes(key), label)
        except IntegrityError as exc:
            run, _, path = label.partition(": ")
            result.refused.append(Refusal(run, path, str(exc).removeprefix(label + ": ")))
            continue
        files += [(k, f"{label}/{p}") for p, k, _, _ in rows]
        for _, k, size, _ in rows:
            sizes[k] = max(size, sizes.get(k, 0))
    first: dict[str, str] = {}
    for key, label in files:
        first.setdefault(key, label)
    todo = [(k, label) for k, label in first.items() if not cas.has(k)]
    total = len(todo)

    meter = Meter(progress, "downloading artifacts", total)

    # the transfers may run in threads; the bookkeeping in get() happens here, in order
    def fetch_one(item: tuple[str, str]) -> tuple[str, str, BaseException | int]:
        key, label = item
        try:
            return key, label, remote_store.download(cas, key, meter.add_bytes, sizes.get(key))
        except (IntegrityError, ObjectMissing) as exc:
            return key, label, exc
        finally:
            meter.finish_one()

    for key, label, outcome in each_in_pool(remote_store.workers, fetch_one, todo):
        if isinstance(outcome, IntegrityError):
            run, _, path = label.partition(": ")
            result.refused.append(Refusal(run, path, str(outcome)))
        elif isinstance(outcome, ObjectMissing):
            if key not in optional:
                result.unavailable.append(label)
        else:
            result.objects += 1
            result.nbytes += int(outcome)


def pull(
    store: ExpStore,
    remote: str | None = None,
    artifacts: bool = True,
    progress: ProgressFn = no_progress,
) -> PullResult:
    """``fetch``, then download the CAS objects of the runs now in sync with the remote."""
    fetched = fetch(store, remote, progress)
    result = PullResult(fetched)
    if not artifacts:
        result.skipped = True
        return result
    repo = store.repo
    try:
        remote_store = open_store(fetched.remote, repo.work_tree or repo.git_dir)
        if remote_store is None:
            result.no_store = True
            return result
        targets = [(r.ref, r.new) for r in fetched.in_sync()]
        download_objects(store, remote_store, targets, progress, result)
    except RemoteError as exc:
        result.store_error = RemoteError(
            f"runs fetched, artifacts not downloaded: {exc} (pull again, or git exp get RUN, "
            "once the store answers)",
            fetched.remote.url,
        )
    return result
