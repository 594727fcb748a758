"""One malformed run on a shared remote must not break pull, log or fsck for the team.

Runs are built by hand with git plumbing (a teammate's buggy tool, or an attacker)
in a bare remote, then pulled: the malformed one is quarantined — named on one
line — and everything else arrives, lists and checks as usual (issue 11, section 3).
"""

from __future__ import annotations

import json
import subprocess

import pytest

from conftest import finished_run, git, make_repo, run_refs
from servers import bare

BAD_ID = "20261201-000000-0bad00"


def _plumb(cwd, *args, data: bytes | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, input=data, capture_output=True, check=True)
    return proc.stdout.decode().strip()


def _forge(repo, good_ref: str, replace: dict[str, bytes], run_id: str = BAD_ID) -> str:
    """A run ref whose tree is a good run's with some files replaced; returns the ref."""
    tree = _plumb(repo, "rev-parse", f"{good_ref}^{{tree}}")
    entries = {}
    for line in _plumb(repo, "ls-tree", tree).splitlines():
        meta, name = line.split("\t")
        entries[name] = meta
    run = json.loads(_plumb(repo, "show", f"{good_ref}:run.json"))
    run["id"] = run_id
    files = {"run.json": json.dumps(run).encode(), **replace}
    for name, data in files.items():
        blob = _plumb(repo, "hash-object", "-w", "--stdin", data=data)
        entries[name] = f"100644 blob {blob}"
    listing = "".join(f"{meta}\t{name}\n" for name, meta in sorted(entries.items()))
    new_tree = _plumb(repo, "mktree", data=listing.encode())
    commit = _plumb(repo, "commit-tree", new_tree, "-m", "forged", data=b"")
    ref = f"refs/experiments/shared/{run_id}"
    _plumb(repo, "update-ref", ref, commit)
    return ref


def _json_of(repo, ref, name):
    return json.loads(_plumb(repo, "show", f"{ref}:{name}"))


def _deep(n: int) -> bytes:
    return b"[" * n + b"]" * n


def _cases(repo, good):
    run = _json_of(repo, good, "run.json")
    arts = _json_of(repo, good, "artifacts.json")
    wrong_types = {**run, "tags": "oops", "status": 5}
    huge_size = json.dumps([*arts, {"path": "m.bin", "blake3": "a" * 64, "size": 1}])
    return {
        "size-infinity": {
            "artifacts.json": huge_size.replace('"size": 1}', '"size": Infinity}').encode()
        },
        "deep-run": {"run.json": b'{"x": ' + _deep(100_000) + b"}"},
        "deep-params": {"params.json": b'{"x": ' + _deep(100_000) + b"}"},
        "deep-artifacts": {"artifacts.json": _deep(100_000)},
        "huge-int": {"params.json": b'{"n": ' + b"9" * 100_000 + b"}"},
        "deep-summary": {"summary.json": b'{"metrics": ' + _deep(100_000) + b', "final": {}}'},
        "wrong-types": {"run.json": json.dumps(wrong_types).encode()},
        "bad-summary": {"summary.json": b'{"metrics": {"loss": {"last": "x"}}, "final": {}}'},
        "surrogate-key": {"params.json": b'{"\\ud800": 1}'},
    }


CASES = [
    "size-infinity",
    "deep-run",
    "deep-params",
    "deep-artifacts",
    "huge-int",
    "deep-summary",
    "wrong-types",
    "bad-summary",
    "surrogate-key",
]


