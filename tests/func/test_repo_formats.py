"""Repositories git-exp cannot write correctly are refused before anything is
written (issue 19 item 2): SHA-256 object names, a ref storage other than files."""

from __future__ import annotations

import os
import subprocess

import pytest

from conftest import fsck, git


def _sha256_repo(path):
    path.mkdir()
    git("init", "-q", "--object-format=sha256", cwd=path)
    (path / "train.py").write_text("print('hi')\n")
    git("add", "train.py", cwd=path)
    git("commit", "-q", "-m", "code", cwd=path)
    return path


def _state(path):
    refs = git("for-each-ref", "--format=%(refname) %(objectname)", cwd=path)
    return refs, sorted(os.listdir(path / ".git")), (path / ".git" / "index").read_bytes()


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--", "python", "train.py"],
        ["log"],
        ["gc", "--grace", "0s"],
    ],
)
def test_a_sha256_repository_is_refused_before_anything_is_written(tmp_path, gx, argv):
    repo = _sha256_repo(tmp_path / "sha256")
    before = _state(repo)
    proc = gx(*argv, cwd=repo, subprocess_only=True)
    assert proc.returncode == 3, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "sha256 object names" in lines[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert _state(repo) == before
    assert not (repo / ".git" / "exp").exists()
    fsck(repo)
    git("log", "--all", "--oneline", cwd=repo)


def test_the_python_api_refuses_a_sha256_repository(tmp_path):
    import gitexp
    from gitexp.errors import NotARepository, UnsupportedRepository

    repo = _sha256_repo(tmp_path / "sha256")
    with pytest.raises(UnsupportedRepository) as info:
        gitexp.start_run(repo=repo, command=["t"])
    assert isinstance(info.value, NotARepository)
    assert not (repo / ".git" / "exp").exists()


def test_a_reftable_repository_is_refused(repo, gx):
    # git 2.45+ makes these with `git init --ref-format=reftable`; the config is
    # what every git-exp command sees first
    git("config", "core.repositoryformatversion", "1", cwd=repo)
    git("config", "extensions.refStorage", "reftable", cwd=repo)
    proc = subprocess.run(["git", "exp", "log"], cwd=repo, capture_output=True, text=True)
    assert proc.returncode == 3 and "extensions.refStorage" in proc.stderr, proc.stderr
    # (a git older than 2.45 warns about the extension itself before it runs us)
    ours = [ln for ln in proc.stderr.splitlines() if ln.startswith("git exp:")]
    assert len(ours) == 1 and "Traceback" not in proc.stderr, proc.stderr
