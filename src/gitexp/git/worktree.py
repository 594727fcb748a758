"""The user's checkout, for the one command whose purpose is to change it
(``checkout-code``): uncommitted changes, branch names, ``git switch``."""

from __future__ import annotations

import shutil
import subprocess

from gitexp.errors import (
    GitExpError,
)
from gitexp.git.base import RepoBase, _git_env


class GitWorktree(RepoBase):
    """Branch switching in the user's work tree."""

    def uncommitted_changes(self) -> list[str]:
        """Paths with staged or unstaged changes to tracked files (untracked ones
        are left out: git itself refuses to overwrite them)."""
        if self.bare or self.work_tree is None:
            return []
        out = self._run_git(["status", "--porcelain=v1", "-z", "--untracked-files=no"])
        return [item[3:] for item in out.split("\0") if len(item) > 3]

    def check_branch_name(self, name: str) -> bool:
        """True when ``name`` is a valid new branch name for git."""
        proc = subprocess.run(
            ["git", "check-ref-format", "--branch", name],
            cwd=self.work_tree or self.git_dir,
            env=_git_env(),
            capture_output=True,
        )
        return proc.returncode == 0 and not name.startswith("-")

    def switch_to_new_branch(self, name: str, commit: str) -> None:
        """Create branch ``name`` at ``commit`` and check it out (``git switch -c``).

        git refuses, and creates nothing, when the checkout would overwrite
        local changes or untracked files.
        """
        self._switch(["-c", name, commit])

    def switch_to_branch(self, name: str) -> None:
        """Check out an existing branch."""
        self._switch([name])

    def switch_back(self, branch: str | None, commit: str) -> None:
        """Check out again what was checked out before a switch: ``branch``, or
        ``commit`` detached when HEAD was. For undoing a switch whose follow-up
        failed: tracked files had no uncommitted changes before it, so any
        change to them now is the follow-up's, and is discarded."""
        target = [branch] if branch is not None else ["--detach", commit]
        self._switch(["--discard-changes", *target])

    def delete_branch(self, name: str, commit: str) -> bool:
        """Delete branch ``name`` if it still points at ``commit``
        (compare-and-swap, like ``git update-ref -d``); False when it moved."""
        ref = f"refs/heads/{name}"
        proc = subprocess.run(
            ["git", "update-ref", "-d", ref, commit],
            cwd=self.work_tree or self.git_dir,
            env=_git_env(),
            capture_output=True,
        )
        return proc.returncode == 0

    def _switch(self, args: list[str]) -> None:
        if shutil.which("git") is None:
            raise GitExpError("the git command is not installed or not on PATH")
        proc = subprocess.run(
            ["git", "switch", "--no-guess", *args],
            cwd=self.work_tree or self.git_dir,
            env=_git_env(),
            capture_output=True,
        )
        if proc.returncode != 0:
            lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            first = next((ln for ln in lines if ln.startswith(("error:", "fatal:"))), "")
            paths = [ln.strip() for ln in lines if ln.startswith("\t")]
            detail = first.partition(":")[2].strip() or (lines[-1] if lines else "")
            if paths:
                detail += " " + ", ".join(paths[:10]) + (" ..." if len(paths) > 10 else "")
            raise GitExpError(f"git switch refused: {detail}")
