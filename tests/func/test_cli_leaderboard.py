"""The one leaderboard service through its callers: git exp log, rm, export
and gitexp.runs() select, group and compare runs the same way."""

from __future__ import annotations

import json
import os
import stat

import pytest

import gitexp
from conftest import git, run_refs
from gitexp.leaderboard import Query, leaderboard
from gitexp.store import ExpStore

SWEEP = [(lr, seed) for lr in (0.1, 0.01) for seed in range(3)]


@pytest.fixture
def sweep(repo):
    ids = {}
    for lr, seed in SWEEP:
        tags = ["keep"] if seed == 0 else []
        with gitexp.start_run(
            experiment="sweep", params={"lr": lr, "seed": seed}, tags=tags, repo=repo
        ) as run:
            run.log_metrics({"val_accuracy": lr * 5 + seed / 100}, step=0)
        ids[(lr, seed)] = run.id
    with gitexp.start_run(experiment="other", repo=repo, params={"p": None}) as run:
        run.log_metrics({"train_loss": 1.0}, step=0)
    ids["other"] = run.id
    return ids


def test_a_where_that_matches_nothing_says_no_runs_match(gx, sweep):
    out = gx("log", "-w", "params.lr > 1e9")
    assert out.returncode == 0 and out.stdout == ""
    assert "no runs match" in out.stderr and "no runs yet" not in out.stderr


def test_columns_resolve_against_the_repository_not_the_filtered_rows(gx, sweep):
    out = gx("log", "-w", "params.lr > 1e9", "-c", "id,train_loss")
    assert out.returncode == 0, out.stderr
    assert "no runs match" in out.stderr
    # the sweep's runs have no train_loss: an empty column, not an error
    rows = json.loads(gx.ok("log", "--json", "-t", "keep", "-c", "id,train_loss"))
    assert len(rows) == 2 and all(r["metrics.train_loss"] is None for r in rows)
    # within an experiment, the names of that experiment's runs
    assert gx("log", "-e", "sweep", "-c", "id,train_loss").returncode == 2
    assert gx("log", "-c", "id,nope").returncode == 2


def test_group_by_keeps_its_key_and_columns_name_std_and_count(gx, sweep):
    rows = json.loads(
        gx.ok(
            "log",
            "--json",
            "-e",
            "sweep",
            "--group-by",
            "lr",
            "-c",
            "val_accuracy,std(val_accuracy),count(val_accuracy)",
        )
    )
    assert [list(r)[:4] for r in rows] == [
        [
            "params.lr",
            "mean(metrics.val_accuracy)",
            "std(metrics.val_accuracy)",
            "count(metrics.val_accuracy)",
        ]
    ] * 2
    assert [r["params.lr"] for r in rows] == [0.01, 0.1]
    assert [r["count(metrics.val_accuracy)"] for r in rows] == [3, 3]
    assert rows[1]["mean(metrics.val_accuracy)"] == pytest.approx(0.51)
    header = gx.ok("log", "-e", "sweep", "--group-by", "lr", "-c", "val_accuracy").splitlines()[0]
    assert "lr" in header and "val_accuracy" in header


def test_baseline_accepts_a_tag_address(gx, sweep):
    base = sweep[(0.1, 2)]
    gx.ok("tag", base, "baseline")
    rows = json.loads(gx.ok("log", "--json", "-e", "sweep", "--baseline", "tag:baseline"))
    by_id = {r["id"]: r for r in rows}
    assert by_id[base]["delta(metrics.val_accuracy)"] == 0
    assert by_id[sweep[(0.1, 0)]]["delta(metrics.val_accuracy)"] == pytest.approx(-0.02)
    out = gx("log", "--baseline", "tag:nobody-has-it")
    assert out.returncode == 2 and "nobody-has-it" in out.stderr and "Traceback" not in out.stderr


