"""``git exp reproduce`` and ``git exp checkout-code``, end to end through the real
command, real git, real processes and signals."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
from pathlib import Path

import pytest

from conftest import fsck, git

TRAIN = ["python", "train.py", "--epochs", "2", "--n", "400"]


@pytest.fixture(autouse=True)
def no_deferred_seed(monkeypatch):
    """A seed_everything() called outside a run waits for this process's next run:
    it must not leak from one in-process test into another's run."""
    import gitexp.tracking

    monkeypatch.setattr(gitexp.tracking, "_deferred", None)


@pytest.fixture(autouse=True)
def private_tmp(tmp_path, monkeypatch):
    """A TMPDIR of the test's own, to check the replay leaves nothing behind."""
    tmp = tmp_path / "tmpdir"
    tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(tmp))
    return tmp


def user_state(repo: Path) -> dict:
    """Everything of the user's that reproduce must leave as it was, byte for byte."""
    files = {}
    for p in sorted(repo.rglob("*")):
        rel = p.relative_to(repo)
        if rel.parts[0] == ".git":
            continue
        if p.is_symlink():
            files[str(rel)] = "link:" + os.readlink(p)
        elif p.is_file():
            st = p.stat()
            files[str(rel)] = (
                hashlib.sha256(p.read_bytes()).hexdigest(),
                st.st_mode,
                st.st_mtime_ns,
            )
    index = repo / ".git" / "index"
    worktrees = repo / ".git" / "worktrees"
    return {
        "files": files,
        "index": hashlib.sha256(index.read_bytes()).hexdigest() if index.exists() else None,
        "HEAD": (repo / ".git" / "HEAD").read_text(),
        "refs": git(
            "for-each-ref",
            "--format=%(refname) %(objectname)",
            "refs/heads",
            "refs/tags",
            "refs/stash",
            cwd=repo,
        ),
        "stash": git("stash", "list", cwd=repo),
        "worktrees": sorted(os.listdir(worktrees)) if worktrees.exists() else [],
    }


def settled_state(repo: Path) -> dict:
    git("status", "--porcelain", cwd=repo)  # let git refresh the index's stat cache first
    return user_state(repo)


def run_ids(repo: Path) -> list[str]:
    out = git(
        "for-each-ref", "--sort=refname", "--format=%(refname)", "refs/experiments/", cwd=repo
    )
    return [r.rsplit("/", 1)[1] for r in out.split()]


def record(gx, *args: str, cwd: Path | None = None) -> str:
    """Record a run with ``git exp run``; return its run id."""
    before = set(run_ids(gx.cwd))
    gx.ok("run", *args, cwd=cwd)
    (new,) = set(run_ids(gx.cwd)) - before
    return new


def reproduce(gx, *args: str, **kw) -> subprocess.CompletedProcess:
    proc = gx("reproduce", *args, **kw)
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


@pytest.mark.slow
def test_a_run_reproduces_exactly(gx, repo, private_tmp):
    run = record(gx, "-e", "example", "-p", "note=baseline", "--", *TRAIN, "--seed", "1")
    sha = git("rev-parse", f"refs/experiments/example/{run}", cwd=repo).strip()
    before = settled_state(repo)

    proc = reproduce(gx, sha[:10])
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "verdict: REPRODUCED" in proc.stdout
    assert "fingerprint: identical" in proc.stdout
    assert "epoch   1" in proc.stderr  # the replay's own output went to stderr

    # every address form names the same run
    short_ref = git(
        "for-each-ref", "--format=%(refname:short)", f"refs/experiments/example/{run}", cwd=repo
    ).strip()
    assert short_ref == f"experiments/example/{run}"  # what git shows users
    for address in (run, f"example/{run}", f"refs/experiments/example/{run}", short_ref, sha[:7]):
        plan = json.loads(reproduce(gx, address, "--dry-run", "--json").stdout)
        assert plan["sha"] == sha, address

    verdict = json.loads(reproduce(gx, run, "--json", "-q").stdout)
    assert verdict["verdict"] == "reproduced" and verdict["fingerprint"]["same"]
    assert {m["key"]: m["status"] for m in verdict["metrics"]} == {
        "accuracy": "identical",
        "loss": "identical",
    }
    assert verdict["outputs"] == [
        {**verdict["outputs"][0], "path": "model.npz", "status": "identical"}
    ]
    assert any("seed 1 replayed through the recorded command line" in n for n in verdict["notes"])
    replay = json.loads(gx.ok("show", verdict["replay"]["run"], "--json"))
    assert replay["info"]["links"] == {"reproduces": sha}
    assert replay["info"]["experiment"] == "example"
    assert replay["params"]["note"] == "baseline" and replay["params"]["seed"] == 1
    assert replay["code"]["commit"] == git("rev-parse", "HEAD", cwd=repo).strip()

    assert user_state(repo) == before
    assert "model.npz" in before["files"]  # the original's output, not rewritten (mtime)
    assert os.listdir(private_tmp) == []
    fsck(repo)


