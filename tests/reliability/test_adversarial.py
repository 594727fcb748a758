"""An adversarial pass (issue 19): a write outside the repository, hangs and
unbounded reads from a shared artifact store, unbounded memory from small
inputs, and validation gaps. Each hostile input is built the way an attacker
(or a buggy tool) would: with git plumbing, a file in a shared directory, a
few hundred bytes of YAML. Each must be refused with one line, quickly, and
leave everything recorded, the work tree and everything outside the
repository as it was.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
from pathlib import Path

import pytest

import gitexp
from conftest import finished_run, fsck, git, make_repo, run_refs, user_state
from gitexp.errors import FormatError, InvalidName, InvalidValue, UsageError
from gitexp.store import ExpStore
from servers import bare


def one_line(proc: subprocess.CompletedProcess, code: int) -> str:
    """The single line of stderr of a command that failed with ``code``."""
    assert proc.returncode == code, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


def _limits(fsize: int = 64 << 20, address_space: int = 1 << 30):
    """A preexec_fn that bounds what a ``git exp`` subprocess may write and map, so
    that a regression fails the test instead of filling the disk or the memory."""

    def apply() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))
        resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    return apply


def gx_bounded(*args: str, cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess:
    """``git exp ARGS`` in a subprocess with bounded file size, memory and time."""
    return subprocess.run(
        ["git", "exp", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=_limits(),
    )


def _plumb(cwd: Path, *args: str, data: bytes | None = None) -> str:
    proc = subprocess.run(["git", *args], cwd=cwd, input=data, capture_output=True, check=True)
    return proc.stdout.decode().strip()


def amend_run(repo: Path, ref: str, files: dict[str, bytes]) -> str:
    """A new commit on ``ref`` whose tree is the tip's with ``files`` replaced or
    added (paths may have directories), made with git plumbing as a hostile tool
    would; returns the commit."""
    index = repo / ".git" / "hostile-index"
    env = {**os.environ, "GIT_INDEX_FILE": str(index)}

    def run(*args: str, data: bytes | None = None) -> str:
        proc = subprocess.run(
            ["git", *args], cwd=repo, env=env, input=data, capture_output=True, check=True
        )
        return proc.stdout.decode().strip()

    run("read-tree", ref)
    for path, data in files.items():
        blob = run("hash-object", "-w", "--stdin", data=data)
        run("update-index", "--add", "--cacheinfo", f"100644,{blob},{path}")
    tree = run("write-tree")
    commit = run("commit-tree", tree, "-p", ref, "-m", "hostile edit", data=b"")
    run("update-ref", ref, commit)
    index.unlink()
    return commit


def manifest_of(repo: Path, ref: str) -> list[dict]:
    return json.loads(git("show", f"{ref}:artifacts.json", cwd=repo))


# ------------------------------------------- 1. checkout-code stays inside the repository


def _run_with_snapshot_link(repo: Path, target: Path, link: str = "link") -> str:
    """A run whose snapshot commit holds ``link -> target`` (an untracked symlink
    when the run was made); the symlink is then removed from the work tree."""
    os.makedirs(os.path.dirname(repo / link) or repo, exist_ok=True)
    os.symlink(target, repo / link)
    ref = finished_run("hostile", repo=repo)
    code = json.loads(git("show", f"{ref}:code.json", cwd=repo))
    assert code["dirty"] and git("ls-tree", code["snapshot"], link, cwd=repo).startswith("120000")
    os.unlink(repo / link)
    return ref


def _code_entry(store: ExpStore, path: str, data: bytes) -> dict:
    key = store.cas.put_bytes(data)
    return {"path": path, "blake3": key, "size": len(data), "mode": "100644", "role": "code"}


@pytest.mark.slow
@pytest.mark.parametrize("depth", ["top", "deep", "chain", "on-disk"])
def test_checkout_code_never_writes_through_a_symlink_out_of_the_repository(
    repo, gx, tmp_path, depth
):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    if depth == "top":  # link -> /elsewhere, code file link/newdir/payload
        ref = _run_with_snapshot_link(repo, outside)
        hostile = "link/newdir/payload"
    elif depth == "deep":  # a/b/link -> /elsewhere, code file a/b/link/x/y/payload
        ref = _run_with_snapshot_link(repo, outside, "a/b/link")
        hostile = "a/b/link/x/y/payload"
    elif depth == "chain":  # inner -> hop (inside the repository), hop -> /elsewhere
        os.symlink(outside, repo / "hop")
        ref = _run_with_snapshot_link(repo, repo / "hop", "inner")
        os.unlink(repo / "hop")
        hostile = "inner/newdir/payload"
    else:  # not in the code: an untracked symlink of the user's, on disk
        (repo / "helper.py").write_text("# untracked: in the snapshot\n")
        ref = finished_run("hostile", repo=repo)
        (repo / "helper.py").unlink()
        os.symlink(outside, repo / "data")
        hostile = "data/newdir/payload"
    with ExpStore(repo) as store:
        good = _code_entry(store, "weights.bin", b"large code file " * 100)
        bad = _code_entry(store, hostile, b"planted by a hostile run\n")
    amend_run(repo, ref, {"artifacts.json": json.dumps([good, bad]).encode()})
    run_id = ref.rsplit("/", 1)[1]
    before = user_state(repo)

    line = one_line(gx("checkout-code", run_id), 6)
    assert hostile in line and "symlink" in line
    assert list(outside.iterdir()) == []
    # all or nothing: no branch created, nothing checked out, the good file not restored
    assert user_state(repo) == before
    assert not (repo / "weights.bin").exists()
    assert git("branch", "--list", f"exp/{run_id}", cwd=repo) == ""
    # reproduce refuses the same run with the same check (the user's own link is
    # not in the code: the replay's copy has none, the file lands inside it)
    proc = gx("reproduce", run_id)
    if depth != "on-disk":
        assert proc.returncode == 8 and hostile in proc.stderr, proc.stderr
    assert list(outside.iterdir()) == []
    assert user_state(repo) == before
    fsck(repo)


@pytest.mark.slow
def test_a_damaged_code_file_leaves_no_branch_and_the_work_tree_as_it_was(repo, gx):
    (repo / "helper.py").write_text("# untracked: in the snapshot\n")
    ref = finished_run("hostile", repo=repo)
    (repo / "helper.py").unlink()
    with ExpStore(repo) as store:
        good = _code_entry(store, "a/weights.bin", b"large code file " * 100)
        damaged = _code_entry(store, "b/other.bin", b"these bytes will change")
        path = store.cas.path_for(damaged["blake3"])
    os.chmod(path, 0o644)
    Path(path).write_bytes(b"these bytes did change!")
    amend_run(repo, ref, {"artifacts.json": json.dumps([good, damaged]).encode()})
    run_id = ref.rsplit("/", 1)[1]
    before = user_state(repo)
    line = one_line(gx("checkout-code", run_id), 6)
    assert "damaged" in line
    assert user_state(repo) == before
    assert not (repo / "a").exists() and not (repo / "b").exists()
    assert not (repo / "helper.py").exists()
    assert git("branch", "--list", f"exp/{run_id}", cwd=repo) == ""


@pytest.mark.slow
def test_a_restore_failing_after_the_switch_switches_back_and_removes_the_branch(repo, gx):
    (repo / "models").mkdir()
    (repo / "models" / "a.txt").write_text("untracked: in the snapshot as a directory\n")
    ref = finished_run("hostile", repo=repo)
    (repo / "models" / "a.txt").unlink()
    (repo / "models").rmdir()
    with ExpStore(repo) as store:
        good = _code_entry(store, "w.bin", b"large code file " * 100)
        in_the_way = _code_entry(store, "models", b"a file where the code has a directory")
    amend_run(repo, ref, {"artifacts.json": json.dumps([good, in_the_way]).encode()})
    run_id = ref.rsplit("/", 1)[1]
    head = git("rev-parse", "HEAD", cwd=repo)
    before = user_state(repo)
    line = one_line(gx("checkout-code", run_id), 6)
    assert "models" in line and "directory is in the way" in line
    after = user_state(repo)
    assert after == before  # switched there and back: the same files, index and refs
    assert git("rev-parse", "HEAD", cwd=repo) == head
    assert git("symbolic-ref", "HEAD", cwd=repo).strip() == "refs/heads/main"
    assert git("branch", "--list", f"exp/{run_id}", cwd=repo) == ""
    assert not (repo / "w.bin").exists() and not (repo / "models").exists()
    assert list(repo.glob(".gitexp-*")) == []
    fsck(repo)


# ---------------------------------- 4. a shared artifact store: regular files, bounded reads


@pytest.fixture
def shared(tmp_path):
    """Alice's run with an artifact, pushed to a bare remote whose artifact store
    is a shared directory (``shared.git/exp``); Bob's clone of it."""
    alice = make_repo(tmp_path / "alice")
    (alice / "m.bin").write_bytes(b"model bytes " * 100)
    with gitexp.start_run(experiment="share", repo=alice, command=["test"]) as run:
        run.log_artifact(alice / "m.bin")
    remote = bare(tmp_path, "shared.git")
    git("remote", "add", "origin", str(remote), cwd=alice)
    git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=alice)
    proc = subprocess.run(["git", "exp", "push"], cwd=alice, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    entry = next(a for a in manifest_of(alice, run.ref) if a["path"] == "m.bin")
    obj = remote / "exp" / "objects" / entry["blake3"][:2] / entry["blake3"][2:]
    assert obj.is_file()
    bob = tmp_path / "bob"
    git("clone", "-q", str(remote), str(bob), cwd=tmp_path)
    return bob, run.id, entry, obj


def _bob_has_nothing_of(bob: Path, key: str) -> None:
    cas = bob / ".git" / "exp"
    assert not (cas / "objects" / key[:2] / key[2:]).exists()
    tmp = cas / "tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fifo", "dev-zero", "larger"])
