"""Bad input: one clear line on stderr, a non-zero exit, nothing written."""

from __future__ import annotations

import json

import pytest

from conftest import GitExp, exp_state, git, git_objects, make_repo, sha_prefix_collision
from gitexp.store import ExpStore


def _assert_clean_failure(proc, code: int, *words: str) -> None:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("git exp: error: "), lines[0]
    assert "Traceback" not in proc.stderr and "Error:" not in lines[0].split("error: ", 1)[1][:6]
    for w in words:
        assert w in lines[0], (w, lines[0])


def _writes_nothing(path, fn):
    before_refs, before_cas = exp_state(path)
    before_objects = git_objects(path) if (path / ".git").exists() else set()
    proc = fn()
    assert exp_state(path) == (before_refs, before_cas)
    if (path / ".git").exists():
        assert git_objects(path) == before_objects
        live = path / ".git" / "exp" / "live"
        assert not live.exists() or not list(live.rglob("*"))
    return proc


@pytest.mark.parametrize(
    "args",
    [["run", "--", "true"], ["log"], ["show", "x"], ["diff", "a", "b"]],
)
def test_outside_a_git_repository(tmp_path, args):
    gx = GitExp(tmp_path)
    proc = gx(*args)
    _assert_clean_failure(proc, 3, "not a git repository")
    assert list(tmp_path.iterdir()) == []


def test_a_repository_with_no_commits(tmp_path):
    path = tmp_path / "fresh"
    git("init", "-q", str(path))
    (path / "train.py").write_text("print(1)\n")
    (path / "conf.json").write_text('{"lr": 0.1}')
    (path / "data").mkdir()
    (path / "data" / "x.csv").write_text("1\n")
    gx = GitExp(path)
    proc = _writes_nothing(
        path,
        lambda: gx("run", "--config", "conf.json", "--input", "data", "--", "true"),
    )
    _assert_clean_failure(proc, 3, "no commits")
    assert not (path / ".git" / "exp").exists()
    assert git("status", "--porcelain", cwd=path).split() == [
        "??",
        "conf.json",
        "??",
        "data/",
        "??",
        "train.py",
    ]


def test_unknown_run(gx, repo):
    gx.ok("run", "-q", "--", "true")
    for args in (
        ["show", "no-such-run"],
        ["diff", "no-such-run", "also-not"],
        ["show", "deadbeef"],
        ["show", "refs/experiments/x/20990101-000000-abcdef"],
    ):
        proc = _writes_nothing(repo, lambda a=args: gx(*a))
        _assert_clean_failure(proc, 4)
    assert "git exp log" in gx("show", "nope").stderr


def test_ambiguous_prefix_lists_the_candidates(gx, repo):
    with ExpStore(repo) as store:
        prefix, runs = sha_prefix_collision(store)
    proc = _writes_nothing(repo, lambda: gx("show", prefix))
    _assert_clean_failure(proc, 4, "ambiguous", *runs)
    assert json.loads(gx.ok("show", "--json", runs[0]))["run"] == runs[0]


@pytest.mark.parametrize("name", ["has space", "a..b", "-dash", "x.lock", "a:b", "e\u0301x"])
def test_invalid_experiment_name(gx, repo, name):
    proc = _writes_nothing(repo, lambda: gx("run", "-e", name, "--", "true"))
    _assert_clean_failure(proc, 2, "experiment name")
    assert gx("log", "-e", name).returncode == 2


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("bad.json", '{"lr": 0.1,,}'),
        ("bad.yaml", "a: [1, 2\nb: }"),
        ("bad.toml", "lr = = 1"),
        ("list.json", "[1, 2]"),
        ("conf.ini", "[x]\na=1"),
    ],
)
def test_config_file_that_does_not_parse(gx, repo, name, text):
    (repo / name).write_text(text)
    proc = _writes_nothing(repo, lambda: gx("run", "--config", name, "--", "true"))
    # a parse error says where: the line to look at
    _assert_clean_failure(
        proc,
        2,
        name,
        *(["line 2" if "yaml" in name else "line 1"] if name.startswith("bad") else []),
    )


def test_missing_config_and_input(gx, repo):
    proc = _writes_nothing(repo, lambda: gx("run", "--config", "nope.yaml", "--", "true"))
    _assert_clean_failure(proc, 2, "nope.yaml")
    proc = _writes_nothing(repo, lambda: gx("run", "--input", "nope.csv", "--", "true"))
    _assert_clean_failure(proc, 2, "nope.csv")


@pytest.mark.parametrize("cmd", ["no-such-program-xyz", "./missing.sh", "/nonexistent/bin/x"])
def test_command_that_does_not_exist(gx, repo, cmd):
    proc = _writes_nothing(repo, lambda: gx("run", "-p", "a=1", "--", cmd, "--flag"))
    _assert_clean_failure(proc, 127, "command not found", cmd)


def test_command_that_is_not_executable(gx, repo):
    (repo / "script.sh").write_text("#!/bin/sh\necho hi\n")
    proc = _writes_nothing(repo, lambda: gx("run", "--", "./script.sh"))
    _assert_clean_failure(proc, 127, "not executable")


def test_usage_errors_of_log(gx, repo):
    gx.ok("run", "-q", "--", "true")
    _assert_clean_failure(gx("log", "--status", "bogus"), 2, "bogus")
    _assert_clean_failure(gx("log", "--sort", "no_such_metric"), 2, "no_such_metric")
    _assert_clean_failure(gx("log", "--columns", "id,nope"), 2, "nope")


def test_bad_param_syntax(gx, repo):
    proc = _writes_nothing(repo, lambda: gx("run", "-p", "novalue", "--", "true"))
    _assert_clean_failure(proc, 2, "novalue")


def test_no_command(gx, repo):
    proc = gx("run")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_unknown_subcommand(gx, repo):
    proc = gx("frobnicate")
    assert proc.returncode == 2 and "frobnicate" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_clone_without_the_exp_store_is_still_readable(tmp_path):
    """A second repository made by make_repo has no .git/exp at all: log says so."""
    path = make_repo(tmp_path / "other")
    proc = GitExp(path)("log")
    assert proc.returncode == 0 and "no runs yet" in proc.stderr
    assert not (path / ".git" / "exp").exists()
