"""``git exp run`` end to end, through the real command."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import cas_bytes, fsck, git, run_refs, show_json, user_state
from gitexp.cas import LocalStore


def _only_run(repo) -> str:
    refs = run_refs(repo)
    assert len(refs) == 1, refs
    return refs[0]


def test_run_records_params_config_inputs_tags_and_name(gx, repo):
    (repo / "conf.yaml").write_text("opt:\n  lr: 0.1\n  name: sgd\nepochs: 3\n")
    (repo / "data").mkdir()
    (repo / "data" / "a.csv").write_text("1\n")
    (repo / "data" / "b.csv").write_text("2\n")
    (repo / "labels.txt").write_text("cat\ndog\n")
    out = gx(
        "run",
        "-e",
        "team/exp1",
        "-n",
        "first try",
        "-p",
        "opt.lr=0.01",
        "-p",
        "flag=true",
        "-p",
        "layers=[64, 32]",
        "-p",
        "who=adam",
        "--config",
        "conf.yaml",
        "--input",
        "data",
        "--input",
        "labels.txt",
        "--tag",
        "baseline",
        "-t",
        "v1",
        "--",
        "true",
    )
    assert out.returncode == 0, out.stderr
    ref = _only_run(repo)
    assert ref.startswith("refs/experiments/team/exp1/")
    run_id = ref.rsplit("/", 1)[1]
    assert f"team/exp1/{run_id} finished (exit 0)" in out.stderr
    params = show_json(repo, ref, "params.json")
    # -p overrides the config file; values parse as JSON when they can
    assert params == {
        "opt": {"lr": 0.01, "name": "sgd"},
        "epochs": 3,
        "flag": True,
        "layers": [64, 32],
        "who": "adam",
    }
    info = show_json(repo, ref, "run.json")
    assert info["name"] == "first try" and info["tags"] == ["baseline", "v1"]
    assert info["status"] == "finished" and info["exit_code"] == 0
    assert info["command"] == ["true"] and info["config"] == "conf.yaml"
    assert info["start_time"] <= info["end_time"] and info["duration"] >= 0
    manifest = {(a["role"], a["path"]): a for a in show_json(repo, ref, "artifacts.json")}
    assert manifest[("config", "conf.yaml")].get("stored", True)
    data = manifest[("input", "data")]
    assert data["kind"] == "dir" and data["files"] == 2 and data.get("stored") is False
    assert ("input", "labels.txt") in manifest
    assert {("log", "logs/stdout.log"), ("log", "logs/stderr.log")} <= set(manifest)
    cas = LocalStore(repo / ".git" / "exp")
    assert (
        cas.get_bytes(manifest[("config", "conf.yaml")]["blake3"])
        == (repo / "conf.yaml").read_bytes()
    )
    env = show_json(repo, ref, "env.json")
    assert env["python"]["version"] and env["packages"] and env["cpu"]["count"]
    code = show_json(repo, ref, "code.json")
    assert code["head"] == git("rev-parse", "HEAD", cwd=repo).strip()


@pytest.mark.parametrize(
    ("name", "text"),
    [
        ("c.json", '{"opt": {"lr": 0.5}, "tags": ["x"]}'),
        ("c.yml", "opt:\n  lr: 0.5\ntags: [x]\n"),
        ("c.toml", "tags = ['x']\n[opt]\nlr = 0.5\n"),
    ],
)
def test_config_files_of_each_type_become_params(gx, repo, name, text):
    (repo / name).write_text(text)
    gx.ok("run", "-q", "--config", name, "--", "true")
    assert show_json(repo, _only_run(repo), "params.json") == {"opt": {"lr": 0.5}, "tags": ["x"]}


def test_output_is_streamed_and_stored_as_log_artifacts(gx, repo):
    script = "import sys; print('to stdout'); print('to stderr', file=sys.stderr)"
    out = gx("run", "--", sys.executable, "-c", script)
    assert out.returncode == 0
    assert out.stdout == "to stdout\n"
    assert "to stderr\n" in out.stderr
    logs = {
        a["path"]: a
        for a in show_json(repo, _only_run(repo), "artifacts.json")
        if a["role"] == "log"
    }
    cas = LocalStore(repo / ".git" / "exp")
    assert cas.get_bytes(logs["logs/stdout.log"]["blake3"]) == b"to stdout\n"
    assert cas.get_bytes(logs["logs/stderr.log"]["blake3"]) == b"to stderr\n"


def test_exit_code_is_the_commands_and_the_run_failed(gx, repo):
    out = gx("run", "--", sys.executable, "-c", "import sys; sys.exit(3)")
    assert out.returncode == 3
    info = show_json(repo, _only_run(repo), "run.json")
    assert info["status"] == "failed" and info["exit_code"] == 3
    assert "failed (exit 3)" in out.stderr


@pytest.mark.slow
def test_the_child_logs_into_the_same_run_through_the_environment(gx, repo):
    (repo / "child.py").write_text(
        "import gitexp, numpy as np\n"
        "with gitexp.start_run(experiment='ignored', params={'from_script': 1}) as run:\n"
        "    for i in range(5):\n"
        "        run.log_metrics({'loss': 1.0 / (i + 1)}, step=i)\n"
        "    run.log_metric('curve', np.arange(3.0))\n"
        "    gitexp.set_tags('child-tag')\n"
        "    open('model.bin', 'wb').write(b'weights')\n"
        "    run.log_artifact('model.bin')\n"
    )
    out = gx("run", "-e", "handover", "-p", "cli=2", "--", sys.executable, "child.py")
    assert out.returncode == 0, out.stderr
    ref = _only_run(repo)  # one run, not two
    assert ref.startswith("refs/experiments/handover/")
    params = show_json(repo, ref, "params.json")
    assert params == {"cli": 2, "from_script": 1}
    summary = show_json(repo, ref, "summary.json")
    assert summary["metrics"]["loss"]["last"] == pytest.approx(0.2)
    assert summary["metrics"]["loss"]["count"] == 5
    assert summary["metrics"]["curve"]["count"] == 3
    info = show_json(repo, ref, "run.json")
    assert info["status"] == "finished" and "child-tag" in info["tags"]
    paths = {a["path"] for a in show_json(repo, ref, "artifacts.json")}
    assert "model.bin" in paths
    assert not list((repo / ".git" / "exp" / "live").rglob("*"))  # spools cleaned up


@pytest.mark.slow
def test_module_level_calls_reach_the_run_without_start_run(gx, repo):
    """Under `git exp run` a script needs no start_run(): gitexp.log_* attach to the run
    the command was started for (MLflow users write mlflow.log_metric on its own)."""
    (repo / "bare.py").write_text(
        "import sys, gitexp, numpy as np\n"
        "gitexp.log_param('from_script', 1)\n"
        "for i in range(3):\n"
        "    gitexp.log_metric('loss', np.float32(1.0 / (i + 1)), step=i)\n"
        "gitexp.log_metrics({'acc': 0.5})\n"
        "gitexp.set_tags('bare')\n"
        "gitexp.note('no start_run here')\n"
        "open('model.bin', 'wb').write(b'weights')\n"
        "gitexp.log_artifact('model.bin')\n"
        "sys.exit(int(sys.argv[1]))\n"
    )
    out = gx("run", "-e", "bare", "-p", "cli=2", "--", sys.executable, "bare.py", "0")
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    ref = _only_run(repo)
    assert show_json(repo, ref, "params.json") == {"cli": 2, "from_script": 1}
    summary = show_json(repo, ref, "summary.json")["metrics"]
    assert summary["loss"]["count"] == 3 and summary["acc"]["last"] == 0.5
    info = show_json(repo, ref, "run.json")
    assert info["status"] == "finished" and "bare" in info["tags"]
    assert [n["text"] for n in info["notes"]] == ["no start_run here"]
    roles = {a["path"]: a["role"] for a in show_json(repo, ref, "artifacts.json")}
    assert roles["model.bin"] == "output"
    assert not list((repo / ".git" / "exp" / "live").rglob("*"))
    # the script's own exit code still decides the status
    out = gx("run", "-e", "bare", "--", sys.executable, "bare.py", "4")
    assert out.returncode == 4 and "Traceback" not in out.stderr


def test_module_level_calls_outside_git_exp_run_say_how_to_start_one(repo):
    proc = subprocess.run(
        [sys.executable, "-c", "import gitexp; gitexp.log_metric('x', 1.0)"],
        cwd=repo,
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "start_run" in proc.stderr and "git exp run" in proc.stderr
    assert not run_refs(repo)


@pytest.mark.slow
def test_a_child_that_crashes_keeps_what_it_logged(gx, repo):
    (repo / "crash.py").write_text(
        "import os, signal, gitexp\n"
        "run = gitexp.start_run()\n"
        "run.log_metric('loss', 0.7)\n"
        "run.flush()\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    out = gx("run", "--", sys.executable, "crash.py")
    assert out.returncode == 137
    ref = _only_run(repo)
    info = show_json(repo, ref, "run.json")
    assert info["status"] == "killed" and info["exit_code"] == 137
    assert show_json(repo, ref, "summary.json")["metrics"]["loss"]["last"] == 0.7


@pytest.mark.slow
def test_a_background_process_left_running_does_not_hold_the_run_open(gx, repo):
    """`cmd &` in a shell returns at once; under git exp run the orphan still holds the
    output pipes, which must not keep git exp run (and the run) waiting for it."""
    script = "sleep 60 & echo $! > orphan.pid; echo started; echo oops >&2"
    t0 = time.monotonic()
    try:
        out = gx("run", "-e", "orphan", "--", "bash", "-c", script)
        elapsed = time.monotonic() - t0
    finally:
        pid_file = repo / "orphan.pid"
        if pid_file.exists():
            try:
                os.kill(int(pid_file.read_text()), signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert out.returncode == 0, out.stderr
    assert elapsed < 30, elapsed
    assert out.stdout == "started\n" and "oops" in out.stderr
    ref = _only_run(repo)
    assert show_json(repo, ref, "run.json")["status"] == "finished"
    logs = {a["path"]: a for a in show_json(repo, ref, "artifacts.json") if a["role"] == "log"}
    cas = LocalStore(repo / ".git" / "exp")
    assert cas.get_bytes(logs["logs/stdout.log"]["blake3"]) == b"started\n"
    assert cas.get_bytes(logs["logs/stderr.log"]["blake3"]) == b"oops\n"


@pytest.mark.slow
def test_ctrl_c_records_killed(repo):
    proc = subprocess.Popen(
        # git-exp itself: the `git` wrapper dies of the SIGINT the terminal sends it too
        ["git-exp", "run", "--", sys.executable, "-c", "import time; time.sleep(60)"],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    deadline = time.time() + 30
    while not run_refs(repo) and time.time() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    os.killpg(proc.pid, signal.SIGINT)  # what the terminal does on Ctrl-C
    _, err = proc.communicate(timeout=30)
    info = show_json(repo, _only_run(repo), "run.json")
    assert info["status"] == "killed"
    assert proc.returncode == info["exit_code"] == 130
    assert b"killed (exit 130)" in err


@pytest.mark.slow
def test_dirty_work_tree_is_snapshotted(gx, repo):
    (repo / "train.py").write_text((repo / "train.py").read_text() + "# local edit\n")
    (repo / "notes.md").write_text("untracked\n")
    (repo / "weights.npz").write_bytes(b"ignored")
    git("stash", "list", cwd=repo)
    time.sleep(1.1)
    os.utime(repo / ".gitignore")  # stat-dirty only: tempts git status to rewrite the index
    before = user_state(repo)
    gx.ok("run", "-q", "--", "true")
    assert user_state(repo) == before
    code = show_json(repo, _only_run(repo), "code.json")
    assert code["dirty"] is True
    files = git("ls-tree", "-r", "--name-only", code["snapshot"], cwd=repo).split()
    assert "notes.md" in files and "weights.npz" not in files
    assert git("status", "--porcelain", cwd=repo).splitlines() == [" M train.py", "?? notes.md"]
    fsck(repo)


@pytest.mark.slow
def test_the_same_artifact_in_many_runs_is_stored_once(gx, repo):
    (repo / "blob.bin").write_bytes(os.urandom(1 << 20))
    script = "import gitexp; gitexp.start_run().log_artifact('blob.bin')"
    for _ in range(3):
        gx.ok("run", "-q", "--", sys.executable, "-c", script)
    assert len(run_refs(repo)) == 3
    size = cas_bytes(repo)
    assert (1 << 20) <= size < (1 << 20) + 200_000
    hashes = {
        a["blake3"]
        for ref in run_refs(repo)
        for a in show_json(repo, ref, "artifacts.json")
        if a["path"] == "blob.bin"
    }
    assert len(hashes) == 1


def test_minus_c_runs_as_if_started_there(gx, repo, tmp_path):
    """`git exp -C PATH` (like `git -C`): the command, its relative paths and the
    relative --config/--input are all taken in PATH."""
    (repo / "conf.json").write_text('{"lr": 0.3}')
    (repo / "in.csv").write_text("1\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = gx(
        "-C",
        str(repo),
        "run",
        "-q",
        "--config",
        "conf.json",
        "--input",
        "in.csv",
        "--",
        sys.executable,
        "-c",
        "import os; print(os.getcwd())",
        cwd=elsewhere,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(repo)
    ref = _only_run(repo)
    assert show_json(repo, ref, "params.json") == {"lr": 0.3}
    assert show_json(repo, ref, "run.json")["cwd"] == str(repo)
    assert not list(elsewhere.iterdir())
    bad = gx("-C", str(tmp_path / "missing"), "log", cwd=elsewhere)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "missing" in bad.stderr
    assert json.loads(gx.ok("-C", str(repo), "log", "--json", cwd=elsewhere))[0]["status"] == (
        "finished"
    )


@pytest.mark.slow
def test_minus_c_changes_directory_like_git_for_every_command(gx, repo, tmp_path):
    """git's own -C changes the working directory, so does `git exp -C`: what a
    command writes relative to the working directory lands in PATH; several -C
    are taken in turn, each relative to the one before (as git does)."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (repo / "m.bin").write_bytes(b"model")
    gx.ok("run", "-q", "--", sys.executable, "-c", "import gitexp; gitexp.log_artifact('m.bin')")
    run = _only_run(repo).rsplit("/", 1)[1]
    out = gx("-C", "..", "-C", repo.name, "run", "-q", "--", "pwd", cwd=elsewhere)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(repo)
    gx.ok("-C", str(repo), "get", run, "m.bin", "-o", "copy.bin", "-f", cwd=elsewhere)
    assert (repo / "copy.bin").read_bytes() == b"model"
    assert list(elsewhere.iterdir()) == []
    from gitexp.cli import cli

    help_text = " ".join(next(p for p in cli.params if p.name == "repo").help.split())
    assert "working directory" in help_text and "git -C" in help_text
    docs = (Path(__file__).resolve().parents[2] / "docs" / "cli.md").read_text()
    row = next(ln for ln in docs.splitlines() if ln.startswith("| `-C PATH`"))
    assert "changes the working directory" in row and "Only the repository changes" not in row