@pytest.mark.slow
def test_rm_selects_as_log_does_and_dry_run_shows_exactly_what_goes(gx, repo, sweep):
    args = ["-e", "sweep", "-w", "params.lr < 0.05", "--unless-tag", "keep"]
    listed = {r["id"] for r in json.loads(gx.ok("log", "--json", *args))}
    assert listed == {sweep[(0.01, 1)], sweep[(0.01, 2)]}
    before = run_refs(repo)
    dry = gx.ok("rm", *args, "--dry-run")
    assert {line.rsplit("/", 1)[1] for line in dry.splitlines()} == listed
    assert run_refs(repo) == before  # a dry run removes nothing
    out = gx.ok("rm", *args)
    assert {line.rsplit("/", 1)[1] for line in out.splitlines()} == listed
    assert len(run_refs(repo)) == len(before) - 2
    gone = gx.ok("rm", "-t", "keep", "--dry-run")
    assert len(gone.splitlines()) == 2


def test_export_files_get_the_mode_the_umask_gives(gx, repo, sweep):
    old = os.umask(0o022)
    try:
        gx.ok("export", "-o", "runs.csv", "--metrics")
    finally:
        os.umask(old)
    for name in ("runs.csv", "runs.metrics.csv"):
        assert stat.S_IMODE(os.stat(repo / name).st_mode) == 0o644


def test_the_service_counts_before_the_limit_and_pages(repo, sweep):
    with ExpStore(repo) as store:
        board = leaderboard(
            store, Query(experiment="sweep", sort="-val_accuracy", limit=2, offset=1)
        )
    assert board.total == 6 and len(board.rows) == 2
    assert [r.get("id") for r in board.rows] == [sweep[(0.1, 1)], sweep[(0.1, 0)]]
    assert board.runs_in_repository == 7


def test_runs_sorts_groups_and_takes_a_baseline_like_log(repo, sweep):
    t = gitexp.runs(experiment="sweep", sort="-val_accuracy", limit=2, repo=repo)
    assert t.column("id").to_pylist() == [sweep[(0.1, 2)], sweep[(0.1, 1)]]
    assert "ref" in t.column_names  # every column, as without the new arguments
    g = gitexp.runs(experiment="sweep", group_by="lr", repo=repo)
    assert g.column("params.lr").to_pylist() == [0.01, 0.1]
    assert g.column("count(metrics.val_accuracy)").to_pylist() == [3, 3]
    b = gitexp.runs(
        experiment="sweep", baseline=sweep[(0.1, 2)], columns=["id", "val_accuracy"], repo=repo
    )
    assert b.column_names == ["id", "metrics.val_accuracy", "delta(metrics.val_accuracy)"]


def test_an_empty_clone_of_a_remote_with_runs_says_how_to_get_them(gx, repo, tmp_path, sweep):
    clone = tmp_path / "clone"
    git("clone", "-q", str(repo), str(clone), cwd=tmp_path)
    plain = gx("log", cwd=clone)
    assert plain.returncode == 0 and "no runs yet" in plain.stderr  # nothing known of the remote
    git("fetch", "-q", "origin", "+refs/experiments/*:refs/remotes/origin/experiments/*", cwd=clone)
    out = gx("log", cwd=clone)
    assert out.returncode == 0 and out.stdout == ""
    assert "git exp pull origin" in out.stderr


def test_a_none_param_shows_as_null_and_a_missing_one_as_blank(gx, sweep):
    out = gx.ok("log", "-c", "id,p,lr")
    lines = {ln.split()[0]: ln for ln in out.splitlines()[1:]}
    assert lines[sweep["other"]].split()[1:] == ["null"]  # p is None, lr not recorded
    assert "null" not in lines[sweep[(0.1, 0)]]
    shown = gx.ok("show", sweep["other"])
    assert any(ln.split() == ["p", "null"] for ln in shown.splitlines())


def test_show_and_transfers_print_sizes_in_binary_units():
    from gitexp.cli.render import human_size

    assert human_size(1536) == "1.5 KiB" and human_size(3 * 1024**2) == "3.0 MiB"
