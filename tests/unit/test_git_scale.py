"""The git layer at team scale: ref snapshots, objects read in one batch, the
git binary as transport, background packing."""

from __future__ import annotations

import io
import os
import subprocess
import time

import pytest

from conftest import git
from gitexp.cas import LocalStore, hash_bytes
from gitexp.git import GitRepo, SyncStatus
from gitexp.git.objects import _parse_commit


@pytest.fixture
def grepo(repo):
    with GitRepo(repo) as r:
        yield r


def _refs(repo) -> dict[str, str]:
    out = git("for-each-ref", "--format=%(refname) %(objectname)", "refs/experiments/", cwd=repo)
    return dict(line.split() for line in out.splitlines())


def _commit(repo, n: int) -> str:
    tree = git("rev-parse", "HEAD^{tree}", cwd=repo).strip()
    return git("commit-tree", tree, "-p", "HEAD", "-m", f"c{n}", cwd=repo).strip()


def test_a_ref_snapshot_is_what_git_lists_through_every_kind_of_change(grepo, repo, tmp_path):
    cache = str(tmp_path / "refs.cache")
    shas = [_commit(repo, i) for i in range(4)]
    for i in range(6):
        git("update-ref", f"refs/experiments/e{i % 2}/r{i}", shas[i % 4], cwd=repo)
    assert grepo.ref_snapshot("refs/experiments/", cache) == _refs(repo)
    # an unchanged set is served from the cache, including within the racy window
    assert grepo.ref_snapshot("refs/experiments/", cache) == _refs(repo)
    git("update-ref", "refs/experiments/e0/r0", shas[3], cwd=repo)  # same directory, same size
    git("update-ref", "refs/experiments/e2/new", shas[1], cwd=repo)  # a new directory
    git("update-ref", "-d", "refs/experiments/e1/r1", cwd=repo)
    assert grepo.ref_snapshot("refs/experiments/", cache) == _refs(repo)
    git("pack-refs", "--all", cwd=repo)  # loose refs become packed ones
    assert grepo.ref_snapshot("refs/experiments/", cache) == _refs(repo)
    git("update-ref", "refs/experiments/e0/r2", shas[0], cwd=repo)  # a loose one over a packed one
    assert grepo.ref_snapshot("refs/experiments/", cache) == _refs(repo)
    # changes made after the racy window, the cache trusting the directories it saw
    old = time.time() - 10
    for d in ("e0", "e1", "e2"):
        path = repo / ".git" / "refs" / "experiments" / d
        if path.exists():
            os.utime(path, (old, old))
    grepo.ref_snapshot("refs/experiments/", cache)
    git("update-ref", "refs/experiments/e1/later", shas[2], cwd=repo)
    assert grepo.ref_snapshot("refs/experiments/", cache) == _refs(repo)
    (tmp_path / "refs.cache").write_text("not a cache")
    assert grepo.ref_snapshot("refs/experiments/", cache) == _refs(repo)


def test_the_digest_of_a_remote_listing_is_that_of_the_same_refs_read_here(grepo, repo, tmp_path):
    """A no-op push or pull compares digests instead of 100,000 refs: the one
    hashed from a remote's ``git ls-remote`` lines must be the one computed
    from the same refs here, whatever else the remote lists around them."""
    from gitexp.git import refs_digest
    from gitexp.remotes.state import ref_cache

    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", str(remote), cwd=tmp_path)
    shas = [_commit(repo, i) for i in range(3)]
    names = [
        "refs/experiments/a/r1",
        "refs/experiments/a/r2",
        "refs/experiments/z/r1",
        "refs/experiments/\u00e9t\u00e9/r1",  # UTF-8 sorts after "z" in bytes and in code points
        "refs/sweeps/s1",
        "refs/models/m/v1",
        "refs/heads/main",
        "refs/tags/t",
    ]
    for i, name in enumerate(names):
        git("update-ref", name, shas[i % 3], cwd=repo)
    git("push", "-q", str(remote), "refs/*:refs/*", cwd=repo)
    listing = grepo.remote_refs(str(remote), ["refs/experiments/", "refs/sweeps/"])
    cache = str(repo / ".git" / "exp" / "remotes" / "x.refs")
    for prefix in ("refs/experiments/", "refs/sweeps/", "refs/nothing/"):
        here = grepo.ref_snapshot(prefix)
        assert listing.digest(prefix) == refs_digest(here)
        assert grepo.ref_snapshot_digest(prefix, cache + prefix.replace("/", "_")) == (
            refs_digest(here)
        )
    assert listing.digest("refs/experiments/") != listing.digest("refs/sweeps/")
    # the local digest follows every change, cached or not
    prefix = "refs/experiments/"
    cache = ref_cache(grepo, prefix)
    before = grepo.ref_snapshot_digest(prefix, cache)
    for change in (
        ["update-ref", "refs/experiments/a/r1", shas[2]],
        ["update-ref", "-d", "refs/experiments/z/r1"],
        ["pack-refs", "--all"],
        ["update-ref", "refs/experiments/b/new", shas[0]],
    ):
        git(*change, cwd=repo)
        now = grepo.ref_snapshot_digest(prefix, cache)
        assert now == refs_digest(_refs(repo))
        assert now == grepo.ref_snapshot_digest(prefix, cache)
        if change[0] != "pack-refs":
            assert now != before
        before = now
    # changes after the racy window, the cache trusting the directories it saw
    old = time.time() - 10
    for path in (repo / ".git" / "refs" / "experiments").rglob("*"):
        os.utime(path, (old, old))
    os.utime(repo / ".git" / "packed-refs", (old, old))
    grepo.ref_snapshot(prefix, cache)
    git("update-ref", "refs/experiments/a/later", shas[1], cwd=repo)
    assert grepo.ref_snapshot_digest(prefix, cache) == refs_digest(_refs(repo))


