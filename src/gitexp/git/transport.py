"""Talking to remotes: push (fast-forward only, compare-and-swap), fetch,
the ref advertisement, remote ref deletion; one clear error for what fails.

Push, fetch and the advertisement go through the ``git`` binary (git is a
requirement of git-exp already): its pack code is C, and it speaks every
transport, credential helper, ``url.<base>.insteadOf`` and proxy setting the
user's git does. Measured with 10,000 runs, dulwich's pack generation and
indexing in Python made a push 7x slower than ``git push`` of the same refs
(docs/benchmarks.md). Deleting remote refs still goes through dulwich.

- **Advertisement**: ``git ls-remote --refs URL``, filtered by prefix here.
- **Fetch**: by object id (``git fetch --stdin URL`` with the tip shas the
  advertisement gave, no destination): the objects land in this repository's
  object store as one pack, git checks that they are connected, and no ref,
  no ``FETCH_HEAD`` is written. Which refs move, and whether a fetched run
  may be taken at all, is decided above this layer.
- **Push**: through a *scratch repository*: a temporary bare repository under
  ``.git/exp/tmp`` whose objects are this one's (``objects/info/alternates``)
  and whose ``packed-refs`` holds exactly the refs to push, each pinned to the
  sha decided before (the artifacts of that sha went first); its config
  includes this repository's (credentials, ``http.*``, ``url.*``). One glob
  refspec per namespace pushes them all (``git push`` matches explicit
  refspecs against the remote's refs one by one, quadratic at 100,000 refs).
  Without ``force`` git refuses what is not a fast-forward; with it, every ref
  is forced *with a lease* on the value the advertisement showed (the scratch
  repository's remote-tracking refs), so a ref that moved meanwhile is
  refused. The remote moves each ref by compare-and-swap (``receive-pack``),
  after the whole pack arrived.

Every git process started here dies with the process that started it
(``PR_SET_PDEATHSIG``), so a killed ``git exp push`` never leaves a push
running on its own.
"""

from __future__ import annotations

import contextlib
import enum
import hashlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gitexp.errors import (
    AuthError,
    GitExpError,
    RemoteError,
)
from gitexp.git.base import _located_git_env
from gitexp.git.objects import GitObjects

ProgressText = Callable[[str], None]
ObjectsFn = Callable[[int, int, int], None]

_TRACKING = "gitexp-target"  # the scratch repository's name for the remote
_UNITS = {"bytes": 1, "byte": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40}
_WRITING = re.compile(r"Writing objects:\s+\d+% \((\d+)/(\d+)\)(?:, ([\d.]+) (bytes?|[KMGT]iB))?")


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


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """In a child about to exec git: be killed when the parent dies (Linux)."""
    if _PRCTL is not None:
        _PRCTL(1, 9)  # PR_SET_PDEATHSIG, SIGKILL


def _load_prctl() -> Any:
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl
    except (OSError, AttributeError):  # not Linux
        return None


_PRCTL = _load_prctl() if os.name == "posix" else None


def _transfer_env(ssh_command: str | None) -> dict[str, str]:
    return _located_git_env({"GIT_SSH_COMMAND": ssh_command} if ssh_command else None)


@dataclass
class _Outcome:
    code: int
    stdout: bytes
    stderr: str  # the last 64 KiB of it


