"""A run finished at interpreter exit keeps everything it logged, with the
status the program ended with, in every way a program ends and whatever is
installed beside it (issue: metrics lost at exit when pandas was installed).

At exit threading has shut down and a first import can fail halfway, so the
exit path imports nothing: what it needs is imported when the run starts, any
other import is refused at once (an optional one, like pyarrow's pandas probe,
then takes its fallback), and a finish that fails all the same leaves the run
in its spool with its final status for the next command to record.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from conftest import git

# what a script finds installed: pandas and polars (in the test extra), or neither
HIDE = textwrap.dedent(
    """
    import sys
    class _Hidden:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in ("pandas", "polars"):
                raise ImportError("not installed: " + name)
    sys.meta_path.insert(0, _Hidden())
    """
)
ENDINGS = {
    "normal": "",
    "sys.exit(3)": "sys.exit(3)",
    "uncaught": "raise ValueError('diverged')",
}
EXPECTED = {  # ending -> (status, exit code, error contains)
    "normal": ("finished", 0, None),
    "sys.exit(3)": ("failed", 3, "sys.exit(3)"),
    "uncaught": ("failed", 1, "ValueError: diverged"),
}


def _script(environment: str, ending: str, attached: bool) -> str:
    head = HIDE if environment == "neither" else ""
    if environment == "polars":
        head += "import polars\n"
    if attached:  # the module-level pattern of docs/python-api.md, under `git exp run`
        body = "import gitexp\nrun = gitexp\n"
    else:
        body = "import gitexp\nrun = gitexp.start_run(experiment='x')\n"
    body += textwrap.dedent(
        """
        run.log_params({"batch_size": 32})
        for e in range(10):
            run.log_metrics({"loss": 1 / (e + 1)}, step=e)
        open("model.bin", "wb").write(b"weights")
        run.log_artifact("model.bin")
        """
    )
    return "import sys\n" + head + body + ENDINGS[ending] + "\n"


def _only_run(repo) -> dict:
    refs = git("for-each-ref", "--format=%(refname)", "refs/experiments/", cwd=repo).split()
    assert len(refs) == 1, refs
    return {
        name: json.loads(git("show", f"{refs[0]}:{name}", cwd=repo))
        for name in ("run.json", "params.json", "summary.json", "artifacts.json")
    }


def _check(repo, ending: str) -> None:
    status, code, error = EXPECTED[ending]
    run = _only_run(repo)
    info = run["run.json"]
    assert info["status"] == status
    assert info["exit_code"] == code
    if error:
        assert error in info["error"]
    assert run["params.json"] == {"batch_size": 32}
    loss = run["summary.json"]["metrics"]["loss"]
    assert loss["count"] == 10 and loss["last"] == pytest.approx(0.1)
    assert any(a["path"] == "model.bin" for a in run["artifacts.json"])
    git("fsck", "--strict", cwd=repo)


def _run(gx, repo, environment: str, ending: str, attached: bool) -> subprocess.CompletedProcess:
    (repo / "short.py").write_text(_script(environment, ending, attached))
    if attached:
        return gx("run", "-e", "d", "--", sys.executable, "short.py")
    return subprocess.run(
        [sys.executable, "short.py"], cwd=repo, capture_output=True, text=True, timeout=120
    )


@pytest.mark.slow
@pytest.mark.parametrize("attached", [True, False], ids=["git-exp-run", "start_run"])
def test_the_module_level_pattern_with_pandas_installed_keeps_every_metric(gx, repo, attached):
    proc = _run(gx, repo, "pandas", "normal", attached)
    assert proc.returncode == 0, proc.stderr
    assert "could not finish" not in proc.stderr, proc.stderr
    _check(repo, "normal")


@pytest.mark.slow
@pytest.mark.parametrize("environment", ["pandas", "neither", "polars"])
@pytest.mark.parametrize("ending", list(ENDINGS))
@pytest.mark.parametrize("attached", [True, False], ids=["git-exp-run", "start_run"])
def test_a_run_finished_at_exit_keeps_all_it_logged_with_the_right_status(
    gx, repo, environment, ending, attached
):
    proc = _run(gx, repo, environment, ending, attached)
    assert proc.returncode == EXPECTED[ending][1], proc.stderr
    assert "could not finish" not in proc.stderr, proc.stderr
    _check(repo, ending)


def test_a_run_left_open_at_an_interactive_prompt_is_finished_when_it_ends(repo):
    # an error typed at the prompt ends that statement, not the program
    session = (
        "import gitexp\n"
        "run = gitexp.start_run(experiment='x', params={'batch_size': 32})\n"
        "1/0\n"
        "for e in range(10): run.log_metrics({'loss': 1 / (e + 1)}, step=e)\n"
        "\n"
        "open('model.bin', 'wb').write(b'weights')\n"
        "run.log_artifact('model.bin')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-i"], input=session, cwd=repo, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert "ZeroDivisionError" in proc.stderr
    info = _only_run(repo)["run.json"]
    assert info["status"] == "finished" and info["exit_code"] == 0
    assert "error" not in info or not info["error"]


def test_nothing_is_imported_at_exit_and_a_failed_finish_stays_in_the_spool(gx, repo):
    # a module the finish has never imported, imported only at exit: refused, and
    # the run is left in its spool with its final state; the next command records it
    (repo / "late.py").write_text(
        "import sys, gitexp\n"
        "run = gitexp.start_run(experiment='x', params={'batch_size': 32})\n"
        "for e in range(10): run.log_metrics({'loss': 1 / (e + 1)}, step=e)\n"
        "open('model.bin', 'wb').write(b'weights')\n"
        "run.log_artifact('model.bin')\n"
        "orig = run._finish\n"
        "def finish(*a, **k):\n"
        "    import json.tool  # never imported before: refused at exit\n"
        "    return orig(*a, **k)\n"
        "run._finish = finish\n"
        "sys.exit(3)\n"
    )
    proc = subprocess.run(
        [sys.executable, "late.py"], cwd=repo, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 3
    assert proc.stderr.count("\n") == 1, proc.stderr  # one line, and it is not swallowed
    assert "imports nothing at interpreter exit (json.tool)" in proc.stderr
    assert "spooled" in proc.stderr
    gx.ok("log")  # the next reader records the run from its spool
    info = _only_run(repo)
    assert info["run.json"]["status"] == "failed"
    assert info["run.json"]["exit_code"] == 3
    loss = info["summary.json"]["metrics"]["loss"]
    assert loss["count"] == 10 and loss["last"] == pytest.approx(0.1)
    assert any(a["path"] == "model.bin" for a in info["artifacts.json"])
