"""Which remote, and which artifact store goes with it (git config, or inside a local remote)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from gitexp.cas.remote import RemoteStore
from gitexp.errors import (
    NoRemote,
)
from gitexp.git import GitRepo

STORE_KEY = "expstore"
NO_STORE = "none"  # remote.<name>.expstore none: runs only, even for a local remote


@dataclass
class Remote:
    """A git remote and the artifact store that goes with it."""

    name: str | None  # None when given as a URL
    url: str
    store_url: str | None
    store_origin: str  # "config", "default" (inside a local remote) or "none"
    ssh_command: str | None = None

    @property
    def label(self) -> str:
        """How to name the remote to the user."""
        return self.name or self.url


def is_url(text: str) -> bool:
    return (
        "://" in text
        or text.startswith(("/", "./", "../", "~"))
        or (":" in text and "@" in text.split(":", 1)[0])
    )


def is_remote(repo: GitRepo, word: str) -> bool:
    """True when ``word`` names a remote: a configured one, a URL or a directory
    (or anything, when no remote is configured: then it can only be a wrong one)."""
    remotes = repo.remotes()
    return word in remotes or is_url(word) or os.path.isdir(word) or not remotes


def _local_path(url: str) -> str | None:
    """The directory of a local-path or ``file://`` remote, else None."""
    if url.startswith("file://"):
        return url[len("file://") :]
    if "://" in url:
        return None
    if ":" in url.split("/", 1)[0] and not os.path.exists(url):
        return None  # scp-like user@host:path
    return url


def _default_store(path: str) -> str | None:
    if not os.path.isdir(path):
        return None
    dotgit = os.path.join(path, ".git")
    if os.path.isdir(dotgit):
        return os.path.join(dotgit, "exp")
    return os.path.join(path, "exp")


def _ssh_command(repo: GitRepo) -> str | None:
    return (
        os.environ.get("GIT_SSH_COMMAND")
        or repo.config_get("core", "sshCommand")
        or os.environ.get("GIT_SSH")
    )


def resolve_remote(repo: GitRepo, remote: str | None) -> Remote:
    """Find a remote by name (or take a URL), with its artifact store.

    With no name: the current branch's remote, else ``origin``, else the only remote.
    """
    remotes = repo.remotes()
    base = repo.work_tree or repo.git_dir
    if remote is None:
        branch = repo.branch()
        upstream = repo.config_get("branch", "remote", branch) if branch else None
        if upstream in remotes:
            remote = upstream
        elif "origin" in remotes:
            remote = "origin"
        elif len(remotes) == 1:
            remote = next(iter(remotes))
        else:
            raise NoRemote(
                "no remote given and no 'origin' remote: name one "
                "(git exp push <remote>) or add one (git remote add origin <url>)"
            )
    name: str | None
    if remote in remotes:
        name, url = remote, remotes[remote]
    elif is_url(remote) or os.path.isdir(remote):
        name, url = None, remote
        base = os.getcwd()  # a path typed on the command line is relative to where it was typed
    else:
        known = ", ".join(sorted(remotes)) or "none"
        raise NoRemote(f"no remote named {remote!r} (remotes here: {known})", remote)
    local = _local_path(url)
    if local is not None:
        local = os.path.abspath(os.path.join(base, os.path.expanduser(local)))
        url = local if not url.startswith("file://") else "file://" + local
    # an empty value (a CI variable that is not set) means no store, as an unset key does
    store_url = (repo.config_get("remote", STORE_KEY, name) or None) if name else None
    origin = "config" if store_url else "none"
    if store_url is not None and store_url.strip().lower() == NO_STORE:
        return Remote(name, url, None, "none", _ssh_command(repo))  # not even inside a local one
    if store_url is None and local is not None:
        store_url = _default_store(local)
        origin = "default" if store_url else "none"
    return Remote(name, url, store_url, origin, _ssh_command(repo))


def open_store(remote: Remote, base_dir: str) -> RemoteStore | None:
    """The remote's artifact store, or None when it has none."""
    if not remote.store_url:
        return None
    return RemoteStore(remote.store_url, base_dir)
