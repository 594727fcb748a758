"""Sharing runs: push, fetch, pull, ls-remote and get, plus remote artifact stores.

Runs travel as git refs through any remote dulwich can reach (a local path,
``file://``, ``git://``, smart HTTP(S), ssh); the transport lives in
:mod:`gitexp.git`. Artifacts travel through an *artifact store*: any
URL ``pyarrow.fs`` opens, laid out like the local CAS
(``objects/<2 hex>/<62 hex>``). Where a remote's store is:

1. ``git config remote.<name>.expstore <url>`` when set;
2. else, for a remote that is a local path or ``file://`` URL, ``<remote git dir>/exp``,
   so clones of one shared bare repository share artifacts with no configuration;
3. else nowhere: push says the artifacts stay local and how to configure a store.

Write order, always: artifact objects first, git objects next, refs last, so a
push that dies half-way never leaves a remote ref pointing at something
missing. Downloads are verified by BLAKE3 before they enter the local CAS;
manifests from a remote are parsed entry by entry, and an entry with a
hostile path or a bad hash is refused on its own.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import IO, Any, cast

from gitexp import records as fmt
from gitexp.cas import CHUNK, LocalStore, check_key, copy_hashing, hash_bytes, parse_dir_listing
from gitexp.errors import (
    Diverged,
    GitExpError,
    IntegrityError,
    InvalidName,
    NoRemote,
    ObjectMissing,
    RemoteError,
    RunNotFound,
    StoreError,
    UsageError,
)
from gitexp.git import GitRepo, RefPush, SyncStatus
from gitexp.records import ARTIFACTS_JSON, NAMESPACE, ArtifactEntry, ExpRef
from gitexp.store import ExpStore, check_run

STORE_KEY = "expstore"
_OBJECT_STORES = ("s3", "gcs", "abfs")  # atomic per object: a single put is enough
_LIST_THRESHOLD = 64  # from this many keys on, list the remote store once instead of probing


@dataclass
class Progress:
    """One progress report: ``done`` of ``total`` items of ``phase`` (and bytes so far)."""

    phase: str
    done: int = 0
    total: int = 0
    nbytes: int = 0
    text: str = ""  # free text from the git server (``Counting objects ...``)
    total_bytes: int = 0  # 0 when not known


ProgressFn = Callable[[Progress], None]
BytesFn = Callable[[int], None]


def _noop(_: Progress) -> None:
    return None


class _Meter:
    """Counts objects and bytes of one phase, from any thread, and reports each
    change (the renderer throttles). Reports are serialized by a lock."""

    def __init__(self, progress: ProgressFn, phase: str, total: int, total_bytes: int = 0):
        self.progress = progress
        self.phase = phase
        self.total = total
        self.total_bytes = total_bytes
        self.done = 0
        self.nbytes = 0
        self._lock = threading.Lock()

    def _report(self) -> None:
        self.progress(
            Progress(self.phase, self.done, self.total, self.nbytes, total_bytes=self.total_bytes)
        )

    def add_bytes(self, n: int) -> None:
        """Bytes moved inside an object being transferred."""
        with self._lock:
            self.nbytes += n
            self._report()

    def finish_one(self) -> None:
        """One object done."""
        with self._lock:
            self.done += 1
            self._report()


class _Counting:
    """A binary reader that tells ``on_bytes`` how much was read through it."""

    def __init__(self, raw: Any, on_bytes: BytesFn) -> None:
        self.raw = raw
        self.on_bytes = on_bytes

    def readinto(self, buf: Any) -> int:
        n = int(self.raw.readinto(buf) or 0)
        if n:
            self.on_bytes(n)
        return n

    def read(self, size: int = -1) -> bytes:
        data = bytes(self.raw.read(size))
        if data:
            self.on_bytes(len(data))
        return data


# ------------------------------------------------------------------ remotes


@dataclass
class Remote:
    """A git remote and the artifact store that goes with it."""

    name: str | None  # None when given as a URL
    url: str
    store_url: str | None
    store_origin: str  # "config", "default" (inside a local remote) or "none"
    ssh_command: str | None = None

    @property
    def label(self) -> str:
        """How to name the remote to the user."""
        return self.name or self.url


def _is_url(text: str) -> bool:
    return (
        "://" in text
        or text.startswith(("/", "./", "../", "~"))
        or (":" in text and "@" in text.split(":", 1)[0])
    )


def _local_path(url: str) -> str | None:
    """The directory of a local-path or ``file://`` remote, else None."""
    if url.startswith("file://"):
        return url[len("file://") :]
    if "://" in url:
        return None
    if ":" in url.split("/", 1)[0] and not os.path.exists(url):
        return None  # scp-like user@host:path
    return url


