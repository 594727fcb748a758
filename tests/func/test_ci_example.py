"""The CI jobs of docs/ci.md, run as a script: train, check, promote, share.

The GitHub Actions job's steps (all but checkout, setup-python and the
install, which this environment already is) run in a fresh clone of a real
bare repository, once per push of the project: the first deployment promotes
the best seed; a commit that trains a worse model fails the gate with exit 1
and changes nothing. The GitLab job must run the same commands.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import fsck, git, make_repo
from servers import bare

CI_MD = Path(__file__).resolve().parents[2] / "docs" / "ci.md"


def jobs() -> tuple[list[dict], list[str]]:
    """(the GitHub job's steps, the GitLab job's script) from docs/ci.md."""
    blocks = re.findall(r"```yaml\n(.*?)```", CI_MD.read_text(), flags=re.S)
    github = next(yaml.safe_load(b) for b in blocks if "runs-on" in b)
    gitlab = next(yaml.safe_load(b) for b in blocks if "image:" in b)
    steps = github["jobs"]["train-check-promote"]["steps"]
    return steps, gitlab["train-check-promote"]["script"]


def commands(blocks: list[str]) -> list[str]:
    return [ln.strip() for b in blocks for ln in b.splitlines() if ln.strip()]


def script() -> str:
    steps, _ = jobs()
    runs = [s["run"] for s in steps if "run" in s and s.get("name") != "Install"]
    return "set -euo pipefail\n" + "\n".join(runs)


def test_the_gitlab_job_runs_the_same_commands_as_the_github_job():
    steps, gitlab = jobs()
    github = commands([s["run"] for s in steps if "run" in s and s.get("name") != "Install"])
    mine = commands([c for c in gitlab if not c.startswith(("pip install", "git remote set-url"))])
    assert mine == github
    assert [s.get("uses", "").split("@")[0] for s in steps[:2]] == [
        "actions/checkout",
        "actions/setup-python",
    ]


def ci_job(origin: Path, tmp: Path, name: str) -> subprocess.CompletedProcess:
    """A CI machine: a fresh clone of the pushed commit, then the job's steps."""
    work = tmp / name
    git("clone", "-q", str(origin), str(work), cwd=tmp)
    sha = git("rev-parse", "HEAD", cwd=work).strip()
    env = {"RUNS": f"ci-{sha}", "EXPSTORE": str(tmp / "store"), "GITHUB_SHA": sha}
    return subprocess.run(
        ["bash", "-c", script()],
        cwd=work,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=600,
    )


def production(origin: Path) -> dict:
    state = json.loads(git("show", "refs/models/fraud:model.json", cwd=origin))
    return {"latest": state["latest"], "production": state["versions"]["production"][0]}


@pytest.mark.slow
def test_the_ci_job_promotes_a_good_model_and_stops_a_worse_one(tmp_path):
    origin = bare(tmp_path, "origin.git")
    dev = make_repo(tmp_path / "dev")
    git("remote", "add", "origin", str(origin), cwd=dev)
    git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=dev)

    first = ci_job(origin, tmp_path, "ci1")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "check passed" in first.stdout and "verdict      OK" in first.stdout
    assert production(origin) == {"latest": 1, "production": 1}
    runs = git("for-each-ref", "--format=%(refname)", "refs/experiments/", cwd=origin).split()
    assert len(runs) == 3  # the three seeds were shared, with the model's bytes
    assert any((tmp_path / "store" / "objects").rglob("*"))

    # a commit that trains a worse model: the gate fails, nothing is promoted
    train = dev / "train.py"
    broken = train.read_text().replace("w -= args.lr * grad_w", "w += args.lr * grad_w")
    assert broken != train.read_text()
    train.write_text(broken)  # gradient ascent: a model much worse than production
    git("commit", "-q", "-am", "a sign error", cwd=dev)
    git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=dev)
    worse = ci_job(origin, tmp_path, "ci2")
    assert worse.returncode == 1, worse.stdout + worse.stderr
    assert "check FAILED" in worse.stdout and "FAIL: worse" in worse.stdout
    assert "registered" not in worse.stdout
    assert production(origin) == {"latest": 1, "production": 1}
    fsck(origin)
