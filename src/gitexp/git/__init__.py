"""The git layer: the only package that imports dulwich or runs the ``git`` binary.

Objects and refs are written with dulwich as loose objects (never one pack per
run: reading thousands of single-object packs is slow). Ref updates are
compare-and-swap. The work-tree snapshot of a dirty checkout uses the ``git``
binary with a private, temporary index, so that git's own ignore rules, stat
cache and filters apply, and the user's index is never touched.

Everything above this package sees text: hex shas as ``str``, ref names as
``str``, paths in trees as ``str``.

:class:`GitRepo` is one object made of parts, one module each:

- :mod:`gitexp.git.base`: the open repository, config, identity, HEAD, the ``git`` binary;
- :mod:`gitexp.git.objects`: blobs, trees, commits (loose objects, ``git cat-file`` batches), tags;
- :mod:`gitexp.git.signing`: signed commits (``commit.gpgSign``), ``git verify-commit``;
- :mod:`gitexp.git.refs`: refs, compare-and-swap, stale locks, the ref files themselves;
- :mod:`gitexp.git.snapshot`: the work tree's state and snapshot, diffs, exporting a tree;
- :mod:`gitexp.git.worktree`: branch switching in the user's checkout;
- :mod:`gitexp.git.transport`: push, fetch and ref listing of remotes (the ``git`` binary);
- :mod:`gitexp.git.packing`: background packing (``git gc --auto``) once loose objects pile up.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from gitexp.git.base import (
    BIG_BLOB,
    CAT_PROCESSES,
    CAT_SPLIT,
    MODE_EXEC,
    MODE_FILE,
    MODE_TREE,
    STALE_LOCK_SECONDS,
)
from gitexp.git.objects import CommitInfo, TreeValue
from gitexp.git.packing import AUTO_PACK_LOOSE, GitPacking
from gitexp.git.refs import GitRefs, RefScan, refs_digest
from gitexp.git.signing import SignatureCheck, Signer
from gitexp.git.snapshot import GitSnapshot, StatusProbe, WorkTreeState
from gitexp.git.transport import (
    FetchedPack,
    GitTransport,
    RefListing,
    RefPush,
    SyncStatus,
    clone_repository,
    remote_refs,
)
from gitexp.git.worktree import GitWorktree


class GitRepo(GitTransport, GitSnapshot, GitRefs, GitWorktree, GitPacking):
    """A git repository opened for git-exp: objects, refs, and code state."""


def open_repo(path: str | os.PathLike[str] = ".") -> GitRepo:
    """Open the git repository containing ``path``."""
    return GitRepo(path)


def init_repo(path: str, config: Mapping[tuple[str, str | None, str], str]) -> GitRepo:
    """Create an empty repository at ``path`` (like ``git init``) with the config
    values ``{(section, subsection or None, name): value}`` set, and open it."""
    from dulwich.repo import Repo

    os.makedirs(path, exist_ok=True)
    with Repo.init(path) as created:
        cfg = created.get_config()
        for (section, sub, name), value in config.items():
            key = (section.encode(), sub.encode()) if sub is not None else (section.encode(),)
            cfg.set(key, name.encode(), value.encode())
        cfg.write_to_path()
    return GitRepo(path)


__all__ = [
    "AUTO_PACK_LOOSE",
    "BIG_BLOB",
    "CAT_PROCESSES",
    "CAT_SPLIT",
    "MODE_EXEC",
    "MODE_FILE",
    "MODE_TREE",
    "STALE_LOCK_SECONDS",
    "CommitInfo",
    "FetchedPack",
    "GitRepo",
    "RefListing",
    "RefPush",
    "RefScan",
    "SignatureCheck",
    "Signer",
    "StatusProbe",
    "SyncStatus",
    "TreeValue",
    "WorkTreeState",
    "clone_repository",
    "init_repo",
    "open_repo",
    "refs_digest",
    "remote_refs",
]
