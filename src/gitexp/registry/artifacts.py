"""A model version's bytes: restored from the local store, or fetched from the
remote's artifact store, verified by BLAKE3 either way (``gitexp.remotes``)."""

from __future__ import annotations

import os

from gitexp.cas import hash_file
from gitexp.registry.ops import resolve
from gitexp.remotes import GetResult, ProgressFn, restore_entry
from gitexp.remotes.progress import no_progress
from gitexp.store import ExpStore

CACHE_DIR = os.path.join("cache", "models")


def get(
    store: ExpStore,
    address: str,
    dest: str | None = None,
    remote: str | None = None,
    force: bool = False,
    progress: ProgressFn = no_progress,
) -> GetResult:
    """Write the artifact of the version ``address`` names (``fraud@production``)
    to ``dest`` (default: its name in the working directory), verified.

    Raises:
        ModelNotFound: no such model, version, stage holder or alias.
        ObjectMissing: the bytes are neither here nor in the remote's store.
        TargetExists: ``dest`` exists and ``force`` is not set.
    """
    version = resolve(store, address)
    entry = version.artifact
    return restore_entry(
        store,
        entry,
        f"{version.label}: {entry.path}",
        dest,
        remote=remote,
        force=force,
        progress=progress,
    )


def local_path(store: ExpStore, address: str, remote: str | None = None) -> str:
    """A local path holding the artifact of the version ``address`` names: a
    verified copy under ``.git/exp/cache/models/<blake3>/`` (made once, checked
    again on every call; a directory is restored again)."""
    version = resolve(store, address)
    entry = version.artifact
    target = os.path.join(store.repo.exp_dir, CACHE_DIR, entry.blake3, os.path.basename(entry.path))
    if entry.kind == "file" and os.path.isfile(target):
        try:
            if hash_file(target)[0] == entry.blake3:
                return target
        except OSError:
            pass
    restore_entry(store, entry, f"{version.label}: {entry.path}", target, remote=remote, force=True)
    return target