def test_a_shared_store_object_that_is_not_its_bytes_is_refused_quickly(shared, kind):
    bob, run_id, entry, obj = shared
    os.chmod(obj, 0o644)
    obj.unlink()
    if kind == "fifo":  # a reader that opens it waits forever for a writer
        os.mkfifo(obj)
    elif kind == "dev-zero":  # endless bytes
        os.symlink("/dev/zero", obj)
    else:  # the right bytes, then 256 MiB more (sparse: costs the store nothing)
        with open(obj, "wb") as f:
            f.write(b"model bytes " * 100)
            f.truncate(256 << 20)
    proc = gx_bounded("pull", cwd=bob)
    assert proc.returncode == 6, proc.stdout + proc.stderr
    assert "m.bin" in proc.stderr and "Traceback" not in proc.stderr
    reason = {"fifo": "not a regular file", "dev-zero": "not a regular file", "larger": "larger"}
    assert reason[kind] in proc.stderr, proc.stderr
    _bob_has_nothing_of(bob, entry["blake3"])
    assert run_refs(bob)  # the run itself arrived

    out = bob / "out.bin"
    line = one_line(gx_bounded("get", run_id, "m.bin", "-o", str(out), cwd=bob), 6)
    assert reason[kind] in line
    assert not out.exists()
    _bob_has_nothing_of(bob, entry["blake3"])
    fsck(bob)


