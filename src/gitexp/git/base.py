"""The open repository: dulwich's handle, its directories, config and identity,
the ``git`` binary. What every part of :class:`gitexp.git.GitRepo` stands on."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from gitexp.errors import (
    GitExpError,
    NoCommits,
    NotARepository,
    UnsupportedRepository,
)

if TYPE_CHECKING:
    from gitexp.git.objects import _CatSession

MODE_FILE = 0o100644
MODE_EXEC = 0o100755
MODE_TREE = 0o040000
STALE_LOCK_SECONDS = 30.0
BIG_BLOB = 1 << 20
CAT_PROCESSES = 4  # git cat-file processes reading one big batch at once
CAT_SPLIT = 500  # ... for batches of at least twice this many objects


def _git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("LC_ALL", "C")
    env["GIT_TERMINAL_PROMPT"] = "0"
    # `git status` refreshes stat data and rewrites the user's .git/index when it
    # can take the lock; git-exp must never write the user's index.
    env["GIT_OPTIONAL_LOCKS"] = "0"
    if extra:
        env.update(extra)
    return env


# git's location variables, set for hooks: never let them point our git elsewhere
_LOCATION_VARS = (
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_QUARANTINE_PATH",
    "GIT_PREFIX",
)


def _located_git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """:func:`_git_env` for a git given its repository with ``--git-dir``: the
    location variables a hook may have set (``GIT_DIR``, ``GIT_OBJECT_DIRECTORY``,
    ...) removed, so that they cannot point it at another object store."""
    env = _git_env(extra)
    for var in _LOCATION_VARS:
        env.pop(var, None)
    return env


def _unlink_quiet(path: str | None) -> None:
    if path is not None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


def _check_supported(config: Any) -> None:
    """Refuse a repository git-exp would corrupt, before anything is written.

    git-exp writes SHA-1 loose objects and loose ref files (dulwich): in a
    SHA-256 repository (``git init --object-format=sha256``) that would put
    40-hex names where git expects 64, and in a reftable repository refs git
    never reads.
    """

    def ext(name: bytes) -> str | None:
        try:
            return bytes(config.get((b"extensions",), name)).decode("utf-8", "replace")
        except KeyError:
            return None

    fmt = (ext(b"objectformat") or "sha1").lower()
    if fmt != "sha1":
        raise UnsupportedRepository(
            f"this repository uses {fmt} object names (extensions.objectFormat): "
            "git-exp supports SHA-1 repositories only; nothing was written"
        )
    compat = ext(b"compatobjectformat")
    if compat:
        raise UnsupportedRepository(
            f"this repository keeps {compat} object names too (extensions.compatObjectFormat):"
            " git-exp supports plain SHA-1 repositories only; nothing was written"
        )
    refs = (ext(b"refstorage") or "files").lower()
    if refs != "files":
        raise UnsupportedRepository(
            f"this repository stores its refs as {refs} (extensions.refStorage): "
            "git-exp supports the files ref storage only; nothing was written"
        )


_Repo = TypeVar("_Repo", bound="RepoBase")


class RepoBase:
    """A git repository opened for git-exp (the parts of GitRepo share this)."""

    def __init__(self, path: str | os.PathLike[str] = ".") -> None:
        from dulwich.errors import NotGitRepository
        from dulwich.repo import Repo

        try:
            # Any: dulwich's own annotations (NewType ids) differ between releases
            self._repo: Any = Repo.discover(os.fspath(path))
        except NotGitRepository as exc:
            raise NotARepository(
                f"not a git repository: {os.path.abspath(path)} (run 'git init' first, "
                "or cd into your project)"
            ) from exc
        try:
            _check_supported(self._repo.get_config())
        except UnsupportedRepository:
            self._repo.close()
            raise
        self.git_dir: str = os.path.abspath(self._repo.controldir())
        self.common_dir: str = os.path.abspath(self._repo.commondir())
        self.bare: bool = self._repo.bare
        self.work_tree: str | None = None if self.bare else os.path.abspath(self._repo.path)
        self._store: Any = self._repo.object_store
        _quick_packed_refs(self._repo.refs)
        self._identity: bytes | None = None
        self._stack: Any = None  # the config stack, read once for identity and signing
        # objects read ahead in one batch (GitObjects.preloaded): sha -> (type, raw)
        self._preload: dict[bytes, tuple[int, bytes]] = {}
        self._tree_memo: dict[bytes, dict[str, tuple[int, str]]] = {}  # preloaded trees, parsed
        self._cat_session: _CatSession | None = None  # a running cat-file (cat_session)

    # ------------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Release dulwich's open pack files."""
        self._repo.close()

    def __enter__(self: _Repo) -> _Repo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def exp_dir(self) -> str:
        """``.git/exp``: git-exp's own directory, shared by all worktrees."""
        return os.path.join(self.common_dir, "exp")

    def identity(self) -> bytes:
        """The user's git identity ``Name <email>``, as git would use it.

        Read once per open repository: parsing the config stack for every
        commit cost a tenth of a small run's time.
        """
        if self._identity is None:
            self._identity = self._read_identity()
        return self._identity

    def config_stack(self) -> Any:
        """git's config stack as it was when first asked for (read once per open
        repository: the identity and the signing configuration come from it)."""
        if self._stack is None:
            self._stack = self._repo.get_config_stack()
        return self._stack

    def _read_identity(self) -> bytes:
        from dulwich.repo import get_user_identity

        name = os.environ.get("GIT_AUTHOR_NAME")
        email = os.environ.get("GIT_AUTHOR_EMAIL")
        if name and email:
            return f"{name} <{email}>".encode()
        try:
            return bytes(get_user_identity(self.config_stack()))
        except Exception:  # no identity configured: do what git does with a fallback
            import getpass
            import socket

            return f"{getpass.getuser()} <{getpass.getuser()}@{socket.gethostname()}>".encode()

    def head(self) -> str | None:
        """The sha HEAD resolves to, or None on an unborn branch."""
        try:
            return str(self._repo.head().decode("ascii"))
        except KeyError:
            return None

    def require_head(self) -> str:
        """The sha HEAD resolves to; NoCommits when there is no commit to record yet."""
        head = self.head()
        if head is None:
            raise NoCommits(
                "this repository has no commits yet: commit your code first "
                "(git add . && git commit), then run again"
            )
        return head

    def branch(self) -> str | None:
        """The current branch name, or None when HEAD is detached."""
        try:
            target = self._repo.refs.read_ref(b"HEAD")
        except KeyError:
            return None
        if target and target.startswith(b"ref: refs/heads/"):
            return str(target[len(b"ref: refs/heads/") :].decode("utf-8"))
        return None

    def remotes(self) -> dict[str, str]:
        """Remote name -> URL from the repository config."""
        config = self._repo.get_config()
        out: dict[str, str] = {}
        for section in config.sections():
            if len(section) == 2 and section[0] == b"remote":
                try:
                    out[section[1].decode()] = config.get(section, b"url").decode()
                except KeyError:
                    continue
        return out

    def config_get(self, section: str, name: str, sub: str | None = None) -> str | None:
        """A value from the repository's config stack (as :meth:`config_stack`
        read it), or None."""
        stack = self.config_stack()
        key: tuple[bytes, ...] = (
            (section.encode(), sub.encode()) if sub is not None else (section.encode(),)
        )
        try:
            return bytes(stack.get(key, name.encode())).decode()
        except KeyError:
            return None

    def config_get_all(self, section: str, sub: str | None, name: str) -> list[str]:
        """Every value of a multi-valued key (``git config --get-all``), in order."""
        stack = self.config_stack()
        key: tuple[bytes, ...] = (
            (section.encode(), sub.encode()) if sub is not None else (section.encode(),)
        )
        try:
            return [
                bytes(v).decode("utf-8", "replace") for v in stack.get_multivar(key, name.encode())
            ]
        except KeyError:
            return []

    def config_add(self, section: str, sub: str | None, name: str, value: str) -> None:
        """Add a value to a multi-valued key of the repository's own config
        (``git config --add``), unless the key already has exactly that value."""
        key = f"{section}.{sub}.{name}" if sub is not None else f"{section}.{name}"
        have = self._run_git(["config", "--get-all", key], check=False).splitlines()
        if value not in have:
            self._run_git(["config", "--add", key, value])
            self._stack = None  # read again on the next lookup

    def hooks_dir(self) -> str:
        """Where git looks for hooks: ``core.hooksPath`` (``~`` expanded, relative
        to the top of the work tree, or to the git directory of a bare
        repository), else the ``hooks`` directory of the common git directory
        (shared by linked worktrees), as ``git rev-parse --git-path hooks`` says;
        read from the config, without starting git (every run start asks)."""
        configured = self.config_get("core", "hooksPath")
        if configured:
            base = self.work_tree or self.git_dir
            return os.path.normpath(os.path.join(base, os.path.expanduser(configured)))
        return os.path.join(self.common_dir, "hooks")

    def _run_git(
        self, args: list[str], env: Mapping[str, str] | None = None, check: bool = True
    ) -> str:
        if shutil.which("git") is None:
            raise GitExpError("the git command is not installed or not on PATH")
        cwd = self.work_tree or self.git_dir
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=_git_env(env),
            capture_output=True,
        )
        if check and proc.returncode != 0:
            msg = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise GitExpError(f"git {args[0]} failed: {msg[-1] if msg else proc.returncode}")
        return proc.stdout.decode("utf-8", "surrogateescape")


