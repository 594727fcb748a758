"""``git exp clone``: a clone of a project whose plain ``git fetch`` and ``git push``
carry runs from then on, with the runs (or some of them) pulled.

1. ``git clone URL DIR``: the code, as git clones it;
2. a fetch refspec on ``origin`` for the runs,
   ``+refs/experiments/*:refs/remotes/origin/experiments/*`` (one experiment's
   with a selection by experiment), so that a plain ``git fetch`` brings
   teammates' runs, as remote-tracking refs: runs are taken into
   ``refs/experiments/`` only by ``git exp pull``, which checks each one and
   never overwrites a local run (a refspec into ``refs/experiments/`` itself
   would let ``git fetch --prune`` delete every run not pushed yet), and finds
   their objects here already;
3. the pre-push hook (``git exp install-hooks``), so that a plain ``git push``
   pushes the runs and their artifacts first;
4. ``git exp pull`` of the selection.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from gitexp.errors import TargetExists
from gitexp.git import clone_repository
from gitexp.remotes.fetch import PullResult, pull
from gitexp.remotes.progress import Progress, ProgressFn, no_progress
from gitexp.remotes.selection import Selection
from gitexp.store import ExpStore

TRACKING = "refs/remotes/{remote}/experiments/"


@dataclass
class CloneResult:
    """What ``clone`` did."""

    path: str
    refspec: str | None  # the run refspec added to the remote (None: none, see note)
    hook: str  # what install-hooks said ("installed", "already installed", ...)
    pull: PullResult


def run_refspec(remote: str, experiment: str | None = None) -> str:
    """The fetch refspec that makes ``git fetch <remote>`` bring runs (or one
    experiment's) as remote-tracking refs."""
    sub = f"{experiment}/" if experiment else ""
    return f"+refs/experiments/{sub}*:{TRACKING.format(remote=remote)}{sub}*"


def default_dir(url: str) -> str:
    """The directory ``git clone URL`` would make."""
    name = url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    name = name.removesuffix(".git") or "repo"
    return name


def clone(
    url: str,
    dest: str | None = None,
    selection: Selection | None = None,
    artifacts: bool = True,
    hooks: bool = True,
    progress: ProgressFn = no_progress,
) -> CloneResult:
    """Clone ``url`` into ``dest`` set up for runs (module docstring), then pull."""
    from gitexp.hooks import install_in

    sel = selection or Selection()
    path = os.path.abspath(dest or default_dir(url))
    if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
        raise TargetExists(f"{path} exists and is not an empty directory", path)
    if os.path.isdir(url):
        url = os.path.abspath(url)

    def text(t: str) -> None:
        progress(Progress("cloning", text=t))

    clone_repository(url, path, progress=text)
    refspec = None if (sel.since or sel.runs) else run_refspec("origin", sel.experiment)
    with ExpStore(path) as store:
        if refspec is not None:
            store.repo.config_add("remote", "origin", "fetch", refspec)
        hook = install_in(path).action if hooks else "not installed"
        pulled = pull(store, "origin", artifacts=artifacts, progress=progress, selection=sel)
    return CloneResult(path, refspec, hook, pulled)
