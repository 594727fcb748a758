"""Metric buffering, Parquet segments and summaries.

The logging call is an append to an in-memory list under a lock; the flusher
drains the buffer into an Arrow table, which becomes a Parquet segment (columns
``key``, ``step``, ``value``, ``time``) and a :class:`~gitexp.records.Summary`.
Readers concatenate segments. This module owns pyarrow and numpy use for metrics.
"""

from __future__ import annotations

import math
import sys
import threading
import time
from array import array
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from gitexp import columns
from gitexp.errors import FormatError, InvalidValue
from gitexp.records import MAX_KEY_LEN, MetricSummary, Summary, has_surrogates

_SCHEMA: Any = None
MAX_STEP = 2**63
DRAIN_POINTS = 1 << 18  # a drain takes at most about this many points (one spool entry)
# bounds of a segment (docs/format.md), checked from its footer before any data is
# decoded: a small file from elsewhere must not decode to billions of points. Writers
# stay far below them: a segment is a drain (DRAIN_POINTS) or a merge of about 2^20.
MAX_ROW_GROUP = 1 << 17  # rows in one row group (131,072)
MAX_SEGMENT_ROWS = 1 << 22  # rows in one segment (4,194,304)
MAX_SEGMENT_BYTES = 256 << 20  # bytes of one segment


def schema() -> Any:
    """The Arrow schema of a metric segment."""
    global _SCHEMA
    if _SCHEMA is None:
        import pyarrow as pa

        _SCHEMA = pa.schema(
            [
                ("key", pa.string()),
                ("step", pa.int64()),
                ("value", pa.float64()),
                ("time", pa.timestamp("us", tz="UTC")),
            ]
        )
    return _SCHEMA


def check_metric_key(key: Any) -> str:
    """A metric key: non-empty text of at most 250 characters, no control characters."""
    if not isinstance(key, str):
        raise InvalidValue(f"metric key must be text, not {type(key).__name__}", str(key))
    if not key or len(key) > MAX_KEY_LEN:
        raise InvalidValue(
            f"metric key must have 1 to {MAX_KEY_LEN} characters (got {len(key)})", key[:40]
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in key):
        raise InvalidValue(f"metric key {key!r} contains control characters", key)
    if has_surrogates(key):
        raise InvalidValue(f"metric key {key!r} is not valid Unicode text (undecodable bytes)", key)
    return key


def to_float(value: Any, key: str) -> float:
    """A metric value as a float: numbers and numpy scalars; text and others refused."""
    if isinstance(value, (str, bytes)) or value is None:
        raise InvalidValue(
            f"metric {key!r}: value {value!r} is not a number (log text as a param or tag)", key
        )
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise InvalidValue(
            f"metric {key!r}: a {type(value).__name__} is not a number", key
        ) from exc


def check_step(step: Any, key: str) -> int:
    """A step: a non-negative integer (numpy integers too)."""
    if isinstance(step, bool) or not hasattr(step, "__index__"):
        raise InvalidValue(f"metric {key!r}: step {step!r} is not an integer", key)
    n = int(step)
    if n < 0 or n >= MAX_STEP:
        raise InvalidValue(f"metric {key!r}: step {n} is out of range", key)
    return n


def _timestamp(value: Any, key: str) -> float:
    """A point's time given by the caller: finite seconds since the epoch."""
    t = to_float(value, key)
    if not math.isfinite(t) or not 0 <= t < 1e11:
        raise InvalidValue(f"metric {key!r}: timestamp {value!r} is not a time in seconds", key)
    return t