def _quick_packed_refs(refs: Any) -> None:
    """Let ``refs`` (dulwich's DiskRefsContainer) read ``packed-refs`` fast.

    dulwich checks every name of the file with ``check_ref_format`` when it
    first needs one packed ref (HEAD's branch after a ``git gc``, or whether a
    new run's ref exists): 0.2 s per run start once a gc packed 10,000 run
    refs, 30 s at a million. git wrote the file; this reads it with one split
    per line and fills dulwich's own cache (same invalidation by the file's
    identity). Anything unusual in the file: dulwich's strict reader decides.
    Nothing is changed on a dulwich without that cache.
    """
    import dulwich.refs as drefs

    key_of = getattr(drefs, "_packed_refs_key", None)
    wanted = ("_packed_refs", "_peeled_refs", "_packed_refs_key", "_current_packed_refs_key")
    if key_of is None or not all(hasattr(refs, n) for n in wanted):
        return
    strict = refs.get_packed_refs

    def get_packed_refs() -> Any:
        if refs._packed_refs is not None and refs._packed_refs_key == (
            refs._current_packed_refs_key()
        ):
            return refs._packed_refs
        path = os.path.join(os.fsdecode(refs.path), "packed-refs")
        try:
            with open(path, "rb") as f:
                data = f.read()
                key = key_of(os.fstat(f.fileno()))
        except FileNotFoundError:
            refs._packed_refs, refs._peeled_refs, refs._packed_refs_key = {}, {}, None
            return refs._packed_refs
        packed: dict[bytes, bytes] = {}
        peeled: dict[bytes, bytes] = {}
        last = None
        for line in data.split(b"\n"):
            if not line or line[0] == 0x23:  # a blank line, the "# pack-refs" header
                continue
            if line[0] == 0x5E:  # "^<sha>": the peeled value of the ref above
                if last is None or len(line) != 41:
                    break
                peeled[last] = line[1:]
                continue
            sha, sep, name = line.partition(b" ")
            if not sep or len(sha) != 40 or not name.startswith(b"refs/"):
                break
            packed[name] = sha
            last = name
        else:
            refs._packed_refs, refs._peeled_refs, refs._packed_refs_key = packed, peeled, key
            return packed
        refs._packed_refs = None  # something unusual: dulwich's reader decides
        return strict()

    refs.get_packed_refs = get_packed_refs