def test_store_inputs_from_a_subdirectory(gx, repo):
    sub = repo / "sub"
    (sub / "data").mkdir(parents=True)
    (sub / "data" / "x.csv").write_bytes(b"1,2\n")
    (repo / ".gitignore").write_text("*.npz\nsub/data/\n")
    git("commit", "-q", "-am", "ignore data", cwd=repo)
    gx.ok("run", "-q", "--store-inputs", "--input", "data", "--", "true", cwd=sub)
    ref = _only_run(repo)
    (entry,) = [a for a in show_json(repo, ref, "artifacts.json") if a["role"] == "input"]
    assert entry["path"] == entry["source"] == "sub/data"  # named from the repository root
    assert entry.get("stored", True) is True
    assert show_json(repo, ref, "run.json")["cwd"] == str(sub)
    assert show_json(repo, ref, "code.json")["dirty"] is False
    cas = LocalStore(repo / ".git" / "exp")
    from gitexp.cas import parse_dir_listing

    ((path, key, size, _),) = parse_dir_listing(cas.get_bytes(entry["blake3"]))
    assert (path, size) == ("x.csv", 4) and cas.get_bytes(key) == b"1,2\n"


def test_the_package_list_follows_installs_upgrades_and_removals_across_runs(gx, repo, tmp_path):
    """env.json's packages come from a list cached across processes (reading
    every distribution's metadata is most of a run's start in a big venv); it
    must follow what is installed exactly, or an audit reads the wrong versions."""
    site = tmp_path / "site"
    site.mkdir()
    env = {"PYTHONPATH": str(site)}
    script = "import gitexp; gitexp.log_metric('x', 1.0)"

    def packages() -> list[str]:
        before = set(run_refs(repo))
        gx.ok("run", "-q", "--no-system-metrics", "--", sys.executable, "-c", script, env=env)
        (ref,) = set(run_refs(repo)) - before
        found = show_json(repo, ref, "env.json")["packages"]
        return [p for p in found if p.lower().startswith("fakepkg-gx")]

    def install(version: str) -> Path:
        dist = site / f"fakepkg_gx-{version}.dist-info"
        dist.mkdir()
        (dist / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: fakepkg-gx\nVersion: {version}\n"
        )
        return dist

    assert packages() == []
    assert list((repo / ".git" / "exp" / "cache").glob("packages-*.json"))  # cached
    one = install("1.0")
    assert packages() == ["fakepkg-gx==1.0"]
    shutil.rmtree(one)
    install("2.0")
    assert packages() == ["fakepkg-gx==2.0"]
    shutil.rmtree(site / "fakepkg_gx-2.0.dist-info")
    assert packages() == []