def test_commits_parsed_from_a_batch_read_as_dulwich_reads_them(grepo, repo):
    env = {"GIT_AUTHOR_NAME": "Zoë Ünïcode", "GIT_COMMITTER_DATE": "1700000000 +0530"}
    tree = git("rev-parse", "HEAD^{tree}", cwd=repo).strip()
    side = _commit(repo, 9)
    merge = git(
        "commit-tree",
        tree,
        "-p",
        "HEAD",
        "-p",
        side,
        "-m",
        "two\n\nparagraphs",
        cwd=repo,
        env=env,
    ).strip()
    for sha in (git("rev-parse", "HEAD", cwd=repo).strip(), merge):
        raw = grepo.cat_batch([sha])[0]
        assert raw is not None
        assert _parse_commit(sha, raw[2]) == grepo.commit_info(sha)
    with grepo.preloaded([merge, f"{merge}^{{tree}}", f"{merge}:train.py"]) as n:
        assert n == 3
        head = git("rev-parse", "HEAD", cwd=repo).strip()
        assert grepo.commit_info(merge).parents == [head, side]
        assert "train.py" in grepo.read_tree(grepo.commit_info(merge).tree)
    assert not grepo._preload  # gone after the block


def test_push_and_fetch_through_git_keep_fast_forward_only_and_report_each_ref(
    grepo, repo, tmp_path
):
    remote = tmp_path / "remote.git"
    git("init", "-q", "--bare", str(remote), cwd=tmp_path)
    a, b = _commit(repo, 1), _commit(repo, 2)
    pushed = grepo.push(str(remote), {"refs/experiments/x/r1": a, "refs/experiments/x/r2": b})
    assert [str(p.status) for p in pushed] == ["new", "new"]
    assert grepo.remote_refs(str(remote), "refs/experiments/") == {
        "refs/experiments/x/r1": a,
        "refs/experiments/x/r2": b,
    }
    # someone else moved r1 on the remote: ours is not a fast-forward of theirs
    other = git(
        "commit-tree", git("rev-parse", "HEAD^{tree}", cwd=repo).strip(), "-m", "o", cwd=repo
    ).strip()
    git("push", "-q", str(remote), f"+{other}:refs/experiments/x/r1", cwd=repo)
    again = grepo.push(str(remote), {"refs/experiments/x/r1": a})
    assert again[0].status == SyncStatus.REJECTED
    assert grepo.remote_refs(str(remote), "refs/experiments/")["refs/experiments/x/r1"] == other
    forced = grepo.push(str(remote), {"refs/experiments/x/r1": a}, force=True)
    assert forced[0].status == SyncStatus.FORCED
    # a fetch by tip sha brings the objects and writes no ref, no FETCH_HEAD
    clone = tmp_path / "clone"
    git("init", "-q", str(clone), cwd=tmp_path)
    with GitRepo(clone) as c:
        c.fetch_objects(str(remote), [a, b])
        assert c.has_object(a) and c.has_object(b)
    assert git("for-each-ref", cwd=clone) == ""
    assert not (clone / ".git" / "FETCH_HEAD").exists()
    proc = subprocess.run(["git", "fsck", "--strict"], cwd=remote, capture_output=True)
    assert proc.returncode == 0


