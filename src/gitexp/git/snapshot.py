"""Code as a tree: the work tree's state and its snapshot commit when dirty
(through a private index), diffs between commits, a commit's files exported."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field

from gitexp.errors import (
    GitExpError,
    ObjectMissing,
)
from gitexp.git.base import MODE_TREE, _git_env
from gitexp.git.objects import GitObjects


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
    unreadable: list[str] = field(default_factory=list)  # changed while git read them


class StatusProbe:
    """``git status`` of a work tree, started at once and read later."""

    ARGS = ("status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames")

    def __init__(self, work_tree: str) -> None:
        if shutil.which("git") is None:
            raise GitExpError("the git command is not installed or not on PATH")
        try:
            self._proc = subprocess.Popen(
                ["git", *self.ARGS],
                cwd=work_tree,
                env=_git_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError as exc:
            raise GitExpError(f"cannot run git status: {exc.strerror or exc}") from exc
        self._result: tuple[bytes, bytes] | None = None

    def output(self) -> str:
        """What git printed; GitExpError when it failed."""
        out, err = self._wait()
        if self._proc.returncode != 0:
            msg = err.decode("utf-8", "replace").strip().splitlines()
            raise GitExpError(f"git status failed: {msg[-1] if msg else self._proc.returncode}")
        return out.decode("utf-8", "surrogateescape")

    def close(self) -> None:
        """Wait for git (a caller that no longer needs its output); idempotent."""
        self._wait()

    def _wait(self) -> tuple[bytes, bytes]:
        if self._result is None:
            self._result = self._proc.communicate()
        return self._result


class GitSnapshot(GitObjects):
    """Snapshots of the work tree and exports of a commit's tree."""

    def status_probe(self) -> StatusProbe | None:
        """Start ``git status`` for :meth:`worktree_state` now and return at once,
        so that the caller's other work overlaps it (None in a bare repository)."""
        if self.bare or self.work_tree is None:
            return None
        return StatusProbe(self.work_tree)

    def worktree_state(
        self, large_threshold: int, tmp_dir: str, probe: StatusProbe | None = None
    ) -> WorkTreeState:
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
        out = (probe or StatusProbe(self.work_tree)).output()
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
            args = ["add", "-A", "--ignore-errors", "--", "."]
            args += [f":(exclude,literal){p}" for p in large]
            # a file rewritten by another process while git reads it cannot be
            # added: snapshot everything else and say which paths were skipped
            unreadable = self._add_all(args, env)
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
        state.unreadable = unreadable
        return state

    def _add_all(self, args: list[str], env: Mapping[str, str]) -> list[str]:
        proc = subprocess.run(
            ["git", *args], cwd=self.work_tree, env=_git_env(env), capture_output=True
        )
        if proc.returncode == 0:
            return []
        errors = proc.stderr.decode("utf-8", "replace").splitlines()
        skipped = sorted(
            {ln.split("'")[1] for ln in errors if ln.startswith("error:") and ln.count("'") >= 2}
        )
        if not skipped:
            raise GitExpError(f"git add failed: {errors[-1] if errors else proc.returncode}")
        return skipped

    def diff_stat(self, base: str, other: str) -> str:
        """``git diff --stat`` between two commits."""
        # --no-color: a user's color.ui=always must not put escapes into code.json
        return self._run_git(["diff", "--stat", "--no-color", base, other]).rstrip("\n")

    def diff_text(self, base: str, other: str, color: bool = False) -> str:
        """The source diff between two commits, as ``git diff`` prints it."""
        args = ["diff", "--color=always" if color else "--no-color", base, other]
        return self._run_git(args)

    def export_tree(self, commit: str, dest: str, tmp_dir: str) -> list[str]:
        """Write the files of ``commit`` into the empty directory ``dest``.

        Done through a private, temporary index (``read-tree`` then
        ``checkout-index --prefix``), so git's own attributes and filters apply
        while the user's index, work tree, HEAD, branches and stash are never
        touched, and no worktree is registered in ``.git/worktrees``: an
        interrupted export leaves at most files in ``dest``. Returns the paths of
        submodules, which are not materialised.
        """
        if not self.has_object(commit):
            raise ObjectMissing(f"git object {commit} is missing from the repository", commit)
        os.makedirs(tmp_dir, exist_ok=True)
        fd, tmp_index = tempfile.mkstemp(prefix="index-", dir=tmp_dir)
        os.close(fd)
        os.unlink(tmp_index)  # read-tree writes a fresh index here
        try:
            env = {"GIT_INDEX_FILE": tmp_index}
            self._run_git(["read-tree", commit], env=env)
            prefix = os.path.join(os.path.abspath(dest), "")
            self._run_git(["checkout-index", "--all", "--force", f"--prefix={prefix}"], env=env)
        finally:
            for name in (tmp_index, tmp_index + ".lock"):
                if os.path.exists(name):
                    os.unlink(name)
        return self.submodules(self.commit_info(commit).tree)

    def submodules(self, tree: str, prefix: str = "") -> list[str]:
        """Paths of submodule links (gitlinks) below a tree."""
        out: list[str] = []
        for name, (mode, child) in sorted(self.read_tree(tree).items()):
            if mode == MODE_TREE:
                out += self.submodules(child, f"{prefix}{name}/")
            elif mode == 0o160000:
                out.append(f"{prefix}{name}")
        return out
