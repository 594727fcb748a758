"""``checkout-code``: a branch at a run's code commit, checked out in the user's work tree.

All or nothing: everything that can be checked is checked before the work tree
changes (the branch name, uncommitted work, every code file's place and bytes);
a restore that still fails afterwards (a full disk) switches back to what was
checked out, removes what was restored and deletes the branch it created.
"""

from __future__ import annotations

import os
from typing import Any

from gitexp.cas import contained_path
from gitexp.errors import (
    BranchExists,
    CannotReproduce,
    DirtyWorkTree,
    GitExpError,
    StoreError,
    UsageError,
)
from gitexp.git import MODE_TREE, GitRepo
from gitexp.records import ArtifactEntry
from gitexp.store import ExpStore

_MODE_LINK = 0o120000


def checkout_code(store: ExpStore, address: str, branch: str | None = None) -> dict[str, Any]:
    """Create ``branch`` (default ``exp/<run-id>``) at the run's code commit and check
    it out. Refuses a work tree with uncommitted changes; restores the large code
    files the snapshot kept in the CAS where nothing is in their way, never through
    a symlink that leaves the repository. A refusal or a failed restore leaves no
    branch created, nothing checked out and the work tree as it was."""
    repo = store.repo
    if repo.work_tree is None:
        raise UsageError("checkout-code needs a work tree; this repository is bare")
    root = repo.work_tree
    rec = store.read_settled(address)
    commit = rec.code_commit
    if not commit or not repo.has_object(commit):
        raise CannotReproduce(
            f"the code commit of run {rec.ref.short} "
            f"({commit[:12] if commit else 'none'}) is not in this repository"
        )
    name = branch or f"exp/{rec.run_id}"
    if not repo.check_branch_name(name):
        raise UsageError(f"{name!r} is not a valid branch name")
    dirty = repo.uncommitted_changes()
    if dirty:
        shown = ", ".join(dirty[:5]) + (f" and {len(dirty) - 5} more" if len(dirty) > 5 else "")
        raise DirtyWorkTree(
            f"your work tree has uncommitted changes ({shown}): commit or stash them "
            "first; nothing was changed",
            dirty,
        )
    existing = repo.get_ref(f"refs/heads/{name}")
    if existing is not None and existing != commit:
        raise BranchExists(
            f"branch {name} already exists at {existing[:12]}, not at the run's code {commit[:12]}",
            name,
            existing,
        )
    tree = repo.commit_info(commit).tree
    code = [a for a in rec.artifacts if a.role == "code"]
    for entry in code:  # before anything changes: every place and every object
        _check_place(repo, tree, root, entry.path)
        if store.cas.has(entry.blake3):
            try:
                store.cas.verify(entry.blake3)
            except StoreError as exc:
                raise StoreError(f"{entry.path}: {exc}; nothing was changed") from None
    before_branch, before_head = repo.branch(), repo.require_head()
    try:
        if existing is None:
            repo.switch_to_new_branch(name, commit)
        else:
            repo.switch_to_branch(name)
    except GitExpError as exc:
        if "would be overwritten" in str(exc):  # untracked files of the user's in the way
            raise DirtyWorkTree(f"{exc}; nothing was changed") from exc
        raise
    try:
        restored, skipped, missing = _restore(store, repo, tree, root, code)
    except BaseException:
        repo.switch_back(before_branch, before_head)
        if existing is None:
            repo.delete_branch(name, commit)
        raise
    return {
        "run": rec.ref.short,
        "branch": name,
        "commit": commit,
        "created": existing is None,
        "snapshot": bool(rec.code.get("dirty")),
        "head": rec.code.get("head"),
        "restored": restored,
        "skipped": skipped,
        "missing": missing,
    }


def _check_place(repo: GitRepo, tree: str, root: str, rel: str) -> None:
    """Refuse a code file that the checkout would put beneath a symlink or a file
    of the run's code, or that a symlink on disk leads out of the repository."""
    parts = rel.split("/")
    node = tree
    for i, part in enumerate(parts[:-1]):
        found = repo.read_tree(node).get(part)
        if found is None:
            break  # not in the code: what is on disk now stays, checked below
        mode, node = found
        if mode != MODE_TREE:
            what = "a symlink" if mode == _MODE_LINK else "a file"
            where = "/".join(parts[: i + 1])
            raise StoreError(
                f"{rel}: the run's code has {what} at {where}; nothing is restored through "
                "a symlink (refused; nothing was changed)"
            )
    contained_path(root, rel)


def _restore(
    store: ExpStore, repo: GitRepo, tree: str, root: str, code: list[ArtifactEntry]
) -> tuple[list[str], list[str], list[str]]:
    """Put the code files in place: each verified into a temporary file next to
    its place, then all renamed in. On failure, nothing of them is left."""
    restored: list[str] = []
    skipped: list[str] = []  # an untracked file of the user's is there
    missing: list[str] = []  # not in the local store
    staged: list[tuple[str, str, str]] = []  # (temporary file, destination, path)
    made: list[str] = []  # directories created, parents first
    placed: list[str] = []
    try:
        for entry in code:
            dest = contained_path(root, entry.path)  # the same check as reproduce's
            if os.path.lexists(dest) and repo.lookup_path(tree, entry.path) is None:
                skipped.append(entry.path)
                continue
            if not store.cas.has(entry.blake3):
                missing.append(entry.path)
                continue
            made += _missing_dirs(os.path.dirname(dest))
            tmp = store.cas.restore_beside(entry.blake3, dest, entry.mode)
            staged.append((tmp, dest, entry.path))
        for tmp, dest, path in staged:
            if os.path.isdir(dest) and not os.path.islink(dest):
                raise StoreError(f"{path}: a directory is in the way; nothing was restored")
            os.replace(tmp, dest)
            placed.append(dest)
            restored.append(path)
    except BaseException:
        for tmp, _, _ in staged:
            _unlink_quiet(tmp)
        for dest in placed:  # the switch back restores what the code tracks
            _unlink_quiet(dest)
        for d in reversed(made):
            try:
                os.rmdir(d)
            except OSError:
                pass
        raise
    return restored, skipped, missing


def _missing_dirs(path: str) -> list[str]:
    """Create ``path`` and its missing parents; return those created, parents first."""
    todo: list[str] = []
    while not os.path.lexists(path):
        todo.append(path)
        path = os.path.dirname(path)
    for d in reversed(todo):
        os.mkdir(d)
    return list(reversed(todo))


def _unlink_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass
