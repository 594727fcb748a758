"""Talking to remotes: push (fast-forward only, compare-and-swap), fetch,
ref advertisement, remote ref deletion; one clear error for what dulwich raises."""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from gitexp.errors import (
    AuthError,
    GitExpError,
    RemoteError,
)
from gitexp.git.objects import GitObjects


class SyncStatus(str, enum.Enum):
    """What a push or fetch did to one ref. Compares equal to its text."""

    NEW = "new"  # the ref did not exist on the receiving side; created
    UPDATED = "updated"  # fast-forwarded
    FORCED = "forced"  # overwritten on request although it had diverged
    UP_TO_DATE = "up to date"
    REJECTED = "rejected"  # push: the remote has commits we lack; left alone
    LOCAL_AHEAD = "local ahead"  # fetch: ours has commits the remote lacks; kept
    DIVERGED = "diverged"  # fetch: both sides have commits the other lacks; ours kept
    SKIPPED = "skipped"  # fetch: our ref moved while we fetched; fetch again
    REFUSED = "refused"  # fetch: the remote served something that is not a readable run

    def __str__(self) -> str:
        return self.value


@dataclass
class RefPush:
    """What a push did (or would not do) to one remote ref."""

    ref: str
    old: str | None  # the remote's sha before the push
    new: str  # the local sha
    status: SyncStatus
    reason: str = ""


class GitTransport(GitObjects):
    """Moving objects and refs to and from remotes."""

    def push(
        self,
        url: str,
        refs: Mapping[str, str],
        ssh_command: str | None = None,
        progress: Any = None,
        force: bool = False,
        on_objects: Callable[[int, int, int], None] | None = None,
    ) -> list[RefPush]:
        """Push ``refs`` (full name -> local sha) to the same names on ``url``.

        Only fast-forwards, unless ``force``: a remote ref whose commit is not
        an ancestor of ours is left alone and reported as ``rejected``. Objects
        travel in one pack before the remote moves any ref; each ref moves by
        compare-and-swap against the value the remote advertised.
        ``progress`` gets the server's text; ``on_objects(done, total, bytes)``
        is called as the pack's objects are written.
        """
        from dulwich.objects import ZERO_SHA

        client, path = _transport(url, ssh_command)
        plan: dict[str, RefPush] = {}

        def update_refs(remote: dict[bytes, bytes]) -> dict[bytes, bytes]:
            # only the refs that move: a remote on a local path (moved by dulwich in
            # this process) then locks nothing else, so concurrent pushes of other
            # refs do not collide on refs neither of them changes
            new: dict[bytes, bytes] = {}
            current = {
                k.decode("utf-8", "replace"): v.decode("ascii")
                for k, v in remote.items()
                if v not in (None, ZERO_SHA)
            }
            plan.update(self.plan_push(current, refs, force))
            for name, step in plan.items():
                if step.status in (SyncStatus.NEW, SyncStatus.UPDATED, SyncStatus.FORCED):
                    new[name.encode("utf-8")] = step.new.encode("ascii")
            return new

        def generate(have: Any, want: Any, *, ofs_delta: bool = False, progress: Any = None) -> Any:
            count, records = self._repo.generate_pack_data(
                set(have), set(want), ofs_delta=ofs_delta, progress=progress
            )
            if on_objects is None:
                return count, records

            def counted() -> Any:
                nbytes = 0
                for i, record in enumerate(records, 1):
                    yield record
                    nbytes += getattr(record, "decomp_len", None) or 0
                    on_objects(i, count, nbytes)

            return count, counted()

        def on_progress(data: bytes) -> None:
            if progress is not None:
                progress(data.decode("utf-8", "replace"))

        from dulwich.file import FileLocked

        try:
            result = client.send_pack(
                path.encode("utf-8") if isinstance(path, str) else path,
                update_refs,
                generate_pack_data=generate,
                progress=on_progress,
            )
        except FileLocked:
            # a remote on a local path, one of whose refs another push holds locked
            # (dulwich moves them in this process): what did not move is rejected
            now = remote_refs(url, "refs/", ssh_command)
            for step in plan.values():
                moving = step.status in (SyncStatus.NEW, SyncStatus.UPDATED, SyncStatus.FORCED)
                if moving and now.get(step.ref) != step.new:
                    step.status = SyncStatus.REJECTED
                    step.reason = "another push held the remote ref locked; push again"
            return [plan[name] for name in refs if name in plan]
        except _transport_errors() as exc:
            raise _remote_error(url, exc) from exc
        for name, err in (result.ref_status or {}).items():
            if err:
                text = name.decode("utf-8", "replace")
                if text in plan:
                    plan[text].status = SyncStatus.REJECTED
                    plan[text].reason = f"the remote refused: {err}"
        return [plan[name] for name in refs if name in plan]

    def plan_push(
        self, remote: Mapping[str, str], refs: Mapping[str, str], force: bool = False
    ) -> dict[str, RefPush]:
        """What pushing ``refs`` (name -> local sha) does against the remote
        refs ``remote`` (name -> sha): the same decision for a real push and a
        dry run."""
        plan: dict[str, RefPush] = {}
        for name, sha in refs.items():
            old = remote.get(name)
            if old == sha:
                plan[name] = RefPush(name, old, sha, SyncStatus.UP_TO_DATE)
            elif old is None:
                plan[name] = RefPush(name, None, sha, SyncStatus.NEW)
            elif self.is_ancestor(old, sha):
                plan[name] = RefPush(name, old, sha, SyncStatus.UPDATED)
            elif force:
                plan[name] = RefPush(name, old, sha, SyncStatus.FORCED)
            else:
                plan[name] = RefPush(
                    name,
                    old,
                    sha,
                    SyncStatus.REJECTED,
                    "the remote run has commits this repository lacks "
                    "(git exp fetch, then look at both)",
                )
        return plan

    def delete_remote_refs(
        self, url: str, names: list[str], ssh_command: str | None = None
    ) -> dict[str, str]:
        """Delete refs on a remote; return name -> "deleted", "absent" or the
        remote's refusal. Each deletion is conditional on the sha the remote
        advertised, as git push --delete does."""
        from dulwich.objects import ZERO_SHA

        client, path = _transport(url, ssh_command)
        outcome: dict[str, str] = {}

        def update_refs(remote: dict[bytes, bytes]) -> dict[bytes, bytes]:
            new = dict(remote)
            for name in names:
                key = name.encode("utf-8")
                if remote.get(key) in (None, ZERO_SHA):
                    outcome[name] = "absent"
                else:
                    new[key] = ZERO_SHA
                    outcome[name] = "deleted"
            return new

        def no_objects(
            have: Any, want: Any, *, ofs_delta: bool = False, progress: Any = None
        ) -> Any:
            return self._repo.generate_pack_data(set(have), set(), ofs_delta=ofs_delta)

        try:
            result = client.send_pack(
                path.encode("utf-8") if isinstance(path, str) else path,
                update_refs,
                generate_pack_data=no_objects,
            )
        except _transport_errors() as exc:
            raise _remote_error(url, exc) from exc
        for name, err in (result.ref_status or {}).items():
            if err:
                outcome[name.decode("utf-8", "replace")] = f"refused: {err}"
        return outcome

    def fetch(
        self,
        url: str,
        prefix: str,
        ssh_command: str | None = None,
        progress: Any = None,
    ) -> dict[str, str]:
        """Download the objects of the remote's refs under ``prefix``.

        Returns those refs (name -> sha); it does not create or move any local ref.
        """
        client, path = _transport(url, ssh_command)
        raw = prefix.encode("utf-8")
        store = self._store

        def determine_wants(refs: Mapping[bytes, bytes], depth: Any = None) -> list[bytes]:
            return sorted(
                {
                    sha
                    for name, sha in refs.items()
                    if name.startswith(raw)
                    and not name.endswith(b"^{}")
                    and sha is not None
                    and sha not in store
                }
            )

        def on_progress(data: bytes) -> None:
            if progress is not None:
                progress(data.decode("utf-8", "replace"))

        try:
            result = client.fetch(
                path, self._repo, determine_wants=determine_wants, progress=on_progress
            )
        except _transport_errors() as exc:
            raise _remote_error(url, exc) from exc
        return _text_refs(result.refs, prefix)


