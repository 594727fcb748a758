"""Sharing at team scale (issue 18): only what is new is looked at, partial pulls,
`git exp clone`, and the catalog fed by what a pull read.

Runs are made in-process with ``ExpStore.create`` and chosen run ids (their
start dates), one artifact each; remotes are bare repositories by path (the
artifact store inside them), as in test_cli_sharing.py.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from conftest import GitExp, fsck, git, make_repo, run_refs
from servers import bare

IDS = {
    "a": ["20260105-100000-a00001", "20260610-100000-a00002", "20260720-100000-a00003"],
    "b/sub": ["20260301-100000-b00001", "20260801-100000-b00002"],
}


def record(repo: Path, experiment: str, run_id: str, note: str = "") -> str:
    """A finished run with one stored artifact; returns its ref."""
    from gitexp.records import ArtifactEntry
    from gitexp.store import ExpStore

    with ExpStore(repo) as store:
        head = store.repo.require_head()
        data = f"model of {run_id}{note}".encode() * 20
        key = store.cas.put_bytes(data)
        start = f"{run_id[:4]}-{run_id[4:6]}-{run_id[6:8]}T10:00:00Z"
        ref, _ = store.create(
            experiment,
            {"id": run_id, "status": "finished", "start_time": start, "command": ["t"]},
            {"run": run_id},
            {"commit": head, "head": head, "dirty": False},
            head,
            {},
            [ArtifactEntry(path="model.bin", blake3=key, size=len(data))],
        )
    return str(ref)


@pytest.fixture
def team(tmp_path):
    """alice's project with five runs in two experiments, pushed to a shared bare
    repository (the artifact store inside it); bob's plain clone of the code."""
    alice = make_repo(tmp_path / "alice")
    remote = bare(tmp_path, "shared.git")
    git("remote", "add", "origin", str(remote), cwd=alice)
    git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=alice)
    refs = {rid: record(alice, exp, rid) for exp, ids in IDS.items() for rid in ids}
    GitExp(alice).ok("push")
    bob = tmp_path / "bob"
    git("clone", "-q", "--no-local", str(remote), str(bob), cwd=tmp_path)  # objects of heads only
    return alice, remote, bob, refs


def _pull(repo: Path, *runs: str, **selection):
    from gitexp.remotes import Selection, pull
    from gitexp.store import ExpStore

    with ExpStore(repo) as store:
        return pull(store, "origin", selection=Selection(runs=list(runs), **selection))


def _push(repo: Path):
    from gitexp.remotes import push
    from gitexp.store import ExpStore

    with ExpStore(repo) as store:
        return push(store, "origin")


def _has_object(repo: Path, sha: str) -> bool:
    import subprocess

    return subprocess.run(["git", "cat-file", "-e", sha], cwd=repo).returncode == 0


@pytest.mark.slow
def test_push_and_pull_with_nothing_new_read_no_run_and_only_a_changed_one_after(team):
    alice, remote, bob, refs = team
    first = _pull(bob)
    assert first.runs_checked == 5 and first.objects == 5 and first.error() is None
    again = _pull(bob)
    assert again.runs_checked == 0 and again.objects == 0
    assert {str(r.status) for r in again.fetch.refs} == {"up to date"}
    pushed = _push(alice)
    assert pushed.runs_checked == 0 and pushed.objects == 0
    assert {str(r.status) for r in pushed.refs} == {"up to date"}
    # one run changes (a tag): push looks at that one, pull at that one
    rid = IDS["a"][0]
    GitExp(alice).ok("tag", rid, "best")
    pushed = _push(alice)
    assert pushed.runs_checked == 1
    assert [r.ref for r in pushed.refs if str(r.status) == "updated"] == [refs[rid]]
    pulled = _pull(bob)
    assert pulled.runs_checked == 1 and pulled.objects == 0  # the artifact was here already
    assert [r.ref for r in pulled.fetch.refs if str(r.status) == "updated"] == [refs[rid]]
    # the state is derived: deleted, the next pull compares everything again
    state = bob / ".git" / "exp" / "remotes" / "origin.synced"
    assert state.exists()
    state.unlink()
    assert _pull(bob).runs_checked == 5
    fsck(bob)
    fsck(remote)


def _keep_stat(path: Path, data: bytes) -> None:
    """Overwrite a file in place with bytes of the same length, its inode,
    size and mtime unchanged: only a reader of its content can tell."""
    st = path.stat()
    assert len(data) == st.st_size
    with open(path, "r+b") as f:
        f.write(data)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.slow
