"""Running a plan: the code exported into a temporary directory, config and
inputs put in place, the recorded command run there as a new run.

:func:`replay` exports the code commit through a private index (no worktree is
registered; the user's work tree, index, HEAD, branches and stash are never
touched), restores the code files the snapshot kept in the CAS, the config file
and the stored inputs, copies or links the hash-checked ones, and runs the
recorded command as a new run of the same experiment: recorded against the
user's repository and the original run's code commit, with
``links.reproduces`` set to the original run's sha. The directory is removed
however the replay ends, unless it is kept.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping
from typing import IO, Any

from gitexp import records as fmt
from gitexp.cas import contained_path, parse_dir_listing
from gitexp.errors import CannotReproduce, CommandNotFound, ReplayInterrupted, StoreError
from gitexp.records import ArtifactEntry
from gitexp.replay.paths import external_path, external_root, remap_text, remap_value
from gitexp.replay.plan import COPY_LIMIT, ReplayPlan, check
from gitexp.store import ExpStore, RunRecord

REPLAY_TAG = "reproduce"


class _Terminated(BaseException):
    """SIGTERM/SIGHUP while preparing or cleaning up: unwind through ``finally``."""


@contextlib.contextmanager
def _unwind_on_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into an exception (SIGINT already is one), so the
    temporary directory is removed however the replay is stopped."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_(signum: int, frame: Any) -> None:
        raise _Terminated(signum)

    previous = {sig: signal.signal(sig, raise_) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _safe_dest(work: str, rel: str) -> str:
    """``work/rel``, refusing a place reached through a symlink out of ``work``
    (the check ``checkout-code`` makes too: :func:`gitexp.cas.contained_path`)."""
    try:
        return contained_path(work, rel)
    except StoreError as exc:
        raise CannotReproduce(
            f"{rel}: the code links this path outside the replay directory ({exc})"
        ) from None


def _clear(path: str) -> None:
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def _restore_entry(store: ExpStore, entry: ArtifactEntry, work: str, rel: str) -> None:
    dest = _safe_dest(work, rel)
    if entry.kind == "dir":
        _clear(dest)
        for path, key, _, mode in parse_dir_listing(store.cas.get_bytes(entry.blake3)):
            sub = fmt.normalize_artifact_path(path)
            store.cas.restore(key, _safe_dest(work, f"{rel}/{sub}"), mode)
        os.makedirs(dest, exist_ok=True)
        return
    if os.path.isdir(dest) and not os.path.islink(dest):
        shutil.rmtree(dest)
    store.cas.restore(entry.blake3, dest, entry.mode)


def _materialise(store: ExpStore, plan: ReplayPlan, work: str) -> list[str]:
    """Export the code and put config and inputs in place; return the --input paths."""
    assert plan.code_commit
    store.repo.export_tree(plan.code_commit, work, os.path.dirname(work))
    for entry in plan.code_files:
        _restore_entry(store, entry, work, entry.path)
    if plan.config is not None and plan.config_dest:
        _restore_entry(store, plan.config, work, plan.config_dest)
        if plan.config_remap and plan.original_root:
            dest = _safe_dest(work, plan.config_dest)
            with open(dest, encoding="utf-8") as f:
                text = remap_text(f.read(), plan.original_root, work)
            os.chmod(dest, stat.S_IMODE(os.stat(dest).st_mode) | stat.S_IWUSR)
            with open(dest, "w", encoding="utf-8") as f:
                f.write(text)
    given: list[str] = []
    for i in plan.inputs:
        entry = ArtifactEntry(path=i.name, blake3=i.blake3, size=i.size, kind=i.kind, role="input")
        if i.action == "restore" and i.restore_as:  # from outside the repository
            os.makedirs(external_root(work), exist_ok=True)
            _restore_entry(store, entry, external_root(work), i.restore_as)
            if i.given:
                given.append(external_path(work, i.restore_as))
        elif i.dest is not None:
            dest = _safe_dest(work, i.dest)
            if i.action == "restore":
                _restore_entry(store, entry, work, i.dest)
            elif i.action in ("copy", "link", "drifted") and i.origin:
                _clear(dest)
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                small = (i.current_size or 0) <= COPY_LIMIT
                if i.action == "copy" or (i.action == "drifted" and small):
                    if os.path.isdir(i.origin):
                        shutil.copytree(i.origin, dest, symlinks=True)
                    else:
                        shutil.copy2(i.origin, dest)
                else:
                    os.symlink(i.origin, dest)
            if i.given:
                given.append(dest)
        elif i.given:
            given.append(i.source)
    return given


def replay(
    store: ExpStore,
    plan: ReplayPlan,
    *,
    keep: bool = False,
    stdout: IO[bytes] | None = None,
    stderr: IO[bytes] | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[RunRecord, str | None, str]:
    """Run a checked plan; return the replay run, the kept directory (or None) and
    the directory the code ran in (removed unless kept).

    Raises :class:`ReplayInterrupted` when the replay is stopped by a signal.
    """
    from gitexp.capture import CodeState
    from gitexp.runner import run_command

    check(plan)
    root = tempfile.mkdtemp(prefix="gitexp-reproduce-")
    kept: str | None = None
    try:
        with _unwind_on_signals():
            base = os.path.basename(store.repo.work_tree or "") or "code"
            work = os.path.join(root, base)
            os.makedirs(work)
            try:
                given = _materialise(store, plan, work)
            except (StoreError, OSError) as exc:
                raise CannotReproduce(f"cannot reproduce {plan.run}: {exc}") from exc
            cwd = work if plan.cwd_rel == "." else _safe_dest(work, plan.cwd_rel)
            os.makedirs(cwd, exist_ok=True)
            env = dict(os.environ if environ is None else environ)
            for k in plan.env_unset:
                env.pop(k, None)
            env.update(plan.env_set)
            original = store.read(fmt.ExpRef.from_ref(plan.ref), plan.sha)
            code = CodeState(
                data=dict(original.code),
                code_commit=str(plan.code_commit),
                code_tree=str(plan.code_tree),
                large_files=list(plan.code_files),
            )
            user_root = store.repo.work_tree or store.repo.git_dir
            logical_cwd = (
                user_root if plan.cwd_rel == "." else os.path.join(user_root, plan.cwd_rel)
            )
            try:
                result = run_command(
                    plan.argv(work),
                    repo=user_root,
                    experiment=plan.experiment,
                    name=plan.name,
                    base_params=remap_value(plan.params, plan.paths(work)),
                    inputs=given,
                    store_inputs=any(i.stored for i in plan.inputs if i.given),
                    artifacts=[plan.config] if plan.config is not None else [],
                    tags=[REPLAY_TAG],
                    stdout=stdout,
                    stderr=stderr,
                    environ=env,
                    cwd=cwd,
                    code=code,
                    work_tree=work,
                    detach=True,
                    path_map={
                        copy: original
                        for original, copy in plan.paths(work)
                        if original != plan.original_root
                    },
                    extra={
                        "command": plan.command,
                        "cwd": logical_cwd,
                        "cwd_rel": plan.cwd_rel,
                        "config": plan.config.path if plan.config else None,
                        "links": {"reproduces": plan.sha},
                    },
                )
            except CommandNotFound as exc:
                raise CannotReproduce(f"cannot reproduce {plan.run}: {exc}") from exc
            new = store.read_settled(result.ref)
            if result.status == "killed" or result.interrupted:
                raise ReplayInterrupted(
                    f"replay of {plan.run} interrupted; recorded as {result.status} run "
                    f"{new.ref.short} (your work tree was not touched)"
                )
            if keep:
                kept = work
            return new, kept, work
    except (KeyboardInterrupt, _Terminated) as exc:
        raise ReplayInterrupted(
            f"replay of {plan.run} interrupted (your work tree was not touched)"
        ) from exc
    finally:
        if kept is None:
            _remove_tree(root)


def _remove_tree(root: str) -> None:
    """Remove the replay directory, with signals held off so it is not left half-removed."""
    blocked = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:

        def retry(func: Any, path: str, exc: Any) -> None:
            with contextlib.suppress(OSError):  # a directory the replay made read-only
                os.chmod(os.path.dirname(path), stat.S_IRWXU)
                func(path)

        if sys.version_info >= (3, 12):
            shutil.rmtree(root, onexc=retry)
        else:
            shutil.rmtree(root, onerror=retry)
    finally:
        if in_main:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
