"""Module-level functions of ``import gitexp``: shortcuts to the active run, and
reading runs back as data."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gitexp.records import ArtifactEntry
from gitexp.tracking import _need_active


def params() -> dict[str, Any]:
    """The params of this run, with no argument parsing: the active run's, else
    (a command started by ``git exp run`` or ``git exp sweep`` that has not
    called ``start_run`` yet) those of the run it was started for, else ``{}``."""
    from gitexp.records import ExpRef
    from gitexp.store import ExpStore
    from gitexp.tracking import ENV_REPO, ENV_RUN_REF, active_run

    run = active_run()
    if run is not None:
        return run.params
    ref = os.environ.get(ENV_RUN_REF)
    if not ref:
        return {}
    with ExpStore(os.environ.get(ENV_REPO) or ".") as store:
        return dict(store.read(ExpRef.from_ref(ref)).params)


def log_metric(key: str, value: Any, step: int | None = None) -> None:
    """Log a metric on the active run."""
    _need_active().log_metric(key, value, step)


def log_metrics(metrics: Mapping[str, Any], step: int | None = None) -> None:
    """Log several metrics on the active run."""
    _need_active().log_metrics(metrics, step)


def log_throughput(n_items: float, step: int | None = None, *, name: str = "items") -> float:
    """Log ``throughput/<name>_per_sec`` on the active run: ``n_items`` per second
    since its previous call for ``name`` (or since the run started). Returns the rate."""
    return _need_active().log_throughput(n_items, step, name=name)


def reset_throughput(name: str = "items") -> None:
    """Start the throughput clock of ``name`` on the active run now."""
    _need_active().reset_throughput(name)


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
) -> ArtifactEntry | None:
    """Store a file or directory as an artifact of the active run (None in a forked
    child, which never writes its parent's run)."""
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
    *,
    unless_tags: Sequence[str] | None = None,
    sort: str | None = None,
    limit: int | None = None,
    offset: int = 0,
    columns: Sequence[str] | None = None,
    group_by: str | Sequence[str] | None = None,
    baseline: str | None = None,
) -> Any:
    """Runs as a ``pyarrow.Table``: one row per run, params as ``params.<key>``
    and final metrics as ``metrics.<key>`` columns. ``.to_pandas()`` for pandas.

    ``where`` filters with the expression language of ``git exp log --where``
    (docs/query.md), e.g. ``"params.lr < 0.01 and metrics.acc > 0.9"``.
    ``sort``, ``limit``, ``offset``, ``columns``, ``group_by`` (one row per
    group: ``runs``, ``mean(...)``, ``std(...)``, ``count(...)``) and
    ``baseline`` (a run address or ``tag:NAME``; adds ``delta(...)`` columns)
    mean what they mean for ``git exp log``. Without ``columns`` every column
    is there.
    """
    from gitexp.leaderboard import Query, leaderboard, to_arrow
    from gitexp.store import ExpStore

    query = Query(
        experiment=experiment,
        status=[status] if isinstance(status, str) else tuple(status or ()),
        tags=tuple(tags or ()),
        unless_tags=tuple(unless_tags or ()),
        where=where,
        sort=sort,
        limit=limit,
        offset=offset,
        columns=list(columns) if columns is not None else None,
        group_by=[group_by] if isinstance(group_by, str) else group_by,
        baseline=baseline,
    )
    with ExpStore(repo) as store:
        board = leaderboard(store, query)
    if columns is not None:
        return to_arrow(board.rows, board.columns)
    if board.grouped:
        return to_arrow([{k: v for k, v in r.items() if k != "ids"} for r in board.rows])
    assert board.runs is not None
    rows = board.runs.rows()
    if board.baseline is not None:
        from gitexp.leaderboard import with_baseline

        rows = with_baseline(rows, board.baseline)
    return to_arrow(rows)


def get_run(address: str, repo: str | os.PathLike[str] = ".") -> dict[str, Any]:
    """Everything recorded about one run, as plain data (what ``git exp show --json`` prints)."""
    from gitexp.catalog import indexed_store
    from gitexp.show import describe

    with indexed_store(repo) as store:
        return describe(store, store.read_settled(address))


def metric_history(
    runs: str | Iterable[str],
    keys: str | Iterable[str] | None = None,
    repo: str | os.PathLike[str] = ".",
) -> Any:
    """Every logged point of the metrics of one run or several, as a pyarrow Table.

    Columns ``id, experiment, key, step, value, time`` (time: UTC, microseconds),
    one row per point as logged, runs in the order given. ``runs`` is one run
    address or several (run ids, ``experiment/run-id``, refs, sha prefixes: the
    ``id`` column of :func:`runs` works); ``keys`` keeps only those metrics.
    ``.to_pandas()`` / ``polars.from_arrow()`` turn it into a frame to plot.
    """
    from gitexp.catalog import indexed_store
    from gitexp.export import metric_history as history

    addresses = [runs] if isinstance(runs, str) else list(runs)
    wanted = [keys] if isinstance(keys, str) else (list(keys) if keys is not None else None)
    with indexed_store(repo) as store:
        records = [store.read_settled(a) for a in addresses]
        return history(store, records, wanted)


def diff(a: str, b: str, repo: str | os.PathLike[str] = ".") -> dict[str, Any]:
    """What differs between two runs, as plain data (``git exp diff --json``)."""
    from gitexp.catalog import indexed_store
    from gitexp.rundiff import diff_records

    with indexed_store(repo) as store:
        return diff_records(store, store.read_settled(a), store.read_settled(b))
