"""``git exp diff``: what differs between two runs."""

from __future__ import annotations

import json

import pytest

import gitexp
from conftest import finished_run, git


def _run_with_input(repo, data: str, lr: float, acc: float, model: bytes) -> str:
    (repo / "data.csv").write_text(data)
    (repo / "model.bin").write_bytes(model)
    with gitexp.start_run(params={"lr": lr, "seed": 0}) as run:
        run.log_input(repo / "data.csv")
        run.log_metric("acc", acc)
        run.log_artifact(repo / "model.bin")
    return run.id


def _commit(repo, text):
    (repo / "train.py").write_text(text)
    git("commit", "-q", "-am", "change the model", cwd=repo)


def test_diff_params_metrics_data_and_artifacts(gx, repo):
    (repo / ".gitignore").write_text("*.npz\ndata.csv\nmodel.bin\n")
    git("commit", "-q", "-am", "ignore data", cwd=repo)
    a = _run_with_input(repo, "1,2\n", 0.1, 0.75, b"m1")
    b = _run_with_input(repo, "1,2\n3,4\n", 0.2, 0.5, b"m2")
    out = gx.ok("diff", a, b)
    assert "DATA CHANGED" in out
    data_line = next(ln for ln in out.splitlines() if "data.csv" in ln and "changed" in ln)
    assert "->" in data_line
    lr = next(ln for ln in out.splitlines() if ln.strip().startswith("lr"))
    assert "0.1 -> 0.2" in lr
    assert "seed" not in out  # equal params are not listed
    acc = next(ln for ln in out.splitlines() if ln.strip().startswith("acc"))
    assert "0.75" in acc and "0.5" in acc and "(-0.25)" in acc
    assert "model.bin" in out and "code: identical tree" in out
    assert "fingerprint: different" in out

    d = json.loads(gx.ok("diff", "--json", a, b))
    assert d["a"]["run"].endswith(a) and d["b"]["run"].endswith(b)
    assert d["params"] == [{"key": "lr", "a": 0.1, "b": 0.2}]
    assert d["metrics"] == [{"key": "acc", "a": 0.75, "b": 0.5, "delta": -0.25}]
    assert d["data_changed"] is True and d["inputs"][0]["status"] == "changed"
    assert [x["path"] for x in d["artifacts"]] == ["model.bin"]
    assert d["code"]["same_tree"] is True and d["same_fingerprint"] is False


def test_same_data_is_not_flagged(gx, repo):
    (repo / ".gitignore").write_text("*.npz\ndata.csv\nmodel.bin\n")
    git("commit", "-q", "-am", "ignore data", cwd=repo)
    a = _run_with_input(repo, "1,2\n", 0.1, 0.75, b"m")
    b = _run_with_input(repo, "1,2\n", 0.1, 0.75, b"m")
    out = gx.ok("diff", a, b)
    assert "DATA CHANGED" not in out
    assert "params: identical" in out and "artifacts: identical" in out
    assert "fingerprint: identical" in out
    d = json.loads(gx.ok("diff", "--json", a, b))
    assert d["data_changed"] is False and d["params"] == [] and d["same_fingerprint"] is True


def test_diff_code_prints_the_source_diff(gx, repo):
    a = finished_run(params={"lr": 0.1}).rsplit("/", 1)[1]
    _commit(repo, "print('version two')\n")
    b = finished_run(params={"lr": 0.1}).rsplit("/", 1)[1]
    out = gx.ok("diff", a, b)
    assert "code: " in out and "train.py" in out  # diff stat
    assert "version two" not in out
    out = gx.ok("diff", "--code", a, b)
    assert "+print('version two')" in out and "diff --git a/train.py b/train.py" in out
    d = json.loads(gx.ok("diff", "--json", "--code", a, b))
    assert "+print('version two')" in d["code"]["source_diff"]
    assert d["code"]["same_tree"] is False
    assert d["code"]["b"] == git("rev-parse", "HEAD", cwd=repo).strip()


def test_diff_against_a_dirty_snapshot(gx, repo):
    a = finished_run().rsplit("/", 1)[1]
    (repo / "train.py").write_text("uncommitted experiment\n")
    b = finished_run().rsplit("/", 1)[1]
    out = gx.ok("diff", "--code", a, b)
    assert "(b dirty)" in out and "+uncommitted experiment" in out


def test_diff_addresses_runs_in_every_form(gx, repo):
    ra = finished_run("x", {"p": 1})
    rb = finished_run("y", {"p": 2})
    sha_b = git("rev-parse", rb, cwd=repo).strip()
    d = json.loads(gx.ok("diff", "--json", ra.split("refs/experiments/")[1], sha_b[:7]))
    assert d["params"] == [{"key": "p", "a": 1, "b": 2}]
    d = json.loads(gx.ok("diff", "--json", ra, rb))
    assert d["params"][0]["b"] == 2


def _run_in_env(gx, repo, tmp_path, version: str | None, **env: str) -> str:
    """A run whose interpreter sees package ``fakepkg`` at ``version`` (None: absent)."""
    path = tmp_path / f"site-{version}"
    if version:
        info = path / f"fakepkg-{version}.dist-info"
        info.mkdir(parents=True)
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: fakepkg\nVersion: {version}\n"
        )
    script = "import gitexp; gitexp.log_metric('x', 1.0)"
    proc = gx("run", "-q", "--", "python", "-c", script, env={"PYTHONPATH": str(path), **env})
    assert proc.returncode == 0, proc.stderr
    return json.loads(gx.ok("log", "--json", "--sort=-start", "--limit", "1"))[0]["id"]


@pytest.mark.slow
def test_diff_environment_packages_and_variables(gx, repo, tmp_path):
    a = _run_in_env(gx, repo, tmp_path, None)
    b = _run_in_env(gx, repo, tmp_path, "1.0", OMP_NUM_THREADS="2")
    c = _run_in_env(gx, repo, tmp_path, "2.0", OMP_NUM_THREADS="2")
    out = gx.ok("diff", a, b)
    env = out.split("\nenvironment\n")[1].split("\n\n")[0].splitlines()
    assert "  fakepkg: - -> 1.0" in env
    assert "  OMP_NUM_THREADS: - -> 2" in env
    assert not any("{" in ln for ln in env), env  # readable, not JSON dumps
    out = gx.ok("diff", b, c)
    env = out.split("\nenvironment\n")[1].split("\n\n")[0].splitlines()
    assert env == ["  fakepkg: 1.0 -> 2.0"]
    d = json.loads(gx.ok("diff", "--json", b, c))
    assert d["env"]["packages"] == [{"name": "fakepkg", "a": "1.0", "b": "2.0"}]
    assert "variables" not in d["env"]
    assert "environment: identical" in gx.ok("diff", c, c)
