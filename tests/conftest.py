"""Shared fixtures: every test runs isolated from the developer's git setup.

- ``isolate`` (autouse): HOME, XDG_CONFIG_HOME, GIT_CONFIG_NOSYSTEM, a fixed git
  identity and TZ; GIT_* and GITEXP_* variables from outside are removed.
- ``repo``: a fresh git repository with one commit, as the working directory.
- ``gx``: run ``git exp ...`` as a real subprocess and return the completed process.
- ``store``: an in-process ``ExpStore`` on ``repo``, closed after the test.
- helpers: ``git()``, ``fsck()``, ``make_repo()``, ``user_state()`` (what git-exp
  must never change), ``exp_state()`` (what git-exp wrote), ``cas_bytes()``,
  ``run_refs()``, ``finished_run()`` (a quick in-process run).
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mlflow_world import mlflow_world  # noqa: F401  (real MLflow, for the shim and importer)
from servers import dask_cluster, git_daemon, git_http, s3, sshd  # noqa: F401  (server fixtures)

# A shell without job control starts a background job (`pytest &`) with SIGINT
# ignored, and every process the tests start would inherit that: the Ctrl-C
# tests would then time out. Tests see SIGINT as a user's terminal delivers it.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

BIN = os.path.dirname(sys.executable)
# GITEXP_TEST_AUTOPACK=1: every test's git config asks for background packing at
# the lowest thresholds, so that `git gc --auto` runs beside everything the tests
# do (the reliability suite must pass that way too)
AUTOPACK = os.environ.get("GITEXP_TEST_AUTOPACK") == "1"


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
        '[protocol "file"]\n\tallow = always\n'
        + ("[gc]\n\tauto = 1\n\tautoPackLimit = 1\n" if AUTOPACK else "")
    )
    yield home
    # a run a test left open (one whose finish failed on purpose, say) must not
    # become the active run of the next test in this process
    from gitexp import tracking

    with tracking._state_lock:
        tracking._active.clear()
    tracking._open_runs.clear()


def git(
    *args: str,
    cwd: str | os.PathLike[str] = ".",
    check: bool = True,
    env: dict[str, str] | None = None,
    input: str | None = None,
) -> str:
    """Run the real git binary (``input`` on its stdin); return stdout."""
    for _ in range(600):
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            input=input,
            env={**os.environ, **(env or {})},
        )
        # a test's own `git gc` waits for a background one (git-exp starts `git gc
        # --auto` past AUTO_PACK_LOOSE loose objects, and with GITEXP_TEST_AUTOPACK
        # after every run): a user's `git gc` meanwhile says the same and is run again
        if not (args[:1] == ("gc",) and "gc is already running" in proc.stderr):
            break
        time.sleep(0.1)
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


# read-only commands that run in the test process (click's CliRunner) instead of a
# subprocess: the same code path from argv to exit code, a traceback on a bug
# instead of exit 70, and no interpreter start-up per call. Commands that start
# processes, write runs or install signal handlers stay subprocesses.
IN_PROCESS = frozenset({"log", "show", "diff", "export", "fsck"})


def _subcommand(args: tuple[str, ...]) -> str | None:
    rest = list(args)
    while rest and rest[0] == "-C":
        rest = rest[2:]
    return rest[0] if rest else None


def in_process(args: tuple[str, ...], cwd: Path) -> subprocess.CompletedProcess:
    """``git exp ARGS`` run in this process: a CompletedProcess like subprocess.run's.

    Expected errors come back as their message and exit code, as from the real
    command; a bug in git-exp raises here, with its traceback.
    """
    from click.testing import CliRunner

    from gitexp.cli import invoke

    runner = CliRunner()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with runner.isolation() as streams:
            code = invoke(list(args))
            sys.stdout.flush()
            sys.stderr.flush()
    finally:
        os.chdir(old)
    out, err = streams[0].getvalue(), streams[1].getvalue()
    return subprocess.CompletedProcess(
        ["git", "exp", *args], code, out.decode("utf-8", "replace"), err.decode("utf-8", "replace")
    )


class GitExp:
    """Runs ``git exp`` the way a user does: a subprocess, or for the read-only
    commands of IN_PROCESS, the same entry point in this process."""

    def __init__(self, cwd: Path) -> None:
        self.cwd = cwd

    def __call__(
        self,
        *args: str,
        cwd: Path | None = None,
        input: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 120,
        subprocess_only: bool = False,
    ) -> subprocess.CompletedProcess:
        if (
            not subprocess_only
            and input is None
            and env is None
            and _subcommand(args) in IN_PROCESS
        ):
            return in_process(args, cwd or self.cwd)
        return subprocess.run(
            ["git", "exp", *args],
            cwd=cwd or self.cwd,
            capture_output=True,
            text=True,
            input=input,
            env={**os.environ, **(env or {})},
            timeout=timeout,
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
    proc = subprocess.run(
        ["git", "fsck", "--strict", "--no-progress"], cwd=path, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    bad = [
        ln
        for ln in (proc.stdout + proc.stderr).splitlines()
        if ln and not ln.startswith(("notice:", "dangling", "Checking"))
    ]
    assert not bad, bad


def run_refs(path: Path) -> list[str]:
    """Every ref under refs/experiments/, as the real git lists them."""
    out = git("for-each-ref", "--format=%(refname)", "refs/experiments/", cwd=path)
    return out.split()


def user_state(path: Path) -> dict[str, str]:
    """Everything of the user's checkout that git-exp must leave alone.

    The probes must not write the index themselves: ``git status`` is run with
    ``GIT_OPTIONAL_LOCKS=0``, and ``git diff`` (which refreshes and rewrites the
    index whatever that variable says) is replaced by the plumbing ``diff-files -p``.
    """
    env = {"GIT_OPTIONAL_LOCKS": "0"}
    index = path / ".git" / "index"
    return {
        "status": git("status", "--porcelain=v1", "--untracked-files=all", cwd=path, env=env),
        "diff": git("diff-files", "-p", cwd=path, env=env),
        "diff_cached": git("diff", "--cached", cwd=path, env=env),
        "index": hashlib.sha256(index.read_bytes()).hexdigest() if index.exists() else "",
        "stash": git("stash", "list", cwd=path, env=env),
        "head": git("rev-parse", "HEAD", cwd=path, env=env),
        "symbolic_head": (path / ".git" / "HEAD").read_text(),
        "branches": git("for-each-ref", "refs/heads/", "refs/tags/", cwd=path, env=env),
        "files": "\n".join(
            f"{p.relative_to(path)} {hashlib.sha256(p.read_bytes()).hexdigest()}"
            for p in sorted(path.rglob("*"))
            if p.is_file() and ".git" not in p.relative_to(path).parts
        ),
    }


def exp_state(path: Path) -> tuple[list[str], list[str]]:
    """(run refs, files under .git/exp/objects): what a failed command must not add."""
    objects = path / ".git" / "exp" / "objects"
    files = sorted(str(p) for p in objects.rglob("*") if p.is_file()) if objects.exists() else []
    refs = run_refs(path) if (path / ".git").exists() else []
    return refs, files


def cas_bytes(path: Path) -> int:
    """Total size of the objects in a repository's CAS."""
    objects = path / ".git" / "exp" / "objects"
    return sum(p.stat().st_size for p in objects.rglob("*") if p.is_file())