class MetricBuffer:
    """Thread-safe in-memory buffer of metric points.

    ``append`` is the hot path: one lock, four list appends (the buffer is
    columnar, so draining needs no transposition). Steps default to one past
    the last step logged for the key.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        # Earlier blocks, in log order: an array chunk (key, steps, values, time), or
        # a block of single points logged before it. ``rows`` holds the points logged
        # after the last chunk, so the buffer as a whole keeps the order of the calls.
        self.chunks: list[Any] = []
        self.next_step: dict[str, int] = {}
        # key -> id; rows hold ids (4 bytes a point), names[id] is the key
        self.key_ids: dict[str, int] = {}
        self.names: list[str] = []
        self.rows = Rows(self.names)

    def _key_id(self, key: str) -> int:
        """The id of a key, checked and registered the first time it is seen."""
        kid = self.key_ids.get(key)
        if kid is None:
            check_metric_key(key)
            with self.lock:
                kid = self.key_ids.setdefault(key, len(self.names))
                if kid == len(self.names):
                    self.names.append(key)
        return kid

    def append(
        self, key: str, value: Any, step: Any = None, timestamp: float | None = None
    ) -> None:
        """Buffer one point (``timestamp``: its time in seconds since the epoch; now
        when None)."""
        kid = self.key_ids.get(key)
        if kid is None:
            kid = self._key_id(key)
        v = value if type(value) is float else to_float(value, key)
        now = time.time() if timestamp is None else _timestamp(timestamp, key)
        with self.lock:
            if step is None:
                s = self.next_step.get(key, 0)
            else:
                s = step if type(step) is int and 0 <= step < MAX_STEP else check_step(step, key)
            if s >= self.next_step.get(key, 0):
                self.next_step[key] = s + 1
            rows = self.rows
            rows.keys.append(kid)
            rows.steps.append(s)
            rows.values.append(v)
            rows.times.append(now)

    def append_rate(
        self, key: str, clock: list[float], items: float, step: Any = None, record: bool = True
    ) -> float:
        """Buffer the rate ``items`` per second since the mark of ``clock`` as one
        point of ``key``, and move the mark; return the rate.

        ``clock`` is ``[monotonic time of the mark, items carried over]``, updated
        in place under the buffer's lock (calls from several threads are timed in
        the order they get it). When no time went by since the mark, nothing is
        buffered, the items are carried over to the next call, and the rate is NaN.
        ``record=False`` moves the mark without buffering (a forked child).
        """
        kid = self.key_ids.get(key)
        if kid is None:
            kid = self._key_id(key)
        with self.lock:
            mark = time.monotonic()
            elapsed = mark - clock[0]
            total = clock[1] + items
            if elapsed <= 0.0:
                clock[1] = total
                return math.nan
            clock[0] = mark
            clock[1] = 0.0
            rate = total / elapsed
            if not record:
                return rate
            if step is None:
                s = self.next_step.get(key, 0)
            else:
                s = step if type(step) is int and 0 <= step < MAX_STEP else check_step(step, key)
            if s >= self.next_step.get(key, 0):
                self.next_step[key] = s + 1
            rows = self.rows
            rows.keys.append(kid)
            rows.steps.append(s)
            rows.values.append(rate)
            rows.times.append(time.time())
        return rate

    def mark_rate(self, clock: list[float]) -> None:
        """Set the mark of a rate ``clock`` (see :meth:`append_rate`) to now."""
        with self.lock:
            clock[0] = time.monotonic()
            clock[1] = 0.0

    def append_many(
        self,
        values: Mapping[str, Any],
        step: Any = None,
        between: Callable[[], None] | None = None,
    ) -> None:
        """Buffer several keys at one step.

        A value may be an array (numpy array or list): its points go at
        consecutive steps from ``step``, as :meth:`append_array` does. Every
        value is checked before anything is buffered.
        """
        now = time.time()
        checked = []
        arrays = []
        for key, value in values.items():
            self._key_id(key)
            if type(value) is float:
                checked.append((key, value))
            elif hasattr(value, "__len__") and not isinstance(value, (str, bytes)):
                arrays.append((key, _float_array(value, key)))
            else:
                checked.append((key, to_float(value, key)))
        if arrays:
            import numpy as np

            first = None if step is None else check_step(step, arrays[0][0])
            for key, arr in arrays:
                steps = None if first is None else np.arange(first, first + len(arr))
                self.append_array(key, arr, steps, between)
        with self.lock:
            for key, v in checked:
                if step is None:
                    s = self.next_step.get(key, 0)
                else:
                    s = (
                        step
                        if type(step) is int and 0 <= step < MAX_STEP
                        else check_step(step, key)
                    )
                if s >= self.next_step.get(key, 0):
                    self.next_step[key] = s + 1
                self.rows.keys.append(self.key_ids[key])
                self.rows.steps.append(s)
                self.rows.values.append(v)
                self.rows.times.append(now)

    def append_array(
        self,
        key: str,
        values: Any,
        steps: Any = None,
        between: Callable[[], None] | None = None,
    ) -> None:
        """Buffer a whole array of values for one key (steps consecutive by default).

        Checked whole, then copied (the caller may reuse its array) and buffered
        in slices of at most DRAIN_POINTS, calling ``between`` after each: a
        caller that bounds its memory spools there, so a huge array is never
        held twice, and drained slices are freed one by one.
        """
        import numpy as np

        self._key_id(key)
        arr = _float_array(values, key)
        st: Any = None
        if steps is not None:
            st = np.array(steps, dtype=np.int64).ravel()
            if len(st) != len(arr):
                raise InvalidValue(f"metric {key!r}: {len(st)} steps for {len(arr)} values", key)
            if len(st) and int(st.min()) < 0:
                raise InvalidValue(f"metric {key!r}: negative step", key)
        for i in range(0, max(len(arr), 1), DRAIN_POINTS):
            self._append_slice(
                key,
                np.array(arr[i : i + DRAIN_POINTS]),
                None if st is None else st[i : i + DRAIN_POINTS],
            )
            if between is not None:
                between()

    def _append_slice(self, key: str, arr: Any, steps: Any) -> None:
        now = time.time()
        with self.lock:
            st: Any
            if steps is None:  # consecutive steps: kept as the first one, made at drain time
                st = self.next_step.get(key, 0)
                if len(arr):
                    self.next_step[key] = max(self.next_step.get(key, 0), st + len(arr))
            else:
                st = steps
                if len(st):
                    top = int(st.max()) + 1
                    if top > self.next_step.get(key, 0):
                        self.next_step[key] = top
            if self.rows:  # points logged before this array stay before it
                self.chunks.append(self.rows)
                self.rows = Rows(self.names)
            self.chunks.append((key, st, arr, now))

    def size(self) -> int:
        """How many points are buffered."""
        with self.lock:
            return len(self.rows) + sum(_len(c) for c in self.chunks)

    def pending(self) -> bool:
        """True when points are waiting to be drained."""
        return bool(self.rows or self.chunks)

    def drain(self, max_points: int | None = None) -> tuple[Any, Summary] | None:
        """Take what is buffered, oldest first, up to about ``max_points`` points:
        (Arrow table in log order, its summary), or None when nothing is buffered.

        Bounded so that a burst of logging (10 million points in a second)
        becomes several segments of bounded size, never one huge table in memory;
        call again while :meth:`pending`.
        """
        taken: list[Any] = []
        budget = max(1, DRAIN_POINTS if max_points is None else max_points)
        with self.lock:
            while self.chunks and budget > 0:
                head, tail = _split(self.chunks[0], budget)
                taken.append(head)
                budget -= _len(head)
                if tail is None:
                    self.chunks.pop(0)
                else:
                    self.chunks[0] = tail
            if budget > 0 and not self.chunks and self.rows:
                head, tail = _split(self.rows, budget)
                taken.append(head)
                self.rows = tail if tail is not None else Rows(self.names)
        if not taken:
            return None
        table = build_table(None, taken, dictionary_keys=True)
        arrays = [c for c in taken if not isinstance(c, Rows)]
        if not arrays:  # only single points: one vectorised pass over the table
            summary = summarize(table)
        else:
            blocks = [c for c in taken if isinstance(c, Rows)]
            summary = summarize(build_table(None, blocks, dictionary_keys=True))  # points only
            summary = summary.merge(summarize_chunks(arrays))
        return _string_keys(table), summary


_TRIM: Any = None


def release_memory() -> None:
    """Give memory that drains and merges freed back to the system.

    Arrow's pool keeps freed blocks for reuse, and glibc's malloc keeps freed
    heap memory: without this, a run logging 10 million points holds tens of
    MB it no longer uses. Costs a fraction of a millisecond; called by the
    background thread after it spools or commits, never per logging call.
    """
    global _TRIM
    pa = sys.modules.get("pyarrow")
    if pa is not None:
        pa.default_memory_pool().release_unused()
    if _TRIM is None:
        _TRIM = False
        try:
            import ctypes

            _TRIM = ctypes.CDLL(None).malloc_trim  # glibc only
        except (OSError, AttributeError):
            pass
    if _TRIM:
        _TRIM(0)


def _len(chunk: Any) -> int:
    return len(chunk) if isinstance(chunk, Rows) else len(chunk[2])


def _split(chunk: Any, n: int) -> tuple[Any, Any]:
    """(the first ``n`` points of a buffered block, the rest or None)."""
    if _len(chunk) <= n:
        return chunk, None
    if isinstance(chunk, Rows):
        head, tail = Rows(chunk.names), Rows(chunk.names)
        head.keys, tail.keys = chunk.keys[:n], chunk.keys[n:]
        head.steps, tail.steps = chunk.steps[:n], chunk.steps[n:]
        head.values, tail.values = chunk.values[:n], chunk.values[n:]
        head.times, tail.times = chunk.times[:n], chunk.times[n:]
        return head, tail
    key, st, arr, t = chunk
    if isinstance(st, int):
        return (key, st, arr[:n], t), (key, st + n, arr[n:], t)
    return (key, st[:n], arr[:n], t), (key, st[n:], arr[n:], t)


def _float_array(values: Any, key: str) -> Any:
    """``values`` as a flat float64 numpy array; InvalidValue when they are not numbers."""
    import numpy as np

    try:
        arr = np.asarray(values, np.float64)
    except (TypeError, ValueError) as exc:
        raise InvalidValue(f"metric {key!r}: values are not numbers", key) from exc
    return arr.ravel()


class Rows:
    """Buffered single points, one column each as machine numbers: the key's id
    (``names[id]`` is the key), step, value and time; no Python object is kept
    per point."""

    __slots__ = ("keys", "names", "steps", "times", "values")

    def __init__(self, names: list[str] | None = None) -> None:
        self.names: list[str] = names if names is not None else []
        self.keys: array[int] = array("i")
        self.steps: array[int] = array("q")
        self.values: array[float] = array("d")
        self.times: array[float] = array("d")

    def __len__(self) -> int:
        return len(self.keys)


def build_table(
    rows: Rows | None, chunks: Iterable[Any] = (), dictionary_keys: bool = False
) -> Any:
    """Arrow table in segment schema, in log order: ``chunks`` (array chunks and
    the blocks of single points between them, as :class:`MetricBuffer` keeps
    them), then ``rows``.

    No point becomes a Python object: keys are dictionary arrays over the ids
    buffered (expanded to strings in C unless ``dictionary_keys``).
    """
    import numpy as np
    import pyarrow as pa

    ts = pa.timestamp("us", tz="UTC")
    out_schema = _dict_schema() if dictionary_keys else schema()
    parts = []

    def keys_of(ids: Any, names: list[str]) -> Any:
        col = pa.DictionaryArray.from_arrays(columns.fixed(ids, pa.int32()), columns.strings(names))
        return col if dictionary_keys else col.cast(pa.string())

    def table_of(keys: Any, steps: Any, values: Any, micros: Any) -> Any:
        return pa.Table.from_arrays(
            [
                keys,
                columns.fixed(steps, pa.int64()),
                columns.fixed(values, pa.float64()),
                columns.fixed(micros, ts),
            ],
            schema=out_schema,
        )

    def rows_table(block: Rows) -> Any:
        times = np.frombuffer(block.times, np.float64)
        return table_of(
            keys_of(np.frombuffer(block.keys, np.int32), block.names),
            np.frombuffer(block.steps, np.int64),
            np.frombuffer(block.values, np.float64),
            (times * 1e6).astype(np.int64),
        )

    for chunk in chunks:
        if isinstance(chunk, Rows):
            if chunk:
                parts.append(rows_table(chunk))
            continue
        key, st, arr, t = chunk
        n = len(arr)
        st = _steps_of(st, n)
        keycol = keys_of(np.zeros(n, dtype=np.int32), [key])
        parts.append(table_of(keycol, st, arr, np.full(n, int(t * 1e6), dtype=np.int64)))
    if rows:
        parts.append(rows_table(rows))
    if not parts:
        return columns.empty_table(out_schema)
    if len(parts) == 1:
        return parts[0]
    return pa.concat_tables(parts)


def _dict_schema() -> Any:
    """The segment schema with keys as a dictionary (in memory only, for summaries)."""
    import pyarrow as pa

    return pa.schema([pa.field("key", pa.dictionary(pa.int32(), pa.string())), *list(schema())[1:]])


def _string_keys(table: Any) -> Any:
    """A table of :func:`_dict_schema` in the segment schema."""
    return table.cast(schema())


def _steps_of(st: Any, n: int) -> Any:
    """A chunk's steps: as given, or ``n`` consecutive ones from a first step."""
    import numpy as np

    if isinstance(st, int):
        return np.arange(st, st + n, dtype=np.int64)
    return st


