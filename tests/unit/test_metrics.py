"""metrics: buffer -> Arrow table -> Parquet -> table, and summaries."""

from __future__ import annotations

import math
import threading

import numpy as np
import pyarrow as pa
import pytest

from gitexp.errors import FormatError, InvalidValue
from gitexp.metrics import (
    MetricBuffer,
    concat,
    from_parquet,
    schema,
    series,
    summarize,
    to_parquet,
)


def _round_trip(buf: MetricBuffer) -> pa.Table:
    table = buf.drain()[0]
    assert table is not None and table.schema == schema()
    back = from_parquet(to_parquet(table))
    assert back.schema == table.schema
    for col in ("key", "step", "time"):
        assert back.column(col).to_pylist() == table.column(col).to_pylist()
    assert np.array_equal(
        back.column("value").to_numpy(), table.column("value").to_numpy(), equal_nan=True
    )
    return back


def test_points_survive_parquet_with_schema_and_order():
    buf = MetricBuffer()
    buf.append("loss", 1.0, 0)
    buf.append("loss", np.float32(0.5), 1)
    buf.append_many({"acc": 0.1, "lr": np.float64(1e-3)}, step=np.int64(1))
    table = _round_trip(buf)
    assert table.column_names == ["key", "step", "value", "time"]
    assert table.column("key").to_pylist() == ["loss", "loss", "acc", "lr"]
    assert table.column("step").to_pylist() == [0, 1, 1, 1]
    assert table.column("value").to_pylist() == [1.0, 0.5, 0.1, 1e-3]
    assert str(table.schema.field("time").type) == "timestamp[us, tz=UTC]"
    assert buf.drain() is None  # drained


def test_default_steps_count_up_per_key_and_follow_explicit_steps():
    buf = MetricBuffer()
    buf.append("a", 1.0)
    buf.append("a", 2.0)
    buf.append("b", 3.0)
    buf.append("a", 4.0, step=10)
    buf.append("a", 5.0)
    buf.append_array("b", [6.0, 7.0])
    buf.append("b", 8.0)
    table = buf.drain()[0]
    assert series(table, "a") == ([0, 1, 10, 11], [1.0, 2.0, 4.0, 5.0])
    assert series(table, "b")[0] == [0, 1, 2, 3]


def test_numpy_arrays_log_one_point_per_element():
    buf = MetricBuffer()
    buf.append_array("curve", np.linspace(0, 1, 5))
    buf.append_array("grid", np.ones((2, 3)))
    buf.append_array("given", [1.0, 2.0], steps=[5, 9])
    table = _round_trip(buf)
    assert series(table, "curve") == ([0, 1, 2, 3, 4], [0.0, 0.25, 0.5, 0.75, 1.0])
    assert len(series(table, "grid")[0]) == 6
    assert series(table, "given") == ([5, 9], [1.0, 2.0])
    with pytest.raises(InvalidValue):
        buf.append_array("bad", [1.0, 2.0], steps=[1])
    with pytest.raises(InvalidValue):
        buf.append_array("bad", [1.0], steps=[-1])
    with pytest.raises(InvalidValue):
        buf.append_array("bad", ["a", "b"])


def test_nan_and_infinities_are_stored_faithfully():
    buf = MetricBuffer()
    for v in (math.nan, math.inf, -math.inf, 1.0):
        buf.append("x", v)
    values = _round_trip(buf).column("value").to_pylist()
    assert math.isnan(values[0]) and values[1:] == [math.inf, -math.inf, 1.0]


@pytest.mark.parametrize("value", ["0.5", b"1", None, [1.0], {"a": 1}, object(), 1 + 2j])
def test_non_numeric_values_are_refused_with_the_key_named(value):
    buf = MetricBuffer()
    with pytest.raises(InvalidValue) as info:
        buf.append("loss", value)
    assert "'loss'" in str(info.value) and info.value.key == "loss"
    assert not buf.pending()
    if isinstance(value, list):  # append_many takes a list as an array of points
        return
    with pytest.raises(InvalidValue):
        buf.append_many({"ok": 1.0, "loss": value})
    assert not buf.pending()  # all or nothing
    with pytest.raises(InvalidValue):
        buf.append_many({"arr": [1.0, 2.0], "loss": value})
    assert not buf.pending()


@pytest.mark.parametrize("key", ["", "x" * 251, "a\nb", 3, None])
def test_bad_metric_keys_are_refused(key):
    with pytest.raises(InvalidValue):
        MetricBuffer().append(key, 1.0)


@pytest.mark.parametrize("step", [-1, 1.5, "3", True, 2**63])
def test_bad_steps_are_refused(step):
    with pytest.raises(InvalidValue):
        MetricBuffer().append("x", 1.0, step)


