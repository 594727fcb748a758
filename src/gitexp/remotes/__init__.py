"""Sharing runs: push, fetch, pull, ls-remote and get, plus remote artifact stores.

Runs travel as git refs through any remote git can reach (a local path,
``file://``, ``git://``, smart HTTP(S), ssh); the transport (the ``git``
binary) lives in :mod:`gitexp.git`. Only what is new is looked at: the
remote's refs come from one advertisement, and per-remote state
(:mod:`gitexp.remotes.state`) remembers which runs are in sync, artifacts
included. The namespaces carried, and how each one's refs move, are listed in
:mod:`gitexp.remotes.namespaces`. Artifacts travel through an *artifact store*: any
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
from gitexp.remotes.clone import CloneResult, clone, run_refspec
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
from gitexp.remotes.namespaces import SHARED, Namespace
from gitexp.remotes.objects import Refusal, RunObjects, listing_files, manifest_entries, run_objects
from gitexp.remotes.progress import BytesFn, Progress, ProgressFn
from gitexp.remotes.push import PushResult, push
from gitexp.remotes.selection import Selection, parse_since
from gitexp.remotes.state import SyncState

__all__ = [
    "SHARED",
    "STORE_KEY",
    "BytesFn",
    "CloneResult",
    "FetchResult",
    "GetResult",
    "Namespace",
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
    "Selection",
    "SyncState",
    "clone",
    "delete_runs",
    "download_objects",
    "fetch",
    "fetch_run_artifacts",
    "get",
    "listing_files",
    "ls_remote",
    "manifest_entries",
    "open_store",
    "parse_since",
    "pull",
    "push",
    "resolve_remote",
    "restore_entry",
    "run_objects",
    "run_refspec",
]