# ------------------------------------------------- 5. small inputs, bounded memory


def _segment(rows_per_group: int, groups: int) -> bytes:
    """A metric segment of ``groups`` row groups of ``rows_per_group`` rows each,
    written one group at a time (what a hostile tool can write in little memory)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from gitexp.metrics import schema

    n = rows_per_group
    table = pa.table(
        {
            "key": pa.array(["loss"] * n, pa.string()),
            "step": pa.array(np.zeros(n, dtype=np.int64)),
            "value": pa.array(np.zeros(n)),
            "time": pa.array(np.zeros(n, dtype=np.int64)).cast(pa.timestamp("us", tz="UTC")),
        },
        schema=schema(),
    )
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(sink, schema(), compression="zstd") as writer:
        for _ in range(groups):
            writer.write_table(table, row_group_size=n)
    return bytes(sink.getvalue().to_pybytes())


@pytest.mark.slow
def test_metric_segments_are_bounded_before_their_data_is_read(repo, gx):
    import numpy as np

    from gitexp.metrics import MAX_ROW_GROUP, MAX_SEGMENT_ROWS

    assert MAX_ROW_GROUP == 131_072  # docs/format.md
    ref = finished_run("big", metrics={"loss": 1.0}, repo=repo)
    seg = git("ls-tree", "--name-only", f"{ref}:metrics", cwd=repo).split()[0]
    run_id = ref.rsplit("/", 1)[1]

    amend_run(repo, ref, {f"metrics/{seg}": _segment(MAX_ROW_GROUP + 1, 1)})
    line = one_line(gx("show", run_id), 6)
    assert "row group" in line and f"{MAX_ROW_GROUP + 1:,}" in line

    groups = MAX_SEGMENT_ROWS // MAX_ROW_GROUP + 1
    data = _segment(MAX_ROW_GROUP, groups)
    assert len(data) < 2 << 20  # a small file...
    amend_run(repo, ref, {f"metrics/{seg}": data})
    line = one_line(gx("show", run_id), 6)  # ...that would decode to millions of points
    assert f"{groups * MAX_ROW_GROUP:,} rows" in line
    assert gx("fsck", run_id).returncode == 1

    # what git-exp writes stays within the bounds: a burst of 300,000 points
    with gitexp.start_run(experiment="burst", repo=repo, command=["test"]) as run:
        run.log_metric("x", np.arange(300_000, dtype=np.float64))
    out = json.loads(gx.ok("show", run.id, "--json"))
    assert out["metrics"]["x"]["count"] == 300_000


BILLION_LAUGHS = """\
a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
"""


@pytest.mark.slow
def test_a_yaml_config_whose_aliases_explode_is_refused(repo):
    assert len(BILLION_LAUGHS) < 400
    (repo / "bomb.yaml").write_text(BILLION_LAUGHS)
    (repo / "self.yaml").write_text("a: &a [1, *a]\n")
    (repo / "fine.yaml").write_text("base: &base {lr: 0.1, wd: 0.0}\nrun: {<<: *base, lr: 0.2}\n")
    before = run_refs(repo)
    proc = gx_bounded("run", "--config", "bomb.yaml", "--", "true", cwd=repo, timeout=30)
    line = one_line(proc, 2)
    assert "bomb.yaml" in line and "alias" in line
    line = one_line(gx_bounded("run", "--config", "self.yaml", "--", "true", cwd=repo), 2)
    assert "self.yaml" in line and "itself" in line
    assert run_refs(repo) == before
    from gitexp.runner import load_config

    assert load_config(str(repo / "fine.yaml"))["run"] == {"lr": 0.2, "wd": 0.0}


@pytest.mark.slow
def test_run_documents_are_bounded_before_they_are_read(repo, gx):
    from gitexp.records import doc_limit

    ref = finished_run("docs", repo=repo)
    good = finished_run("docs", repo=repo)
    run_id = ref.rsplit("/", 1)[1]
    run = json.loads(git("show", f"{ref}:run.json", cwd=repo))
    run["notes"] = ["x" * (doc_limit("run.json") + 1)]
    amend_run(repo, ref, {"run.json": json.dumps(run).encode()})
    line = one_line(gx("show", run_id), 6)
    assert "run.json" in line and f"{doc_limit('run.json'):,}" in line
    proc = gx("log", "--json")
    assert [r["id"] for r in json.loads(proc.stdout)] == [good.rsplit("/", 1)[1]]
    assert run_id in proc.stderr


def test_blob_sizes_come_from_the_object_header(repo):
    """Loose, packed and deltified blobs: the size, without reading the bytes."""
    big = os.urandom(1 << 16)
    (repo / "a.bin").write_bytes(big)
    (repo / "b.bin").write_bytes(big[:-10] + b"0123456789" * 3)  # a delta of a.bin
    git("add", ".", cwd=repo)
    git("commit", "-qm", "blobs", cwd=repo)
    shas = {n: git("rev-parse", f"HEAD:{n}", cwd=repo).strip() for n in ("a.bin", "b.bin")}
    with ExpStore(repo) as store:
        loose = {n: store.repo.blob_size(s) for n, s in shas.items()}
    git("gc", "-q", "--aggressive", cwd=repo)
    packs = [str(p) for p in (repo / ".git" / "objects" / "pack").glob("*.idx")]
    listed = git("verify-pack", "-v", *packs, cwd=repo).splitlines()
    deltas = {ln.split()[0] for ln in listed if len(ln.split()) > 5}  # "... depth base"
    assert deltas & set(shas.values())  # one of them is stored as a delta
    with ExpStore(repo) as store:
        packed = {n: store.repo.blob_size(s) for n, s in shas.items()}
        with pytest.raises(FormatError, match="more than"):
            store.repo.read_blob(shas["a.bin"], limit=1000)
    assert loose == packed == {"a.bin": len(big), "b.bin": len(big) + 20}


def test_a_blob_read_while_git_gc_replaces_its_pack_is_still_read(repo):
    """A reader that listed the packs before a background `git gc` replaced
    them (dulwich opens a pack's index lazily, and reports the file gone)
    reads the blob from where it is now: `git exp log` beside a live gc
    failed with an internal error on exactly this."""
    data = os.urandom(5000)
    (repo / "c.bin").write_bytes(data)
    git("add", ".", cwd=repo)
    git("commit", "-qm", "blob", cwd=repo)
    sha = git("rev-parse", "HEAD:c.bin", cwd=repo).strip()
    git("repack", "-a", "-d", "-q", cwd=repo)
    with ExpStore(repo) as store:
        assert store.repo._store.packs  # listed now; each index is opened on first use
        (repo / "more.txt").write_text("more")
        git("add", ".", cwd=repo)
        git("commit", "-qm", "more", cwd=repo)
        git("repack", "-a", "-d", "-q", cwd=repo)  # a new pack; the listed one is gone
        assert store.repo.blob_size(sha) == len(data)
        assert store.repo.read_blob(sha, limit=10_000) == data


# ------------------------------------------------------------- 6. validation gaps


def test_names_and_digests_must_match_whole(repo):
    from gitexp import records as fmt
    from gitexp.cas import check_key
    from gitexp.records import ArtifactEntry

    key = "a" * 64
    with pytest.raises(InvalidName):
        check_key(key + "\n")
    entry = {"path": "m.bin", "blake3": key + "\n", "size": 1, "mode": "100644"}
    with pytest.raises(FormatError):
        ArtifactEntry.from_json(entry)
    assert fmt.is_run_id("20261122-143022-7f3a9c")
    assert not fmt.is_run_id("20261122-143022-7f3a9c\n")
    assert not fmt.is_run_id("٢٠٢٦١١٢٢-١٤٣٠٢٢-7f3a9c")  # Arabic-Indic digits are not ids
    from gitexp.store.records import RunStart

    start = {"ref": "refs/experiments/e/20261122-143022-7f3a9c", "run": {}, "params": {}}
    start.update(code={}, env={}, code_commit="b" * 40)
    assert RunStart.from_json(start).code_commit == "b" * 40
    with pytest.raises(FormatError):
        RunStart.from_json({**start, "code_commit": "b" * 40 + "\n"})


@pytest.mark.parametrize("mode", ["7777", "104777", "100666", "120000", "40000"])
def test_a_manifest_mode_other_than_a_file_or_directory_is_refused(repo, gx, mode):
    from gitexp.records import ArtifactEntry

    entry = {"path": "m.bin", "blake3": "a" * 64, "size": 1, "mode": mode}
    with pytest.raises(FormatError, match="mode"):
        ArtifactEntry.from_json(entry)
    ref = finished_run("modes", repo=repo)
    amend_run(repo, ref, {"artifacts.json": json.dumps([entry]).encode()})
    assert "mode" in one_line(gx("show", ref.rsplit("/", 1)[1]), 6)


def test_a_directory_listing_mode_other_than_a_file_is_refused():
    from gitexp.cas import parse_dir_listing

    with pytest.raises(FormatError, match="mode"):
        parse_dir_listing(f"107777 {'a' * 64} 3 x.bin\n".encode())
    assert parse_dir_listing(f"100755 {'a' * 64} 3 x.bin\n".encode())[0][3] == 0o100755


def test_restore_never_makes_a_file_writable_by_others(repo, tmp_path):
    with ExpStore(repo) as store:
        key = store.cas.put_bytes(b"bytes")
        for mode, want in ((0o100644, 0o644), (0o100755, 0o755), (0o107777, 0o755)):
            store.cas.restore(key, tmp_path / "out", mode)
            assert os.stat(tmp_path / "out").st_mode & 0o7777 == want


@pytest.mark.slow
def test_malformed_history_from_a_remote_is_quarantined_and_gc_still_frees(tmp_path):
    alice = make_repo(tmp_path / "alice")
    remote = bare(tmp_path, "shared.git")
    ok = finished_run("team", metrics={"loss": 1.0}, repo=alice)
    tip_bad = [finished_run("team", repo=alice) for _ in range(2)]
    history_bad = finished_run("team", repo=alice)
    run = json.loads(git("show", f"{history_bad}:run.json", cwd=alice))
    summary = git("show", f"{history_bad}:summary.json", cwd=alice).encode()
    # at the tip: a list summary.json, string tags (pull refuses them by name)
    amend_run(alice, tip_bad[0], {"summary.json": b"[1, 2]\n"})
    amend_run(alice, tip_bad[1], {"run.json": json.dumps({**run, "tags": "oops"}).encode()})
    # in the history, under a good tip: only the manifest matters to gc
    amend_run(alice, history_bad, {"summary.json": b"[1, 2]\n"})
    amend_run(alice, history_bad, {"run.json": json.dumps({**run, "tags": "oops"}).encode()})
    amend_run(alice, history_bad, {"run.json": json.dumps(run).encode(), "summary.json": summary})
    git("remote", "add", "origin", str(remote), cwd=alice)
    refspecs = ["HEAD:refs/heads/main", "refs/experiments/*:refs/experiments/*"]
    git("push", "-q", "origin", *refspecs, cwd=alice)
    bob = tmp_path / "bob"
    git("clone", "-q", str(remote), str(bob), cwd=tmp_path)
    bx = ["git", "exp"]

    proc = subprocess.run([*bx, "pull"], cwd=bob, capture_output=True, text=True)
    assert proc.returncode == 6, proc.stdout + proc.stderr
    for ref in tip_bad:
        assert ref.rsplit("/", 1)[1] in proc.stderr
    assert sorted(run_refs(bob)) == sorted([ok, history_bad])
    with ExpStore(bob) as store:
        orphan = store.cas.put_bytes(b"no run refers to this")
        path = store.cas.path_for(orphan)
    os.utime(path, (1, 1))
    proc = subprocess.run([*bx, "gc", "--grace", "0s"], cwd=bob, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not os.path.exists(path)


def test_a_stat_cache_row_with_a_malformed_key_is_ignored(repo):
    import sqlite3

    path = repo / "m.bin"
    path.write_bytes(b"model")
    os.utime(path, (1_000_000, 1_000_000))  # old enough to be trusted
    with ExpStore(repo) as store:
        true_key, _ = store.cas.hash_file(path)
        db_path = store.cas.stat_cache.path
    st = path.stat()
    db = sqlite3.connect(db_path)
    for bad in ("../../../../etc/passwd", true_key + "\n", 12345):
        with db:
            db.execute(
                "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)",
                (str(path), st.st_size, st.st_mtime_ns, st.st_ino, st.st_mtime_ns + 10**12, bad),
            )
        with gitexp.start_run(experiment="cache", repo=repo, command=["test"]) as run:
            run.log_artifact(path)
        entry = next(a for a in manifest_of(repo, run.ref) if a["path"] == "m.bin")
        assert entry["blake3"] == true_key
    db.close()


def _nested(depth: int) -> dict:
    value: dict = {}
    for _ in range(depth):
        value = {"a": value}
    return value


def test_params_nested_too_deep_or_containing_themselves_are_one_error(repo):
    loop: dict = {"lr": 0.1}
    loop["self"] = loop
    items: list = [1]
    items.append(items)
    for params in (_nested(1_000), loop, {"xs": items}):
        with pytest.raises(InvalidValue) as info:
            with gitexp.start_run(experiment="deep", repo=repo, params=params, command=["t"]):
                pass
        assert len(str(info.value).splitlines()) == 1
        with gitexp.start_run(experiment="deep", repo=repo, command=["t"]) as run:
            with pytest.raises(InvalidValue):
                run.log_params(params)
            run.log_params({"ok": 1})
        assert json.loads(git("show", f"{run.ref}:params.json", cwd=repo)) == {"ok": 1}


def test_a_dotted_param_nested_too_deep_is_one_line(repo):
    before = run_refs(repo)
    key = ".".join(["a"] * 1_000)
    line = one_line(gx_bounded("run", "-p", f"{key}=1", "--", "true", cwd=repo), 2)
    assert "deeper" in line
    assert run_refs(repo) == before


def test_an_empty_experiment_name_is_refused_not_made_default(repo, gx):
    before = run_refs(repo)
    assert "empty" in one_line(gx("run", "-e", "", "--", "true"), 2)
    assert "empty" in one_line(gx("log", "-e", ""), 2)
    assert "empty" in one_line(gx("rm", "-e", ""), 2)
    with pytest.raises(InvalidName, match="empty"):
        gitexp.start_run(experiment="", repo=repo)
    from gitexp.sweeps.spec import parse_spec

    with pytest.raises(UsageError, match="empty"):
        parse_spec(
            {"experiment": "", "command": ["true"], "parameters": {"x": [1]}, "method": "grid"},
            "sweep.yaml",
        )
    assert run_refs(repo) == before