def test_a_remote_that_is_not_there_is_one_clear_error(grepo, tmp_path):
    from gitexp.errors import RemoteError

    with pytest.raises(RemoteError, match="is not a git repository"):
        grepo.remote_refs(str(tmp_path / "nothing.git"), "refs/")
    with pytest.raises(RemoteError, match="cannot connect"):
        grepo.remote_refs("http://127.0.0.1:9/x.git", "refs/")


def test_objects_put_in_a_batch_appear_together_once_on_disk(tmp_path):
    cas = LocalStore(tmp_path / "exp")
    data = [f"object {i}".encode() for i in range(5)]
    keys = [hash_bytes(d) for d in data]
    with cas.batch():
        for d, k in zip(data, keys):
            cas.put_verified(io.BytesIO(d), k)
        assert not any(cas.has(k) for k in keys)  # not visible before the flush
    assert all(cas.get_bytes(k) == d for d, k in zip(data, keys))
    assert os.listdir(cas.tmp) == []


def test_background_packing_starts_git_gc_past_the_threshold_and_never_when_off(repo):
    for i in range(40):
        (repo / f"f{i}").write_text(f"{i}\n" * 50)
    git("add", ".", cwd=repo)
    git("commit", "-q", "-m", "many", cwd=repo)
    git("config", "gc.auto", "0", cwd=repo)
    with GitRepo(repo) as r:
        assert not r.needs_packing() and not r.auto_pack()
    git("config", "gc.auto", "1", cwd=repo)
    git("config", "gc.autoPackLimit", "1", cwd=repo)
    git("repack", "-q", cwd=repo)  # one pack: not past autoPackLimit yet
    git("commit", "-q", "--allow-empty", "-m", "x", cwd=repo)
    git("repack", "-q", cwd=repo)  # two packs: past it
    with GitRepo(repo) as r:
        assert r.needs_packing()
        assert r.auto_pack()
    end = time.monotonic() + 30
    while time.monotonic() < end:
        packs = list((repo / ".git" / "objects" / "pack").glob("*.pack"))
        if len(packs) == 1 and not (repo / ".git" / "gc.pid").exists():
            break
        time.sleep(0.1)
    assert len(packs) == 1  # gc merged them, in the background
    assert subprocess.run(["git", "fsck", "--strict"], cwd=repo).returncode == 0


def test_packed_refs_read_fast_agree_with_git_and_follow_a_repack(repo):
    """HEAD's branch and run refs in packed-refs (after a gc) read as git reads
    them, annotated tags with their peeled lines too; an open repository sees
    the file git rewrites under it."""
    shas = [_commit(repo, i) for i in range(3)]
    for i, sha in enumerate(shas):
        git("update-ref", f"refs/experiments/e/r{i}", sha, cwd=repo)
    git("tag", "-a", "-m", "v1", "v1", cwd=repo)
    git("pack-refs", "--all", "--prune", cwd=repo)
    assert not (repo / ".git" / "refs" / "experiments" / "e").exists()  # packed only
    with GitRepo(repo) as r:
        assert r.head() == git("rev-parse", "HEAD", cwd=repo).strip()
        for i, sha in enumerate(shas):
            assert r.get_ref(f"refs/experiments/e/r{i}") == sha
        assert r.get_ref("refs/tags/v1") == git("rev-parse", "refs/tags/v1", cwd=repo).strip()
        assert r.get_ref("refs/experiments/e/none") is None
        # git moves one ref and packs again: the same open repository sees it
        git("update-ref", "refs/experiments/e/r0", shas[2], cwd=repo)
        git("update-ref", "refs/experiments/e/r3", shas[1], cwd=repo)
        git("pack-refs", "--all", "--prune", cwd=repo)
        assert r.get_ref("refs/experiments/e/r0") == shas[2]
        assert r.get_ref("refs/experiments/e/r3") == shas[1]
        assert r.set_ref("refs/experiments/e/r4", None, shas[0], "test")  # a new ref
        assert not r.set_ref("refs/experiments/e/r3", None, shas[0], "test")  # exists (packed)
    assert git("rev-parse", "refs/experiments/e/r4", cwd=repo).strip() == shas[0]
    git("fsck", "--no-progress", cwd=repo)
