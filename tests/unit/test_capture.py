"""capture: environment, inputs' names, fingerprints, directory walks."""

from __future__ import annotations

import os

import pytest

from gitexp.capture import environment, fingerprint, host_facts, input_source, walk_files


def test_environment_records_python_platform_packages_and_chosen_variables():
    env = environment(
        {"CUDA_VISIBLE_DEVICES": "0", "AWS_SECRET_ACCESS_KEY": "hunter2", "PYTHONHASHSEED": "1"}
    )
    assert env["python"]["version"] and env["python"]["implementation"]
    assert env["platform"]["system"] and env["cpu"]["count"] >= 1
    names = {p.split("==")[0].lower() for p in env["packages"]}
    assert {"pyarrow", "dulwich", "numpy"} <= names
    assert env["packages"] == sorted(env["packages"], key=str.lower)
    # only variables that change results are kept; secrets never are
    assert env["variables"] == {"CUDA_VISIBLE_DEVICES": "0", "PYTHONHASHSEED": "1"}
    assert "hunter2" not in repr(env)
    assert environment({})["variables"] == {}
    assert set(host_facts()) == {"host", "user"}


def test_input_names_inside_and_outside_the_work_tree(tmp_path):
    wt = tmp_path / "wt"
    (wt / "data").mkdir(parents=True)
    (tmp_path / "ext.csv").write_text("x")
    assert input_source(str(wt / "data"), str(wt)) == ("data", "data")
    name, source = input_source(str(tmp_path / "ext.csv"), str(wt))
    assert source == str(tmp_path / "ext.csv")
    assert name == "external/" + str(tmp_path / "ext.csv").lstrip("/")
    assert input_source(str(wt), str(wt))[0] == "worktree"


def test_fingerprint_depends_on_code_params_inputs_and_command_only():
    base = fingerprint("tree1", {"lr": 0.1}, {"data": "a" * 64}, ["python", "t.py"])
    assert base == fingerprint("tree1", {"lr": 0.1}, {"data": "a" * 64}, ["python", "t.py"])
    for changed in (
        fingerprint("tree2", {"lr": 0.1}, {"data": "a" * 64}, ["python", "t.py"]),
        fingerprint("tree1", {"lr": 0.2}, {"data": "a" * 64}, ["python", "t.py"]),
        fingerprint("tree1", {"lr": 0.1}, {"data": "b" * 64}, ["python", "t.py"]),
        fingerprint("tree1", {"lr": 0.1}, {"data": "a" * 64}, ["python", "u.py"]),
    ):
        assert changed != base
    # dict order does not matter
    assert fingerprint("t", {"a": 1, "b": 2}, {}, []) == fingerprint("t", {"b": 2, "a": 1}, {}, [])


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs mkfifo")
def test_walk_skips_special_files_and_outside_links_and_reports_them(tmp_path):
    root = tmp_path / "d"
    (root / "sub").mkdir(parents=True)
    (root / "b.txt").write_text("b")
    (root / "sub" / "a.txt").write_text("a")
    os.mkfifo(root / "pipe")
    os.symlink(root / "b.txt", root / "inside-link")
    os.symlink(tmp_path, root / "outside-link")
    walk = walk_files(str(root))
    assert [rel for rel, _ in walk.files] == ["b.txt", "inside-link", "sub/a.txt"]
    assert any(s.startswith("pipe") for s in walk.skipped)
    assert any(s.startswith("outside-link") for s in walk.skipped)


def test_walk_leaves_out_git_metadata(tmp_path):
    """Logging the project directory (or a dataset that is itself a git checkout)
    must not copy .git, and with it the artifact store, into the run."""
    (tmp_path / "a.txt").write_text("a")
    (tmp_path / ".git" / "exp" / "objects").mkdir(parents=True)
    (tmp_path / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (tmp_path / ".git" / "exp" / "objects" / "blob").write_bytes(b"x" * 100)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / ".git").write_text("gitdir: ../.git/worktrees/sub\n")  # a worktree
    (tmp_path / "sub" / "b.txt").write_text("b")
    (tmp_path / ".gitignore").write_text("*.tmp\n")  # not metadata: kept
    walk = walk_files(str(tmp_path))
    assert [rel for rel, _ in walk.files] == [".gitignore", "a.txt", "sub/b.txt"]
    assert walk.skipped == []