@pytest.fixture
def team(tmp_path):
    """A bare remote holding two good runs, and a teammate's clone of the code."""
    alice = make_repo(tmp_path / "alice")
    remote = bare(tmp_path, "shared.git")
    good = [
        finished_run("shared", params={"lr": lr}, metrics={"loss": lr}, repo=alice)
        for lr in (0.1, 0.2)
    ]
    git("remote", "add", "origin", str(remote), cwd=alice)
    git(
        "push",
        "-q",
        "origin",
        "HEAD:refs/heads/main",
        "refs/experiments/*:refs/experiments/*",
        cwd=alice,
    )
    bob = tmp_path / "bob"
    git("clone", "-q", str(remote), str(bob), cwd=tmp_path)
    return remote, good, bob


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES)
def test_a_malformed_run_is_quarantined_and_the_rest_arrives(team, case, gx):
    remote, good, bob = team
    forged = _forge(remote, good[0], _cases(remote, good[0])[case])

    pulled = gx("pull", "origin", cwd=bob)
    assert pulled.returncode != 70 and "Traceback" not in pulled.stderr, pulled.stderr
    assert "internal error" not in pulled.stderr
    lines = [ln for ln in pulled.stderr.splitlines() if BAD_ID in ln]
    assert lines, pulled.stderr  # the malformed run is named ...
    assert set(good) <= set(run_refs(bob))  # ... and everything else arrives

    log = gx("log", "-e", "shared", cwd=bob)
    assert log.returncode == 0, log.stderr
    assert sum(g.rsplit("/", 1)[1] in log.stdout for g in good) == 2
    if forged in run_refs(bob):  # pulled as a ref, it must not break listing
        assert "could not be read" in log.stderr, log.stderr
        fsck = gx("fsck", cwd=bob)
        assert fsck.returncode != 0 and BAD_ID in fsck.stdout + fsck.stderr
        assert "internal error" not in fsck.stderr
        gx.ok("rm", f"shared/{BAD_ID}", cwd=bob)
        assert forged not in run_refs(bob)
        assert "could not be read" not in gx("log", cwd=bob).stderr
    assert gx("fsck", cwd=bob).returncode == 0


@pytest.mark.parametrize("case", ["deep-summary", "wrong-types", "bad-summary"])
def test_log_fsck_and_rm_quarantine_a_malformed_run_in_the_repository(repo, gx, case):
    good = [finished_run("shared", params={"lr": lr}, repo=repo) for lr in (0.1, 0.2)]
    _forge(repo, good[0], _cases(repo, good[0])[case])
    log = gx("log")
    assert log.returncode == 0 and all(g.rsplit("/", 1)[1] in log.stdout for g in good)
    assert f"1 run could not be read and is not listed: shared/{BAD_ID}" in log.stderr
    assert len(log.stderr.splitlines()) == 1
    fsck = gx("fsck")
    assert fsck.returncode != 0 and f"shared/{BAD_ID}" in fsck.stdout
    gx.ok("rm", f"shared/{BAD_ID}")
    assert gx("log").stderr == "" and gx("fsck").returncode == 0


def test_fsck_names_a_run_whose_manifest_is_malformed_and_show_says_why(repo, gx):
    """Listing reads no manifest; fsck and show read it and name the run, one line."""
    good = finished_run("shared", repo=repo)
    _forge(repo, good, _cases(repo, good)["size-infinity"])
    fsck = gx("fsck")
    assert fsck.returncode != 0 and f"shared/{BAD_ID}" in fsck.stdout
    assert "Infinity is not JSON" in fsck.stdout
    show = gx("show", BAD_ID)
    assert show.returncode == 6 and len(show.stderr.splitlines()) == 1
    assert "artifacts.json" in show.stderr and "Traceback" not in show.stderr


def test_many_malformed_runs_are_one_line_in_log(repo, gx):
    good = finished_run("shared", repo=repo)
    for i in range(5):
        _forge(repo, good, {"summary.json": b"[]"}, run_id=f"20261201-00000{i}-0bad00")
    log = gx("log")
    assert log.returncode == 0 and good.rsplit("/", 1)[1] in log.stdout
    assert log.stderr.splitlines() == [
        "git exp: warning: 5 runs could not be read and are not listed "
        "(git exp fsck names them; git exp rm removes them)"
    ]
