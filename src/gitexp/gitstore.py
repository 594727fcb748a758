"""The git layer: the only module that imports dulwich or runs the ``git`` binary.

Objects and refs are written with dulwich as loose objects (never one pack per
run: reading thousands of single-object packs is slow). Ref updates are
compare-and-swap. The work-tree snapshot of a dirty checkout uses the ``git``
binary with a private, temporary index, so that git's own ignore rules, stat
cache and filters apply, and the user's index is never touched.

Everything above this module sees text: hex shas as ``str``, ref names as
``str``, paths in trees as ``str``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from gitexp.errors import GitExpError, NoCommits, NotARepository, ObjectMissing, StoreError

MODE_FILE = 0o100644
MODE_EXEC = 0o100755
MODE_TREE = 0o040000

# A tree change: bytes to store as a blob, an existing blob sha (as ("sha", hex)),
# or None to delete the path.
TreeValue = Any


@dataclass
class CommitInfo:
    """What the layers above need of a commit."""

    sha: str
    tree: str
    parents: list[str]
    message: str
    author: str
    commit_time: int


@dataclass
class WorkTreeState:
    """The code version of a checkout at one moment."""

    head: str
    branch: str | None
    remotes: dict[str, str]
    dirty: bool
    snapshot: str | None  # the snapshot commit when dirty, else None
    code_commit: str  # snapshot when dirty, else head
    code_tree: str
    changed: list[str] = field(default_factory=list)  # paths that differ from HEAD
    large_files: list[str] = field(default_factory=list)  # left out of the snapshot


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


class GitRepo:
    """A git repository opened for git-exp: objects, refs, and code state."""

    def __init__(self, path: str | os.PathLike[str] = ".") -> None:
        from dulwich.errors import NotGitRepository
        from dulwich.repo import Repo

        try:
            self._repo = Repo.discover(os.fspath(path))
        except NotGitRepository as exc:
            raise NotARepository(
                f"not a git repository: {os.path.abspath(path)} (run 'git init' first, "
                "or cd into your project)"
            ) from exc
        self.git_dir: str = os.path.abspath(self._repo.controldir())
        self.common_dir: str = os.path.abspath(self._repo.commondir())
        self.bare: bool = self._repo.bare
        self.work_tree: str | None = None if self.bare else os.path.abspath(self._repo.path)
        self._store = self._repo.object_store

    # ------------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Release dulwich's open pack files."""
        self._repo.close()

    def __enter__(self) -> GitRepo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def exp_dir(self) -> str:
        """``.git/exp``: git-exp's own directory, shared by all worktrees."""
        return os.path.join(self.common_dir, "exp")

    # --------------------------------------------------------------- objects
    def write_blob(self, data: bytes) -> str:
        """Store ``data`` as a loose blob; return its sha."""
        from dulwich.objects import Blob

        blob = Blob.from_string(data)
        self._store.add_object(blob)
        return blob.id.decode("ascii")

    def has_object(self, sha: str) -> bool:
        """True when the object store holds ``sha``."""
        return sha.encode("ascii") in self._store

    def _get(self, sha: str) -> Any:
        try:
            return self._store[sha.encode("ascii")]
        except KeyError as exc:
            raise ObjectMissing(f"git object {sha} is missing from the repository", sha) from exc

    def read_blob(self, sha: str) -> bytes:
        """The bytes of a blob."""
        return bytes(self._get(sha).as_raw_string())

    def read_tree(self, sha: str) -> dict[str, tuple[int, str]]:
        """A tree's entries: name -> (mode, sha)."""
        tree = self._get(sha)
        return {
            e.path.decode("utf-8", "surrogateescape"): (e.mode, e.sha.decode("ascii"))
            for e in tree.iteritems()
        }

    def iter_tree_files(self, sha: str, prefix: str = "") -> Iterator[tuple[str, int, str]]:
        """Every blob below a tree, recursively: (path, mode, sha)."""
        for name, (mode, child) in sorted(self.read_tree(sha).items()):
            path = f"{prefix}{name}"
            if mode == MODE_TREE:
                yield from self.iter_tree_files(child, path + "/")
            elif mode != 0o160000:  # submodule links have no blob here
                yield path, mode, child

    def lookup_path(self, tree: str, path: str) -> tuple[int, str] | None:
        """(mode, sha) of ``path`` inside ``tree``, or None."""
        node = tree
        parts = path.split("/")
        for i, part in enumerate(parts):
            entries = self.read_tree(node)
            if part not in entries:
                return None
            mode, sha = entries[part]
            if i == len(parts) - 1:
                return mode, sha
            if mode != MODE_TREE:
                return None
            node = sha
        return None

    def write_tree(self, entries: Mapping[str, tuple[int, str]]) -> str:
        """Write one tree from name -> (mode, sha); return its sha."""
        from dulwich.objects import Tree

        tree = Tree()
        for name, (mode, sha) in entries.items():
            tree.add(name.encode("utf-8"), mode, sha.encode("ascii"))
        self._store.add_object(tree)
        return tree.id.decode("ascii")

    def update_tree(self, base: str | None, changes: Mapping[str, TreeValue]) -> str:
        """A new tree: ``base`` with ``changes`` applied (nested paths allowed).

        A change is ``bytes`` (stored as a new blob), ``(mode, sha)`` for an
        existing object, or ``None`` to delete.
        """
        entries: dict[str, tuple[int, str]] = dict(self.read_tree(base)) if base else {}
        nested: dict[str, dict[str, TreeValue]] = {}
        for path, value in changes.items():
            head, sep, rest = path.partition("/")
            if sep:
                nested.setdefault(head, {})[rest] = value
            elif value is None:
                entries.pop(head, None)
            elif isinstance(value, (bytes, bytearray, memoryview)):
                entries[head] = (MODE_FILE, self.write_blob(bytes(value)))
            else:
                entries[head] = (int(value[0]), str(value[1]))
        for head, sub in nested.items():
            current = entries.get(head)
            sub_base = current[1] if current and current[0] == MODE_TREE else None
            sub_sha = self.update_tree(sub_base, sub)
            if self.read_tree(sub_sha):
                entries[head] = (MODE_TREE, sub_sha)
            else:
                entries.pop(head, None)
        return self.write_tree(entries)

    def identity(self) -> bytes:
        """The user's git identity ``Name <email>``, as git would use it."""
        from dulwich.repo import get_user_identity

        name = os.environ.get("GIT_AUTHOR_NAME")
        email = os.environ.get("GIT_AUTHOR_EMAIL")
        if name and email:
            return f"{name} <{email}>".encode()
        try:
            return bytes(get_user_identity(self._repo.get_config_stack()))
        except Exception:  # no identity configured: do what git does with a fallback
            import getpass
            import socket

            return f"{getpass.getuser()} <{getpass.getuser()}@{socket.gethostname()}>".encode()

    def write_commit(self, tree: str, parents: list[str], message: str) -> str:
        """Write a commit by the user's identity; return its sha."""
        from dulwich.objects import Commit

        ident = self.identity()
        now = int(time.time())
        tz = -time.timezone if not time.localtime(now).tm_isdst else -time.altzone
        commit = Commit()
        commit.tree = tree.encode("ascii")
        commit.parents = [p.encode("ascii") for p in parents]
        commit.author = commit.committer = ident
        commit.author_time = commit.commit_time = now
        commit.author_timezone = commit.commit_timezone = tz
        commit.encoding = b"UTF-8"
        commit.message = message.encode("utf-8")
        self._store.add_object(commit)
        return commit.id.decode("ascii")

    def commit_info(self, sha: str) -> CommitInfo:
        """Read a commit."""
        from dulwich.objects import Commit

        obj = self._get(sha)
        if not isinstance(obj, Commit):
            raise StoreError(f"{sha} is not a commit")
        return CommitInfo(
            sha=sha,
            tree=obj.tree.decode("ascii"),
            parents=[p.decode("ascii") for p in obj.parents],
            message=obj.message.decode("utf-8", "replace"),
            author=obj.author.decode("utf-8", "replace"),
            commit_time=obj.commit_time,
        )

    def expand_sha_prefix(self, prefix: str, candidates: Iterator[str]) -> list[str]:
        """The candidate shas that start with ``prefix``."""
        return [c for c in candidates if c.startswith(prefix)]

    # ------------------------------------------------------------------ refs
    def get_ref(self, name: str) -> str | None:
        """The sha a ref points at, or None."""
        try:
            return self._repo.refs[name.encode("utf-8")].decode("ascii")
        except KeyError:
            return None

    def refs_under(self, prefix: str) -> dict[str, str]:
        """All refs whose name starts with ``prefix`` (loose and packed)."""
        raw = prefix.encode("utf-8")
        out: dict[str, str] = {}
        refs = self._repo.refs.as_dict(raw.rstrip(b"/"))
        for name, sha in refs.items():
            out[(raw.rstrip(b"/") + b"/" + name).decode("utf-8")] = sha.decode("ascii")
        return out

    def set_ref(self, name: str, old: str | None, new: str, message: str) -> bool:
        """Compare-and-swap: point ``name`` at ``new`` only if it is still ``old``.

        ``old=None`` means the ref must not exist yet. Returns False when the
        ref had moved (the caller re-reads and retries).
        """
        ref = name.encode("utf-8")
        ident = self.identity()
        try:
            if old is None:
                return bool(
                    self._repo.refs.add_if_new(
                        ref, new.encode("ascii"), committer=ident, message=message.encode()
                    )
                )
            return bool(
                self._repo.refs.set_if_equals(
                    ref,
                    old.encode("ascii"),
                    new.encode("ascii"),
                    committer=ident,
                    message=message.encode(),
                )
            )
        except OSError as exc:
            raise StoreError(f"cannot update {name}: {exc}") from exc

    def delete_ref(self, name: str, old: str | None) -> bool:
        """Delete a ref if it still points at ``old``."""
        return bool(
            self._repo.refs.remove_if_equals(
                name.encode("utf-8"), old.encode("ascii") if old else None
            )
        )

    # ----------------------------------------------------------- code state
    def head(self) -> str | None:
        """The sha HEAD resolves to, or None on an unborn branch."""
        try:
            return self._repo.head().decode("ascii")
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
            return target[len(b"ref: refs/heads/") :].decode("utf-8")
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
        """A value from the repository's config stack, or None."""
        stack = self._repo.get_config_stack()
        key: tuple[bytes, ...] = (
            (section.encode(), sub.encode()) if sub is not None else (section.encode(),)
        )
        try:
            return bytes(stack.get(key, name.encode())).decode()
        except KeyError:
            return None

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

    def worktree_state(self, large_threshold: int, tmp_dir: str) -> WorkTreeState:
        """The code version of the checkout; a snapshot commit when it is dirty.

        The snapshot is made like ``git stash create`` with untracked,
        non-ignored files included, through a temporary copy of the index, so
        the user's index, work tree, HEAD and stash are untouched. Files larger
        than ``large_threshold`` bytes that are dirty are left out of the
        snapshot and listed in ``large_files``: the caller stores them in the CAS.
        """
        head = self.require_head()
        head_tree = self.commit_info(head).tree
        state = WorkTreeState(
            head=head,
            branch=self.branch(),
            remotes=self.remotes(),
            dirty=False,
            snapshot=None,
            code_commit=head,
            code_tree=head_tree,
        )
        if self.bare or self.work_tree is None:
            return state
        out = self._run_git(
            ["status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames"]
        )
        changed: list[str] = []
        for item in out.split("\0"):
            if len(item) > 3:
                changed.append(item[3:])
        if not changed:
            return state
        large: list[str] = []
        for rel in changed:
            full = os.path.join(self.work_tree, rel)
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                continue
            if st.st_size > large_threshold and not os.path.islink(full):
                large.append(rel)
        os.makedirs(tmp_dir, exist_ok=True)
        fd, tmp_index = tempfile.mkstemp(prefix="index-", dir=tmp_dir)
        os.close(fd)
        try:
            real_index = self._repo.index_path()
            if os.path.exists(real_index):
                shutil.copyfile(real_index, tmp_index)
            else:
                os.unlink(tmp_index)
            env = {"GIT_INDEX_FILE": tmp_index}
            args = ["add", "-A", "--", "."]
            args += [f":(exclude,literal){p}" for p in large]
            self._run_git(args, env=env)
            if large:  # a tracked large file keeps its HEAD version in the snapshot
                self._run_git(
                    ["reset", "-q", head, "--", *(f":(literal){p}" for p in large)], env=env
                )
            tree = self._run_git(["write-tree"], env=env).strip()
        finally:
            if os.path.exists(tmp_index):
                os.unlink(tmp_index)
            lock = tmp_index + ".lock"
            if os.path.exists(lock):
                os.unlink(lock)
        if tree == head_tree and not large:
            return state
        message = (
            f"git-exp snapshot of the work tree at {head[:12]}\n\n"
            f"{len(changed)} changed or untracked path(s) recorded for an experiment run.\n"
        )
        snap = self.write_commit(tree, [head], message)
        state.dirty = True
        state.snapshot = snap
        state.code_commit = snap
        state.code_tree = tree
        state.changed = sorted(changed)
        state.large_files = sorted(large)
        return state

    def diff_stat(self, base: str, other: str) -> str:
        """``git diff --stat`` between two commits."""
        # --no-color: a user's color.ui=always must not put escapes into code.json
        return self._run_git(["diff", "--stat", "--no-color", base, other]).rstrip("\n")

    def diff_text(self, base: str, other: str, color: bool = False) -> str:
        """The source diff between two commits, as ``git diff`` prints it."""
        args = ["diff", "--color=always" if color else "--no-color", base, other]
        return self._run_git(args)

    def gc_auto(self) -> None:
        """Let git pack loose objects when it thinks it is time."""
        self._run_git(["gc", "--auto", "--quiet"], check=False)


def open_repo(path: str | os.PathLike[str] = ".") -> GitRepo:
    """Open the git repository containing ``path``."""
    return GitRepo(path)
