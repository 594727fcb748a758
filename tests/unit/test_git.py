"""gitstore and capture: objects, refs, compare-and-swap, and work-tree snapshots."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from conftest import git, git_objects, make_repo, user_state
from gitexp.capture import code_state
from gitexp.cas import LocalStore, hash_bytes
from gitexp.errors import NoCommits, NotARepository, ObjectMissing
from gitexp.git import GitRepo


@pytest.fixture
def grepo(repo):
    with GitRepo(repo) as r:
        yield r


def test_discovery_from_a_subdirectory_and_refusal_outside(repo, tmp_path):
    (repo / "sub" / "deeper").mkdir(parents=True)
    with GitRepo(repo / "sub" / "deeper") as r:
        assert r.work_tree == str(repo)
        assert r.exp_dir == str(repo / ".git" / "exp")
    outside = tmp_path / "not-a-repo"
    outside.mkdir()
    with pytest.raises(NotARepository) as info:
        GitRepo(outside)
    assert info.value.exit_code == 3 and "git init" in str(info.value)


def test_objects_written_are_valid_for_git(grepo, repo):
    tree = grepo.update_tree(None, {"a.json": b"{}\n", "d/e/f.bin": b"\x00\x01"})
    head = git("rev-parse", "HEAD", cwd=repo).strip()
    sha = grepo.write_commit(tree, [head], "subject line\n\nbody\n")
    assert git("cat-file", "-t", sha, cwd=repo).strip() == "commit"
    assert git("show", f"{sha}:d/e/f.bin", cwd=repo) == "\x00\x01"
    assert git("log", "-1", "--format=%an <%ae>%n%s%n%P", sha, cwd=repo).split("\n")[:3] == [
        "Test User <test@example.com>",
        "subject line",
        head,
    ]
    info = grepo.commit_info(sha)
    assert info.parents == [head] and info.tree == tree
    assert list(grepo.iter_tree_files(tree)) == [
        ("a.json", 0o100644, git("rev-parse", f"{sha}:a.json", cwd=repo).strip()),
        ("d/e/f.bin", 0o100644, git("rev-parse", f"{sha}:d/e/f.bin", cwd=repo).strip()),
    ]
    # deleting the last entry of a subtree removes the subtree
    tree2 = grepo.update_tree(tree, {"d/e/f.bin": None})
    assert set(grepo.read_tree(tree2)) == {"a.json"}
    # objects are loose, not one pack per write
    assert not list((repo / ".git" / "objects" / "pack").glob("*.pack"))


def test_cat_batch_reads_many_objects_in_order_through_several_processes(grepo):
    """Enough names to be split among several git cat-file processes: every answer
    comes back in the order asked, missing objects as None."""
    blobs = [grepo.write_blob(f"blob {i}\n".encode()) for i in range(700)]
    missing = "0" * 40
    names = [n for sha in blobs for n in (sha, missing)][:1300]
    got = grepo.cat_batch(names)
    assert len(got) == len(names)
    for name, answer in zip(names, got):
        if name == missing:
            assert answer is None
        else:
            assert answer is not None and answer[0] == name and answer[1] == "blob"
            assert answer[2] == f"blob {blobs.index(name)}\n".encode()


def test_one_cat_file_session_answers_batch_after_batch_as_single_batches_do(grepo, repo):
    """Inside cat_session every batch goes to one running git cat-file: the
    answers are those of a batch alone (order, missing names, paths with spaces,
    objects over max_size as their size), and no process is started per batch."""
    import subprocess

    tree = grepo.update_tree(None, {"a b/c d.json": b"{}\n", "big.bin": b"x" * 5000})
    commit = grepo.write_commit(tree, [], "files with spaces")
    blobs = [grepo.write_blob(f"blob {i}\n".encode()) for i in range(1200)]
    batches = [
        [commit, f"{commit}^{{tree}}", f"{commit}:a b/c d.json", "0" * 40, f"{commit}:big.bin"],
        blobs,
        [f"{commit}:no such path", *blobs[:3]],
    ]
    alone = [grepo.cat_batch(names, 1000) for names in batches]
    assert alone[0][3] is None and alone[0][4] == (
        git("rev-parse", f"{commit}:big.bin", cwd=repo).strip(),
        "blob",
        5000,
    )
    assert alone[0][2] is not None and alone[0][2][2] == b"{}\n"
    started = []
    real_popen = subprocess.Popen

    def popen(args, *a, **kw):
        started.append(args)
        return real_popen(args, *a, **kw)

    with grepo.cat_session():
        subprocess.Popen = popen  # type: ignore[misc]
        try:
            together = [grepo.cat_batch(names, 1000) for names in batches]
        finally:
            subprocess.Popen = real_popen  # type: ignore[misc]
    assert together == alone
    assert started == []  # the session's one process was running already
    assert grepo.cat_batch(batches[0], 1000) == alone[0]  # and after it, as before


def test_a_malformed_tree_object_is_a_store_error_never_a_wrong_listing():
    from gitexp.errors import StoreError

    sha = bytes(range(20))
    good = b"100644 a b.txt\0" + sha + b"40000 dir\0" + sha
    assert GitRepo.parse_tree(good) == {
        "a b.txt": (0o100644, sha.hex()),
        "dir": (0o40000, sha.hex()),
    }
    for bad in (good[:-1], good + b"x", b"x" + good, b"100844 a\0" + sha, good[:8]):
        with pytest.raises(StoreError):
            GitRepo.parse_tree(bad)


def test_missing_object_is_objectmissing(grepo):
    with pytest.raises(ObjectMissing):
        grepo.read_blob("0" * 40)


def test_compare_and_swap_refuses_a_stale_old_value(grepo, repo):
    head = git("rev-parse", "HEAD", cwd=repo).strip()
    tree = grepo.update_tree(None, {"x": b"1"})
    c1 = grepo.write_commit(tree, [head], "one")
    c2 = grepo.write_commit(tree, [c1], "two")
    c3 = grepo.write_commit(tree, [c1], "three")
    name = "refs/experiments/t/20260101-000000-aaaaaa"
    assert grepo.set_ref(name, None, c1, "create")
    assert not grepo.set_ref(name, None, c2, "create again")  # must not exist yet
    assert grepo.set_ref(name, c1, c2, "advance")
    assert not grepo.set_ref(name, c1, c3, "stale")  # c1 is no longer the tip
    assert grepo.get_ref(name) == c2
    assert git("rev-parse", name, cwd=repo).strip() == c2
    assert not grepo.delete_ref(name, c1)
    assert grepo.delete_ref(name, c2)
    assert grepo.get_ref(name) is None


def test_no_commits_is_refused(tmp_path):
    git("init", "-q", str(tmp_path / "empty"))
    with GitRepo(tmp_path / "empty") as r, pytest.raises(NoCommits) as info:
        r.worktree_state(1 << 20, str(tmp_path / "tmp"))
    assert "no commits" in str(info.value)


def test_clean_checkout_records_head(grepo, repo):
    state = grepo.worktree_state(1 << 20, str(repo / ".git" / "exp" / "tmp"))
    head = git("rev-parse", "HEAD", cwd=repo).strip()
    assert not state.dirty and state.snapshot is None
    assert state.code_commit == head and state.branch == "main"
    assert state.code_tree == git("rev-parse", "HEAD^{tree}", cwd=repo).strip()


def _dirty(repo):
    (repo / "train.py").write_text((repo / "train.py").read_text() + "\n# tweak\n")
    (repo / "new_module.py").write_text("X = 1\n")
    (repo / "pkg").mkdir()
    (repo / "pkg" / "util.py").write_text("Y = 2\n")
    (repo / "weights.npz").write_bytes(b"ignored by .gitignore")
    (repo / "staged.txt").write_text("staged\n")
    git("add", "staged.txt", cwd=repo)
    (repo / "staged.txt").write_text("staged, then changed again\n")
    git("stash", "list", cwd=repo)


@pytest.mark.slow
def test_dirty_snapshot_has_head_as_parent_and_leaves_the_user_alone(grepo, repo):
    _dirty(repo)
    # a tracked file whose stat changed but content did not: a plain `git status`
    # would refresh (rewrite) the user's index for it
    time.sleep(1.1)
    os.utime(repo / ".gitignore")
    before = user_state(repo)
    state = grepo.worktree_state(1 << 20, str(repo / ".git" / "exp" / "tmp"))
    assert user_state(repo) == before
    head = git("rev-parse", "HEAD", cwd=repo).strip()
    assert state.dirty and state.snapshot == state.code_commit
    assert git("rev-parse", f"{state.snapshot}^", cwd=repo).strip() == head
    files = git("ls-tree", "-r", "--name-only", state.snapshot, cwd=repo).split()
    assert {"train.py", "new_module.py", "pkg/util.py", "staged.txt", ".gitignore"} <= set(files)
    assert "weights.npz" not in files  # ignored files stay out
    assert git("show", f"{state.snapshot}:train.py", cwd=repo).endswith("# tweak\n")
    assert git("show", f"{state.snapshot}:staged.txt", cwd=repo) == "staged, then changed again\n"
    assert set(state.changed) == {"train.py", "new_module.py", "pkg/util.py", "staged.txt"}
    # nothing left behind in git-exp's temp dir (no stray index copies)
    assert os.listdir(repo / ".git" / "exp" / "tmp") == []


def test_the_same_dirty_state_gives_the_same_tree(grepo, repo):
    _dirty(repo)
    tmp = str(repo / ".git" / "exp" / "tmp")
    first = grepo.worktree_state(1 << 20, tmp).code_tree
    assert grepo.worktree_state(1 << 20, tmp).code_tree == first


def test_large_dirty_files_go_to_the_cas_not_git(grepo, repo):
    big_tracked = os.urandom(4096)
    (repo / "data.bin").write_bytes(big_tracked)
    git("add", "data.bin", cwd=repo)
    git("commit", "-q", "-m", "add data", cwd=repo)
    changed = os.urandom(5000)
    untracked = os.urandom(6000)
    (repo / "data.bin").write_bytes(changed)
    (repo / "untracked.bin").write_bytes(untracked)
    (repo / "small.txt").write_text("small\n")
    before = user_state(repo)
    cas = LocalStore(grepo.exp_dir)
    state = code_state(grepo, cas, large_threshold=1000)
    assert user_state(repo) == before
    assert state.data["dirty"] is True
    assert sorted(state.data["large_files"]) == ["data.bin", "untracked.bin"]
    by_path = {e.path: e for e in state.large_files}
    assert by_path["data.bin"].blake3 == hash_bytes(changed)
    assert by_path["untracked.bin"].role == "code"
    assert cas.get_bytes(by_path["untracked.bin"].blake3) == untracked
    objects = git_objects(repo)
    for data in (changed, untracked):
        sha = _blob_sha(data)
        assert sha not in objects, "large dirty bytes were written as a git object"
    files = git("ls-tree", "-r", "--name-only", state.code_commit, cwd=repo).split()
    assert "small.txt" in files and "untracked.bin" not in files
    # a tracked large file keeps its committed version in the snapshot
    assert git("rev-parse", f"{state.code_commit}:data.bin", cwd=repo).strip() == _blob_sha(
        big_tracked
    )


def _blob_sha(data: bytes) -> str:
    import hashlib

    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def test_snapshot_in_a_linked_worktree(repo, tmp_path):
    wt = tmp_path / "linked"
    git("worktree", "add", "-q", "-b", "side", str(wt), cwd=repo)
    (wt / "extra.py").write_text("Z = 3\n")
    with GitRepo(wt) as r:
        assert r.exp_dir == str(repo / ".git" / "exp")  # shared by all worktrees
        state = r.worktree_state(1 << 20, os.path.join(r.exp_dir, "tmp"))
    assert state.branch == "side" and state.dirty
    assert "extra.py" in git("ls-tree", "--name-only", state.snapshot, cwd=repo).split()
    assert "extra.py" in git("status", "--porcelain", cwd=wt)  # still untracked for the user


def test_recorded_diff_stat_ignores_the_users_color_config(grepo, repo):
    git("config", "color.ui", "always", cwd=repo)
    (repo / "train.py").write_text("changed\n")
    state = code_state(grepo, LocalStore(grepo.exp_dir))
    assert "train.py" in state.data["diff_stat"]
    assert "\x1b" not in state.data["diff_stat"]  # no terminal escapes stored in code.json


def test_hooks_dir_is_where_git_itself_looks_for_hooks(tmp_path, monkeypatch):
    def git_says(where: Path) -> str:
        out = git("rev-parse", "--git-path", "hooks", cwd=where).strip()
        return os.path.normpath(os.path.join(where, out))

    main = make_repo(tmp_path / "main")
    linked = tmp_path / "linked"
    git("worktree", "add", "-q", str(linked), cwd=main)
    bare = tmp_path / "bare.git"
    git("init", "-q", "--bare", str(bare))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for setting in (None, "my-hooks", "/abs/hooks", "~/hooks"):
        for where in (main, linked, bare):
            if setting is not None:
                git("config", "core.hooksPath", setting, cwd=where)
            with GitRepo(str(where)) as repo:
                assert repo.hooks_dir() == git_says(where), (setting, where)
