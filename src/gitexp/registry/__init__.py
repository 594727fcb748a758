"""The model registry: versions of a model made from runs' artifacts, promoted
through stages (development → staging → production, archived), with aliases,
rollback and an audit trail, all in git: ``refs/models/<name>``, one commit per
change (docs/registry.md; the format in docs/format.md).

- :mod:`gitexp.registry.state`: a model's state and the rules of each change;
- :mod:`gitexp.registry.record`: the model in git (commits, trees, history);
- :mod:`gitexp.registry.ops`: register, promote, rollback, list, show, history;
- :mod:`gitexp.registry.artifacts`: a version's bytes, local or remote, verified;
- :mod:`gitexp.registry.sync`: ``refs/models/`` through push and pull, replayed
  on top of the other side's changes;
- :mod:`gitexp.registry.gto`: GTO's git tags, exported and imported.

The functions here are the Python API (``gitexp.registry.register(...)``); each
opens the repository at ``repo`` (default: the working directory).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from gitexp.registry.ops import ModelSummary, is_model_address, parse_address
from gitexp.registry.record import Version

Repo = str | os.PathLike[str]

__all__ = [
    "ModelSummary",
    "Version",
    "get",
    "history",
    "is_model_address",
    "models",
    "parse_address",
    "promote",
    "register",
    "resolve",
    "rollback",
    "show",
]


def _open(repo: Repo) -> Any:
    from gitexp.catalog import indexed_store

    return indexed_store(repo)


def register(
    name: str,
    run: str,
    artifact: str | None = None,
    message: str = "",
    repo: Repo = ".",
) -> Version:
    """Make the next version of model ``name`` from ``run``'s artifact (``artifact``:
    a path in the run's manifest; default: its only output artifact). Returns the
    new version (``.number``, ``.artifact``, ``.data``)."""
    from gitexp.registry.ops import register as _register

    with _open(repo) as store:
        return _register(store, name, run, artifact, message)


def promote(
    name: str,
    version: int | str,
    stage: str | None = None,
    alias: str | Sequence[str] | None = None,
    message: str = "",
    repo: Repo = ".",
) -> list[dict[str, Any]]:
    """Move ``version`` of ``name`` to ``stage`` (the version that held staging or
    production is archived) and/or set ``alias`` on it. Returns the events."""
    from gitexp.registry.ops import promote as _promote

    aliases = [alias] if isinstance(alias, str) else list(alias or [])
    with _open(repo) as store:
        return _promote(store, name, version, stage, aliases, message)


def rollback(name: str, target: str, message: str = "", repo: Repo = ".") -> dict[str, Any]:
    """Bring back the version that held ``target`` (``staging``, ``production`` or an
    alias) before the current one. Returns the event (``from``, ``to``)."""
    from gitexp.registry.ops import rollback as _rollback

    with _open(repo) as store:
        return _rollback(store, name, target, message)


def resolve(address: str, repo: Repo = ".") -> Version:
    """The version ``NAME[@STAGE|@vN|@ALIAS]`` names."""
    from gitexp.registry.ops import resolve as _resolve

    with _open(repo) as store:
        return _resolve(store, address)


def get(
    address: str,
    dest: str | os.PathLike[str] | None = None,
    remote: str | None = None,
    force: bool = False,
    repo: Repo = ".",
) -> str:
    """A local path holding the artifact of ``address`` (``"fraud@production"``),
    verified by BLAKE3, fetched from the remote's artifact store when it is not
    here. Without ``dest``, a cached copy under ``.git/exp/cache/models/``."""
    from gitexp.registry.artifacts import get as _get
    from gitexp.registry.artifacts import local_path

    with _open(repo) as store:
        if dest is None:
            return local_path(store, address, remote)
        return _get(store, address, os.fspath(dest), remote, force).dest


def show(address: str, repo: Repo = ".") -> dict[str, Any]:
    """A model (every version) or one version (``NAME@X``) as plain data."""
    from gitexp.registry.ops import describe

    with _open(repo) as store:
        return describe(store, address)


def models(repo: Repo = ".") -> list[ModelSummary]:
    """Every model of the repository."""
    from gitexp.registry.ops import list_models

    with _open(repo) as store:
        return list_models(store)


def history(name: str, limit: int | None = None, repo: Repo = ".") -> list[dict[str, Any]]:
    """The model's events, newest first."""
    from gitexp.registry.ops import history as _history

    with _open(repo) as store:
        return _history(store, name, limit)
