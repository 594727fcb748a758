"""``git exp ls-remote``: the runs a remote has, without fetching them."""

from __future__ import annotations

from dataclasses import dataclass

from gitexp.errors import (
    InvalidName,
)
from gitexp.records import NAMESPACE, ExpRef
from gitexp.remotes.config import Remote, resolve_remote
from gitexp.store import ExpStore


@dataclass
class RemoteRun:
    """A run as the remote's refs show it."""

    ref: str
    sha: str
    local: str  # "same", "absent", "unfetched", "behind", "ahead", "diverged"


def ls_remote(store: ExpStore, remote: str | None = None) -> tuple[Remote, list[RemoteRun]]:
    """The runs a remote has, from its ref advertisement alone (nothing is downloaded)."""
    repo = store.repo
    rem = resolve_remote(repo, remote)
    advertised = repo.remote_refs(rem.url, NAMESPACE, rem.ssh_command)
    here = repo.ref_snapshot(NAMESPACE)  # no cache: listing writes nothing
    out = []
    for name, sha in sorted(advertised.items()):
        try:
            ExpRef.from_ref(name)
        except InvalidName:
            continue
        local = here.get(name)
        if local is None:
            state = "absent"
        elif local == sha:
            state = "same"
        elif not repo.has_object(sha):
            state = "unfetched"  # the remote's commit is not here: fetch to compare
        elif repo.is_ancestor(sha, local):
            state = "ahead"
        elif repo.is_ancestor(local, sha):
            state = "behind"
        else:
            state = "diverged"
        out.append(RemoteRun(name, sha, state))
    return rem, out
