"""Module-level functions of ``import gitexp``: shortcuts to the active run, and
reading runs back as data."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gitexp.records import ArtifactEntry
from gitexp.tracking import _need_active


def log_metric(key: str, value: Any, step: int | None = None) -> None:
    """Log a metric on the active run."""
    _need_active().log_metric(key, value, step)


def log_metrics(metrics: Mapping[str, Any], step: int | None = None) -> None:
    """Log several metrics on the active run."""
    _need_active().log_metrics(metrics, step)


def log_param(key: str, value: Any) -> None:
    """Record a param on the active run."""
    _need_active().log_param(key, value)


def log_params(params: Mapping[str, Any]) -> None:
    """Record params on the active run."""
    _need_active().log_params(params)


def log_summary(metrics: Mapping[str, Any]) -> None:
    """Record explicit final metrics on the active run."""
    _need_active().log_summary(metrics)


def log_artifact(
    path: str | os.PathLike[str], name: str | None = None, role: str = "output"
) -> ArtifactEntry:
    """Store a file or directory as an artifact of the active run."""
    return _need_active().log_artifact(path, name, role)


def log_input(path: str | os.PathLike[str], store: bool = False) -> ArtifactEntry | None:
    """Record a data input of the active run."""
    return _need_active().log_input(path, store)


def set_tags(*tags: str | Iterable[str] | Mapping[str, Any]) -> None:
    """Tag the active run."""
    _need_active().set_tags(*tags)


def note(text: str) -> None:
    """Attach a note to the active run."""
    _need_active().note(text)


def runs(
    experiment: str | None = None,
    status: str | Sequence[str] | None = None,
    tags: Sequence[str] | None = None,
    repo: str | os.PathLike[str] = ".",
    where: str | None = None,
) -> Any:
    """Runs as a ``pyarrow.Table``: one row per run, params as ``params.<key>``
    and final metrics as ``metrics.<key>`` columns. ``.to_pandas()`` for pandas.

    ``where`` filters with the expression language of ``git exp log --where``
    (docs/query.md), e.g. ``"params.lr < 0.01 and metrics.acc > 0.9"``.
    """
    from gitexp.query import select_table, to_arrow
    from gitexp.store import ExpStore

    statuses = [status] if isinstance(status, str) else status
    with ExpStore(repo) as store:
        table = select_table(store, experiment, statuses, tags)
    if where is not None:
        table = table.where(where, label="where")
    return to_arrow(table.rows())


def get_run(address: str, repo: str | os.PathLike[str] = ".") -> dict[str, Any]:
    """Everything recorded about one run, as plain data (what ``git exp show --json`` prints)."""
    from gitexp.catalog import indexed
    from gitexp.show import describe
    from gitexp.store import ExpStore

    with indexed(ExpStore(repo)) as store:
        return describe(store, store.get(address))


def diff(a: str, b: str, repo: str | os.PathLike[str] = ".") -> dict[str, Any]:
    """What differs between two runs, as plain data (``git exp diff --json``)."""
    from gitexp.catalog import indexed
    from gitexp.rundiff import diff_records
    from gitexp.store import ExpStore

    with indexed(ExpStore(repo)) as store:
        return diff_records(store, store.get(a), store.get(b))