def test_a_whole_no_op_stops_at_the_listing_and_any_move_on_either_side_is_seen(team):
    """With every run in sync and nothing moved since, on either side, push and
    pull read nothing but the remote's listing (issue 18: a no-op is the
    listing's cost); a run that moved anywhere is seen and taken."""
    alice, remote, bob, refs = team
    first = _pull(bob)
    assert first.runs_checked == 5 and not first.fetch.at_tip
    # nothing moved: neither side's state is read again (garbled in place, same
    # inode, size and mtime: a reader would take every run as not in sync)
    for repo in (alice, bob):
        state = repo / ".git" / "exp" / "remotes" / "origin.synced"
        _keep_stat(state, b"x" * state.stat().st_size)
    pushed = _push(alice)
    assert pushed.runs_checked == 0 and len(pushed.refs) == 5
    assert {str(r.status) for r in pushed.refs} == {"up to date"}
    pulled = _pull(bob)
    assert pulled.fetch.at_tip and pulled.runs_checked == 0 and pulled.objects == 0
    assert sorted(r.ref for r in pulled.fetch.refs) == sorted(refs.values())
    # a state written again (or deleted) is one the tip no longer stands on
    (bob / ".git" / "exp" / "remotes" / "origin.synced").unlink()
    again = _pull(bob)
    assert not again.fetch.at_tip and again.runs_checked == 5 and again.objects == 0
    assert _pull(bob).fetch.at_tip
    # a tip that is not one (damaged, hand-edited) is no tip: the full comparison
    tip = bob / ".git" / "exp" / "remotes" / "origin.tip"
    for junk in ("", "[]", '{"digests": [1]}', '{"digests": {}}', "\xff{"):
        tip.write_text(junk, encoding="latin-1")
        pulled = _pull(bob)
        assert not pulled.fetch.at_tip and pulled.error() is None
        assert {str(r.status) for r in pulled.fetch.refs} == {"up to date"}
    assert _pull(bob).fetch.at_tip  # the full comparison wrote it again
    # a new run here: the push sends it, the pull there takes it
    new = record(alice, "a", "20260901-100000-a00004")
    pushed = _push(alice)
    assert [r.ref for r in pushed.refs if str(r.status) == "new"] == [new]
    assert pushed.objects == 1
    pulled = _pull(bob)
    assert not pulled.fetch.at_tip
    assert [r.ref for r in pulled.fetch.refs if str(r.status) == "new"] == [new]
    assert pulled.objects == 1 and _pull(bob).fetch.at_tip
    # a run that moved on the remote alone (tagged by bob, pushed by bob)
    rid = IDS["b/sub"][0]
    GitExp(bob).ok("tag", rid, "checked")
    assert [str(r.status) for r in _push(bob).refs if r.ref == refs[rid]] == ["updated"]
    pulled = _pull(alice)
    assert [r.ref for r in pulled.fetch.refs if str(r.status) == "updated"] == [refs[rid]]
    # a run the remote lost goes back with the next push
    git("update-ref", "-d", refs[IDS["a"][1]], cwd=remote)
    pushed = _push(alice)
    assert [r.ref for r in pushed.refs if str(r.status) == "new"] == [refs[IDS["a"][1]]]
    # a run deleted here by plain git: pull brings it back
    git("update-ref", "-d", refs[IDS["a"][2]], cwd=bob)
    pulled = _pull(bob)
    assert [r.ref for r in pulled.fetch.refs if str(r.status) == "new"] == [refs[IDS["a"][2]]]
    # another artifact store: nothing is taken as in sync with it
    other = bob.parent / "other-store"
    git("config", "remote.origin.expstore", str(other), cwd=bob)
    pushed = _push(bob)
    assert pushed.runs_checked == 6 and pushed.objects == 6
    assert {str(r.status) for r in pushed.refs} == {"up to date"}
    fsck(alice)
    fsck(bob)
    fsck(remote)


