"""What a cluster worker does with one trial of a sweep (the Dask executor sends it here).

:func:`run_trial` runs on the worker, in the worker's own clone of the shared
remote, and returns plain data:

1. The clone: ``<worker dir>/clones/<hash of the remote URL>``, made once per
   worker (``git init`` with the remote as ``origin`` and its artifact store as
   ``remote.origin.expstore``); the sweep's ref is fetched from the remote,
   which brings the sweep's code commit (the first commit of a sweep's ref has
   it as a parent).
2. The code: the code commit exported into a clean, temporary directory by
   :meth:`gitexp.git.GitRepo.export_tree` (a private index; what ``reproduce``
   does), large code files of a dirty snapshot restored from the artifact store.
3. The trial: the command run there by :func:`gitexp.runner.run_command`, an
   ordinary run in the clone, recorded against the sweep's code version. A
   pruner's verdict comes from the driver through a Dask queue and event.
4. Sharing: :func:`gitexp.remotes.push` of the run (its artifacts first, then
   its ref) to the remote. The driver fetches it from there.

The worker directory is ``$GITEXP_WORKER_DIR`` when set, else a ``gitexp``
folder in the Dask worker's local directory.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping
from typing import Any

from gitexp import records as fmt
from gitexp.errors import CannotReproduce, GitExpError, ObjectMissing
from gitexp.git import GitRepo, init_repo

WORKER_DIR_ENV = "GITEXP_WORKER_DIR"
WATCH_INTERVAL = 0.25  # seconds between looks at a running trial's metric

_thread_locks: dict[str, threading.Lock] = {}
_guard = threading.Lock()


def worker_dir() -> str:
    """Where this worker keeps its clones and trial directories."""
    root = os.environ.get(WORKER_DIR_ENV)
    if root:
        return os.path.abspath(root)
    try:
        from distributed import get_worker

        return os.path.join(get_worker().local_directory, "gitexp")
    except (ImportError, ValueError):  # not in a Dask worker (a direct call)
        return os.path.join(tempfile.gettempdir(), f"gitexp-worker-{os.getpid()}")


@contextlib.contextmanager
def _locked(path: str) -> Iterator[None]:
    """One thread of one process at a time on ``path`` (threads of a worker, and
    workers that share a worker directory)."""
    with _guard:
        lock = _thread_locks.setdefault(path, threading.Lock())
    with lock:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path + ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def clone_for(task: Mapping[str, Any], root: str) -> str:
    """This worker's clone of the sweep's remote, holding the sweep's code commit."""
    remote = task["remote"]
    url = str(remote["url"])
    path = os.path.join(root, "clones", hashlib.sha256(url.encode()).hexdigest()[:16])
    commit = str(task["code"]["commit"])
    with _locked(path):
        if not os.path.isdir(os.path.join(path, ".git")):
            config: dict[tuple[str, str | None, str], str] = {("remote", "origin", "url"): url}
            if remote.get("store"):
                config[("remote", "origin", "expstore")] = str(remote["store"])
            tmp = f"{path}.new{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            init_repo(tmp, config).close()
            os.replace(tmp, path)
        with GitRepo(path) as repo:
            if not repo.has_object(commit):
                ref = str(task["sweep_ref"])
                found = repo.fetch(url, ref)
                if ref in found and repo.has_object(found[ref]):
                    repo.set_ref(ref, repo.get_ref(ref), found[ref], "git-exp worker: fetch")
            if not repo.has_object(commit):
                raise CannotReproduce(
                    f"the sweep's code commit {commit[:12]} is not on {url} "
                    f"(its ref {task['sweep_ref']} does not hold it)"
                )
            if repo.head() is None:  # a run needs a HEAD; the clone's is the code commit
                repo.set_ref("HEAD", None, commit, "git-exp worker: the sweep's code")
    return path


def _materialise(clone: str, task: Mapping[str, Any], work: str, tmp: str) -> None:
    """The code commit, exported into ``work``, with its large files restored."""
    from gitexp.remotes import open_store, resolve_remote
    from gitexp.store import ExpStore

    with ExpStore(clone) as store:
        store.repo.export_tree(str(task["code"]["commit"]), work, tmp)
        entries = fmt.manifest_from_json(task["code"].get("large_files") or [])
        if not entries:
            return
        remote_store = open_store(resolve_remote(store.repo, "origin"), clone)
        for entry in entries:
            if not store.cas.has(entry.blake3):
                if remote_store is None:
                    raise ObjectMissing(f"code file {entry.path}: the remote has no artifact store")
                remote_store.download(store.cas, entry.blake3)
            rel = fmt.normalize_artifact_path(entry.path)
            store.cas.restore(entry.blake3, os.path.join(work, *rel.split("/")), entry.mode)


