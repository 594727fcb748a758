"""Sharing runs: push, fetch, pull, ls-remote and get, plus remote artifact stores.

Runs travel as git refs through any remote dulwich can reach (a local path,
``file://``, ``git://``, smart HTTP(S), ssh); the transport lives in
:mod:`gitexp.git`. Artifacts travel through an *artifact store*: any
URL ``pyarrow.fs`` opens, laid out like the local CAS
(``objects/<2 hex>/<62 hex>``). Where a remote's store is:

1. ``git config remote.<name>.expstore <url>`` when set;
2. else, for a remote that is a local path or ``file://`` URL, ``<remote git dir>/exp``,
   so clones of one shared bare repository share artifacts with no configuration;
3. else nowhere: push says the artifacts stay local and how to configure a store.

Write order, always: artifact objects first, git objects next, refs last, so a
push that dies half-way never leaves a remote ref pointing at something
missing. Downloads are verified by BLAKE3 before they enter the local CAS;
manifests from a remote are parsed entry by entry, and an entry with a
hostile path or a bad hash is refused on its own.
"""

from __future__ import annotations

from gitexp.cas.remote import RemoteStore
from gitexp.remotes.config import STORE_KEY, Remote, open_store, resolve_remote
from gitexp.remotes.delete import delete_runs
from gitexp.remotes.fetch import (
    FetchResult,
    PullResult,
    RefFetch,
    RunArtifacts,
    download_objects,
    fetch,
    fetch_run_artifacts,
    pull,
)
from gitexp.remotes.get import GetResult, get, restore_entry
from gitexp.remotes.ls_remote import RemoteRun, ls_remote
from gitexp.remotes.objects import Refusal, RunObjects, listing_files, manifest_entries, run_objects
from gitexp.remotes.progress import BytesFn, Progress, ProgressFn
from gitexp.remotes.push import PushResult, push

__all__ = [
    "STORE_KEY",
    "BytesFn",
    "FetchResult",
    "GetResult",
    "Progress",
    "ProgressFn",
    "PullResult",
    "PushResult",
    "RefFetch",
    "Refusal",
    "Remote",
    "RemoteRun",
    "RemoteStore",
    "RunArtifacts",
    "RunObjects",
    "delete_runs",
    "download_objects",
    "fetch",
    "fetch_run_artifacts",
    "get",
    "listing_files",
    "ls_remote",
    "manifest_entries",
    "open_store",
    "pull",
    "push",
    "resolve_remote",
    "restore_entry",
    "run_objects",
]