def summarize_chunks(chunks: Iterable[tuple[str, Any, Any, float]]) -> Summary:
    """The summary of array chunks: each has one key, so numpy summarises it directly."""
    import numpy as np

    out = Summary()
    for key, st, arr, t in chunks:
        if not len(arr):
            continue
        finite = arr[~np.isnan(arr)]
        part = MetricSummary(
            last=float(arr[-1]),
            last_step=st + len(arr) - 1 if isinstance(st, int) else int(st[-1]),
            last_time=t,
            min=float(finite.min()) if len(finite) else math.nan,
            max=float(finite.max()) if len(finite) else math.nan,
            count=len(arr),
        )
        out = out.merge(Summary({key: part}))
    return out


def summarize(table: Any) -> Summary:
    """Per-key summary of a table of points (``last`` is the last point logged)."""
    import numpy as np
    import pyarrow as pa

    if table is None or table.num_rows == 0:
        return Summary()
    col = table.column("key")
    if pa.types.is_dictionary(col.type):  # from a drain: ids already, no string hashed
        if col.num_chunks > 1:
            col = table.unify_dictionaries().column("key")
        enc = col.combine_chunks()
    else:
        enc = col.combine_chunks().dictionary_encode()
    names = enc.dictionary.to_pylist()
    codes = columns.to_numpy(enc.indices)
    steps = columns.to_numpy(table.column("step"))
    values = columns.to_numpy(table.column("value"))
    times = columns.to_numpy(table.column("time").cast(pa.int64())) / 1e6
    order = np.argsort(codes, kind="stable")
    sc = codes[order]
    sv = values[order]
    starts = np.flatnonzero(np.r_[True, sc[1:] != sc[:-1]])
    ends = np.r_[starts[1:], len(sc)]
    out: dict[str, MetricSummary] = {}
    for s, e in zip(starts, ends):
        code = int(sc[s])
        seg = sv[s:e]
        last_idx = order[e - 1]
        finite = seg[~np.isnan(seg)]
        out[names[code]] = MetricSummary(
            last=float(values[last_idx]),
            last_step=int(steps[last_idx]),
            last_time=float(times[last_idx]),
            min=float(finite.min()) if len(finite) else math.nan,
            max=float(finite.max()) if len(finite) else math.nan,
            count=int(e - s),
        )
    return Summary(out)


