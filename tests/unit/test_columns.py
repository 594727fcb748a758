"""Arrow arrays built from buffers equal what ``pa.array`` builds, and building
them (and the catalog, and a sorted listing) never imports pandas."""

from __future__ import annotations

import random
import subprocess
import sys

import pyarrow as pa
import pytest

import gitexp
from gitexp import columns

TYPES = {
    "bool": (pa.bool_(), lambda r: r.random() < 0.5),
    "int64": (pa.int64(), lambda r: r.randint(-(2**63), 2**63 - 1)),
    "float64": (pa.float64(), lambda r: r.choice([r.uniform(-1e9, 1e9), 3, float("inf")])),
    "string": (pa.string(), lambda r: r.choice(["", "a", "ünïcødé", "x" * r.randint(0, 40)])),
    "tags": (
        pa.list_(pa.string()),
        lambda r: [r.choice(["a", "ü", ""]) for _ in range(3)][: r.randint(0, 3)],
    ),
}


@pytest.mark.parametrize("kind", sorted(TYPES))
@pytest.mark.parametrize("nulls", [0.0, 0.3, 1.0])
def test_arrays_equal_what_pa_array_builds(kind, nulls):
    type_, make = TYPES[kind]
    r = random.Random(f"{kind}{nulls}")
    for n in (0, 1, 7, 8, 9, 1000):
        values = [None if r.random() < nulls else make(r) for _ in range(n)]
        got = columns.array(values, type_)
        got.validate(full=True)
        assert got.equals(pa.array(values, type_)), (kind, n)
        assert got.null_count == sum(v is None for v in values)


def test_values_of_another_type_are_converted_or_refused_as_pa_array_does():
    assert columns.array([1, 2.0, None], pa.float64()).to_pylist() == [1.0, 2.0, None]
    with pytest.raises(pa.ArrowTypeError):
        columns.array([True], pa.int64())  # a bool is not taken as an integer
    with pytest.raises(pa.ArrowTypeError):
        columns.array(["a", 1], pa.string())
    with pytest.raises((pa.ArrowInvalid, pa.ArrowTypeError)):
        columns.array(["3"], pa.int64())
    # text that is not valid Unicode is refused, not written
    with pytest.raises((pa.ArrowInvalid, UnicodeEncodeError)):
        columns.array(["\udc80"], pa.string())


def test_indices_and_empty_tables():
    assert columns.indices([3, 0, 2]).to_pylist() == [3, 0, 2]
    schema = pa.schema([("a", pa.string()), ("b", pa.list_(pa.string()))])
    empty = columns.empty_table(schema)
    assert empty.num_rows == 0 and empty.schema == schema


def test_building_the_catalog_and_a_sorted_filtered_listing_never_import_pandas(repo):
    import pandas  # noqa: F401  installed here, as in most ML environments: git-exp must not import it

    for i in range(3):
        with gitexp.start_run(experiment="p", repo=repo, params={"i": i}, tags=["t"]) as r:
            r.log_metric("acc", i / 10)
    cmd = [sys.executable, "-X", "importtime", "-m", "gitexp", "log", "--sort", "-metrics.acc"]
    out = subprocess.run(
        [*cmd, "--where", "params.i >= 1", "--tag", "t"], cwd=repo, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    rows = [line.split() for line in out.stdout.splitlines()[1:]]
    assert [row[-1] for row in rows] == ["0.2", "0.1"]
    assert "pandas" not in out.stderr  # -X importtime lists every module imported
    assert "pyarrow" in out.stderr  # (and it does list them)
