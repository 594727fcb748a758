"""Bugs found by trying the documented examples; each stays fixed."""

from __future__ import annotations

import json
import os
import sys

import pytest

import gitexp
from gitexp.errors import InvalidName
from gitexp.store import ExpStore


def test_exit_code_of_git_exp_run_is_the_commands(gx):
    proc = gx("run", "--", sys.executable, "-c", "import sys; sys.exit(5)")
    assert proc.returncode == 5
    assert json.loads(gx.ok("log", "--json"))[0]["status"] == "failed"


def test_a_forked_child_never_writes_the_parents_run(repo):
    (repo / "a.bin").write_bytes(b"from the child")
    run = gitexp.start_run(experiment="fork", repo=repo)
    pid = os.fork()
    if pid == 0:  # the child: every call is a no-op
        try:
            run.log_artifact(repo / "a.bin")
            run.log_input(repo / "a.bin")
            run.log_metric("child", 1.0)
            run.log_params({"child": True})
            run.flush()
        finally:
            os._exit(0)
    os.waitpid(pid, 0)
    run.log_metric("parent", 1.0)
    run.finish()
    with ExpStore(repo) as store:
        rec = store.read_settled(run.id)
    assert rec.artifacts == [] and rec.params == {}
    assert set(rec.summary.metrics) == {"parent"}


def test_sorting_a_column_that_mixes_numbers_and_text(repo, gx):
    for lr in (0.1, "auto", 0.01):
        with gitexp.start_run(experiment="mix", repo=repo, params={"lr": lr}):
            pass
    rows = json.loads(gx.ok("log", "--json", "--sort", "lr"))
    assert [r["params.lr"] for r in rows] == [0.01, 0.1, "auto"]
    rows = json.loads(gx.ok("log", "--json", "--sort=-lr"))
    assert [r["params.lr"] for r in rows] == ["auto", 0.1, 0.01]


def test_dash_C_runs_the_command_in_that_directory(repo, gx, tmp_path):
    out = gx(
        "-C",
        str(repo),
        "run",
        "--",
        sys.executable,
        "-c",
        "import os; print(os.getcwd())",
        cwd=tmp_path,
    )
    assert out.returncode == 0, out.stderr
    assert os.path.realpath(out.stdout.strip()) == os.path.realpath(repo)


def test_an_experiment_named_like_a_run_ref_is_refused(repo):
    with gitexp.start_run(experiment="exp", repo=repo) as run:
        pass
    with pytest.raises(InvalidName):
        gitexp.start_run(experiment=f"exp/{run.id}", repo=repo)


def test_csv_has_raw_values(repo, gx):
    with gitexp.start_run(experiment="csv", repo=repo, params={"flag": True}) as run:
        run.log_metric("x", 0.123456789012)
    lines = gx.ok("log", "--csv", "-c", "params.flag,metrics.x").splitlines()
    assert lines == ["params.flag,metrics.x", "true,0.123456789012"]


def test_log_with_filters_that_match_nothing_says_so(repo, gx):
    with gitexp.start_run(experiment="a", repo=repo):
        pass
    assert "no runs match" in gx("log", "-e", "b").stderr


def test_public_functions_are_not_shadowed_by_submodules(repo):
    """Importing a submodule sets an attribute on the package: no submodule may
    share a name with a public function (``gitexp.diff`` was once replaced)."""
    import importlib
    import pkgutil

    for mod in pkgutil.walk_packages(gitexp.__path__, "gitexp."):
        # __main__ runs the CLI; an integration imports its framework (seconds, and
        # Keras needs a backend): their names set attributes on gitexp.integrations only
        if mod.name != "gitexp.__main__" and not mod.name.startswith("gitexp.integrations."):
            importlib.import_module(mod.name)
    for name in gitexp.__all__:
        value = getattr(gitexp, name)
        # errors and registry are subpackages on purpose (gitexp.registry.register(...))
        assert not isinstance(value, type(gitexp)) or name in ("errors", "registry"), name
