"""Models through git exp push and pull: two clones and a bare remote, in real git.

A model's ref moves on the remote by fast-forward only; when two clones changed
one model, the second to push replays its changes on top of the first's, or
refuses with the reason. No change is ever silently dropped.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import fsck, git, in_process, make_repo
from modelruns import make_runs
from servers import bare

MODEL = "fraud"


def ok(repo: Path, *args: str) -> str:
    proc = in_process(args, repo)
    assert proc.returncode == 0, f"git exp {' '.join(args)} -> {proc.returncode}\n{proc.stderr}"
    return proc.stdout


def tip(repo: Path) -> str:
    return git("rev-parse", f"refs/models/{MODEL}", cwd=repo).strip()


def state(repo: Path) -> dict:
    return json.loads(git("show", f"refs/models/{MODEL}:model.json", cwd=repo))


def events(repo: Path) -> list[tuple]:
    out = []
    for sha in git("rev-list", f"refs/models/{MODEL}", cwd=repo).split():
        ev = json.loads(git("show", f"{sha}:model.json", cwd=repo))["event"]
        out.append((ev["op"], ev.get("message")))
    return out


@pytest.fixture
def team(tmp_path):
    """alice with fraud v1 in production pushed to a bare remote, bob a clone that pulled it."""
    remote = bare(tmp_path, "shared.git")
    alice = make_repo(tmp_path / "alice")
    git("remote", "add", "origin", str(remote), cwd=alice)
    git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=alice)
    (run,) = make_runs(alice, [0.80])
    ok(alice, "model", "register", MODEL, run)
    ok(alice, "model", "promote", MODEL, "1", "production")
    out = ok(alice, "push")
    assert "new         model fraud" in out and "models: 1 new" in out, out
    bob = tmp_path / "bob"
    git("clone", "-q", str(remote), str(bob), cwd=tmp_path)
    out = ok(bob, "pull")
    assert "new         model fraud" in out, out
    assert tip(bob) == tip(alice) == tip(remote)
    return alice, bob, remote


@pytest.mark.slow
def test_models_travel_with_push_and_pull_and_their_bytes_follow(team, tmp_path):
    alice, bob, remote = team
    ok(bob, "model", "get", f"{MODEL}@production", "-o", str(tmp_path / "m.bin"))
    assert (tmp_path / "m.bin").read_bytes() == b"weights 0 " * 64
    # a clone that took the registry but no bytes: get fetches them from the remote's store
    carol = tmp_path / "carol"
    git("clone", "-q", str(remote), str(carol), cwd=tmp_path)
    ok(carol, "pull", "--no-artifacts")
    out = ok(carol, "model", "get", f"{MODEL}@production", "-o", str(tmp_path / "c.bin"))
    assert "1 object(s) fetched" in out and "verified" in out
    assert (tmp_path / "c.bin").read_bytes() == b"weights 0 " * 64
    ok(alice, "model", "promote", MODEL, "1", "staging")
    assert "updated     model fraud" in ok(alice, "push")
    assert "updated     model fraud" in ok(bob, "fetch")
    assert state(bob)["versions"]["staging"] == [1]
    assert "models: 1 up to date" in ok(bob, "push")
    for repo in (alice, bob, remote):
        fsck(repo)


@pytest.mark.slow
def test_two_clones_changing_a_model_at_once_both_changes_land(team):
    alice, bob, remote = team
    (mine,) = make_runs(alice, [0.86], seed0=1)
    (theirs,) = make_runs(bob, [0.84], seed0=2)
    ok(alice, "model", "register", MODEL, mine, "-m", "alice's")
    ok(alice, "model", "promote", MODEL, "2", "production", "-m", "alice ships")
    ok(bob, "model", "register", MODEL, theirs, "-m", "bob's")  # also v2, here
    ok(bob, "model", "promote", MODEL, "2", "staging", "-m", "bob stages")
    ok(bob, "model", "promote", MODEL, "2", "--alias", "bobs", "-m", "bob names it")
    procs = [
        subprocess.Popen(
            ["git", "exp", "push"],
            cwd=who,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for who in (alice, bob)
    ]
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        outs.append(out)
    assert any("replayed" in out for out in outs), outs  # the second one replayed its changes
    fsck(remote)
    got = state(remote)
    assert got["latest"] == 3
    # every change of both clones is in the remote's history, none dropped
    messages = {m for _, m in events(remote)}
    assert {"alice's", "alice ships", "bob's", "bob stages", "bob names it"} <= messages
    assert [op for op, _ in events(remote)].count("register") == 3
    # alice's run holds production and bob's holds staging, whoever numbered first
    version = {
        v: json.loads(git("show", f"refs/models/{MODEL}:versions/{v}/version.json", cwd=remote))
        for v in (2, 3)
    }
    holder = {s: version[h[-1]]["run"]["ref"] for s, h in got["holders"].items()}
    assert holder == {"production": mine, "staging": theirs}
    assert version[got["aliases"]["bobs"][-1]]["run"]["ref"] == theirs
    for who in (alice, bob):
        ok(who, "pull")
        assert tip(who) == tip(remote)
        fsck(who)


@pytest.mark.slow
def test_a_change_that_no_longer_applies_is_refused_and_kept(team):
    alice, bob, remote = team
    (run,) = make_runs(alice, [0.9], seed0=3)
    ok(alice, "model", "register", MODEL, run)
    ok(alice, "model", "promote", MODEL, "2", "production")  # archives v1
    ok(alice, "push")
    ok(bob, "model", "promote", MODEL, "1", "staging", "-m", "stale view")
    bob_tip, remote_tip = tip(bob), tip(remote)
    proc = in_process(("push",), bob)
    assert proc.returncode == 10, proc.stderr
    assert "archived" in proc.stderr and "--force" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("git exp: error: 1 model(s)")
    assert tip(bob) == bob_tip and tip(remote) == remote_tip  # nothing lost, nothing moved
    proc = in_process(("fetch",), bob)  # a fetch keeps bob's history as it is too
    assert proc.returncode == 10 and "diverged" in proc.stderr and tip(bob) == bob_tip
    assert "forced      model fraud" in ok(bob, "push", "--force")
    assert tip(remote) == bob_tip
    for repo in (alice, bob, remote):
        fsck(repo)


@pytest.mark.slow
def test_a_hostile_model_from_the_remote_is_refused_by_name(team):
    _, bob, remote = team
    doc = '{"format": 1, "name": "../../etc", "latest": 0}\n'
    blob = git("hash-object", "-w", "--stdin", cwd=remote, input=doc).strip()
    tree = git("mktree", cwd=remote, input=f"100644 blob {blob}\tmodel.json\n").strip()
    commit = git("commit-tree", tree, "-m", "evil", cwd=remote).strip()
    git("update-ref", "refs/models/evil", commit, cwd=remote)
    proc = in_process(("fetch",), bob)
    assert proc.returncode == 6, proc.stderr
    assert "refused     model evil" in proc.stderr and "not valid" in proc.stderr
    assert git("for-each-ref", "refs/models/", cwd=bob).split()[-1] == f"refs/models/{MODEL}"
    assert f"model {MODEL}" not in proc.stderr  # the good model is not reported as a problem