def git_objects(path: Path) -> set[str]:
    """Every object id in the repository (loose and packed), as git sees them."""
    out = git("cat-file", "--batch-all-objects", "--batch-check=%(objectname)", cwd=path)
    return set(out.split())


def show_json(path: Path, ref: str, name: str) -> object:
    """A JSON file of a run commit, read with the real git."""
    return json.loads(git("show", f"{ref}:{name}", cwd=path))


def finished_run(
    experiment: str = "default",
    params: dict | None = None,
    metrics: dict | None = None,
    tags: list[str] | None = None,
    name: str | None = None,
    repo: Path | None = None,
) -> str:
    """Record a short finished run in-process; return its full ref."""
    import gitexp

    with gitexp.start_run(
        experiment=experiment,
        name=name,
        params=params or {},
        tags=tags or [],
        repo=repo,
        command=["test"],
    ) as run:
        for key, value in (metrics or {}).items():
            run.log_metric(key, value)
        return run.ref


@pytest.fixture
def store(repo):
    from gitexp.store import ExpStore

    with ExpStore(repo) as s:
        yield s


def kill_when_ready(args: list[str], cwd: Path, ready: str) -> None:
    """Start a Python script, wait until it prints the line ``ready``, SIGKILL it."""
    import signal

    proc = subprocess.Popen([sys.executable, *args], cwd=cwd, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline() == ready + "\n"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc.stdout.close()


def sha_prefix_collision(store, experiment: str = "amb") -> tuple[str, list[str]]:
    """Make run refs until two tips share a 4-hex-digit prefix (about 300 on average).

    Returns (the shared prefix, the two runs as experiment/run-id). The runs are
    minimal commits of one tree: enough for addressing, cheap to make.
    """
    from gitexp import records as fmt
    from gitexp.records import ExpRef

    head = store.repo.head()
    tree = store.repo.update_tree(None, {"run.json": fmt.canonical_json({"format": 1})})
    seen: dict[str, ExpRef] = {}
    for i in range(5000):
        ref = ExpRef(experiment, fmt.new_run_id())
        sha = store.repo.write_commit(tree, [head], f"run {i}")
        assert store.repo.set_ref(str(ref), None, sha, "test")
        if sha[:4] in seen:
            return sha[:4], sorted([ref.short, seen[sha[:4]].short])
        seen[sha[:4]] = ref
    raise AssertionError("no prefix collision in 5000 commits")