def test_summary_min_max_ignore_nan_and_last_is_last_logged():
    buf = MetricBuffer()
    for step, v in [(5, 3.0), (1, math.nan), (2, -1.0), (0, 7.0)]:
        buf.append("x", v, step)
    buf.append("only_nan", math.nan)
    s = summarize(buf.drain()[0])
    x = s.metrics["x"]
    assert (x.min, x.max, x.count) == (-1.0, 7.0, 4)
    assert x.last == 7.0 and x.last_step == 0  # logged last, though not the highest step
    assert math.isnan(s.metrics["only_nan"].min) and math.isnan(s.metrics["only_nan"].last)


def test_summary_last_is_last_logged_when_scalars_and_arrays_mix():
    buf = MetricBuffer()
    buf.append("x", 1.0)
    buf.append_array("x", np.array([2.0, 3.0]))
    buf.append("x", 4.0)
    table = buf.drain()[0]
    s = summarize(table).metrics["x"]
    assert (s.last, s.last_step, s.count) == (4.0, 3, 4)
    assert series(table, "x") == ([0, 1, 2, 3], [1.0, 2.0, 3.0, 4.0])


def test_summaries_of_segments_merge_like_one_summary_of_all():
    buf = MetricBuffer()
    segs = []
    for chunk in ([3.0, 1.0], [math.nan, 9.0, 2.0]):
        for v in chunk:
            buf.append("x", v)
        segs.append(from_parquet(to_parquet(buf.drain()[0])))
    merged = summarize(segs[0]).merge(summarize(segs[1]))
    whole = summarize(concat(segs))
    assert merged.metrics["x"] == whole.metrics["x"]
    assert (whole.metrics["x"].last, whole.metrics["x"].min, whole.metrics["x"].max) == (
        2.0,
        1.0,
        9.0,
    )


def test_concurrent_appends_lose_nothing():
    buf = MetricBuffer()
    n, threads = 2000, 8

    def work(i):
        for j in range(n):
            buf.append(f"t{i}", float(j), j)
            if j % 500 == 0:
                buf.append_array(f"arr{i}", [1.0, 2.0])

    ts = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    table = buf.drain()[0]
    assert table.num_rows == threads * (n + 8)
    for i in range(threads):
        assert series(table, f"t{i}")[1] == [float(j) for j in range(n)]


def test_damaged_segment_is_a_format_error():
    buf = MetricBuffer()
    buf.append("x", 1.0)
    data = to_parquet(buf.drain()[0])
    with pytest.raises(FormatError):
        from_parquet(data[: len(data) // 2])
    with pytest.raises(FormatError):
        from_parquet(b"not parquet at all")
    other = pa.table({"key": ["x"], "step": [1]})
    import io

    import pyarrow.parquet as pq

    out = io.BytesIO()
    pq.write_table(other, out)
    with pytest.raises(FormatError, match="lacks columns"):
        from_parquet(out.getvalue())


def test_empty_concat_has_the_schema():
    assert concat([]).schema == schema() and concat([]).num_rows == 0


@pytest.mark.parametrize("dictionary_keys", [False, True])
def test_key_arrays_splits_keys_and_orders_steps_whatever_the_chunks(dictionary_keys):
    import numpy as np
    import pyarrow as pa

    from gitexp.metrics import concat, from_parquet, key_arrays, to_parquet

    rng = np.random.default_rng(3)
    chunks = [
        [("loss", s, float(s)) for s in range(50)],  # one key, in order
        [("acc", s, s / 10) for s in (5, 3, 9, 1)],  # one key, out of order
        [(k, s, float(s * len(k))) for s in range(50, 60) for k in ("loss", "acc", "lr")],
        [("loss", int(s), float(s)) for s in rng.permutation(np.arange(60, 90))],
    ]

    def segment(rows, dictionary_keys):
        buf = MetricBuffer()
        for key, step, value in rows:
            buf.append(key, value, step)
        return from_parquet(to_parquet(buf.drain()[0]), dictionary_keys=dictionary_keys)

    table = concat([segment(c, dictionary_keys) for c in chunks])
    assert table.column("key").num_chunks == 4
    got = key_arrays(table)
    rows = [r for c in chunks for r in c]
    for key in ("loss", "acc", "lr"):
        mine = [(s, v) for k, s, v in rows if k == key]
        mine.sort(key=lambda p: p[0])  # stable: ties keep their order
        steps, values, times = got[key]
        assert steps.tolist() == [s for s, _ in mine]
        assert values.tolist() == [v for _, v in mine]
        assert steps.dtype == np.int64 and values.dtype == np.float64 and times.dtype == np.int64
    assert sorted(got) == ["acc", "loss", "lr"]
    one = key_arrays(pa.concat_tables([segment(chunks[0], dictionary_keys)]))
    assert list(one) == ["loss"] and one["loss"][0].tolist() == list(range(50))
