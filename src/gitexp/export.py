"""Export runs for pandas, polars and DuckDB users: a summary table (one row per
run, ``leaderboard.to_arrow``) and, optionally, every metric point as a long table
(``id, experiment, key, step, value, time``), as Parquet or CSV."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gitexp.errors import UsageError
from gitexp.records import ExpRef
from gitexp.store import ExpStore, RunRecord

if TYPE_CHECKING:
    from gitexp.leaderboard import Query

FORMATS = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}


@dataclass
class ExportResult:
    """What was written."""

    path: str
    runs: int
    metrics_path: str | None = None
    points: int = 0


def format_of(path: str) -> str:
    """``parquet`` or ``csv``, from the file name's extension."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in FORMATS:
        raise UsageError(f"cannot tell the format of {path!r}: name it .parquet or .csv")
    return FORMATS[ext]


def metrics_path_for(path: str) -> str:
    """``runs.parquet`` -> ``runs.metrics.parquet``."""
    stem, ext = os.path.splitext(path)
    return f"{stem}.metrics{ext}"


def _plain(table: Any, for_csv: bool) -> Any:
    """Columns CSV (or Parquet) cannot hold become JSON text: lists for CSV,
    structs (nested params with no fields in common) for both."""
    import pyarrow as pa

    cols = []
    for name in table.column_names:
        col = table.column(name)
        t = col.type
        nested = pa.types.is_struct(t) or pa.types.is_map(t)
        if for_csv:
            nested = nested or pa.types.is_list(t) or pa.types.is_large_list(t)
        if nested:
            values = [None if v is None else json.dumps(v, sort_keys=True) for v in col.to_pylist()]
            col = pa.chunked_array([pa.array(values, pa.string())])
        cols.append(col)
    return pa.table(cols, names=table.column_names)


@contextmanager
def _atomic(path: str) -> Iterator[str]:
    """A temporary file beside ``path``, renamed onto it when the block succeeds."""
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UsageError(f"no directory {directory!r} to write {os.path.basename(path)!r} in")
    fd, tmp = tempfile.mkstemp(prefix=".gitexp-export-", dir=directory)
    os.close(fd)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # the mode any new file of the user gets
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    """The process's umask (reading it means setting it: set it straight back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_table(table: Any, path: str) -> None:
    """Write an Arrow table to ``path`` (format from its extension), atomically."""
    kind = format_of(path)
    with _atomic(path) as tmp:
        if kind == "parquet":
            import pyarrow.parquet as pq

            pq.write_table(_plain(table, for_csv=False), tmp)
        else:
            import pyarrow.csv as pacsv

            pacsv.write_csv(_plain(table, for_csv=True), tmp)


def export_runs(
    store: ExpStore,
    records: Sequence[RunRecord],
    path: str,
    metrics_path: str | None = None,
) -> ExportResult:
    """Write the summaries of ``records`` to ``path`` and, when ``metrics_path``
    is given, all their metric points there (one run at a time, so memory
    stays bounded by the largest run)."""
    from gitexp.catalog import row_of
    from gitexp.leaderboard import to_arrow

    format_of(path)
    if metrics_path is not None:
        format_of(metrics_path)
        if os.path.abspath(metrics_path) == os.path.abspath(path):
            raise UsageError("the metrics file must not be the summary file")
    write_table(to_arrow([row_of(r) for r in records]), path)
    result = ExportResult(path=path, runs=len(records))
    if metrics_path is None:
        return result
    result.metrics_path = metrics_path
    result.points = _export_points(store, records, metrics_path)
    return result


def export_selected(
    store: ExpStore,
    query: Query,
    path: str,
    metrics_path: str | None = None,
    problems: list[str] | None = None,
) -> ExportResult:
    """:func:`export_runs` of the runs the leaderboard selects for ``query``
    (its filters and ``where``), newest first."""
    from gitexp.leaderboard import select

    format_of(path)
    table = select(store, query, problems)
    refs = table.table.column("ref").to_pylist()
    shas = table.table.column("sha").to_pylist()
    records = [store.read(ExpRef.from_ref(ref), sha) for ref, sha in zip(refs, shas)]
    return export_runs(store, records, path, metrics_path)


def _points_schema() -> Any:
    import pyarrow as pa

    return pa.schema(
        [
            ("id", pa.string()),
            ("experiment", pa.string()),
            ("key", pa.string()),
            ("step", pa.int64()),
            ("value", pa.float64()),
            ("time", pa.timestamp("us", tz="UTC")),
        ]
    )


def points_of(store: ExpStore, rec: RunRecord, keys: Sequence[str] | None = None) -> Any:
    """Every metric point of one run as a table ``id, experiment, key, step, value,
    time`` (in the order logged), only the metrics ``keys`` name when given."""
    import pyarrow as pa
    import pyarrow.compute as pc

    schema = _points_schema()
    table = store.read_metrics(rec)
    if keys is not None and table.num_rows:
        table = table.filter(pc.is_in(table.column("key").cast(pa.string()), pa.array(keys)))
    n = table.num_rows
    if n == 0:
        return schema.empty_table()
    return pa.table(
        {
            "id": pa.array([rec.run_id] * n, pa.string()),
            "experiment": pa.array([rec.experiment] * n, pa.string()),
            "key": table.column("key").cast(pa.string()),
            "step": table.column("step").cast(pa.int64()),
            "value": table.column("value").cast(pa.float64()),
            "time": table.column("time").cast(pa.timestamp("us", tz="UTC")),
        },
        schema=schema,
    )


def metric_history(
    store: ExpStore, records: Sequence[RunRecord], keys: Sequence[str] | None = None
) -> Any:
    """The metric points of ``records``, one table, runs in the order given."""
    import pyarrow as pa

    tables = [points_of(store, rec, keys) for rec in records]
    return pa.concat_tables(tables) if tables else _points_schema().empty_table()


def _export_points(store: ExpStore, records: Sequence[RunRecord], path: str) -> int:
    schema = _points_schema()
    kind = format_of(path)
    total = 0
    with _atomic(path) as tmp:
        if kind == "parquet":
            import pyarrow.parquet as pq

            writer: Any = pq.ParquetWriter(tmp, schema)
        else:
            import pyarrow.csv as pacsv

            writer = pacsv.CSVWriter(tmp, schema)
        try:
            for rec in records:
                out = points_of(store, rec)
                if out.num_rows:
                    writer.write_table(out)
                    total += out.num_rows
        finally:
            writer.close()
    return total
