"""Deleting run refs on a remote (``git exp rm --remote``)."""

from __future__ import annotations

from collections.abc import Iterable

from gitexp.remotes.config import resolve_remote
from gitexp.store import ExpStore


def delete_runs(store: ExpStore, remote: str | None, refs: Iterable[str]) -> dict[str, str]:
    """Delete run refs on a git remote (``git exp rm --remote``).

    Returns ref name -> "deleted", "absent" or the remote's refusal. The runs'
    artifacts stay in the remote store: they may be shared with other runs.
    """
    target = resolve_remote(store.repo, remote)
    return store.repo.delete_remote_refs(target.url, list(refs), target.ssh_command)