def _default_store(path: str) -> str | None:
    if not os.path.isdir(path):
        return None
    dotgit = os.path.join(path, ".git")
    if os.path.isdir(dotgit):
        return os.path.join(dotgit, "exp")
    return os.path.join(path, "exp")


def _ssh_command(repo: GitRepo) -> str | None:
    return (
        os.environ.get("GIT_SSH_COMMAND")
        or repo.config_get("core", "sshCommand")
        or os.environ.get("GIT_SSH")
    )


def resolve_remote(repo: GitRepo, remote: str | None) -> Remote:
    """Find a remote by name (or take a URL), with its artifact store.

    With no name: the current branch's remote, else ``origin``, else the only remote.
    """
    remotes = repo.remotes()
    base = repo.work_tree or repo.git_dir
    if remote is None:
        branch = repo.branch()
        upstream = repo.config_get("branch", "remote", branch) if branch else None
        if upstream in remotes:
            remote = upstream
        elif "origin" in remotes:
            remote = "origin"
        elif len(remotes) == 1:
            remote = next(iter(remotes))
        else:
            raise NoRemote(
                "no remote given and no 'origin' remote: name one "
                "(git exp push <remote>) or add one (git remote add origin <url>)"
            )
    name: str | None
    if remote in remotes:
        name, url = remote, remotes[remote]
    elif _is_url(remote) or os.path.isdir(remote):
        name, url = None, remote
        base = os.getcwd()  # a path typed on the command line is relative to where it was typed
    else:
        known = ", ".join(sorted(remotes)) or "none"
        raise NoRemote(f"no remote named {remote!r} (remotes here: {known})", remote)
    local = _local_path(url)
    if local is not None:
        local = os.path.abspath(os.path.join(base, os.path.expanduser(local)))
        url = local if not url.startswith("file://") else "file://" + local
    store_url = repo.config_get("remote", STORE_KEY, name) if name else None
    origin = "config" if store_url else "none"
    if store_url is None and local is not None:
        store_url = _default_store(local)
        origin = "default" if store_url else "none"
    return Remote(name, url, store_url, origin, _ssh_command(repo))


# ------------------------------------------------------------ remote store