@pytest.mark.slow
def test_a_dirty_run_reproduces_from_its_snapshot_and_leaves_the_dirty_tree_alone(gx, repo):
    train = repo / "train.py"
    original = train.read_text()
    train.write_text(original.replace("b = 0.0", "b = 0.25"))
    (repo / "helper.txt").write_text("untracked at run time\n")
    run = record(gx, "-e", "example", "--", *TRAIN)
    snapshot = json.loads(gx.ok("show", run, "--json"))["code"]
    assert snapshot["dirty"] and snapshot["snapshot"]

    # the user moves on: a stash, a staged change, a different unstaged change,
    # an untracked file, an ignored file
    (repo / "notes.md").write_text("stashed\n")
    git("add", "notes.md", cwd=repo)
    git("stash", "push", "-q", cwd=repo)
    (repo / ".gitignore").write_text("*.npz\nscratch/\n")
    git("add", ".gitignore", cwd=repo)
    train.write_text(original.replace("b = 0.0", "b = -3.0"))
    (repo / "helper.txt").write_text("changed since\n")
    (repo / "scratch").mkdir()
    (repo / "scratch" / "x.bin").write_bytes(b"\0" * 100)
    before = settled_state(repo)

    proc = reproduce(gx, run, "--json", "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    verdict = json.loads(proc.stdout)
    assert verdict["verdict"] == "reproduced"
    replay = json.loads(gx.ok("show", verdict["replay"]["run"], "--json"))
    assert replay["code"]["commit"] == snapshot["snapshot"]
    assert user_state(repo) == before
    fsck(repo)


@pytest.mark.slow
def test_changed_input_data_is_refused_with_the_drift_named(gx, repo, tmp_path):
    (repo / ".gitignore").write_text("*.npz\ndata/\n")
    git("commit", "-qam", "ignore data", cwd=repo)
    data = repo / "data"
    data.mkdir()
    (data / "train.csv").write_text("x,y\n1,2\n")
    (data / "val.csv").write_text("x,y\n3,4\n")
    outside = tmp_path / "labels.txt"
    outside.write_text("cat\ndog\n")
    run = record(gx, "-e", "example", "--input", "data", "--input", str(outside), "--", *TRAIN)

    (data / "val.csv").write_text("x,y\n3,5\n")
    outside.write_text("cat\ndog\nbird\n")
    before = settled_state(repo)
    proc = reproduce(gx, run)
    assert proc.returncode == 8, proc.stdout + proc.stderr
    err = proc.stderr.strip()
    assert len(err.splitlines()) == 1
    assert "input data drifted" in err and "val.csv (changed)" in err
    assert f"input external{outside} drifted" in err and "(8 bytes), now" in err
    assert "--allow-input-drift" in err

    out = json.loads(reproduce(gx, run, "--json").stdout)
    assert out["verdict"] == "cannot_reproduce"
    drift = {d["path"]: d for d in out["drift"]}
    assert set(drift) == {"data", f"external{outside}"}
    assert drift[f"external{outside}"]["recorded_size"] == 8
    assert drift[f"external{outside}"]["current_size"] == 13
    assert len(run_ids(repo)) == 1  # nothing was replayed

    proc = reproduce(gx, run, "--allow-input-drift", "--json", "-q")
    assert proc.returncode == 0, proc.stderr  # same metrics: the script ignores the data
    verdict = json.loads(proc.stdout)
    assert verdict["fingerprint"]["differs"] == ["inputs"]
    assert user_state(repo) == before
    fsck(repo)


@pytest.mark.slow
def test_stored_inputs_are_restored_from_the_store(gx, repo):
    (repo / ".gitignore").write_text("*.npz\ndata/\n")
    git("commit", "-qam", "ignore data", cwd=repo)
    data = repo / "data"
    (data / "sub").mkdir(parents=True)
    (data / "train.csv").write_text("x,y\n1,2\n")
    (data / "sub" / "extra.csv").write_text("x,y\n5,6\n")
    reader = repo / "read_data.py"
    reader.write_text(
        "import gitexp, pathlib\n"
        "text = pathlib.Path('data/train.csv').read_text()\n"
        "extra = pathlib.Path('data/sub/extra.csv').read_text()\n"
        "with gitexp.start_run() as run:\n"
        "    run.log_metrics({'chars': len(text) + len(extra)})\n"
    )
    git("add", "read_data.py", cwd=repo)
    git("commit", "-qm", "reader", cwd=repo)
    run = record(gx, "--input", "data", "--store-inputs", "--", "python", "read_data.py")

    (data / "train.csv").write_text("x,y\n1,2\n7,8\n9,10\n")  # the user's data moves on
    (data / "sub" / "extra.csv").unlink()
    before = settled_state(repo)
    proc = reproduce(gx, run, "--json", "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    verdict = json.loads(proc.stdout)
    assert verdict["verdict"] == "reproduced" and verdict["fingerprint"]["same"]
    assert verdict["inputs"] == [{**verdict["inputs"][0], "path": "data", "action": "restore"}]
    assert user_state(repo) == before

    # a stored object that went missing makes the replay impossible, with its own code
    key = json.loads(gx.ok("show", run, "--json"))["inputs"][0]["blake3"]
    obj = repo / ".git" / "exp" / "objects" / key[:2] / key[2:]
    obj.chmod(0o644)
    obj.unlink()
    proc = reproduce(gx, run)
    assert proc.returncode == 8
    assert "missing from the artifact store" in proc.stderr


@pytest.mark.slow
def test_stored_inputs_outside_the_repository_are_restored_for_the_replay(gx, repo, tmp_path):
    """A colleague's machine has no /shared/labels.txt, or it has changed since:
    the bytes are in the store, and the command names the path, so the replay
    reads a restored copy; the file outside the repository is never written."""
    outside = tmp_path / "shared"
    (outside / "vocab").mkdir(parents=True)
    labels = outside / "labels.txt"
    labels.write_text("cat\ndog\n")
    (outside / "vocab" / "words.txt").write_text("a\nb\nc\n")
    (repo / "count.py").write_text(
        "import pathlib, sys, gitexp\n"
        "labels, vocab = sys.argv[1], sys.argv[2].split('=', 1)[1]\n"
        "with gitexp.start_run() as run:\n"
        "    run.log_input(vocab, store=True)\n"  # logged by the script itself
        "    run.log_params({'vocab': vocab})\n"
        "    n = len(pathlib.Path(labels).read_text())\n"
        "    m = len((pathlib.Path(vocab) / 'words.txt').read_text())\n"
        "    run.log_metrics({'labels': n, 'words': m})\n"
    )
    git("add", "count.py", cwd=repo)
    git("commit", "-qm", "count", cwd=repo)
    run = record(
        gx,
        "--input",
        str(labels),
        "--store-inputs",
        "--",
        "python",
        "count.py",
        str(labels),
        f"--vocab={outside / 'vocab'}",
    )
    names = {i["path"] for i in json.loads(gx.ok("show", run, "--json"))["inputs"]}
    assert names == {f"external{labels}", f"external{outside / 'vocab'}"}

    labels.write_text("cat\ndog\nbird\nfish\n")  # drifted
    (outside / "vocab" / "words.txt").unlink()  # half gone
    plan = json.loads(reproduce(gx, run, "--dry-run", "--json").stdout)
    assert {i["name"]: i["action"] for i in plan["inputs"]} == {
        f"external{labels}": "restore",
        f"external{outside / 'vocab'}": "restore",
    }
    assert plan["drift"] == [] and plan["problems"] == []
    text = reproduce(gx, run, "--dry-run").stdout
    assert "restored from the artifact store, outside the repository" in text

    before = sorted((p, p.read_bytes()) for p in outside.rglob("*") if p.is_file())
    proc = reproduce(gx, run, "--json", "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    verdict = json.loads(proc.stdout)
    assert verdict["verdict"] == "reproduced", verdict
    assert verdict["fingerprint"]["same"] and verdict["fingerprint"]["params"] == []
    replay = json.loads(gx.ok("show", verdict["replay"]["run"], "--json"))
    assert {i["path"] for i in replay["inputs"]} == names
    assert {i["source"] for i in replay["inputs"]} == {str(labels), str(outside / "vocab")}
    assert replay["info"]["command"][-1] == f"--vocab={outside / 'vocab'}"
    assert sorted((p, p.read_bytes()) for p in outside.rglob("*") if p.is_file()) == before

    # a stored input outside the repository that the command does not name cannot
    # be redirected: refused, saying how to put the recorded bytes back
    (repo / "fixed.py").write_text(
        f"import gitexp\nwith gitexp.start_run() as run:\n"
        f"    run.log_metrics({{'n': len(open({str(labels)!r}).read())}})\n"
    )
    git("add", "fixed.py", cwd=repo)
    git("commit", "-qm", "fixed", cwd=repo)
    fixed = record(gx, "--input", str(labels), "--store-inputs", "--", "python", "fixed.py")
    labels.write_text("changed again\n")
    proc = reproduce(gx, run, "--dry-run")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = reproduce(gx, fixed, "--dry-run")
    assert proc.returncode == 8
    assert f"git exp get default/{fixed} external{labels} -o {labels} -f" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.slow
def test_unseeded_randomness_is_reported_as_differing(gx, repo):
    (repo / "noisy.py").write_text(
        "import random\nimport numpy as np\nimport gitexp\n"
        "rng = np.random.default_rng()\n"
        "with gitexp.start_run() as run:\n"
        "    for step in range(3):\n"
        "        run.log_metrics({'score': float(rng.random()), 'steady': 1.0}, step=step)\n"
        "    run.log_metrics({'jitter': random.random()})\n"
    )
    git("add", "noisy.py", cwd=repo)
    git("commit", "-qm", "noisy", cwd=repo)
    run = record(gx, "--", "python", "noisy.py")

    proc = reproduce(gx, run)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "verdict: DIFFERS" in proc.stdout
    lines = {
        ln.split()[0]: ln
        for ln in proc.stdout.splitlines()
        if ln.startswith("    ") and len(ln.split()) > 1
    }
    assert "different" in lines["score"] and "first differs at step 0" in lines["score"]
    assert "different" in lines["jitter"] and "identical" in lines["steady"]
    assert "fingerprint: identical" in proc.stdout
    assert "not deterministic" in proc.stdout

    verdict = json.loads(reproduce(gx, run, "--json", "-q").stdout)
    status = {m["key"]: m["status"] for m in verdict["metrics"]}
    assert status == {"jitter": "different", "score": "different", "steady": "identical"}

    proc = reproduce(gx, run, "--atol", "1", "--json", "-q")  # values live in [0, 1)
    assert proc.returncode == 0, proc.stdout
    assert json.loads(proc.stdout)["verdict"] == "reproduced_within_tolerance"


@pytest.mark.slow
def test_a_wall_clock_metric_can_be_left_out_of_the_verdict_by_flag_or_config(gx, repo):
    (repo / "timed.py").write_text(
        "import time\nimport gitexp\n"
        "with gitexp.start_run() as run:\n"
        "    run.log_metrics({'acc': 0.75, 'time/epoch_seconds': time.time()}, step=0)\n"
    )
    git("add", "timed.py", cwd=repo)
    git("commit", "-qm", "timed", cwd=repo)
    run = record(gx, "--", "python", "timed.py")

    proc = reproduce(gx, run, "-q")
    assert proc.returncode == 1 and "verdict: DIFFERS" in proc.stdout

    proc = reproduce(gx, run, "-q", "--ignore-metric", "time/*")
    assert proc.returncode == 0, proc.stdout
    assert "ignored:     time/epoch_seconds" in proc.stdout
    assert "verdict: REPRODUCED" in proc.stdout

    # named once for the repository: every reproduce leaves it out
    git("config", "--add", "exp.reproduce.ignoreMetric", "*_seconds", cwd=repo)
    v = json.loads(reproduce(gx, run, "-q", "--json").stdout)
    assert v["verdict"] == "reproduced"
    assert v["ignored_metrics"] == ["time/epoch_seconds"]
    assert [m["key"] for m in v["metrics"]] == ["acc"]


@pytest.mark.slow
def test_a_replay_within_tolerance_is_not_called_not_deterministic(gx, repo):
    (repo / "jitter.py").write_text(
        "import random\nimport gitexp\n"
        "with gitexp.start_run() as run:\n"
        "    run.log_metrics({'score': random.random()})\n"
    )
    git("add", "jitter.py", cwd=repo)
    git("commit", "-qm", "jitter", cwd=repo)
    run = record(gx, "--", "python", "jitter.py")
    proc = reproduce(gx, run, "-q", "--atol", "1")
    assert proc.returncode == 0, proc.stdout
    assert "verdict: REPRODUCED within tolerance" in proc.stdout
    why = [ln for ln in proc.stdout.splitlines() if ln.startswith("why:")]
    assert why == [
        "why: score moved within the tolerance: the run is not bit-for-bit deterministic "
        "(unseeded random numbers, time- or order-dependent code, threads, "
        "non-deterministic GPU kernels)"
    ]


@pytest.mark.slow
def test_repeated_replays_tell_a_random_program_from_a_changed_world(gx, repo):
    """--repeat N: replays that differ from one another blame the program; replays
    that agree with one another but not with the original blame what changed."""
    (repo / "noisy.py").write_text(
        "import os\nimport numpy as np\nimport gitexp\n"
        "rng = np.random.default_rng()\n"
        "with gitexp.start_run() as run:\n"
        "    run.log_metrics({'score': float(rng.random()), 'steady': 2.0,\n"
        "                     'world': float(len(os.environ.get('WORLD', '')))})\n"
        "    with open('out.bin', 'wb') as f:\n"
        "        f.write(rng.bytes(16) if os.environ.get('NOISY_OUT') else b'fixed')\n"
        "    run.log_artifact('out.bin')\n"
    )
    git("add", "noisy.py", cwd=repo)
    git("commit", "-qm", "noisy", cwd=repo)
    run = record(gx, "--", "python", "noisy.py")
    before = set(run_ids(repo))

    proc = reproduce(gx, run, "--repeat", "3", "-q")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "replays:     3 (3 differs)" in proc.stdout
    spread = {
        ln.split()[0]: ln
        for ln in proc.stdout.split("across the 3 replays:")[1].splitlines()
        if ln.startswith("    ")
    }
    assert "VARY" in spread["score"] and "3 different values" in spread["score"]
    assert "agree" in spread["steady"] and "agree" in spread["out.bin"]
    assert "the 3 replays differ from one another (score)" in proc.stdout
    assert "the run is not deterministic" not in proc.stdout  # said once, by the above
    replays = set(run_ids(repo)) - before
    assert len(replays) == 3  # one run per replay, each linked to the original
    sha = git("rev-parse", f"refs/experiments/default/{run}", cwd=repo).strip()
    for rid in replays:
        links = json.loads(git("show", f"refs/experiments/default/{rid}:run.json", cwd=repo))
        assert links["links"]["reproduces"] == sha

    # the random metric within tolerance; an unrecorded variable moves another metric
    # the same way in every replay: deterministic, so something outside changed
    proc = reproduce(gx, run, "--repeat", "2", "--atol", "1", "--json", "-q", env={"WORLD": "abc"})
    assert proc.returncode == 1, proc.stdout
    v = json.loads(proc.stdout)
    assert v["verdict"] == "differs"
    assert [r["verdict"] for r in v["replays"]] == ["differs", "differs"]
    assert v["replay"]["run"] == v["replays"][0]["run"]
    metrics = {m["key"]: m for m in v["spread"]["metrics"]}
    assert metrics["world"] == {
        "key": "world",
        "original": 0.0,
        "replays": [3.0, 3.0],
        "agree": True,
        "min": 3.0,
        "max": 3.0,
    }
    assert metrics["score"]["agree"]  # within --atol 1
    assert v["explanations"][0].startswith(
        "the 2 replays agree with one another but not with the original"
    )
    assert "something the run does not record" in v["explanations"][0]

    # output bytes that vary from replay to replay are named too
    v = json.loads(
        reproduce(gx, run, "--repeat", "2", "--json", "-q", env={"NOISY_OUT": "1"}).stdout
    )
    (out,) = v["spread"]["outputs"]
    assert out["path"] == "out.bin" and not out["agree"]
    assert len(set(out["replays"])) == 2 and out["original"] not in out["replays"]
    assert "out.bin" in v["explanations"][0]

    # every replay of a deterministic run reproduces: exit 0, from Python as well
    import gitexp

    (repo / "steady.py").write_text(
        "import gitexp\nwith gitexp.start_run() as run:\n    run.log_metric('x', 0.5)\n"
    )
    git("add", "steady.py", cwd=repo)
    git("commit", "-qm", "steady", cwd=repo)
    steady = record(gx, "--", "python", "steady.py")
    v = gitexp.reproduce(steady, repeat=2, repo=str(repo))
    assert v["verdict"] == "reproduced" and v["reproduced"]
    assert [r["verdict"] for r in v["replays"]] == ["reproduced", "reproduced"]
    assert v["explanations"] == []
    proc = reproduce(gx, steady, "--repeat", "0")
    assert proc.returncode == 2 and "--repeat" in proc.stderr
    proc = reproduce(gx, steady, "--repeat", "4", "--dry-run")
    assert proc.returncode == 0 and "4 new runs, one per replay" in proc.stdout
    fsck(repo)


@pytest.mark.slow
def test_seed_everything_seed_is_replayed(gx, repo):
    (repo / "seeded.py").write_text(
        "import random\nimport numpy as np\nimport gitexp\n"
        # drawn, recorded, replayed; called before the run starts, as scripts do
        "seed = gitexp.seed_everything()\n"
        "with gitexp.start_run() as run:\n"
        "    run.log_metrics({'a': random.random(), 'b': float(np.random.rand())})\n"
    )
    git("add", "seeded.py", cwd=repo)
    git("commit", "-qm", "seeded", cwd=repo)
    run = record(gx, "--", "python", "seeded.py")
    seed = json.loads(gx.ok("show", run, "--json"))["params"]["seed"]
    assert isinstance(seed, int)

    import gitexp

    verdict = gitexp.reproduce(run, repo=str(repo))
    assert verdict["verdict"] == "reproduced", verdict
    assert {m["key"]: m["status"] for m in verdict["metrics"]} == {
        "a": "identical",
        "b": "identical",
    }
    replay = json.loads(gx.ok("show", verdict["replay"]["run"], "--json"))
    assert replay["params"]["seed"] == seed
    assert any(
        f"seed {seed} logged by the script itself; the replay sets GITEXP_SEED" in n
        for n in verdict["notes"]
    )


@pytest.mark.slow
def test_unreachable_code_commit_still_reproduces(gx, repo):
    git("switch", "-q", "-c", "experiment-branch", cwd=repo)
    train = repo / "train.py"
    train.write_text(train.read_text().replace("b = 0.0", "b = 0.5"))
    git("commit", "-qam", "try an offset", cwd=repo)
    code = git("rev-parse", "HEAD", cwd=repo).strip()
    run = record(gx, "--", *TRAIN)

    git("switch", "-q", "main", cwd=repo)
    git("branch", "-q", "-D", "experiment-branch", cwd=repo)
    git("reflog", "expire", "--expire=now", "--all", cwd=repo)
    git("gc", "-q", "--prune=now", cwd=repo)
    git("cat-file", "-e", f"{code}^{{commit}}", cwd=repo)  # the run ref kept it alive

    proc = reproduce(gx, run, "--json", "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["verdict"] == "reproduced"
    fsck(repo)


SLOW = (
    "import os, sys, time\nimport gitexp\n"
    "with gitexp.start_run() as run:\n"
    "    for step in range(200):\n"
    "        run.log_metrics({'x': step}, step=step)\n"
    "        print('tick', step, os.getpid(), flush=True)\n"
    "        time.sleep(float(os.environ.get('SLOW_SLEEP', '0')))\n"
)


def make_user_dirty(repo: Path) -> None:
    """A stash, a staged change, an unstaged change and an untracked file."""
    (repo / "notes.md").write_text("stashed\n")
    git("add", "notes.md", cwd=repo)
    git("stash", "push", "-q", cwd=repo)
    (repo / "staged.txt").write_text("staged\n")
    git("add", "staged.txt", cwd=repo)
    train = repo / "train.py"
    train.write_text(train.read_text() + "# unstaged edit\n")
    (repo / "untracked.txt").write_text("mine\n")


def gone(pid: int, timeout: float = 10.0) -> bool:
    """True once no process ``pid`` exists (it was reaped by whoever adopted it)."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow
@pytest.mark.parametrize("how", ["ctrl-c", "ctrl-c-through-git", "sigint", "sigterm"])
def test_interrupting_a_replay_leaves_no_trace(gx, repo, private_tmp, how):
    (repo / "slow.py").write_text(SLOW)
    git("add", "slow.py", cwd=repo)
    git("commit", "-qm", "slow", cwd=repo)
    run = record(gx, "--", "python", "slow.py")
    make_user_dirty(repo)
    before = settled_state(repo)

    # ctrl-c: the terminal sends SIGINT to the whole foreground process group
    # (git-exp, and git too when started as 'git exp', which passes it on to git-exp
    # again); sigint/sigterm: `kill` to the git-exp process alone
    argv = ["git", "exp"] if how == "ctrl-c-through-git" else ["git-exp"]
    proc = subprocess.Popen(
        [*argv, "reproduce", run],
        cwd=repo,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={**os.environ, "SLOW_SLEEP": "0.05"},
    )
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # the replay is running once it prints
            if line.startswith("tick 3"):
                child = int(line.split()[2])
                break
        if how.startswith("ctrl-c"):
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGINT if how == "sigint" else signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:  # a hang fails this test, and only this one
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
    # git itself dies of the signal it passed on, once git-exp has exited
    assert proc.returncode == (-signal.SIGINT if argv[0] == "git" else 130), err
    assert out == ""  # no verdict on an interrupted replay
    ours = [ln for ln in err.splitlines() if ln.startswith("git exp:")]
    assert len(ours) == 1 and "interrupted" in ours[0], err  # the script's traceback aside
    assert gone(child), "the replayed command outlived the interrupted reproduce"
    ticks = [ln for ln in err.splitlines() if ln.startswith("tick")]
    assert len(ticks) < 100, "the replay ran on after the interrupt"
    assert not (repo / ".git" / "worktrees").exists()
    assert os.listdir(private_tmp) == []
    assert user_state(repo) == before
    ids = run_ids(repo)
    assert len(ids) == 2
    # the replay is the run that is not the original (both may start in the same
    # second, and then their ids sort by their random part)
    (replay,) = set(ids) - {run}
    killed = json.loads(gx.ok("show", replay, "--json"))
    assert killed["info"]["status"] == "killed"
    assert killed["info"]["links"] == {
        "reproduces": json.loads(gx.ok("show", run, "--json"))["sha"]
    }
    fsck(repo)


@pytest.mark.slow
def test_a_failing_replay_leaves_the_user_state_alone(gx, repo, private_tmp):
    (repo / "flaky.py").write_text(
        "import os, sys, gitexp\n"
        "with gitexp.start_run() as run:\n"
        "    run.log_metrics({'a': 1.0})\n"
        "open('side-effect.txt', 'w').write('written by the command')\n"
        "code = int(os.environ.get('FLAKY_EXIT', '0'))\n"
        "if code:\n"
        "    print(f'giving up with exit {code}', file=sys.stderr)\n"
        "    sys.exit(code)\n"
    )
    (repo / ".gitignore").write_text("*.npz\nside-effect.txt\n")
    git("add", ".", cwd=repo)
    git("commit", "-qm", "flaky", cwd=repo)
    run = record(gx, "--", "python", "flaky.py")
    (repo / "side-effect.txt").unlink()
    make_user_dirty(repo)
    before = settled_state(repo)

    proc = reproduce(gx, run, "--json", "-q", env={"FLAKY_EXIT": "3"})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    verdict = json.loads(proc.stdout)
    assert verdict["verdict"] == "differs"
    tail = verdict["status"].pop("replay_stderr_tail")
    assert verdict["status"] == {
        "original": "finished",
        "replay": "failed",
        "original_exit_code": 0,
        "replay_exit_code": 3,
    }
    assert tail == ["giving up with exit 3"]
    assert any("the replay failed (exit 3)" in e for e in verdict["explanations"])
    assert user_state(repo) == before  # side-effect.txt went to the replay directory
    assert os.listdir(private_tmp) == []
    assert not (repo / ".git" / "worktrees").exists()
    fsck(repo)


@pytest.mark.slow
def test_dry_run_writes_nothing(gx, repo, private_tmp):
    run = record(gx, "-e", "example", "--", *TRAIN, "--seed", "3")

    def everything() -> dict:
        out = {}
        for p in sorted((repo / ".git").rglob("*")):
            if p.is_file():
                out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
        return out

    git("status", "--porcelain", cwd=repo)
    before, state = everything(), user_state(repo)
    proc = reproduce(gx, run, "--dry-run")
    assert proc.returncode == 0, proc.stderr
    assert "command:  python train.py --epochs 2 --n 400 --seed 3" in proc.stdout
    assert "seed:     3" in proc.stdout
    plan = json.loads(reproduce(gx, run, "--dry-run", "--json").stdout)
    assert plan["code_commit"] == git("rev-parse", "HEAD", cwd=repo).strip()
    assert plan["cwd_rel"] == "."
    assert everything() == before and user_state(repo) == state
    assert os.listdir(private_tmp) == []
    assert len(run_ids(repo)) == 1


@pytest.mark.slow
def test_a_run_from_a_subdirectory_replays_there(gx, repo):
    sub = repo / "jobs"
    sub.mkdir()
    (sub / "where.py").write_text(
        "import os, gitexp\n"
        "with gitexp.start_run() as run:\n"
        "    run.log_metrics({'depth': len(os.getcwd().split(os.sep))})\n"
        "    run.log_params({'leaf': os.path.basename(os.getcwd())})\n"
    )
    git("add", "jobs", cwd=repo)
    git("commit", "-qm", "jobs", cwd=repo)
    run = record(gx, "--", "python", "where.py", cwd=sub)
    info = json.loads(gx.ok("show", run, "--json"))["info"]
    assert info["cwd_rel"] == "jobs"
    verdict = json.loads(reproduce(gx, run, "--json", "-q").stdout)
    assert verdict["fingerprint"]["params"] == []  # leaf == "jobs" in the replay too


@pytest.mark.slow
def test_checkout_code_refuses_a_dirty_tree_and_works_on_a_clean_one(gx, repo):
    train = repo / "train.py"
    clean = train.read_text()
    train.write_text(clean.replace("b = 0.0", "b = 0.75"))
    helper = repo / "helper.py"
    helper.write_text("# untracked when the run was made: in the snapshot\n")
    run = record(gx, "--", *TRAIN)
    snap = json.loads(gx.ok("show", run, "--json"))["code"]["snapshot"]
    helper.write_text("# the user's newer, still untracked version\n")

    head = git("rev-parse", "HEAD", cwd=repo)
    state = settled_state(repo)
    proc = gx("checkout-code", run)
    assert proc.returncode == 9
    assert "uncommitted changes (train.py)" in proc.stderr and "nothing was changed" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    assert git("rev-parse", "HEAD", cwd=repo) == head and user_state(repo) == state

    train.write_text(clean)  # tracked files clean; the untracked helper.py is in the way
    proc = gx("checkout-code", run)
    assert proc.returncode == 9 and "would be overwritten" in proc.stderr
    assert "helper.py" in proc.stderr and "newer" in helper.read_text()
    assert git("rev-parse", "HEAD", cwd=repo) == head

    helper.unlink()
    out = gx.ok("checkout-code", run)
    assert f"switched to new branch exp/{run}" in out
    assert git("symbolic-ref", "--short", "HEAD", cwd=repo).strip() == f"exp/{run}"
    assert git("rev-parse", "HEAD", cwd=repo).strip() == snap
    assert "b = 0.75" in train.read_text()

    git("switch", "-q", "main", cwd=repo)
    proc = gx("checkout-code", run, "--branch", "main")
    assert proc.returncode == 2 and "already exists" in proc.stderr
    proc = gx("checkout-code", run, "--branch", "bad..name")
    assert proc.returncode == 2 and "not a valid branch name" in proc.stderr
    gx.ok("checkout-code", run, "--branch", "retry")
    assert git("rev-parse", "retry", cwd=repo).strip() == snap
    fsck(repo)


@pytest.mark.slow
def test_bad_input_is_one_line_and_a_distinct_exit_code(gx, repo):
    proc = reproduce(gx, "no-such-run")
    assert proc.returncode == 4 and len(proc.stderr.strip().splitlines()) == 1
    run = record(gx, "--", *TRAIN)
    proc = reproduce(gx, run, "--rtol", "-1")
    assert proc.returncode == 2 and "--rtol" in proc.stderr


def test_seed_everything_before_start_run_is_recorded_in_the_next_run(repo, monkeypatch):
    import gitexp

    monkeypatch.delenv("GITEXP_SEED", raising=False)
    assert gitexp.seed_everything(123) == 123
    with gitexp.start_run(repo=str(repo)) as run:
        assert run.params["seed"] == 123
    with gitexp.start_run(repo=str(repo)) as later:  # only the next run
        assert "seed" not in later.params
    assert gitexp.get_run(run.id, repo=str(repo))["params"]["seed"] == 123


FAKE_TORCH = """
calls = []
def manual_seed(seed): calls.append(("manual_seed", seed))
def use_deterministic_algorithms(flag, warn_only=False):
    calls.append(("use_deterministic_algorithms", flag, warn_only))
class cuda:
    @staticmethod
    def is_available(): return True
    @staticmethod
    def manual_seed_all(seed): calls.append(("cuda.manual_seed_all", seed))
class backends:
    class cudnn:
        deterministic = False
        benchmark = True
"""


def test_seed_everything_drives_torch_and_jax_when_importable(tmp_path):
    """torch and jax are not dependencies (and not installed here): stand-ins with
    their API's shape check what seed_everything calls when they are importable."""
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text(FAKE_TORCH)
    (tmp_path / "jax").mkdir()
    (tmp_path / "jax" / "__init__.py").write_text("")
    probe = (
        "import json, os, sys, gitexp\n"
        "gitexp.seed_everything(42)\n"
        "import torch\n"
        "print(json.dumps({'calls': torch.calls,"
        " 'cudnn': [torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark],"
        " 'env': {k: os.environ.get(k) for k in"
        " ('PYTHONHASHSEED', 'CUBLAS_WORKSPACE_CONFIG', 'XLA_FLAGS')}}))\n"
    )
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CUBLAS_WORKSPACE_CONFIG", "XLA_FLAGS", "PYTHONHASHSEED")
    }
    out = subprocess.run(
        ["python", "-c", probe],
        env={**env, "PYTHONPATH": str(tmp_path)},
        capture_output=True,
        text=True,
        check=True,
        cwd=tmp_path,
    )
    got = json.loads(out.stdout)
    assert got["calls"] == [
        ["manual_seed", 42],
        ["cuda.manual_seed_all", 42],
        ["use_deterministic_algorithms", True, True],
    ]
    assert got["cudnn"] == [True, False]
    assert got["env"] == {
        "PYTHONHASHSEED": "42",
        "CUBLAS_WORKSPACE_CONFIG": ":4096:8",
        "XLA_FLAGS": "--xla_gpu_deterministic_ops=true",
    }

    # without them, and with deterministic=False, nothing is imported or set
    probe = (
        "import os, sys, gitexp\n"
        "gitexp.seed_everything(7, deterministic=False)\n"
        "assert 'torch' not in sys.modules and 'jax' not in sys.modules\n"
        "assert 'CUBLAS_WORKSPACE_CONFIG' not in os.environ\n"
        "assert 'XLA_FLAGS' not in os.environ\n"
    )
    subprocess.run(["python", "-c", probe], env=env, check=True, cwd=tmp_path / "torch")


def test_seed_everything_seeds_and_records(repo, monkeypatch):
    import random

    import numpy as np

    import gitexp

    monkeypatch.delenv("GITEXP_SEED", raising=False)
    monkeypatch.delenv("PYTHONHASHSEED", raising=False)
    assert gitexp.seed_everything(7) == 7
    first = (random.random(), float(np.random.rand()))
    gitexp.seed_everything(7)
    assert (random.random(), float(np.random.rand())) == first
    assert os.environ["PYTHONHASHSEED"] == "7"
    monkeypatch.setenv("GITEXP_SEED", "11")
    assert gitexp.seed_everything() == 11
    with pytest.raises(gitexp.errors.UsageError):
        gitexp.seed_everything(-1)
    with gitexp.start_run(repo=str(repo)) as run:
        gitexp.seed_everything(5)
        assert run.params["seed"] == 5
    monkeypatch.delenv("GITEXP_SEED")
    drawn = gitexp.seed_everything()
    assert 0 <= drawn < 2**32


@pytest.mark.slow
def test_config_and_large_code_files_are_restored_from_the_store(gx, repo):
    (repo / ".gitignore").write_text("*.npz\nlocal/\n")
    (repo / "use.py").write_text(
        "import hashlib, json, gitexp\n"
        "conf = json.load(open('local/conf.json'))\n"
        "digest = hashlib.sha256(open('weights.bin', 'rb').read()).hexdigest()\n"
        "with gitexp.start_run() as run:\n"
        "    run.log_metrics({'lr': conf['lr'], 'weights': int(digest[:8], 16)})\n"
    )
    git("add", ".", cwd=repo)
    git("commit", "-qm", "use", cwd=repo)
    (repo / "local").mkdir()
    conf = repo / "local" / "conf.json"
    conf.write_text('{"lr": 0.3}')
    weights = repo / "weights.bin"  # untracked and over the 10 MiB snapshot limit
    weights.write_bytes(os.urandom(11 << 20))
    run = record(gx, "--config", "local/conf.json", "--", "python", "use.py")
    shown = json.loads(gx.ok("show", run, "--json"))
    roles = {a["path"]: a["role"] for a in shown["artifacts"]}
    assert roles["weights.bin"] == "code" and roles["conf.json"] == "config"

    conf.write_text('{"lr": 0.9}')
    weights.unlink()
    before = settled_state(repo)
    proc = reproduce(gx, run, "--json", "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    verdict = json.loads(proc.stdout)
    assert verdict["verdict"] == "reproduced" and verdict["fingerprint"]["same"]
    replay = json.loads(gx.ok("show", verdict["replay"]["run"], "--json"))
    assert replay["params"] == {"lr": 0.3}
    assert user_state(repo) == before

    git("stash", "push", "-q", "--include-untracked", cwd=repo)  # a clean tree, then:
    gx.ok("checkout-code", run)
    assert weights.stat().st_size == 11 << 20  # restored from the store, verified
    fsck(repo)


@pytest.mark.slow
def test_a_plain_script_run_with_absolute_paths_replays_inside_the_copy(gx, repo):
    sub = repo / "runs"
    sub.mkdir()
    out = repo / "runs" / "model.npz"
    # no git exp run: the script's own start_run() records the command and cwd
    subprocess.run(
        ["python", "../train.py", "--epochs", "2", "--n", "400", "--out", str(out)],
        cwd=sub,
        check=True,
        capture_output=True,
    )
    (run,) = run_ids(repo)
    before = settled_state(repo)
    proc = reproduce(gx, run, "--json", "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    verdict = json.loads(proc.stdout)
    assert verdict["verdict"] == "reproduced"
    assert verdict["fingerprint"]["paths_mapped"]  # --out pointed into the replay dir
    replay = json.loads(gx.ok("show", verdict["replay"]["run"], "--json"))
    assert replay["info"]["command"][-1] == str(out)  # recorded as the original
    assert user_state(repo) == before  # the user's model.npz was not rewritten


@pytest.mark.slow
def test_absolute_paths_in_params_and_config_point_into_the_copy(gx, repo):
    """-p out=/abs/path/in/the/work/tree, and a config file naming another: the
    replay writes into its copy, not over the user's files, and the param compares
    as the original's."""
    (repo / "write.py").write_text(
        "import json, os, gitexp\n"
        "conf = json.load(open('conf.json'))\n"
        "with gitexp.start_run() as run:\n"
        "    open(run.params['out'], 'w').write('replayed output')\n"
        "    os.makedirs(os.path.dirname(conf['log']), exist_ok=True)\n"
        "    open(conf['log'], 'w').write('replayed log')\n"
        "    run.log_metrics({'ok': 1})\n"
    )
    (repo / ".gitignore").write_text("*.npz\nconf.json\n")
    git("add", ".", cwd=repo)
    git("commit", "-qm", "write", cwd=repo)
    target, log = repo / "result.txt", repo / "logs" / "train.log"
    log.parent.mkdir()
    (repo / "conf.json").write_text(json.dumps({"log": str(log), "other": str(repo) + "2/x"}))
    run = record(gx, "--config", "conf.json", "-p", f"out={target}", "--", "python", "write.py")
    target.write_text("the user's own file now\n")
    log.write_text("the user's own log\n")
    before = settled_state(repo)
    proc = reproduce(gx, run, "--json", "-q", "--keep")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    verdict = json.loads(proc.stdout)
    assert verdict["verdict"] == "reproduced" and verdict["fingerprint"]["same"], verdict
    assert target.read_text() == "the user's own file now\n"
    assert log.read_text() == "the user's own log\n"
    assert user_state(repo) == before
    kept = Path(verdict["kept_dir"])
    assert (kept / "logs" / "train.log").read_text() == "replayed log"
    assert json.loads((kept / "conf.json").read_text())["other"] == str(repo) + "2/x"
    assert any("conf.json" in n and "pointed into the copy" in n for n in verdict["notes"])
    assert (kept / "result.txt").read_text() == "replayed output"
    shutil.rmtree(kept.parent)


@pytest.mark.slow
def test_keep_and_environment_differences(gx, repo, private_tmp):
    run = record(gx, "-e", "example", "--", *TRAIN, "--seed", "4")
    # a variable the run records but the replay does not set (it only changes
    # where the work runs): reported, and not a reason to differ
    proc = reproduce(gx, run, "--keep", "-q", env={"CUDA_VISIBLE_DEVICES": "1"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "environment: differs" in proc.stdout
    (line,) = [ln for ln in proc.stdout.splitlines() if ln.strip().startswith("variables:")]
    before, after = line.split(" -> ")
    assert "CUDA_VISIBLE_DEVICES" not in before and '"CUDA_VISIBLE_DEVICES": "1"' in after
    (kept,) = [ln.split(" ", 1)[1] for ln in proc.stdout.splitlines() if ln.startswith("kept: ")]
    kept_dir = Path(kept)
    assert kept_dir.parent.parent == private_tmp
    assert (kept_dir / "train.py").read_text() == (repo / "train.py").read_text()
    assert (kept_dir / "model.npz").is_file()  # the replay's output, left for a look
    assert not (kept_dir / ".git").exists()
    shutil.rmtree(kept_dir.parent)


@pytest.mark.slow
def test_get_restores_verified_and_refuses_a_damaged_object(gx, repo, tmp_path):
    run = record(gx, "-e", "example", "--", *TRAIN)
    entry = next(
        a for a in json.loads(gx.ok("show", run, "--json"))["artifacts"] if a["path"] == "model.npz"
    )
    dest = tmp_path / "out" / "model.npz"
    dest.parent.mkdir()
    out = gx.ok("get", run, "model.npz", "-o", str(dest))
    assert "verified" in out
    assert dest.read_bytes() == (repo / "model.npz").read_bytes()
    import blake3

    assert blake3.blake3(dest.read_bytes()).hexdigest() == entry["blake3"]

    obj = repo / ".git" / "exp" / "objects" / entry["blake3"][:2] / entry["blake3"][2:]
    obj.chmod(0o644)
    good = obj.read_bytes()
    obj.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))  # one bit flipped
    proc = gx("get", run, "model.npz", "-o", str(tmp_path / "again.npz"))
    assert proc.returncode == 6, proc.stdout + proc.stderr
    assert "damaged" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "again.npz").exists()
    assert os.listdir(tmp_path / "out") == ["model.npz"]  # no partial file left
    proc = gx("get", run, "model.npz", "-o", str(dest), "--force")
    assert proc.returncode == 6 and dest.read_bytes() == (repo / "model.npz").read_bytes()


@pytest.mark.slow
def test_a_run_with_nothing_to_compare_says_so(gx, repo):
    run = record(gx, "--", "python", "-c", "print('hello')")
    proc = reproduce(gx, run, "-q")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "note: neither run logged metrics or output files" in proc.stdout
    assert "verdict: REPRODUCED" in proc.stdout


@pytest.mark.slow
def test_a_missing_code_commit_is_a_distinct_exit_code(gx, repo):
    (repo / "train.py").write_text((repo / "train.py").read_text() + "# uncommitted\n")
    run = record(gx, "--", *TRAIN)
    snapshot = json.loads(gx.ok("show", run, "--json"))["code"]["snapshot"]
    # the snapshot commit is lost (a damaged or partial copy of the repository)
    (repo / ".git" / "objects" / snapshot[:2] / snapshot[2:]).unlink()
    before = run_ids(repo)
    proc = reproduce(gx, run)
    assert proc.returncode == 8, proc.stdout + proc.stderr
    assert f"code commit {snapshot[:12]} is missing" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
    out = json.loads(reproduce(gx, run, "--json").stdout)
    assert out["verdict"] == "cannot_reproduce" and out["problems"]
    assert reproduce(gx, run, "--dry-run").returncode == 8
    proc = gx("checkout-code", run)
    assert proc.returncode == 8 and "not in this repository" in proc.stderr
    assert run_ids(repo) == before