def _transport(url: str, ssh_command: str | None) -> tuple[Any, str]:
    from dulwich.client import get_transport_and_path

    try:
        return get_transport_and_path(url, ssh_command=ssh_command)
    except (ValueError, KeyError) as exc:
        raise RemoteError(f"cannot use remote URL {url!r}: {exc}", url) from exc


def _remote_error(url: str, exc: BaseException) -> GitExpError:
    """One clear error for anything a dulwich client raises while talking to ``url``."""
    from dulwich.errors import HangupException, NotGitRepository

    name = type(exc).__name__
    if name in ("HTTPUnauthorized", "HTTPProxyUnauthorized"):
        return AuthError(f"{url}: authentication failed (check your credentials)", url)
    if isinstance(exc, NotGitRepository):
        return RemoteError(f"{url} is not a git repository", url)
    if isinstance(exc, HangupException):
        detail = "; ".join(
            line.decode("utf-8", "replace").strip()
            for line in (getattr(exc, "stderr_lines", None) or [])
            if line.strip()
        )
        return RemoteError(
            f"{url}: the remote hung up{': ' + detail if detail else ''} "
            "(is the URL right, and can you reach it?)",
            url,
        )
    import re

    text = str(exc).strip().splitlines()
    errno = re.search(r"\[Errno -?\d+\] ([^\"')]+)", str(exc))
    if errno:
        return RemoteError(f"{url}: cannot connect: {errno.group(1).strip()}", url)
    return RemoteError(f"{url}: {text[-1] if text else name}", url)


def _transport_errors() -> tuple[type[BaseException], ...]:
    from dulwich.errors import GitProtocolError, NotGitRepository

    try:
        import urllib3.exceptions

        extra: tuple[type[BaseException], ...] = (urllib3.exceptions.HTTPError,)
    except ImportError:  # pragma: no cover - urllib3 comes with dulwich
        extra = ()
    return (GitProtocolError, NotGitRepository, OSError, *extra)


def remote_refs(url: str, prefix: str, ssh_command: str | None = None) -> dict[str, str]:
    """The refs of a remote under ``prefix``, from the ref advertisement alone."""
    client, path = _transport(url, ssh_command)
    try:
        result = client.get_refs(path.encode("utf-8") if isinstance(path, str) else path)
    except _transport_errors() as exc:
        raise _remote_error(url, exc) from exc
    refs = getattr(result, "refs", result)
    return _text_refs(refs, prefix)


def _text_refs(refs: Mapping[bytes, bytes | None], prefix: str) -> dict[str, str]:
    raw = prefix.encode("utf-8")
    out: dict[str, str] = {}
    for name, sha in refs.items():
        if sha is None or not name.startswith(raw) or name.endswith(b"^{}"):
            continue
        try:
            out[name.decode("utf-8")] = sha.decode("ascii")
        except UnicodeDecodeError:
            continue
    return out