class RemoteStore:
    """A CAS behind any ``pyarrow.fs`` URL, with the layout of :class:`LocalStore`.

    Writes are atomic per object: to a temporary name then moved into place
    on file systems, a single put on object stores (S3, GCS, Azure), where a
    partial upload never becomes visible. What is read back is verified by
    BLAKE3 before it enters a local store.
    """

    def __init__(self, url: str, base_dir: str | None = None) -> None:
        import pyarrow.fs as pafs

        self.url = url
        try:
            if "://" not in url:
                path = os.path.abspath(os.path.join(base_dir or ".", os.path.expanduser(url)))
                self.fs: Any = pafs.LocalFileSystem()
                self.root = path
            else:
                self.fs, self.root = pafs.FileSystem.from_uri(url)
        except (ValueError, OSError, TypeError) as exc:
            raise RemoteError(f"cannot open artifact store {url}: {_msg(exc)}", url) from exc
        self.root = self.root.rstrip("/")
        # a directory (a path, file://, a mount): written exactly like the local
        # CAS (temporary file, fsync, read-only, rename), which it may well be
        # (the default store of a non-bare remote is that repository's CAS)
        self.local = LocalStore(self.root) if self.fs.type_name == "local" else None
        self.atomic_put = self.fs.type_name in _OBJECT_STORES
        # object stores are latency-bound: move several objects at once
        self.workers = 8 if self.fs.type_name != "local" else 1

    def __repr__(self) -> str:
        return f"RemoteStore({self.url!r})"

    # -------------------------------------------------------------- paths
    def path_for(self, key: str) -> str:
        """Where the object for ``key`` lives in the store."""
        check_key(key)
        return f"{self.root}/objects/{key[:2]}/{key[2:]}"

    def _wrap(self, exc: BaseException, what: str) -> GitExpError:
        return RemoteError(f"artifact store {self.url}: {what}: {_msg(exc)}", self.url)

    # ------------------------------------------------------------ queries
    def has(self, key: str) -> bool:
        """True when the store holds ``key``."""
        import pyarrow.fs as pafs

        try:
            info = self.fs.get_file_info(self.path_for(key))
        except OSError as exc:
            raise self._wrap(exc, "cannot look up an object") from exc
        return bool(info.type == pafs.FileType.File)

    def iter_keys(self) -> Iterable[str]:
        """Every key in the store (one listing, not one request per key)."""
        import pyarrow.fs as pafs

        sel = pafs.FileSelector(f"{self.root}/objects", recursive=True, allow_not_found=True)
        try:
            infos = self.fs.get_file_info(sel)
        except OSError as exc:
            raise self._wrap(exc, "cannot list objects") from exc
        keys = []
        for info in infos:
            if info.type != pafs.FileType.File:
                continue
            parts = info.path.rstrip("/").split("/")
            if len(parts) >= 2:
                key = parts[-2] + parts[-1]
                try:
                    keys.append(check_key(key))
                except InvalidName:
                    continue
        return sorted(keys)

    def missing(self, keys: Iterable[str]) -> list[str]:
        """The keys the store lacks, in the order given, without duplicates."""
        wanted = list(dict.fromkeys(keys))
        if len(wanted) >= _LIST_THRESHOLD:
            present = set(self.iter_keys())
            return [k for k in wanted if k not in present]
        return [k for k in wanted if not self.has(k)]

    # ------------------------------------------------------------- writes
    def _write(
        self, key: str, src: IO[bytes], size_hint: int, on_bytes: BytesFn | None = None
    ) -> int:
        """Copy ``src`` to the object for ``key``, refusing bytes that do not match.

        ``on_bytes`` is told of the bytes as they go out.
        """
        final = self.path_for(key)
        if self.atomic_put:
            # Object stores: verify first, then stream one put to the final key.
            # An upload that dies half-way is never completed, so never visible.
            got, size = copy_hashing(src, None, size_hint)
            if got != key:
                raise IntegrityError(
                    f"object {key[:12]} is damaged: its bytes hash to {got[:12]}", key, got
                )
            src.seek(0)
            try:
                with self.fs.open_output_stream(final) as out:
                    while chunk := src.read(CHUNK):
                        out.write(chunk)
                        if on_bytes is not None:
                            on_bytes(len(chunk))
            except OSError as exc:
                raise self._wrap(exc, f"cannot upload {key[:12]}") from exc
            return size
        if on_bytes is not None:
            src = _Counting(src, on_bytes)  # type: ignore[assignment]
        if self.local is not None:
            try:
                return self.local.put_verified(src, key, size_hint)
            except OSError as exc:
                raise self._wrap(exc, f"cannot upload {key[:12]}") from exc
        tmp = f"{self.root}/tmp/{key[:16]}-{os.urandom(6).hex()}"
        try:
            self.fs.create_dir(f"{self.root}/tmp", recursive=True)
            self.fs.create_dir(final.rsplit("/", 1)[0], recursive=True)
            with self.fs.open_output_stream(tmp) as out:
                got, size = copy_hashing(src, out, size_hint)
            if got != key:
                raise IntegrityError(
                    f"object {key[:12]} is damaged: its bytes hash to {got[:12]}", key, got
                )
            self.fs.move(tmp, final)
        except BaseException as exc:
            try:
                self.fs.delete_file(tmp)
            except OSError:
                pass
            if isinstance(exc, OSError):
                raise self._wrap(exc, f"cannot upload {key[:12]}") from exc
            raise
        return size

    def put_bytes(self, data: bytes) -> str:
        """Store ``data``; return its key. Idempotent."""
        import io

        key = hash_bytes(data)
        if not self.has(key):
            self._write(key, io.BytesIO(data), len(data))
        return key

    def upload(self, local: LocalStore, key: str, on_bytes: BytesFn | None = None) -> int:
        """Copy one object from a local store; return the bytes sent."""
        try:
            src = open(local.path_for(key), "rb")
        except FileNotFoundError as exc:
            raise ObjectMissing(f"object {key[:12]} is not in the local store", key) from exc
        with src:
            return self._write(key, src, os.fstat(src.fileno()).st_size, on_bytes)

    # -------------------------------------------------------------- reads
    def _open(self, key: str) -> Any:
        try:
            return self.fs.open_input_stream(self.path_for(key))
        except FileNotFoundError as exc:
            raise ObjectMissing(f"object {key[:12]} is not in {self.url}", key) from exc
        except OSError as exc:
            if "not exist" in str(exc) or "NoSuchKey" in str(exc) or "Not Found" in str(exc):
                raise ObjectMissing(f"object {key[:12]} is not in {self.url}", key) from exc
            raise self._wrap(exc, f"cannot read {key[:12]}") from exc

    def get_bytes(self, key: str) -> bytes:
        """The verified bytes of an object."""
        with self._open(key) as f:
            data = f.read()
        got = hash_bytes(bytes(data))
        if got != key:
            raise IntegrityError(
                f"object {key[:12]} in {self.url} is damaged: its bytes hash to {got[:12]}",
                key,
                got,
            )
        return bytes(data)

    def download(self, local: LocalStore, key: str, on_bytes: BytesFn | None = None) -> int:
        """Copy one object into a local store, verified; return the bytes read."""
        if local.has(key):
            return 0
        with self._open(key) as f:
            try:
                src = f if on_bytes is None else cast(IO[bytes], _Counting(f, on_bytes))
                return local.put_verified(src, key)
            except OSError as exc:
                raise self._wrap(exc, f"cannot download {key[:12]}") from exc


