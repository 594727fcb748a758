"""Shared fixtures: every test runs isolated from the developer's git setup.

- ``isolate`` (autouse): HOME, XDG_CONFIG_HOME, GIT_CONFIG_NOSYSTEM, a fixed git
  identity and TZ; GIT_* and GITEXP_* variables from outside are removed.
- ``repo``: a fresh git repository with one commit, as the working directory.
- ``gx``: run ``git exp ...`` as a real subprocess and return the completed process.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from servers import git_daemon, git_http, s3, sshd  # noqa: F401  (server fixtures)

BIN = os.path.dirname(sys.executable)


@pytest.fixture(autouse=True)
def isolate(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("home")
    for key in list(os.environ):
        if key.startswith(("GIT_", "GITEXP_")):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home / ".config"))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.setenv("PATH", BIN + os.pathsep + os.environ.get("PATH", ""))
    (home / ".gitconfig").write_text(
        "[user]\n\tname = Test User\n\temail = test@example.com\n"
        "[init]\n\tdefaultBranch = main\n"
        "[protocol \"file\"]\n\tallow = always\n"
    )
    yield home


def git(*args: str, cwd: str | os.PathLike[str] = ".", check: bool = True,
        env: dict[str, str] | None = None) -> str:
    """Run the real git binary; return stdout."""
    proc = subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True,
        env={**os.environ, **(env or {})},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"git {' '.join(args)} failed: {proc.stderr}")
    return proc.stdout


def make_repo(path: Path) -> Path:
    """A git repository with one commit holding the example training script."""
    path.mkdir(parents=True, exist_ok=True)
    git("init", "-q", cwd=path)
    example = Path(__file__).resolve().parent.parent / "examples" / "train.py"
    (path / "train.py").write_text(example.read_text())
    (path / ".gitignore").write_text("*.npz\n")
    git("add", ".", cwd=path)
    git("commit", "-q", "-m", "initial", cwd=path)
    return path


@pytest.fixture
def repo(tmp_path, monkeypatch) -> Path:
    path = make_repo(tmp_path / "project")
    monkeypatch.chdir(path)
    return path


class GitExp:
    """Runs ``git exp`` as a subprocess, the way a user does."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd

    def __call__(self, *args: str, cwd: Path | None = None, input: str | None = None,
                 env: dict[str, str] | None = None,
                 timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run(
            ["git", "exp", *args], cwd=cwd or self.cwd, capture_output=True, text=True,
            input=input, env={**os.environ, **(env or {})}, timeout=timeout,
        )

    def ok(self, *args: str, **kw) -> str:
        proc = self(*args, **kw)
        assert proc.returncode == 0, (
            f"git exp {' '.join(args)} -> {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
        return proc.stdout


@pytest.fixture
def gx(repo) -> GitExp:
    return GitExp(repo)


def fsck(path: Path) -> None:
    """Assert git fsck --strict is clean."""
    proc = subprocess.run(["git", "fsck", "--strict", "--no-progress"], cwd=path,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    bad = [ln for ln in (proc.stdout + proc.stderr).splitlines()
           if ln and not ln.startswith(("notice:", "dangling", "Checking"))]
    assert not bad, bad