def _watch(task: Mapping[str, Any], clone: str) -> Any:
    """The runner's ``watch`` when the driver's pruner watches this trial: new
    points go to the driver through a Dask queue; the driver's verdict comes back
    through a Dask event."""
    channel = task.get("channel")
    metric = task.get("metric")
    if not channel or not metric:
        return None, lambda: None
    import distributed

    from gitexp.sweeps.live import LiveMetric

    dist: Any = distributed  # untyped in parts
    queue, event = dist.Queue(channel), dist.Event(channel)
    lives: dict[str, LiveMetric] = {}

    def watch(ref: str) -> bool:
        live = lives.get(ref)
        if live is None:
            live = lives[ref] = LiveMetric(clone, ref, str(metric))
        points = live.poll()
        if points:
            queue.put([[s, v] for s, v in points])
        return bool(event.is_set())

    def close() -> None:
        for live in lives.values():
            live.close()

    return watch, close


def run_trial(task: Mapping[str, Any]) -> dict[str, Any]:
    """Run one trial of a sweep on this worker and push its run to the remote.

    Returns ``{"run", "status", "exit_code", "error", "pushed", "worker"}``; every
    error of git-exp's is returned as text (``run`` None when no run was made)."""
    from gitexp.capture import CodeState
    from gitexp.remotes import push
    from gitexp.runner import run_command
    from gitexp.store import ExpStore
    from gitexp.sweeps.driver import settle_outcome

    root = worker_dir()
    out: dict[str, Any] = {"run": None, "status": "failed", "exit_code": None, "error": None}
    out["worker"] = root
    try:
        clone = clone_for(task, root)
    except GitExpError as exc:
        out["error"] = f"worker {root}: {exc}"
        return out
    os.makedirs(os.path.join(root, "work"), exist_ok=True)
    tmp = tempfile.mkdtemp(prefix="trial-", dir=os.path.join(root, "work"))
    watch, close = _watch(task, clone)
    try:
        work = os.path.join(tmp, str(task.get("name") or "code"))
        os.makedirs(work)
        _materialise(clone, task, work, tmp)
        given = task.get("cwd_rel")
        rel = "." if given in (None, "", ".") else fmt.normalize_artifact_path(str(given))
        cwd = work if rel == "." else os.path.join(work, *rel.split("/"))
        os.makedirs(cwd, exist_ok=True)
        code = task["code"]
        result = run_command(
            list(task["argv"]),
            repo=clone,
            experiment=str(task["experiment"]),
            base_params=task["params"],
            tags=list(task["tags"]),
            environ=os.environ,
            cwd=cwd,
            extra={"links": {"sweep": task["link"]}, "cwd_rel": rel},
            code=CodeState(
                data=dict(code["data"]),
                code_commit=str(code["commit"]),
                code_tree=str(code["tree"]),
                large_files=fmt.manifest_from_json(code.get("large_files") or []),
            ),
            work_tree=work,
            detach=True,
            watch=watch,
            watch_interval=WATCH_INTERVAL,
        )
        out.update(run=result.ref, status=result.status, exit_code=result.exit_code)
        with ExpStore(clone) as store:
            outcome = settle_outcome(
                store, result.ref, result.status, result.exit_code, task.get("metric")
            )
        if outcome.state == "failed" and result.status == "finished":
            out.update(status="failed", error=outcome.error)
    except GitExpError as exc:
        out["error"] = str(exc)
    finally:
        close()
        shutil.rmtree(tmp, ignore_errors=True)
    if out["run"] is None:
        return out
    try:
        with ExpStore(clone) as store:
            pushed = push(store, "origin", runs=[str(out["run"])])
        problem = pushed.error()
        if problem is None and pushed.missing_local:
            problem = ObjectMissing(f"{len(pushed.missing_local)} artifact(s) were not here")
        out["pushed"] = problem is None
        if problem is not None:
            out["error"] = f"the run was recorded on worker {root} but not pushed: {problem}"
    except GitExpError as exc:
        out["pushed"] = False
        out["error"] = f"the run was recorded on worker {root} but not pushed: {exc}"
    return out


def dask_setup(worker: Any) -> None:
    """Called by ``dask worker --preload gitexp.sweeps.worker``: import now what a
    trial needs (git-exp's services, pyarrow), not during the first trial."""
    import importlib

    for name in ("gitexp.remotes", "gitexp.runner", "gitexp.sweeps.driver", "gitexp.sweeps.live"):
        importlib.import_module(name)