def _each(workers: int, fn: Callable[[Any], Any], items: list[Any]) -> Iterable[Any]:
    """``fn`` over ``items``, in order; in a small thread pool when ``workers`` > 1.

    The first exception stops the rest and propagates.
    """
    if workers <= 1 or len(items) <= 1:
        for item in items:
            yield fn(item)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [pool.submit(fn, item) for item in items]
        try:
            for fut in futures:
                yield fut.result()
        finally:
            for fut in futures:
                fut.cancel()


def _msg(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def open_store(remote: Remote, base_dir: str) -> RemoteStore | None:
    """The remote's artifact store, or None when it has none."""
    if not remote.store_url:
        return None
    return RemoteStore(remote.store_url, base_dir)


# ------------------------------------------------------ objects of a run


@dataclass
class Refusal:
    """An artifact that was not accepted, and why."""

    run: str
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.run}: {self.path}: {self.reason}"


@dataclass
class RunObjects:
    """The CAS objects a run's manifest needs."""

    files: list[tuple[str, str]] = field(default_factory=list)  # (key, label)
    dirs: list[tuple[str, str]] = field(default_factory=list)  # (listing key, label)
    optional: list[str] = field(default_factory=list)  # listings of unstored dirs
    refused: list[Refusal] = field(default_factory=list)


def manifest_entries(
    repo: GitRepo, sha: str, run: str
) -> tuple[list[ArtifactEntry], list[Refusal]]:
    """A run's manifest parsed entry by entry: a bad entry is refused alone."""
    info = repo.commit_info(sha)
    found = repo.lookup_path(info.tree, ARTIFACTS_JSON)
    if found is None:
        return [], []
    try:
        data = fmt.parse_json(repo.read_blob(found[1]), f"{run}: {ARTIFACTS_JSON}")
    except StoreError as exc:
        return [], [Refusal(run, ARTIFACTS_JSON, str(exc))]
    if not isinstance(data, list):
        return [], [Refusal(run, ARTIFACTS_JSON, "is not a list; every artifact refused")]
    entries: list[ArtifactEntry] = []
    refused: list[Refusal] = []
    for item in data:
        try:
            entries.append(ArtifactEntry.from_json(item))
        except (StoreError, UsageError) as exc:
            path = item.get("path") if isinstance(item, dict) else None
            reason = str(exc)
            if isinstance(path, str):
                try:
                    fmt.normalize_artifact_path(path)
                except InvalidName as bad:
                    reason = str(bad)  # the short reason, not the whole entry
            refused.append(Refusal(run, repr(path), reason))
    return entries, refused


