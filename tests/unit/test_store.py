"""store: run commits, updates, addressing runs."""

from __future__ import annotations

import pytest

from conftest import git, sha_prefix_collision, show_json
from gitexp import records as fmt
from gitexp.errors import AmbiguousRun, InvalidName, RunNotFound
from gitexp.metrics import MetricBuffer, to_parquet
from gitexp.store import RunDelta


def _create(store, experiment="exp", run_id=None, params=None):
    head = store.repo.head()
    run = {
        "status": "running",
        "command": ["python", "train.py"],
        "start_time": fmt.iso(fmt.utc_now()),
    }
    if run_id:
        run["id"] = run_id
    return store.create(experiment, run, params or {"lr": 0.1}, {"tree": "t"}, head, {})


def test_a_run_commit_has_the_code_commit_as_first_parent(store, repo):
    ref, sha = _create(store)
    head = git("rev-parse", "HEAD", cwd=repo).strip()
    assert git("rev-parse", f"{sha}^1", cwd=repo).strip() == head
    assert git("rev-parse", str(ref), cwd=repo).strip() == sha
    info = show_json(repo, str(ref), "run.json")
    assert info["format"] == 1 and info["id"] == ref.run_id and info["experiment"] == "exp"
    assert info["status"] == "running"
    assert show_json(repo, str(ref), "params.json") == {"lr": 0.1}


def test_updates_chain_on_the_run_and_apply_each_part(store, repo):
    ref, first = _create(store)
    buf = MetricBuffer()
    buf.append("loss", 1.0)
    buf.append("loss", 0.5)
    table = buf.drain()[0]
    from gitexp.metrics import summarize

    delta = RunDelta(
        params={"opt": {"name": "adam"}},
        tags_add=["b", "a"],
        notes=[{"time": "t", "text": "hello"}],
        segments=[to_parquet(table)],
        summary=summarize(table),
        run={"status": "finished", "end_time": fmt.iso(fmt.utc_now())},
    )
    second = store.update(ref, delta, "finish")
    assert git("rev-parse", f"{second}^1", cwd=repo).strip() == first
    assert store.history(second) == [second, first]
    rec = store.read(ref)
    assert rec.params == {"lr": 0.1, "opt": {"name": "adam"}}
    assert rec.tags == ["a", "b"] and rec.status == "finished"
    assert rec.info["notes"][0]["text"] == "hello"
    assert rec.summary.metrics["loss"].last == 0.5
    assert [n for n, _ in rec.segments] == ["000000.parquet"]
    assert store.read_metrics(rec).column("value").to_pylist() == [1.0, 0.5]
    assert rec.info["duration"] >= 0
    # a second segment is appended, never rewritten
    buf.append("loss", 0.25)
    t2 = buf.drain()[0]
    store.update(ref, RunDelta(segments=[to_parquet(t2)], summary=summarize(t2)))
    rec = store.read(ref)
    assert [n for n, _ in rec.segments] == ["000000.parquet", "000001.parquet"]
    assert rec.summary.metrics["loss"].count == 3
    # an update that changes nothing makes no commit
    tip = store.repo.get_ref(str(ref))
    assert store.update(ref, RunDelta(tags_add=["a"])) == tip


def test_the_commit_subject_names_the_run(store, repo):
    ref, _ = _create(store)
    subject = git("log", "-1", "--format=%s", str(ref), cwd=repo).strip()
    assert subject == f"start {ref.short}: python train.py"
    body = git("log", "-1", "--format=%b", str(ref), cwd=repo)
    assert "params: lr=0.1" in body and "status: running" in body


def test_resolve_every_address_form(store):
    ref, sha = _create(store, "fraud/xgb")
    other, _ = _create(store, "fraud")
    for address in (
        ref.run_id,
        ref.short,
        str(ref),
        sha,
        sha[:7],
        sha[:4].upper(),
        f"  {ref.run_id} ",
    ):
        assert store.resolve(address) == ref, address
    assert store.resolve(other.short) == other
    # an older commit of the run resolves to the run too
    new_tip = store.update(ref, RunDelta(tags_add=["x"]))
    assert store.resolve(sha[:10]) == ref and new_tip != sha
    assert store.read_settled(ref.run_id).sha == new_tip


