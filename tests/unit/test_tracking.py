"""The tracking API: gitexp.start_run, Run, module-level shortcuts, gitexp.runs()."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pyarrow as pa
import pytest

import gitexp
from conftest import exp_state, git, run_refs, show_json
from gitexp.cas import LocalStore
from gitexp.errors import (
    GitExpError,
    InvalidName,
    InvalidValue,
    NoCommits,
    NotARepository,
    RunStateError,
)
from gitexp.store import ExpStore


def _record(repo, ref):
    with ExpStore(repo) as s:
        rec = s.read(s.resolve(ref))
        table = s.read_metrics(rec)
    return rec, table


def _series(table, key):
    from gitexp.metrics import series

    return series(table, key)


def test_context_manager_records_a_finished_run(repo):
    head = git("rev-parse", "HEAD", cwd=repo).strip()
    with gitexp.start_run(
        experiment="mnist", name="baseline", params={"lr": 0.01}, tags=["t1"]
    ) as run:
        assert gitexp.active_run() is run
        assert run.experiment == "mnist" and run.ref == f"refs/experiments/mnist/{run.id}"
        for step in range(3):
            run.log_metrics({"loss": 1.0 / (step + 1), "acc": np.float32(0.25) * step}, step=step)
    assert gitexp.active_run() is None
    assert run_refs(repo) == [run.ref]
    rec, table = _record(repo, run.ref)
    assert rec.status == "finished" and rec.name == "baseline" and rec.tags == ["t1"]
    assert rec.params == {"lr": 0.01}
    assert rec.summary.metrics["loss"].last == pytest.approx(1 / 3)
    assert rec.summary.metrics["acc"].max == 0.5
    assert _series(table, "loss")[0] == [0, 1, 2]
    assert rec.info["end_time"] >= rec.info["start_time"]
    assert rec.info["duration"] >= 0
    # a run that ends within its first second is one commit, on HEAD (clean work tree)
    with ExpStore(repo) as s:
        assert s.history(rec.sha) == [rec.sha]
    assert git("rev-parse", f"{rec.sha}^", cwd=repo).strip() == head
    assert git("log", "-1", "--format=%s", rec.sha, cwd=repo).startswith(f"finish mnist/{run.id}")
    # finishing removed the live spool
    assert not os.listdir(repo / ".git" / "exp" / "live")


def test_plain_call_and_finish(repo):
    run = gitexp.start_run(params={"a": 1})
    run.log_metric("x", 3)
    run.finish()
    run.finish()  # idempotent
    rec, _ = _record(repo, run.id)
    assert rec.status == "finished" and rec.summary.metrics["x"].last == 3.0
    with pytest.raises(RunStateError):
        run.log_metric("x", 4)
    with pytest.raises(RunStateError):
        run.log_params({"b": 2})


def test_finish_with_a_status_and_refuses_a_bad_one(repo):
    run = gitexp.start_run()
    with pytest.raises(GitExpError):
        run.finish("running")
    run.finish("killed")
    assert _record(repo, run.id)[0].status == "killed"


def test_params_nested_dotted_and_numpy(repo):
    with gitexp.start_run(params={"opt": {"lr": 0.1}}) as run:
        run.log_param("opt.momentum", np.float64(0.9))
        run.log_params({"layers": np.array([64, 32]), "seed": np.int64(7), "opt": {"lr": 0.2}})
        with pytest.raises(InvalidValue) as info:
            run.log_param("model", object())
        assert "'model'" in str(info.value)
        assert run.params == {"opt": {"lr": 0.2, "momentum": 0.9}, "layers": [64, 32], "seed": 7}
    assert show_json(repo, run.ref, "params.json") == {
        "layers": [64, 32],
        "opt": {"lr": 0.2, "momentum": 0.9},
        "seed": 7,
    }


def test_metrics_numpy_scalars_arrays_nan_and_bad_values(repo):
    with gitexp.start_run() as run:
        run.log_metric("f32", np.float32(0.5))
        run.log_metric("i64", np.int64(3), step=np.int64(10))
        run.log_metric("curve", np.linspace(0.0, 1.0, 11))
        run.log_metric("curve_at", np.array([1.0, 2.0]), step=100)
        run.log_metric("scalar_array", np.array(2.5), step=4)
        run.log_metric("weird", float("nan"))
        run.log_metric("weird", float("inf"))
        with pytest.raises(InvalidValue):
            run.log_metric("loss", "0.5")
        with pytest.raises(InvalidValue):
            run.log_metrics({"loss": None})
    rec, table = _record(repo, run.ref)
    assert _series(table, "i64") == ([10], [3.0])
    assert _series(table, "curve")[0] == list(range(11))
    assert _series(table, "curve_at") == ([100, 101], [1.0, 2.0])
    assert _series(table, "scalar_array") == ([4], [2.5])
    w = rec.summary.metrics["weird"]
    assert w.last == float("inf") and w.count == 2
    assert "loss" not in rec.summary.metrics
    assert rec.status == "finished"


def test_log_metrics_takes_arrays_like_log_metric(repo):
    with gitexp.start_run() as run:
        run.log_metrics({"loss": np.float32(0.5), "curve": np.array([3.0, 2.0, 1.0])}, step=10)
        run.log_metrics({"grad": [1.0, 2.0], "acc": 0.9})  # a list is an array too
        with pytest.raises(InvalidValue):  # nothing of a bad call is logged
            run.log_metrics({"ok": 1.0, "bad": np.array(["x", "y"])})
        with pytest.raises(InvalidValue):
            run.log_metrics({"ok": 1.0, "bad": None, "arr": np.arange(3)})
    rec, table = _record(repo, run.ref)
    assert _series(table, "loss") == ([10], [0.5])
    assert _series(table, "curve") == ([10, 11, 12], [3.0, 2.0, 1.0])
    assert _series(table, "grad") == ([0, 1], [1.0, 2.0])
    assert _series(table, "acc") == ([0], [0.9])
    assert {"ok", "bad", "arr"}.isdisjoint(rec.summary.metrics)


def test_a_huge_array_is_buffered_in_bounded_memory_and_kept_whole(repo, monkeypatch):
    """An array bigger than the buffer bound is copied slice by slice and spooled
    during the call; every point arrives, in order, with its step, and the caller
    may overwrite its array as soon as the call returns. (Bounds scaled down.)"""
    from gitexp import metrics, tracking

    monkeypatch.setattr(tracking, "MAX_BUFFERED", 40_000)
    monkeypatch.setattr(metrics, "DRAIN_POINTS", 10_000)
    MAX_BUFFERED = tracking.MAX_BUFFERED
    n = 3 * MAX_BUFFERED + 123
    values = np.arange(n, dtype=np.float64)
    with gitexp.start_run() as run:
        run.log_metric("big", values, step=5)
        assert run._buffer.size() <= MAX_BUFFERED  # the rest is on disk already
        values[:] = -1.0  # the caller reuses its array
        run.log_metric("big", 7.0)  # one past the array's last step
        run.log_metrics({"pair": np.array([1.0, 2.0])}, step=0)
    _, table = _record(repo, run.ref)
    steps, vals = _series(table, "big")
    assert steps == list(range(5, 5 + n + 1))
    assert vals[:-1] == list(np.arange(n, dtype=np.float64)) and vals[-1] == 7.0
    assert _series(table, "pair") == ([0, 1], [1.0, 2.0])


def test_log_summary_overrides_the_last_value(repo):
    with gitexp.start_run() as run:
        run.log_metric("acc", 0.5)
        run.log_summary({"acc": 0.9, "test_acc": 0.8})
    rec, _ = _record(repo, run.ref)
    assert rec.summary.final_values() == {"acc": 0.9, "test_acc": 0.8}


def test_artifacts_files_and_directories(repo, tmp_path):
    (repo / "model.bin").write_bytes(b"weights" * 100)
    out = repo / "out"
    (out / "sub").mkdir(parents=True)
    (out / "a.txt").write_text("a")
    (out / "sub" / "b.txt").write_text("b")
    with gitexp.start_run() as run:
        e1 = run.log_artifact(repo / "model.bin")
        e2 = run.log_artifact(str(out))
        e3 = run.log_artifact(repo / "model.bin", name="models/best.bin")
        with pytest.raises(InvalidName):
            run.log_artifact(repo / "model.bin", name="../escape.bin")
        with pytest.raises(GitExpError):
            run.log_artifact(repo / "missing.bin")
    manifest = {a["path"]: a for a in show_json(repo, run.ref, "artifacts.json")}
    assert set(manifest) == {"model.bin", "out", "models/best.bin"}
    assert manifest["model.bin"]["size"] == 700 and manifest["model.bin"]["role"] == "output"
    assert manifest["out"]["kind"] == "dir" and manifest["out"]["files"] == 2
    assert e1.blake3 == e3.blake3
    cas = LocalStore(repo / ".git" / "exp")
    assert cas.get_bytes(e1.blake3) == b"weights" * 100
    cas.verify(e2.blake3)
    # the artifact bytes are not in git
    assert "model.bin" not in git("ls-tree", "-r", "--name-only", run.ref, cwd=repo)


def test_inputs_are_hashed_and_optionally_stored(repo, tmp_path):
    (repo / "data").mkdir()
    (repo / "data" / "train.csv").write_text("x,y\n1,2\n")
    ext = tmp_path / "external.csv"
    ext.write_text("outside the repo\n")
    with gitexp.start_run() as run:
        d = run.log_input(repo / "data")
        f = run.log_input(ext, store=True)
    inputs = {
        a["path"]: a for a in show_json(repo, run.ref, "artifacts.json") if a["role"] == "input"
    }
    assert inputs["data"]["source"] == "data" and inputs["data"]["stored"] is False
    assert inputs["data"]["blake3"] == d.blake3
    assert f.path.startswith("external/") and inputs[f.path]["source"] == str(ext)
    cas = LocalStore(repo / ".git" / "exp")
    assert cas.get_bytes(f.blake3) == b"outside the repo\n"
    with ExpStore(repo) as s:
        assert [i.path for i in s.read(s.resolve(run.id)).inputs()] == sorted(inputs)


def test_tags_notes_and_remove(repo):
    with gitexp.start_run(tags=["a"]) as run:
        run.set_tags("b", ["c", "d"], {"owner": "me"})
        run.remove_tags("d")
        run.note("first try")
        with pytest.raises(InvalidName):
            run.set_tags("bad,tag")
    rec, _ = _record(repo, run.ref)
    assert rec.tags == ["a", "b", "c", "owner=me"]
    assert [n["text"] for n in rec.info["notes"]] == ["first try"]


def test_module_level_shortcuts_use_the_active_run(repo, tmp_path):
    with pytest.raises(GitExpError, match="no active run"):
        gitexp.log_metric("x", 1.0)
    (tmp_path / "f.txt").write_text("f")
    with gitexp.start_run() as run:
        gitexp.log_metric("x", 1.0)
        gitexp.log_metrics({"y": 2.0}, step=3)
        gitexp.log_param("p", 1)
        gitexp.log_params({"q": 2})
        gitexp.log_summary({"z": 5.0})
        gitexp.log_artifact(tmp_path / "f.txt")
        gitexp.log_input(tmp_path / "f.txt")
        gitexp.set_tags("t")
        gitexp.note("n")
    rec, _ = _record(repo, run.ref)
    assert rec.params == {"p": 1, "q": 2}
    assert rec.summary.final_values() == {"x": 1.0, "y": 2.0, "z": 5.0}
    assert rec.tags == ["t"] and rec.info["notes"][0]["text"] == "n"
    assert {a.role for a in rec.artifacts} == {"output", "input"}


def test_nested_runs_shortcuts_go_to_the_innermost(repo):
    with gitexp.start_run(experiment="outer") as outer:
        with gitexp.start_run(experiment="inner") as inner:
            gitexp.log_metric("m", 1.0)
        gitexp.log_metric("m", 2.0)
    assert _record(repo, inner.ref)[0].summary.metrics["m"].last == 1.0
    assert _record(repo, outer.ref)[0].summary.metrics["m"].last == 2.0


def test_exception_in_with_records_failed_and_reraises(repo):
    with pytest.raises(ZeroDivisionError):
        with gitexp.start_run() as run:
            run.log_metric("loss", 1.0)
            1 / 0  # noqa: B018
    rec, _ = _record(repo, run.ref)
    assert rec.status == "failed"
    assert "ZeroDivisionError" in rec.info["error"] and "Traceback" in rec.info["error"]
    assert rec.summary.metrics["loss"].last == 1.0  # what was logged is kept


def test_keyboardinterrupt_records_killed(repo):
    with pytest.raises(KeyboardInterrupt):
        with gitexp.start_run() as run:
            raise KeyboardInterrupt
    assert _record(repo, run.ref)[0].status == "killed"


def test_runs_returns_an_arrow_table(repo):
    with gitexp.start_run(experiment="a", params={"lr": 0.1}, tags=["keep"]) as r1:
        r1.log_metric("acc", 0.5)
    with pytest.raises(RuntimeError):
        with gitexp.start_run(experiment="b", params={"lr": 0.2}) as r2:
            raise RuntimeError("boom")
    table = gitexp.runs()
    assert isinstance(table, pa.Table) and table.num_rows == 2
    rows = {r["id"]: r for r in table.to_pylist()}
    assert rows[r1.id]["params.lr"] == 0.1 and rows[r1.id]["metrics.acc"] == 0.5
    assert rows[r2.id]["status"] == "failed"
    assert gitexp.runs(experiment="a").column("id").to_pylist() == [r1.id]
    assert gitexp.runs(status="failed").column("id").to_pylist() == [r2.id]
    assert gitexp.runs(tags=["keep"]).column("id").to_pylist() == [r1.id]
    assert gitexp.runs(experiment="nothing-here").num_rows == 0
    # get_run / diff as data
    assert gitexp.get_run(r1.id)["params"] == {"lr": 0.1}
    d = gitexp.diff(r1.id, r2.id)
    assert d["params"] == [{"key": "lr", "a": 0.1, "b": 0.2}]


def test_threads_logging_concurrently_lose_nothing(repo):
    n_threads, n = 8, 500
    with gitexp.start_run() as run:

        def work(i):
            for j in range(n):
                run.log_metric(f"t{i}", j, step=j)
                if j % 100 == 0:
                    run.log_params({f"p{i}.{j}": j})
                    run.flush()

        threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    rec, table = _record(repo, run.ref)
    assert table.num_rows == n_threads * n
    for i in range(n_threads):
        assert _series(table, f"t{i}") == (list(range(n)), [float(j) for j in range(n)])
        assert rec.params[f"p{i}"] == {str(j): j for j in range(0, n, 100)}


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_never_writes_the_parents_run(repo):
    with gitexp.start_run() as run:
        run.log_metric("x", 1.0, step=0)
        run.flush()
        live = repo / ".git" / "exp" / "live" / run.id
        before = sorted(p.name for p in live.rglob("*"))
        tip = run.sha
        pid = os.fork()
        if pid == 0:  # the child: a data-loader worker
            code = 0
            try:
                run.log_metric("x", 666.0, step=1)
                run.log_params({"child": True})
                run.note("from child")
                run.flush()
                run.checkpoint()
                run.finish("failed")
                # module-level calls reach the inert run too: no error, no write
                gitexp.log_metric("y", 1.0)
                gitexp.log_params({"child": True})
            except BaseException:
                code = 1
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        assert os.WEXITSTATUS(status) == 0
        assert sorted(p.name for p in live.rglob("*")) == before
        assert run.sha == tip
        run.log_metric("x", 2.0, step=1)
    rec, table = _record(repo, run.ref)
    assert rec.status == "finished"
    assert _series(table, "x") == ([0, 1], [1.0, 2.0])
    assert "child" not in rec.params and not rec.info["notes"]


def _python(script: str, cwd, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script)],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        **kw,
    )


def test_a_killed_process_keeps_what_it_flushed_and_reads_as_crashed(repo):
    proc = _python(
        """
        import os, signal, gitexp
        run = gitexp.start_run(experiment="k", params={"p": 1})
        print(run.id, flush=True)
        run.log_metrics({"loss": 0.5}, step=0)
        run.note("before the kill")
        run.flush()
        os.kill(os.getpid(), signal.SIGKILL)
        """,
        repo,
    )
    assert proc.returncode == -9
    run_id = proc.stdout.split()[0]
    with ExpStore(repo) as s:
        rec = s.read_settled(run_id)
        assert rec.status == "crashed"
        assert rec.summary.metrics["loss"].last == 0.5
        assert rec.info["notes"][0]["text"] == "before the kill"
        assert rec.info["end_time"]
    assert not (repo / ".git" / "exp" / "live" / run_id).exists()


def test_a_run_left_open_is_finished_at_interpreter_exit(repo):
    proc = _python(
        """
        import gitexp
        run = gitexp.start_run(experiment="open")
        run.log_metric("m", 1.0)
        """,
        repo,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    table = gitexp.runs(experiment="open")
    assert table.column("status").to_pylist() == ["finished"]
    assert table.column("metrics.m").to_pylist() == [1.0]


def test_an_uncaught_exception_outside_with_marks_the_open_run_failed(repo):
    proc = _python(
        """
        import gitexp
        run = gitexp.start_run(experiment="open")
        raise SystemError("boom")
        """,
        repo,
    )
    assert proc.returncode == 1 and "SystemError" in proc.stderr
    rec = gitexp.runs(experiment="open").to_pylist()[0]
    assert rec["status"] == "failed"


def test_start_run_outside_a_repository(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(NotARepository):
        gitexp.start_run()
    assert not list(tmp_path.iterdir())


def test_start_run_in_a_repository_without_commits_writes_nothing(tmp_path, monkeypatch):
    git("init", "-q", str(tmp_path / "r"))
    monkeypatch.chdir(tmp_path / "r")
    (tmp_path / "r" / "train.py").write_text("print(1)\n")
    with pytest.raises(NoCommits):
        gitexp.start_run()
    assert exp_state(tmp_path / "r") == ([], [])
    assert not (tmp_path / "r" / ".git" / "exp" / "live").exists() or not list(
        (tmp_path / "r" / ".git" / "exp" / "live").rglob("*")
    )


def test_invalid_names_are_refused_before_anything_is_written(repo):
    with pytest.raises(InvalidName):
        gitexp.start_run(experiment="has space")
    with pytest.raises(InvalidName):
        gitexp.start_run(name="line\nbreak")
    with pytest.raises(InvalidValue):
        gitexp.start_run(params={"x": object()})
    assert exp_state(repo) == ([], [])
    assert not (repo / ".git" / "exp").exists()


def test_dirty_work_tree_run_points_at_a_snapshot(repo):
    (repo / "train.py").write_text("# changed\n")
    (repo / "helper.py").write_text("# new\n")
    with gitexp.start_run() as run:
        pass
    code = show_json(repo, run.ref, "code.json")
    head = git("rev-parse", "HEAD", cwd=repo).strip()
    assert code["dirty"] and code["head"] == head and code["snapshot"] == code["commit"]
    assert set(code["changed"]) == {"train.py", "helper.py"}
    assert "train.py" in code["diff_stat"]
    root = git("rev-list", "--first-parent", run.ref, cwd=repo).split()
    assert code["snapshot"] in root
    assert git("rev-parse", f"{code['snapshot']}^", cwd=repo).strip() == head
    assert git("show", f"{code['snapshot']}:helper.py", cwd=repo) == "# new\n"
    assert git("status", "--porcelain", cwd=repo).count("??") == 1  # helper.py still untracked


def test_a_live_run_reaches_its_ref_at_checkpoints_before_finishing(repo, monkeypatch):
    """The background flusher creates the run's ref a moment into the run, then
    spools and commits checkpoints without any call from the script."""
    import time

    from gitexp import tracking

    monkeypatch.setattr(tracking, "FLUSH_INTERVAL", 0.05)
    monkeypatch.setattr(tracking, "FIRST_COMMIT_DELAY", 0.3)
    monkeypatch.setattr(tracking, "MIN_CHECKPOINT", 0.3)
    head = git("rev-parse", "HEAD", cwd=repo).strip()

    def wait_for(check):
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            found = check()
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError("the flusher never got there")

    with gitexp.start_run() as run:
        run.log_metric("loss", 0.5)
        if run.sha is None:  # the ref comes with the first commit, once the run is 0.3 s old
            assert run_refs(repo) == []
        first = wait_for(lambda: run.sha)
        assert git("log", "-1", "--format=%s", first, cwd=repo).startswith("start ")
        assert git("rev-parse", f"{first}^", cwd=repo).strip() == head

        def loss():  # the loss summary on the run's ref now
            return show_json(repo, run.ref, "summary.json")["metrics"].get("loss")

        assert wait_for(loss)["last"] == 0.5
        run.log_metric("loss", 0.25)
        assert wait_for(lambda: loss()["count"] == 2 and loss())["last"] == 0.25
        assert run.sha != first
        assert show_json(repo, run.ref, "run.json")["status"] == "running"
        assert git("log", "-1", "--format=%s", run.ref, cwd=repo).startswith("checkpoint ")
    assert _record(repo, run.ref)[0].summary.metrics["loss"].count == 2  # none counted twice