def run_objects(repo: GitRepo, sha: str, run: str) -> RunObjects:
    """The objects of a run tip's manifest (dir listings, not yet their files)."""
    entries, refused = manifest_entries(repo, sha, run)
    out = RunObjects(refused=refused)
    for e in entries:
        label = f"{run}: {e.path}"
        if e.kind == "dir":
            if e.stored:
                out.dirs.append((e.blake3, label))
            else:
                out.optional.append(e.blake3)
        elif e.stored:
            out.files.append((e.blake3, label))
    return out


def listing_files(data: bytes, label: str) -> list[tuple[str, str, int, int]]:
    """Parse a directory listing from outside: every path and key checked.

    Raises FormatError-like StoreError naming the problem; nothing is trusted.
    """
    try:
        rows = parse_dir_listing(data)
    except (ValueError, UnicodeDecodeError, InvalidName) as exc:
        raise IntegrityError(f"{label}: the directory listing does not parse: {exc}") from exc
    for path, _key, _size, _mode in rows:
        try:
            norm = fmt.normalize_artifact_path(path)
        except InvalidName as exc:
            raise IntegrityError(f"{label}: hostile path in directory listing: {exc}") from exc
        if norm != path:
            raise IntegrityError(f"{label}: path {path!r} in directory listing is not normalized")
    return rows


# -------------------------------------------------------------------- push


@dataclass
class PushResult:
    """What ``push`` did."""

    remote: Remote
    refs: list[RefPush] = field(default_factory=list)
    objects: int = 0  # uploaded (with dry_run: that would be uploaded)
    nbytes: int = 0
    checked: int = 0  # objects the pushed runs reference
    local_only: int = 0  # objects not uploaded because the remote has no store
    missing_local: list[str] = field(default_factory=list)  # referenced, but not here
    git_objects: int = 0  # git objects sent in the pack (commits, trees, blobs)
    git_bytes: int = 0  # their uncompressed size
    dry_run: bool = False  # nothing was written anywhere

    def error(self) -> GitExpError | None:
        """The error to exit with, if any ref was rejected."""
        rejected = [r.ref for r in self.refs if r.status == "rejected"]
        if rejected:
            return Diverged(
                f"{len(rejected)} run(s) not pushed: the remote has commits on them that this "
                "repository lacks (git exp fetch to see them; git exp push --force to "
                "overwrite the remote's)",
                rejected,
            )
        return None


def _select_refs(store: ExpStore, runs: Iterable[str], experiment: str | None) -> dict[str, str]:
    runs = list(runs)
    if runs and experiment:
        raise UsageError("give either runs or -e EXPERIMENT, not both")
    if runs:
        out: dict[str, str] = {}
        for address in runs:
            ref = store.resolve(address)
            sha = store.repo.get_ref(str(ref))
            if sha is None:
                raise RunNotFound(f"no run at {ref}")
            out[str(ref)] = sha
        return out
    return {str(ref): sha for ref, sha in sorted(store.list_refs(experiment).items())}