def to_parquet(table: Any, metadata: Mapping[str, str] | None = None) -> bytes:
    """Serialise a metric table as a Parquet segment."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    # an Arrow buffer, not io.BytesIO: the writer never calls back into Python, so
    # it does not queue for the GIL behind a training loop (10x slower with BytesIO)
    sink = pa.BufferOutputStream()
    pq.write_table(
        table, sink, compression="zstd", use_dictionary=["key"], row_group_size=MAX_ROW_GROUP
    )
    return bytes(sink.getvalue().to_pybytes())


def merge_segments(parts: Iterable[tuple[bytes, str]]) -> bytes:
    """Several segments (bytes, where) as one, in order, decoding one at a time:
    memory holds one input segment and the compressed output, not every input
    decoded at once (a checkpoint merges a few seconds of spool, up to a million
    points)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, schema(), compression="zstd", use_dictionary=["key"]) as writer:
        for data, where in parts:
            writer.write_table(from_parquet(data, where), row_group_size=MAX_ROW_GROUP)
    return bytes(sink.getvalue().to_pybytes())


def from_parquet(data: bytes, where: str = "metric segment", dictionary_keys: bool = False) -> Any:
    """Read one Parquet segment back; FormatError when it is damaged.

    ``dictionary_keys``: the ``key`` column as a dictionary (no string made per
    point: a reader of millions of points that only splits them by key)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        segment = pq.ParquetFile(
            pa.BufferReader(data), read_dictionary=["key"] if dictionary_keys else None
        )
        _check_bounds(segment.metadata, where)
        table = segment.read(use_threads=False)
    except (pa.ArrowException, OSError) as exc:
        raise FormatError(f"{where} is damaged or truncated: {_one_line(exc)}") from exc
    missing = {"key", "step", "value", "time"} - set(table.column_names)
    if missing:
        raise FormatError(f"{where} lacks columns {sorted(missing)}")
    try:
        return table.select(["key", "step", "value", "time"]).cast(
            _dict_schema() if dictionary_keys else schema()
        )
    except (pa.ArrowException, ValueError) as exc:
        raise FormatError(f"{where} has columns of the wrong type: {_one_line(exc)}") from exc


def _check_bounds(meta: Any, where: str) -> None:
    """Refuse a segment whose footer declares more rows than format 1 allows, in
    all or in one row group (FormatError), before any of its data is decoded."""
    if meta.num_rows > MAX_SEGMENT_ROWS:
        raise FormatError(
            f"{where} declares {meta.num_rows:,} rows, more than the {MAX_SEGMENT_ROWS:,} "
            "a segment may hold"
        )
    total = 0
    for i in range(meta.num_row_groups):
        rows = meta.row_group(i).num_rows
        if rows > MAX_ROW_GROUP or rows < 0:
            raise FormatError(
                f"{where} has a row group of {rows:,} rows, more than the {MAX_ROW_GROUP:,} "
                "format 1 allows"
            )
        total += rows
    if total != meta.num_rows:
        raise FormatError(f"{where} is damaged: its row groups do not add up to its rows")


def _one_line(exc: BaseException) -> str:
    """A library's error message as one printable line (Arrow's may hold several, and
    bytes from the damaged file)."""
    text = " ".join(str(exc).split())
    return "".join(c if c.isprintable() else "?" for c in text)[:200]


def segment_rows(data: bytes, where: str = "metric segment") -> int:
    """How many points a segment holds (from its footer, without decoding it)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        meta = pq.ParquetFile(pa.BufferReader(data)).metadata
    except (pa.ArrowException, OSError) as exc:
        raise FormatError(f"{where} is damaged or truncated") from exc
    _check_bounds(meta, where)
    return int(meta.num_rows)


