"""Run.log_throughput and gitexp.log_throughput: items per second as an ordinary metric."""

from __future__ import annotations

import math
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import gitexp
from gitexp import metrics
from gitexp.errors import InvalidValue, RunStateError, UsageError
from gitexp.store import ExpStore


def _points(repo, ref, key):
    from gitexp.metrics import series

    with ExpStore(repo) as s:
        rec = s.read(s.resolve(ref))
        return series(s.read_metrics(rec), key), rec


def test_the_rate_is_the_items_over_the_time_since_the_previous_call(repo):
    with gitexp.start_run(experiment="tp") as run:
        before_mark = time.monotonic()
        run.reset_throughput("samples")
        after_mark = time.monotonic()
        time.sleep(0.05)
        before = time.monotonic()
        rate = run.log_throughput(640, step=1, name="samples")
        after = time.monotonic()
        assert 640 / (after - before_mark) <= rate <= 640 / (before - after_mark)
        time.sleep(0.02)
        start2 = time.monotonic()
        second = run.log_throughput(64, step=2, name="samples")
        assert second <= 64 / (start2 - after)
    (steps, values), rec = _points(repo, run.ref, "throughput/samples_per_sec")
    assert steps == [1, 2] and values == [rate, second]
    assert rec.summary.metrics["throughput/samples_per_sec"].last == second


def test_the_first_call_counts_from_the_start_of_the_run(repo):
    before = time.monotonic()
    with gitexp.start_run(experiment="tp") as run:
        time.sleep(0.05)
        rate = run.log_throughput(100)
        after = time.monotonic()
    assert rate >= 100 / (after - before)
    assert rate <= 100 / 0.05
    (steps, _), _ = _points(repo, run.ref, "throughput/items_per_sec")
    assert steps == [0]  # no step: one past the last, like log_metric


def test_each_name_has_its_own_clock_and_key(repo):
    with gitexp.start_run(experiment="tp") as run:
        started = time.monotonic()  # the run's clocks started before this
        run.log_throughput(10, name="batches")
        time.sleep(0.05)
        run.log_throughput(10, name="batches")
        time.sleep(0.01)
        before = time.monotonic()
        samples = run.log_throughput(1000, name="samples")  # from the run's start, not
        tokens = run.log_throughput(np.int64(5), name="train/tokens")  # from a batches call
    assert samples <= 1000 / (before - started)
    assert tokens > 0
    with ExpStore(repo) as s:
        keys = set(s.read(s.resolve(run.ref)).summary.metrics)
    assert keys == {
        "throughput/batches_per_sec",
        "throughput/samples_per_sec",
        "throughput/train/tokens_per_sec",
    }


def test_a_call_in_the_same_clock_tick_carries_its_items_over(repo, monkeypatch):
    class FrozenClock:
        now = 100.0

        @classmethod
        def monotonic(cls):
            return cls.now

        time = staticmethod(time.time)

    with gitexp.start_run(experiment="tp") as run:
        monkeypatch.setattr(metrics, "time", FrozenClock)
        run.reset_throughput()
        assert math.isnan(run.log_throughput(30))  # no time went by: nothing logged
        FrozenClock.now += 2.0
        assert run.log_throughput(10) == 20.0  # (30 + 10) items in 2 s
        monkeypatch.undo()
    (steps, values), _ = _points(repo, run.ref, "throughput/items_per_sec")
    assert (steps, values) == ([0], [20.0])


@pytest.mark.parametrize("bad", [-1, float("nan"), float("inf"), True, "12", None, [1, 2]])
def test_a_bad_item_count_is_refused_and_leaves_the_clock_alone(repo, bad):
    with gitexp.start_run(experiment="tp") as run:
        run.reset_throughput()
        time.sleep(0.01)
        with pytest.raises(InvalidValue):
            run.log_throughput(bad)
        rate = run.log_throughput(1)
    assert rate <= 1 / 0.01
    (steps, _), _ = _points(repo, run.ref, "throughput/items_per_sec")
    assert steps == [0]


@pytest.mark.parametrize("name", ["", 7, "a\nb", "x" * 250])
def test_a_bad_name_is_refused(repo, name):
    with gitexp.start_run(experiment="tp") as run, pytest.raises(UsageError):
        run.log_throughput(1, name=name)


def test_a_finished_run_refuses_throughput(repo):
    run = gitexp.start_run(experiment="tp")
    run.finish()
    with pytest.raises(RunStateError):
        run.log_throughput(1)


def test_the_module_level_call_goes_to_the_active_run(repo):
    with pytest.raises(RunStateError):
        gitexp.log_throughput(1)
    with gitexp.start_run(experiment="tp") as run:
        gitexp.reset_throughput("rows")
        time.sleep(0.01)
        rate = gitexp.log_throughput(50, step=3, name="rows")
    assert 0 < rate <= 50 / 0.01
    (steps, values), _ = _points(repo, run.ref, "throughput/rows_per_sec")
    assert steps == [3] and values == [rate]


def test_threads_logging_throughput_lose_no_point(repo):
    with gitexp.start_run(experiment="tp") as run:

        def work():
            for i in range(500):
                run.log_throughput(8, step=i, name="samples")

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    (steps, values), _ = _points(repo, run.ref, "throughput/samples_per_sec")
    # a call in the same clock tick as another thread's logs nothing (its items carry over)
    assert 1900 <= len(steps) <= 2000
    assert all(v > 0 and math.isfinite(v) for v in values)


@pytest.mark.slow
def test_under_git_exp_run_the_first_call_counts_from_the_runs_start(repo, gx):
    (repo / "tp.py").write_text(
        textwrap.dedent(
            """
            import time, gitexp
            time.sleep(0.5)
            print("RATE", gitexp.log_throughput(1000, step=0, name="samples"))
            """
        )
    )
    out = gx.ok("run", "-e", "tp", "--", sys.executable, "tp.py")
    rate = float(out.split("RATE")[1].split()[0])
    # counted from the run's start, before the interpreter started: not from the attach
    assert 0 < rate <= 1000 / 0.5