def push(
    store: ExpStore,
    remote: str | None = None,
    runs: Iterable[str] = (),
    experiment: str | None = None,
    progress: ProgressFn = _noop,
    force: bool = False,
    dry_run: bool = False,
) -> PushResult:
    """Upload the artifacts of runs to the remote's store, then push their refs.

    Returns a status per ref; ``force`` overwrites remote runs that diverged.
    ``dry_run``: compare with the remote and its store and say what a push
    would do, writing nothing.
    """
    repo = store.repo
    runs = list(runs)
    if (
        remote is not None
        and remote not in repo.remotes()
        and not _is_url(remote)
        and not os.path.isdir(remote)
    ):
        # `git exp push <run>`: the first word is a run, not a remote
        try:
            store.resolve(remote)
        except RunNotFound:
            pass  # neither: resolve_remote says there is no such remote
        else:
            runs, remote = [remote, *runs], None
    rem = resolve_remote(repo, remote)
    result = PushResult(rem, dry_run=dry_run)
    refs = _select_refs(store, runs, experiment)
    if not refs:
        return result
    keys = _referenced_keys(store, refs)
    present = [k for k in keys if store.cas.has(k)]
    here = set(present)
    result.missing_local = [k for k in keys if k not in here]
    result.checked = len(keys)
    try:
        _upload(store, rem, present, result, progress, dry_run)
    except RemoteError as exc:
        # artifacts go before refs: a store that fails stops the push here
        raise RemoteError(f"no run was pushed, the artifact store failed: {exc}", rem.url) from exc
    if dry_run:
        from gitexp.git import remote_refs

        current = remote_refs(rem.url, NAMESPACE, rem.ssh_command)
        plan = repo.plan_push(current, refs, force)
        result.refs = [plan[name] for name in refs]
        return result

    def on_objects(done: int, total: int, nbytes: int) -> None:
        result.git_objects, result.git_bytes = done, nbytes
        progress(Progress("sending git objects", done, total, nbytes))

    progress(Progress("pushing runs", 0, len(refs)))
    result.refs = repo.push(
        rem.url,
        refs,
        ssh_command=rem.ssh_command,
        progress=lambda text: progress(Progress("pushing runs", text=text)),
        force=force,
        on_objects=on_objects,
    )
    return result


def _upload(
    store: ExpStore,
    rem: Remote,
    present: list[str],
    result: PushResult,
    progress: ProgressFn,
    dry_run: bool,
) -> None:
    """Upload to the remote's store the objects of ``present`` it lacks."""
    remote_store = open_store(rem, store.repo.work_tree or store.repo.git_dir)
    if remote_store is None:
        result.local_only = len(present)
        return
    todo = remote_store.missing(present)
    sizes = {k: _local_size(store, k) for k in todo}
    if dry_run:
        result.objects, result.nbytes = len(todo), sum(sizes.values())
        return
    meter = _Meter(progress, "uploading artifacts", len(todo), sum(sizes.values()))

    def send(key: str) -> int:
        size = remote_store.upload(store.cas, key, meter.add_bytes)
        meter.finish_one()
        return size

    for size in _each(remote_store.workers, send, todo):
        result.nbytes += size
        result.objects += 1


def _referenced_keys(store: ExpStore, refs: dict[str, str]) -> list[str]:
    """The CAS objects the runs ``refs`` (name -> sha) reference, as far as
    this repository can tell: a directory's files are known only when its
    listing is here."""
    keys: list[str] = []
    for name, sha in refs.items():
        objs = run_objects(store.repo, sha, name[len(NAMESPACE) :])
        keys += [k for k, _ in objs.files]
        for listing, _label in objs.dirs:
            keys.append(listing)
            try:
                rows = parse_dir_listing(store.cas.get_bytes(listing))
            except (StoreError, ValueError, InvalidName):
                continue  # not here (counted by the caller) or damaged (refused later)
            keys += [k for _, k, _, _ in rows]
        keys += [k for k in objs.optional if store.cas.has(k)]
    return list(dict.fromkeys(keys))


def _local_size(store: ExpStore, key: str) -> int:
    try:
        return os.path.getsize(store.cas.path_for(key))
    except OSError:
        return 0