def concat(tables: list[Any]) -> Any:
    """Concatenate segments (an empty table when there are none)."""
    import pyarrow as pa

    if not tables:
        return columns.empty_table(schema())
    return pa.concat_tables(tables)


def series(table: Any, key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one key, in log order."""
    import pyarrow.compute as pc

    sub = table.filter(pc.equal(table.column("key"), columns.text(key)))
    return sub.column("step").to_pylist(), sub.column("value").to_pylist()


def rehearse() -> None:
    """Go once through everything a run's last drain and commit do with points.

    Called when a run starts, so that every module those steps import lazily
    (numpy, pyarrow, Parquet, zstd, and what pyarrow itself loads on first use)
    is imported then: a run finished at interpreter exit must import nothing
    (see ``tracking._RefuseImports``).
    """
    buffer = MetricBuffer()
    buffer.append("k", 1.0, 0)
    buffer.append_array("a", [1.0, 2.0], None, lambda: None)
    drained = buffer.drain(None)
    assert drained is not None
    table, _ = drained
    data = to_parquet(concat([table, table]))
    merged = merge_segments([(data, "rehearsal"), (data, "rehearsal")])
    summarize(from_parquet(merged, "rehearsal"))
    segment_rows(merged, "rehearsal")
    release_memory()


def key_arrays(table: Any) -> dict[str, tuple[Any, Any, Any]]:
    """Every key's points of a metrics table as numpy arrays, in step order:
    ``{key: (steps int64, values float64, times int64 µs since the epoch)}``.

    No Python object per point: the dashboard reads 10 million points this way
    and downsamples them before anything is sent. Chunk by chunk (a chunk is a
    segment, or a part of one): a chunk that holds one key (the usual case for a
    big run, whose segments are written one key at a time) is taken whole, its
    numbers without a copy; only a chunk of several keys is split by key. A key
    whose points are already in step order is not sorted again.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    if table.num_rows == 0:
        return {}
    table = table.combine_chunks() if table.column("key").num_chunks > 64 else table
    parts: dict[str, list[tuple[Any, Any, Any]]] = {}
    key_col, step_col = table.column("key"), table.column("step")
    value_col, time_col = table.column("value"), table.column("time")
    for kc, sc, vc, tc in zip(key_col.chunks, step_col.chunks, value_col.chunks, time_col.chunks):
        if len(kc) == 0:
            continue
        steps = columns.to_numpy(sc.cast(pa.int64()))
        values = columns.to_numpy(vc.cast(pa.float64()))
        tc = tc.cast(pa.timestamp("us", tz="UTC")).cast(pa.int64())
        times = columns.to_numpy(tc.fill_null(0) if tc.null_count else tc)
        if not pa.types.is_dictionary(kc.type):
            bounds = pc.min_max(kc)
            low, high = bounds["min"].as_py(), bounds["max"].as_py()
            if low == high and kc.null_count == 0:  # one key: the whole chunk
                parts.setdefault(str(low), []).append((steps, values, times))
                continue
            kc = pc.dictionary_encode(kc)
        names = kc.dictionary.to_pylist()
        if len(names) == 1 and kc.null_count == 0:  # one key: the whole chunk
            parts.setdefault(str(names[0]), []).append((steps, values, times))
            continue
        idx = np.asarray(kc.indices.to_numpy(zero_copy_only=False))
        for i, name in enumerate(names):
            sel = np.flatnonzero(idx == i)
            if len(sel):
                parts.setdefault(str(name), []).append((steps[sel], values[sel], times[sel]))
    out: dict[str, tuple[Any, Any, Any]] = {}
    for name, chunks in parts.items():
        if len(chunks) == 1:
            s, v, t = chunks[0]
        else:
            s, v, t = (np.concatenate([c[j] for c in chunks]) for j in range(3))
        if len(s) > 1 and not bool(np.all(s[1:] >= s[:-1])):
            order = np.argsort(s, kind="stable")
            s, v, t = s[order], v[order], t[order]
        out[name] = (s, v, t)
    return out