@pytest.mark.parametrize(
    "address",
    [
        "",
        "nope",
        "20990101-000000-abcdef",
        "exp/20990101-000000-abcdef",
        "refs/experiments/exp/20990101-000000-abcdef",
        "refs/heads/main",
        "deadbeef",
        "abc",
    ],
)
def test_unknown_runs_are_runnotfound(store, address):
    _create(store)
    with pytest.raises(RunNotFound) as info:
        store.resolve(address)
    assert not isinstance(info.value, AmbiguousRun)
    assert info.value.exit_code == 4


def test_a_run_id_in_two_experiments_is_ambiguous_and_lists_both(store):
    rid = "20261122-143022-7f3a9c"
    a, _ = _create(store, "a", rid)
    b, _ = _create(store, "b", rid)
    with pytest.raises(AmbiguousRun) as info:
        store.resolve(rid)
    assert info.value.candidates == [a.short, b.short]
    assert a.short in str(info.value) and b.short in str(info.value)
    assert store.resolve(a.short) == a


def test_an_ambiguous_sha_prefix_lists_its_candidates(store):
    prefix, runs = sha_prefix_collision(store)
    with pytest.raises(AmbiguousRun) as info:
        store.resolve(prefix)
    assert sorted(info.value.candidates) == runs
    assert all(r in str(info.value) for r in runs)
    assert store.resolve(runs[0]).short == runs[0]


def test_list_refs_includes_sub_experiments_but_not_siblings(store):
    a, _ = _create(store, "team")
    b, _ = _create(store, "team/sub")
    c, _ = _create(store, "teammate")
    assert set(store.list_refs("team")) == {a, b}
    assert set(store.list_refs()) == {a, b, c}
    with pytest.raises(InvalidName):
        store.list_refs("bad name")


def test_create_refuses_an_invalid_experiment_and_writes_nothing(store, repo):
    with pytest.raises(InvalidName):
        _create(store, "bad..name")
    assert git("for-each-ref", "refs/experiments/", cwd=repo) == ""


def test_delete_removes_the_ref(store, repo):
    ref, _ = _create(store)
    assert store.delete(ref)
    with pytest.raises(RunNotFound):
        store.resolve(ref.run_id)


def test_a_running_run_without_a_local_spool_is_not_rewritten(store, repo):
    """A run fetched from a clone on this host: only its own repository can settle it."""
    ref, sha = _create(store)
    rec = store.read_settled(ref.run_id)
    assert rec.status == "running" and rec.sha == sha
    assert store.repo.get_ref(str(ref)) == sha
    old = "2000-01-01T00:00:00Z"
    ref2, sha2 = store.create(
        "exp",
        {"status": "running", "start_time": old, "heartbeat": old},
        {},
        {},
        store.repo.head(),
        {},
    )
    rec2 = store.read_settled(ref2.run_id)
    assert rec2.status == "crashed"  # a stale heartbeat reads as crashed...
    assert store.repo.get_ref(str(ref2)) == sha2  # ...without a commit on a ref we do not own


def test_commit_messages_list_params_in_one_order():
    """Checkpoints (params in logging order) and the finish (params read back from
    canonical params.json) must not list the same params in different orders."""
    from gitexp.records import ExpRef, Summary
    from gitexp.store.messages import commit_message

    ref = ExpRef("e", "20261122-143022-7f3a9c")
    run = {"status": "running", "command": ["python", "t.py"]}
    a = commit_message("checkpoint", ref, run, {"seed": 0, "lr": 0.5, "opt": {"b": 1}}, Summary())
    b = commit_message("checkpoint", ref, run, {"lr": 0.5, "opt": {"b": 1}, "seed": 0}, Summary())
    assert "params: lr=0.5, opt.b=1, seed=0" in a and a == b


def test_the_metrics_of_many_runs_read_at_once_are_those_read_one_by_one(store):
    from gitexp.metrics import summarize

    commits = []
    for n in (0, 1, 2):  # no segment, one, two
        ref, sha = _create(store)
        for s in range(n):
            buf = MetricBuffer()
            for i in range(5):
                buf.append("loss", 1.0 / (i + 1 + s), 10 * s + i)
            table = buf.drain()[0]
            sha = store.update(
                ref, RunDelta(segments=[to_parquet(table)], summary=summarize(table))
            )
        commits.append(sha)
    many = store.read_metrics_many(commits)
    for sha, table in zip(commits, many):
        rec = store.read(store.resolve(sha))
        assert table.num_rows == 5 * len(rec.segments)
        assert table.equals(store.read_metrics(rec))