# ------------------------------------------------------------------- fetch


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
        run = fmt.parse_json(repo.read_blob(found[1]), fmt.RUN_JSON)
        if not isinstance(run, dict):
            return "run.json is not an object"
        fmt.check_version(run, "the run")
        found = repo.lookup_path(info.tree, fmt.PARAMS_JSON)
        if found is not None and not isinstance(
            fmt.parse_json(repo.read_blob(found[1]), fmt.PARAMS_JSON), dict
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
    progress: ProgressFn = _noop,
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
    store: ExpStore, run: str, remote: str | None = None, progress: ProgressFn = _noop
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
    keys = _referenced_keys(store, refs)
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
    for name, sha in targets:
        short = name[len(NAMESPACE) :]
        objs = run_objects(store.repo, sha, short)
        result.refused += objs.refused
        files += objs.files
        dirs += objs.dirs
        files += [(k, f"{short}: (directory listing)") for k in objs.optional]
        optional.update(objs.optional)

    def get(key: str, label: str) -> bool:
        if cas.has(key):
            return True
        try:
            n = remote_store.download(cas, key)
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
    first: dict[str, str] = {}
    for key, label in files:
        first.setdefault(key, label)
    todo = [(k, label) for k, label in first.items() if not cas.has(k)]
    total = len(todo)

    meter = _Meter(progress, "downloading artifacts", total)

    # the transfers may run in threads; the bookkeeping in get() happens here, in order
    def fetch_one(item: tuple[str, str]) -> tuple[str, str, BaseException | int]:
        key, label = item
        try:
            return key, label, remote_store.download(cas, key, meter.add_bytes)
        except (IntegrityError, ObjectMissing) as exc:
            return key, label, exc
        finally:
            meter.finish_one()

    for key, label, outcome in _each(remote_store.workers, fetch_one, todo):
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
    progress: ProgressFn = _noop,
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


# --------------------------------------------------------------- ls-remote


@dataclass
class RemoteRun:
    """A run as the remote's refs show it."""

    ref: str
    sha: str
    local: str  # "same", "absent", "unfetched", "behind", "ahead", "diverged"


def ls_remote(store: ExpStore, remote: str | None = None) -> tuple[Remote, list[RemoteRun]]:
    """The runs a remote has, from its ref advertisement alone (nothing is downloaded)."""
    from gitexp.git import remote_refs

    repo = store.repo
    rem = resolve_remote(repo, remote)
    out = []
    for name, sha in sorted(remote_refs(rem.url, NAMESPACE, rem.ssh_command).items()):
        try:
            ExpRef.from_ref(name)
        except InvalidName:
            continue
        local = repo.get_ref(name)
        if local is None:
            state = "absent"
        elif local == sha:
            state = "same"
        elif not repo.has_object(sha):
            state = "unfetched"  # the remote's commit is not here: fetch to compare
        elif repo.is_ancestor(sha, local):
            state = "ahead"
        elif repo.is_ancestor(local, sha):
            state = "behind"
        else:
            state = "diverged"
        out.append(RemoteRun(name, sha, state))
    return rem, out


# --------------------------------------------------------------------- get


@dataclass
class GetResult:
    """What ``get`` restored."""

    run: str
    entry: ArtifactEntry
    dest: str
    files: int
    nbytes: int
    downloaded: int  # objects fetched from the remote store


def _find_entry(entries: list[ArtifactEntry], path: str) -> tuple[ArtifactEntry, str | None]:
    """The entry named ``path`` (or the dir entry holding it, with the inner path)."""
    try:
        want = fmt.normalize_artifact_path(path)
    except InvalidName as exc:
        raise UsageError(str(exc)) from exc
    order = {r: i for i, r in enumerate(("output", "input", "log", "config", "code"))}
    ranked = sorted(entries, key=lambda e: order.get(e.role, 9))
    for e in ranked:
        if e.path == want:
            return e, None
    for e in ranked:
        if e.kind == "dir" and want.startswith(e.path + "/"):
            return e, want[len(e.path) + 1 :]
    raise UsageError(f"no artifact or input {want!r} in this run (git exp show lists them)")


def get(
    store: ExpStore,
    run: str,
    path: str,
    dest: str | None = None,
    remote: str | None = None,
    force: bool = False,
    progress: ProgressFn = _noop,
) -> GetResult:
    """Restore an artifact or input of a run (a file or a whole directory entry).

    Objects missing from the local CAS are fetched from the remote's store,
    verified by BLAKE3 on the way in; every restored file is verified again.
    """
    ref = store.resolve(run)
    sha = store.repo.get_ref(str(ref))
    if sha is None:
        raise RunNotFound(f"no run at {ref}")
    entries, refused = manifest_entries(store.repo, sha, ref.short)
    try:
        entry, inner = _find_entry(entries, path)
    except UsageError:
        for r in refused:
            if path in r.path:
                raise IntegrityError(str(r)) from None
        raise
    if not entry.stored and not store.cas.has(entry.blake3):
        raise StoreError(
            f"{ref.short}: {entry.path}: only its hash was recorded (log it with "
            "store=True / --store-inputs to keep its bytes)"
        )
    remote_store: RemoteStore | None = None
    downloaded = 0

    def ensure(key: str, label: str) -> None:
        nonlocal remote_store, downloaded
        if store.cas.has(key):
            return
        if remote_store is None:
            try:
                rem = resolve_remote(store.repo, remote)
            except NoRemote as exc:
                raise ObjectMissing(
                    f"{label}: object {key[:12]} is not in the local store and there is no "
                    "remote to fetch it from",
                    key,
                ) from exc
            remote_store = open_store(rem, store.repo.work_tree or store.repo.git_dir)
            if remote_store is None:
                raise ObjectMissing(
                    f"{label}: object {key[:12]} is not in the local store, and remote "
                    f"{rem.label} has no artifact store (git config remote.{rem.label}."
                    f"{STORE_KEY} <url>)",
                    key,
                )
        if remote_store.download(store.cas, key):
            downloaded += 1

    label = f"{ref.short}: {entry.path}"
    name = inner or entry.path
    target = os.path.abspath(dest if dest else os.path.basename(name))
    if entry.kind == "file" or inner is not None:
        if entry.kind == "file":
            key, mode, size = entry.blake3, entry.mode, entry.size
        else:
            ensure(entry.blake3, label)
            rows = listing_files(store.cas.get_bytes(entry.blake3), label)
            match = [r for r in rows if r[0] == inner]
            if not match:
                raise UsageError(f"{label} has no file {inner!r}")
            _, key, size, mode = match[0]
        if os.path.exists(target) and not force:
            raise UsageError(f"{target} exists; use --force to overwrite it")
        if os.path.isdir(target):
            raise UsageError(f"{target} is a directory")
        ensure(key, label)
        store.cas.restore(key, target, mode)
        return GetResult(ref.short, entry, target, 1, size, downloaded)
    # a whole directory entry: every file into a fresh directory, swapped in at the end
    ensure(entry.blake3, label)
    rows = listing_files(store.cas.get_bytes(entry.blake3), label)
    if os.path.lexists(target) and not force:
        raise UsageError(f"{target} exists; use --force to overwrite it")
    for i, (_, key, _, _) in enumerate(rows):
        ensure(key, label)
        progress(Progress("restoring", i + 1, len(rows)))
    parent = os.path.dirname(target)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=".gitexp-get-", dir=parent)
    total = 0
    try:
        root = os.path.realpath(tmp)
        for rel, key, size, mode in rows:
            out = os.path.realpath(os.path.join(tmp, *rel.split("/")))
            if not out.startswith(root + os.sep):
                raise IntegrityError(f"{label}: {rel!r} leaves the directory; refused")
            store.cas.restore(key, out, mode)
            total += size
        if os.path.lexists(target):
            trash = tempfile.mkdtemp(prefix=".gitexp-old-", dir=parent)
            os.replace(target, os.path.join(trash, "old"))
            os.replace(tmp, target)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return GetResult(ref.short, entry, target, len(rows), total, downloaded)


def delete_runs(store: ExpStore, remote: str | None, refs: Iterable[str]) -> dict[str, str]:
    """Delete run refs on a git remote (``git exp rm --remote``).

    Returns ref name -> "deleted", "absent" or the remote's refusal. The runs'
    artifacts stay in the remote store: they may be shared with other runs.
    """
    target = resolve_remote(store.repo, remote)
    return store.repo.delete_remote_refs(target.url, list(refs), target.ssh_command)