@pytest.mark.slow
def test_partial_pulls_bring_only_the_runs_asked_for(team):
    _, remote, bob, refs = team
    bx = GitExp(bob)
    out = bx.ok("pull", "-e", "a", "--since", "2026-06-01")
    assert "2 new" in out and "downloaded 2 object(s)" in out, out
    assert set(run_refs(bob)) == {refs[i] for i in IDS["a"][1:]}
    # nothing of the other runs came, not even their commits
    tips = dict(
        line.split()
        for line in git(
            "for-each-ref", "--format=%(refname) %(objectname)", cwd=remote
        ).splitlines()
    )
    assert not _has_object(bob, tips[refs[IDS["b/sub"][1]]])
    out = bx.ok("pull", "-e", "b")  # an experiment and the ones below it
    assert "2 new" in out, out
    out = bx.ok("pull", IDS["a"][0])  # a run by id, on the default remote
    assert "1 new" in out and len(run_refs(bob)) == 5, out
    proc = bx("pull", "origin", "20990101-000000-ffffff")
    assert proc.returncode == 2 and "no run matching" in proc.stderr, proc.stderr
    assert proc.stderr.count("\n") == 1
    proc = bx("pull", "--since", "last tuesday")
    assert proc.returncode == 2 and "neither a date" in proc.stderr, proc.stderr
    assert "5 up to date" in bx.ok("pull")
    fsck(bob)


@pytest.mark.slow
def test_git_exp_clone_sets_up_plain_git_fetch_and_push_for_runs(team, tmp_path):
    alice, remote, _, refs = team
    carol = tmp_path / "carol"
    out = GitExp(tmp_path).ok("clone", str(remote), str(carol), "-e", "a")
    assert "3 new" in out and "downloaded 3 object(s)" in out, out
    assert set(run_refs(carol)) == {refs[i] for i in IDS["a"]}
    fetch = git("config", "--get-all", "remote.origin.fetch", cwd=carol).split()
    assert "+refs/experiments/a/*:refs/remotes/origin/experiments/a/*" in fetch
    # alice records a run: plain git fetch brings it (as a remote-tracking ref) ...
    new = record(alice, "a", "20260901-100000-a00004")
    GitExp(alice).ok("push")
    git("fetch", "-q", cwd=carol)
    tracked = git(
        "for-each-ref", "--format=%(objectname)", f"refs/remotes/origin/{new[5:]}", cwd=carol
    )
    assert tracked.strip() and new not in run_refs(carol)
    # ... and git exp pull takes it (its objects are here already); it follows the
    # remote's refspecs for runs: experiment a only, as cloned
    pulled = _pull(carol)
    assert [r.ref for r in pulled.fetch.refs if str(r.status) == "new"] == [new]
    assert not any(r.ref.startswith("refs/experiments/b/") for r in pulled.fetch.refs)
    # carol's own run goes out with a plain git push (the pre-push hook), artifacts first
    mine = record(carol, "a", "20261001-100000-c00001")
    git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=carol)
    assert mine in run_refs(remote)
    shown = json.loads(GitExp(alice).ok("pull") and GitExp(alice).ok("show", mine, "--json"))
    assert shown["info"]["id"] == "20261001-100000-c00001"
    assert GitExp(alice)("get", mine, "model.bin", "-o", str(tmp_path / "m")).returncode == 0
    fsck(carol)
    fsck(remote)


@pytest.mark.slow
def test_the_first_listing_after_a_pull_reads_no_run_again(team):
    """The pull read every run it took (to check it): the catalog is built from
    that, and the next listing reads none of them from git."""
    _, _, bob, _ = team
    _pull(bob)
    from gitexp.catalog import Catalog
    from gitexp.store import ExpStore

    with ExpStore(bob) as store:
        cat = Catalog(store)
        assert cat.exists()
        table = cat.update()
        assert len(table) == 5 and cat.reads == 0


@pytest.mark.slow
def test_a_pull_into_a_repository_with_runs_of_its_own_keeps_them(team):
    _, _, bob, _ = team
    mine = record(bob, "mine", "20261111-100000-b0b000")
    pulled = _pull(bob, experiment="a")
    assert len([r for r in pulled.fetch.refs if str(r.status) == "new"]) == 3
    assert mine in run_refs(bob)


# ------------------------------------------------------------ check helpers


def _bad_refs(remote: Path) -> dict[str, str]:
    """Two refs under refs/experiments/ on the remote that are not runs anyone can
    read: a blob, and a run whose params.json is a list. -> ref: what pull says."""
    import subprocess

    def run_git(*args: str, data: str = "") -> str:
        return subprocess.run(
            ["git", *args], cwd=remote, input=data, capture_output=True, text=True, check=True
        ).stdout.strip()

    blob = run_git("hash-object", "-w", "--stdin", data="x")
    not_commit = "refs/experiments/a/20260901-100000-bad001"
    run_git("update-ref", not_commit, blob)
    good = run_git("rev-parse", f"refs/experiments/a/{IDS['a'][0]}")
    entries = dict(line.split("\t")[::-1] for line in run_git("ls-tree", good).splitlines())
    entries["params.json"] = "100644 blob " + run_git("hash-object", "-w", "--stdin", data="[1]\n")
    tree = run_git("mktree", data="".join(f"{v}\t{k}\n" for k, v in entries.items()))
    commit = run_git("commit-tree", tree, "-m", "params as a list")
    list_params = "refs/experiments/a/20260902-100000-bad002"
    run_git("update-ref", list_params, commit)
    return {not_commit: "not a commit", list_params: "params.json is not an object"}


