"""``checkout-code``: a branch at a run's code commit, checked out in the user's work tree."""

from __future__ import annotations

import os
from typing import Any

from gitexp.errors import (
    BranchExists,
    CannotReproduce,
    DirtyWorkTree,
    GitExpError,
    StoreError,
    UsageError,
)
from gitexp.store import ExpStore


def checkout_code(store: ExpStore, address: str, branch: str | None = None) -> dict[str, Any]:
    """Create ``branch`` (default ``exp/<run-id>``) at the run's code commit and check
    it out. Refuses a work tree with uncommitted changes; restores the large code
    files the snapshot kept in the CAS where nothing is in their way."""
    repo = store.repo
    if repo.work_tree is None:
        raise UsageError("checkout-code needs a work tree; this repository is bare")
    rec = store.get(address)
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
    try:
        if existing is None:
            repo.switch_to_new_branch(name, commit)
        else:
            repo.switch_to_branch(name)
    except GitExpError as exc:
        if "would be overwritten" in str(exc):  # untracked files of the user's in the way
            raise DirtyWorkTree(f"{exc}; nothing was changed") from exc
        raise
    tree = repo.commit_info(commit).tree
    restored, skipped = [], []
    for entry in (a for a in rec.artifacts if a.role == "code"):
        dest = os.path.join(repo.work_tree, *entry.path.split("/"))
        if os.path.lexists(dest) and repo.lookup_path(tree, entry.path) is None:
            skipped.append(entry.path)  # an untracked file of the user's: leave it
            continue
        try:
            real = os.path.realpath(os.path.dirname(dest))
            root = os.path.realpath(repo.work_tree)
            if real != root and not real.startswith(root + os.sep) and os.path.exists(real):
                skipped.append(entry.path)
                continue
            store.cas.restore(entry.blake3, dest, entry.mode)
            restored.append(entry.path)
        except StoreError:
            skipped.append(entry.path)
    return {
        "run": rec.ref.short,
        "branch": name,
        "commit": commit,
        "created": existing is None,
        "snapshot": bool(rec.code.get("dirty")),
        "head": rec.code.get("head"),
        "restored": restored,
        "skipped": skipped,
    }