def _run_transfer(
    args: Sequence[str],
    url: str,
    ssh_command: str | None,
    stdin: bytes = b"",
    on_text: ProgressText | None = None,
) -> _Outcome:
    """Run ``git args...``, feeding ``stdin``, streaming stderr to ``on_text``."""
    if shutil.which("git") is None:
        raise GitExpError("the git command is not installed or not on PATH")
    try:
        proc = subprocess.Popen(
            ["git", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=_transfer_env(ssh_command),
            preexec_fn=_die_with_parent if _PRCTL is not None else None,
        )
    except OSError as exc:
        raise RemoteError(f"{url}: cannot run git: {exc.strerror or exc}", url) from exc
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    pin, pout = proc.stdin, proc.stdout
    out: list[bytes] = []

    def feed() -> None:
        try:
            if stdin:
                pin.write(stdin)
            pin.close()
        except OSError:  # git is gone: its exit status says why
            pass

    def drain() -> None:
        out.append(pout.read())

    workers = [threading.Thread(target=feed, daemon=True), threading.Thread(target=drain)]
    for w in workers:
        w.start()
    tail = ""
    fd = proc.stderr.fileno()
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        text = chunk.decode("utf-8", "replace")
        tail = (tail + text)[-65536:]
        if on_text is not None:
            on_text(text)
    for w in workers:
        w.join()
    proc.stderr.close()
    pout.close()
    code = proc.wait()
    return _Outcome(code, b"".join(out), tail)


def _failure(url: str, stderr: str) -> GitExpError:
    """One clear error for a git transfer that failed as a whole."""
    lines = [ln.strip() for ln in stderr.replace("\r", "\n").splitlines() if ln.strip()]
    lines = [ln for ln in lines if not ln.startswith(("hint:", "remote: Enumerating"))]
    text = "\n".join(lines)
    low = text.lower()
    if (
        "authentication failed" in low
        or "could not read username" in low
        or "terminal prompts disabled" in low
        or "permission denied (publickey" in low
        or "the requested url returned error: 401" in low
        or "the requested url returned error: 403" in low
    ):
        return AuthError(f"{url}: authentication failed (check your credentials)", url)
    if (
        "does not appear to be a git repository" in low
        or "not a git repository" in low
        or ("no such file or directory" in low and "fatal: '" in low)
        or "repository not found" in low
        or ("repository '" in low and "not found" in low)
        or "the requested url returned error: 404" in low
    ):
        return RemoteError(f"{url} is not a git repository (or you have no access to it)", url)
    for needle in (
        "could not resolve host",
        "connection refused",
        "failed to connect",
        "unable to connect",
        "connection timed out",
        "network is unreachable",
        "no route to host",
        "couldn't connect",
    ):
        if needle in low:
            return RemoteError(f"{url}: cannot connect: {needle}", url)
    fatal = [ln for ln in lines if ln.startswith(("fatal:", "error:"))]
    detail = (fatal or lines or ["the transfer failed"])[-1]
    detail = detail.removeprefix("fatal: ").removeprefix("error: ")
    return RemoteError(f"{url}: {detail[:300]}", url)


def _config_value(text: str) -> str:
    """``text`` quoted for a git config file."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def _writing_progress(on_objects: ObjectsFn | None) -> Callable[[str], None]:
    """A stderr reader that turns git's ``Writing objects: ...`` into counts."""
    pending = [""]

    def read(text: str) -> None:
        if on_objects is None:
            return
        parts = (pending[0] + text).replace("\n", "\r").split("\r")
        pending[0] = parts.pop()[-500:]
        for part in parts:
            m = _WRITING.search(part)
            if m:
                nbytes = int(float(m.group(3)) * _UNITS[m.group(4)]) if m.group(3) else 0
                on_objects(int(m.group(1)), int(m.group(2)), nbytes)

    return read


def _namespaces(names: Iterator[str] | Sequence[str]) -> list[str]:
    """The namespaces (``refs/<top>/``) of ref names, sorted."""
    return sorted({"/".join(n.split("/", 2)[:2]) + "/" for n in names})


class RefListing(dict[str, str]):
    """A remote's refs (name -> sha), with the listing they were read from."""

    def __init__(self, refs: Mapping[str, str], text: str = "") -> None:
        super().__init__(refs)
        self.text = text

    def digest(self, prefix: str) -> str:
        """:func:`gitexp.git.refs.refs_digest` of the listed refs under
        ``prefix``, hashed from the listing's own lines (git lists refs in name
        order, so those under one prefix are one block): no parsing, a few ms
        for 100,000 refs. A listing in another order only gives a digest that
        matches nothing."""
        needle = "\t" + prefix
        first = self.text.find(needle)
        if first < 0:
            return hashlib.sha1(b"").hexdigest()
        start = self.text.rfind("\n", 0, first) + 1
        end = self.text.find("\n", self.text.rfind(needle))
        block = self.text[start:] + "\n" if end < 0 else self.text[start : end + 1]
        return hashlib.sha1(block.encode("utf-8")).hexdigest()


def remote_refs(
    url: str,
    prefix: str | Sequence[str],
    ssh_command: str | None = None,
    git_dir: str | None = None,
) -> RefListing:
    """The refs of a remote under ``prefix`` (one or several), from the ref
    advertisement alone (``git ls-remote``: nothing is downloaded).

    ``git_dir``: the repository whose config applies (``url.*``, ``http.*``).
    """
    prefixes = (prefix,) if isinstance(prefix, str) else tuple(prefix)
    args = ["ls-remote", "--refs", url]
    if git_dir is not None:
        args = ["--git-dir", git_dir, *args]
    got = _run_transfer(args, url, ssh_command)
    if got.code != 0:
        raise _failure(url, got.stderr)
    try:
        text = got.stdout.decode("utf-8")
    except UnicodeDecodeError:  # a ref name that is not UTF-8 (not one of ours): left out
        text = got.stdout.decode("utf-8", "replace")
    # one regular expression over the whole listing: 100,000 refs in a few ms
    names = "|".join(re.escape(p) for p in prefixes)
    pattern = re.compile(f"^([0-9a-f]{{40}})\t((?:{names})[^\n\ufffd]*)$", re.MULTILINE)
    return RefListing({name: sha for sha, name in pattern.findall(text)}, text)


FETCH_PACK_FROM = 2000  # wanted commits from which fetch goes through git fetch-pack


def _native(url: str) -> bool:
    """True for a URL ``git fetch-pack`` speaks itself (no remote helper)."""
    if url.startswith(("ssh://", "git://", "file://", "git+ssh://", "ssh+git://")):
        return True
    if "://" in url:
        return False  # http(s) and other helpers
    return True  # a path, or scp-like user@host:path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class FetchedPack:
    """A pack ``git fetch-pack`` kept, its objects checked for completeness in the
    background (``git rev-list --objects``, as ``git fetch`` checks a fetch)."""

    def __init__(self, git_dir: str, tips: Sequence[str], keep: str | None) -> None:
        self.keep = keep
        self._error: str | None = None
        try:
            self._proc: subprocess.Popen[bytes] | None = subprocess.Popen(
                [
                    "git",
                    "--git-dir",
                    git_dir,
                    "rev-list",
                    "--objects",
                    "--stdin",
                    "--not",
                    "--all",
                    "--quiet",
                    "--alternate-refs",
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                env=_located_git_env(None),
            )
        except OSError as exc:
            self._proc = None
            self._error = f"cannot run git rev-list: {exc.strerror or exc}"
            return
        proc = self._proc
        assert proc.stdin is not None
        body = "".join(f"{t}\n" for t in tips).encode("ascii")

        def feed() -> None:
            try:
                assert proc.stdin is not None
                proc.stdin.write(body)
                proc.stdin.close()
            except OSError:
                pass

        self._feeder = threading.Thread(target=feed, daemon=True)
        self._feeder.start()

    def finish(self) -> str | None:
        """Wait for the check; None when every object the tips reach is here,
        else why not (then no ref may point at them)."""
        proc = self._proc
        if proc is not None:
            self._feeder.join()
            err = b""
            if proc.stderr is not None:
                err = proc.stderr.read()
                proc.stderr.close()
            if proc.wait() != 0:
                text = err.decode("utf-8", "replace").strip().splitlines()
                self._error = "the remote sent an incomplete pack" + (
                    f" ({text[-1][:200]})" if text else ""
                )
            self._proc = None
        return self._error

    def release(self) -> None:
        """Drop the pack's ``.keep`` (its objects are referenced now, or not needed)."""
        self.finish()
        if self.keep is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.keep)
            self.keep = None


class GitTransport(GitObjects):
    """Moving objects and refs to and from remotes."""

    def remote_refs(
        self, url: str, prefix: str | Sequence[str], ssh_command: str | None = None
    ) -> RefListing:
        """The remote's refs under ``prefix``, with this repository's config."""
        return remote_refs(url, prefix, ssh_command, git_dir=self.common_dir)

    def push(
        self,
        url: str,
        refs: Mapping[str, str],
        ssh_command: str | None = None,
        progress: ProgressText | None = None,
        force: bool = False,
        on_objects: ObjectsFn | None = None,
        remote: Mapping[str, str] | None = None,
    ) -> list[RefPush]:
        """Push ``refs`` (full name -> local sha) to the same names on ``url``.

        Only fast-forwards, unless ``force``: a remote ref whose commit is not
        an ancestor of ours is left alone and reported as ``rejected``. Objects
        travel in one pack before the remote moves any ref; each ref moves by
        compare-and-swap against the value the remote advertised (``remote``:
        that advertisement when the caller has it already). ``progress`` gets
        git's progress text; ``on_objects(done, total, bytes)`` is called as
        the pack's objects are written.
        """
        if remote is None:
            remote = self.remote_refs(url, _namespaces(list(refs)), ssh_command)
        plan = self.plan_push(remote, refs, force)
        send = {
            name: step.new
            for name, step in plan.items()
            if step.status in (SyncStatus.NEW, SyncStatus.UPDATED, SyncStatus.FORCED)
        }
        if send:
            leases = {name: remote.get(name) for name in send} if force else None
            refused = self._git_push(url, send, leases, ssh_command, progress, on_objects)
            for name, reason in refused.items():
                if name in plan:
                    plan[name].status = SyncStatus.REJECTED
                    plan[name].reason = reason
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

    @contextlib.contextmanager
    def _scratch(self, url: str, tracking: bool = False) -> Iterator[str]:
        """A temporary bare repository sharing this one's objects and config.

        ``tracking``: the remote gets a fetch refspec, so that the refs of
        ``refs/remotes/<it>/`` stand for what the remote advertised (the leases
        of ``--force-with-lease``). Without one, git does not write a
        remote-tracking ref per pushed ref (10,000 loose files for 10,000 runs,
        a second, then as long again to delete them)."""
        base = os.path.join(self.exp_dir, "tmp")
        os.makedirs(base, exist_ok=True)
        path = tempfile.mkdtemp(prefix="push-", dir=base)
        try:
            for d in ("objects/info", "objects/pack", "refs", "hooks"):
                os.makedirs(os.path.join(path, d))
            with open(os.path.join(path, "HEAD"), "w", encoding="utf-8") as f:
                f.write("ref: refs/heads/gitexp-scratch\n")
            with open(os.path.join(path, "objects", "info", "alternates"), "w") as f:
                f.write(os.path.join(self.common_dir, "objects") + "\n")
            own = os.path.join(self.common_dir, "config")
            with open(os.path.join(path, "config"), "w", encoding="utf-8") as f:
                f.write(
                    f"[include]\n\tpath = {_config_value(own)}\n"
                    "[core]\n\trepositoryformatversion = 0\n\tbare = true\n"
                    f"\thooksPath = {_config_value(os.path.join(path, 'hooks'))}\n"
                    f'[remote "{_TRACKING}"]\n\turl = {_config_value(url)}\n'
                    + (f"\tfetch = +refs/*:refs/remotes/{_TRACKING}/*\n" if tracking else "")
                )
            yield path
        finally:
            shutil.rmtree(path, ignore_errors=True)

    def _git_push(
        self,
        url: str,
        send: Mapping[str, str],
        leases: Mapping[str, str | None] | None,
        ssh_command: str | None,
        progress: ProgressText | None,
        on_objects: ObjectsFn | None,
    ) -> dict[str, str]:
        """Push ``send`` (name -> sha) with git; return the refs git refused, with why."""
        with self._scratch(url, tracking=leases is not None) as scratch:
            refs = dict(send)
            for name, old in (leases or {}).items():
                if old is not None:  # absent: the lease expects the remote ref absent
                    refs[f"refs/remotes/{_TRACKING}/{name[len('refs/') :]}"] = old
            body = "".join(f"{refs[n]} {n}\n" for n in sorted(refs))
            with open(os.path.join(scratch, "packed-refs"), "w", encoding="utf-8") as f:
                f.write("# pack-refs with: peeled fully-peeled sorted \n" + body)
            args = [
                "--git-dir",
                scratch,
                "push",
                "--porcelain",
                "--progress",
                "--no-verify",
                "--no-recurse-submodules",
            ]
            if leases is not None:
                args.append("--force-with-lease")
            args.append(_TRACKING)
            args += [f"{ns}*:{ns}*" for ns in _namespaces(list(send))]
            counts = _writing_progress(on_objects)

            def on_text(text: str) -> None:
                counts(text)
                if progress is not None:
                    progress(text)

            got = _run_transfer(args, url, ssh_command, on_text=on_text)
        refused: dict[str, str] = {}
        seen: set[str] = set()
        for line in got.stdout.decode("utf-8", "replace").splitlines():
            parts = line.split("\t")
            if len(parts) < 3 or len(parts[0]) != 1:
                continue
            flag, spec, summary = parts[0], parts[1], parts[2]
            name = spec.rpartition(":")[2]
            seen.add(name)
            if flag == "!":
                reason = summary.strip()
                if "stale info" in reason:
                    reason = "the remote run moved since it was looked at; push again"
                elif "non-fast-forward" in reason or "fetch first" in reason:
                    reason = (
                        "the remote run has commits this repository lacks "
                        "(git exp fetch, then look at both)"
                    )
                else:
                    reason = f"the remote refused: {reason}"
                refused[name] = reason
        if got.code != 0 and not seen:
            raise _failure(url, got.stderr)
        for name in send:
            if name not in seen and name not in refused:
                refused[name] = "git did not report this ref; push again"
        return refused

    def fetch(
        self,
        url: str,
        prefix: str | Sequence[str],
        ssh_command: str | None = None,
        progress: ProgressText | None = None,
        listed: Mapping[str, str] | None = None,
    ) -> dict[str, str]:
        """Download the objects of the remote's refs under ``prefix`` that are not
        here. Returns those refs (name -> sha); no local ref is created or moved.
        ``listed``: the remote's refs under ``prefix`` as a listing made moments
        ago gave them (one connection for several namespaces), not listed again."""
        refs = dict(listed) if listed is not None else self.remote_refs(url, prefix, ssh_command)
        tips = sorted(set(refs.values()))
        missing = sorted(set(tips) - self.present(tips))
        if missing:
            pack = self.fetch_objects(url, missing, ssh_command, progress)
            if pack is not None:
                problem = pack.finish()
                pack.release()
                if problem:
                    raise RemoteError(f"{url}: {problem}", url)
        return refs

    def fetch_objects(
        self,
        url: str,
        shas: Sequence[str],
        ssh_command: str | None = None,
        progress: ProgressText | None = None,
    ) -> FetchedPack | None:
        """Download the objects of the commits ``shas`` (tips the remote advertised)
        and everything they reach that is not here, as one pack. No ref moves.

        A tip that moved on the remote since it was advertised may be refused by
        an old server ("not our ref"): the caller looks at what arrived.

        Many tips over a native transport (a path, ``file://``, ``ssh://``,
        ``git://``) go through ``git fetch-pack``: ``git fetch --stdin`` spends
        time quadratic in the number of wanted commits before it connects (9 s
        for 100,000, 0.1 s for 10,000). Then the pack is kept (a ``.keep`` file:
        no gc drops its objects before refs point at them) and its objects are
        checked for completeness in the background, as ``git fetch`` checks
        them; the caller calls :meth:`FetchedPack.finish` before it creates a
        ref, and :meth:`FetchedPack.release` once its refs exist. Otherwise
        (HTTP, fewer tips) ``git fetch`` does both itself and None is returned.
        """
        want = sorted(set(shas))
        if not want:
            return None
        if len(want) >= FETCH_PACK_FROM and _native(url):
            return self._fetch_pack(url, want, ssh_command, progress)
        args = [
            "--git-dir",
            self.common_dir,
            "-c",
            "fetch.unpackLimit=1",  # one pack, written atomically, never half the objects
            "-c",
            "transfer.unpackLimit=1",
            "fetch",
            "--no-tags",
            "--no-write-fetch-head",
            "--no-auto-gc",
            "--no-recurse-submodules",
            "--no-prune",
            "--no-show-forced-updates",
            "--progress",
            "--stdin",
            url,
        ]
        stdin = "".join(f"{sha}\n" for sha in want).encode("ascii")
        got = _run_transfer(args, url, ssh_command, stdin=stdin, on_text=progress)
        if got.code != 0:
            raise _failure(url, got.stderr)
        return None

    def _fetch_pack(
        self,
        url: str,
        want: list[str],
        ssh_command: str | None,
        progress: ProgressText | None,
    ) -> FetchedPack:
        self._drop_stale_keeps()
        # the URL as git fetch would use it (url.<base>.insteadOf applies)
        got = _run_transfer(
            ["--git-dir", self.common_dir, "ls-remote", "--get-url", url], url, None
        )
        real = got.stdout.decode("utf-8", "replace").strip() if got.code == 0 else ""
        args = [
            "--git-dir",
            self.common_dir,
            "-c",
            "fetch.unpackLimit=1",
            "-c",
            "transfer.unpackLimit=1",
            "fetch-pack",
            "--stdin",
            "--keep",
            "--thin",
            real or url,
        ]
        stdin = "".join(f"{sha}\n" for sha in want).encode("ascii")
        got = _run_transfer(args, url, ssh_command, stdin=stdin, on_text=progress)
        if got.code != 0:
            raise _failure(url, got.stderr)
        keep = None
        for line in got.stdout.decode("ascii", "replace").splitlines():
            if line.startswith(("keep\t", "pack\t")) and len(line) > 5:
                name = line[5:].strip()
                if re.fullmatch(r"[0-9a-f]{40,64}", name):
                    keep = os.path.join(self.common_dir, "objects", "pack", f"pack-{name}.keep")
        return FetchedPack(self.common_dir, want, keep)

    def _drop_stale_keeps(self) -> None:
        """Remove the ``.keep`` files a fetch-pack of a dead git-exp left on its pack
        (the process writes its pid in them; one still running keeps its own)."""
        folder = os.path.join(self.common_dir, "objects", "pack")
        try:
            names = [n for n in os.listdir(folder) if n.endswith(".keep")]
        except OSError:
            return
        host = socket.gethostname()
        for name in names:
            path = os.path.join(folder, name)
            try:
                with open(path, encoding="utf-8", errors="replace") as f:
                    text = f.read(200)
            except OSError:
                continue
            m = re.match(r"fetch-pack (\d+) on (\S+)", text)
            if m is None or m.group(2) != host or _pid_alive(int(m.group(1))):
                continue
            with contextlib.suppress(OSError):
                os.unlink(path)

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


# ------------------------------------------------------------------ dulwich


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


def clone_repository(
    url: str, dest: str, ssh_command: str | None = None, progress: ProgressText | None = None
) -> None:
    """``git clone URL DEST`` (the branches, as git clones them; no run yet)."""
    got = _run_transfer(
        ["clone", "--progress", "--no-recurse-submodules", url, dest],
        url,
        ssh_command,
        on_text=progress,
    )
    if got.code != 0:
        raise _failure(url, got.stderr)