@pytest.mark.parametrize("helpers", ["0", "2"])
def test_helper_processes_check_as_this_process_does(team, monkeypatch, helpers):
    """A large pull checks runs in helper processes too (GITEXP_CHECK_HELPERS sets
    how many): the same runs are taken, the same ones refused with the same reason."""
    from gitexp.remotes import checkers

    _, remote, bob, refs = team
    bad = _bad_refs(remote)
    answered = []
    results = checkers.CheckHelpers.results

    def counted(self):
        for got in results(self):
            answered.append(len(got.records) + len(got.refused))
            yield got

    monkeypatch.setattr(checkers.CheckHelpers, "results", counted)
    monkeypatch.setenv("GITEXP_CHECK_HELPERS", helpers)
    result = _pull(bob)
    refused = {r.ref: r.reason for r in result.fetch.refused()}
    assert set(refused) == set(bad)
    for ref, why in bad.items():
        assert why in refused[ref], refused[ref]
    assert set(run_refs(bob)) == set(refs.values())
    # the helpers answered for their share (5 good + 2 bad runs, 2 helpers: 2 + 2)
    assert sum(answered) == (4 if helpers == "2" else 0)
    # the catalog was written from the rows the checks made (helpers' included):
    # the next listing reads no run, and lists what reading every run gives
    from gitexp.catalog import Catalog
    from gitexp.store import ExpStore

    with ExpStore(bob) as store:
        cat = Catalog(store)
        pulled = cat.update()
        assert cat.reads == 0
        rows = pulled.rows()
        assert len(rows) == len(refs)
        assert Catalog(store).rebuild() == len(refs)
        assert Catalog(store).update().rows() == rows
    out = GitExp(bob).ok("log", "--json")
    ids = sorted(row["id"] for row in json.loads(out))
    assert ids == sorted(i for ids in IDS.values() for i in ids)


def test_a_helper_that_fails_costs_nothing_but_time(team, monkeypatch):
    from gitexp.remotes import checkers

    _, remote, bob, refs = team
    bad = _bad_refs(remote)
    monkeypatch.setenv("GITEXP_CHECK_HELPERS", "2")
    monkeypatch.setattr(checkers, "_SERVE", "import os; os._exit(3)")
    result = _pull(bob)
    assert {r.ref for r in result.fetch.refused()} == set(bad)
    assert set(run_refs(bob)) == set(refs.values())


def test_a_large_fetch_goes_through_fetch_pack_and_keeps_nothing_behind(team, monkeypatch):
    """Many tips go through `git fetch-pack` (git fetch --stdin is quadratic in
    them): the pack is kept while the runs are checked and git checks its
    completeness, then released; a .keep a killed pull left is cleaned up."""
    import subprocess

    from gitexp.git import transport

    _, remote, bob, refs = team
    bad = _bad_refs(remote)
    monkeypatch.setattr(transport, "FETCH_PACK_FROM", 1)
    packs = bob / ".git" / "objects" / "pack"
    packs.mkdir(parents=True, exist_ok=True)
    dead = subprocess.Popen(["true"])
    dead.wait()
    import socket

    stale = packs / "pack-0123456789abcdef0123456789abcdef01234567.keep"
    stale.write_text(f"fetch-pack {dead.pid} on {socket.gethostname()}\n")
    mine = packs / "pack-89abcdef0123456789abcdef0123456789abcdef.keep"
    mine.write_text("made by hand\n")  # not a fetch-pack's: left alone
    # the remote named through url.<base>.insteadOf, as git fetch would rewrite it
    git("config", f"url.{remote.parent}/.insteadOf", "team:", cwd=bob)
    git("remote", "set-url", "origin", f"team:{remote.name}", cwd=bob)
    result = _pull(bob)
    assert {r.ref for r in result.fetch.refused()} == set(bad)
    assert set(run_refs(bob)) == set(refs.values())
    assert sorted(p.name for p in packs.glob("*.keep")) == [mine.name]
    fsck(bob)
