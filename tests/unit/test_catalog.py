"""The run catalog: derived, incremental, rebuildable, never the source of truth."""

from __future__ import annotations

import json
import os

import pytest

import gitexp
from conftest import git
from gitexp.catalog import Catalog
from gitexp.store import ExpStore, RunDelta


def _runs(repo, n, experiment="cat", **params):
    ids = []
    for i in range(n):
        with gitexp.start_run(experiment=experiment, repo=repo, params={"i": i, **params}) as r:
            r.log_metric("acc", i / 10)
        ids.append(r.id)
    return ids


def _update(repo):
    with ExpStore(repo) as store:
        cat = Catalog(store)
        table = cat.update()
        packed = table.table.column("packed").to_pylist()
        return cat.reads, {r["id"]: {**r, "packed": p} for r, p in zip(table.rows(), packed)}


def _age_catalog(repo, seconds=10):
    """Pretend the catalog and the refs are older than they are (no racy reads)."""
    root = repo / ".git"
    for dirpath, _, files in os.walk(root / "refs" / "experiments", topdown=False):
        for p in [*(os.path.join(dirpath, f) for f in files), dirpath]:
            st = os.stat(p)
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns - int(seconds * 1e9)))
    _update(repo)  # rebuilt with the aged mtimes; built_ns is now


def test_only_changed_runs_are_read_again(repo):
    _runs(repo, 5)
    reads, rows = _update(repo)
    assert reads == 5 and len(rows) == 5
    _age_catalog(repo)
    reads, _ = _update(repo)
    assert reads == 0  # warm: nothing read from git
    new = _runs(repo, 2)
    reads, rows = _update(repo)
    assert reads == 2 and set(new) <= set(rows)
    with ExpStore(repo) as store:
        store.update(
            store.resolve(new[0]),
            __import__("gitexp.store").store.RunDelta(tags_add=["best"]),
            "tag",
        )
    _, rows = _update(repo)
    assert rows[new[0]]["tags"] == ["best"]


@pytest.mark.slow
def test_packed_refs_deleted_runs_and_a_damaged_catalog(repo, gx):
    ids = _runs(repo, 4)
    _update(repo)
    git("pack-refs", "--all", cwd=repo)
    reads, rows = _update(repo)
    assert reads == 0 and set(rows) == set(ids)
    assert all(r["packed"] for r in rows.values())
    gx.ok("rm", ids[0])
    _, rows = _update(repo)
    assert set(rows) == set(ids[1:])
    path = repo / ".git" / "exp" / "catalog" / "runs.parquet"
    path.write_bytes(b"not parquet")
    reads, rows = _update(repo)
    assert reads == 3 and set(rows) == set(ids[1:])
    assert "rebuilt: 3 run(s)" in gx.ok("reindex")


def test_the_catalog_is_not_the_source_of_truth(repo, gx):
    ids = _runs(repo, 3)
    gx.ok("log")
    (repo / ".git" / "exp" / "catalog" / "runs.parquet").unlink()
    assert {r["id"] for r in json.loads(gx.ok("log", "--json"))} == set(ids)


def test_a_ref_changed_within_the_same_timestamp_tick_is_seen(repo):
    """The racy case: a ref rewritten right after the catalog was built, keeping
    its mtime, must still be re-read on the next update."""
    [rid] = _runs(repo, 1)
    _update(repo)
    ref = repo / ".git" / "refs" / "experiments" / "cat" / rid
    st = os.stat(ref)
    with ExpStore(repo) as store:
        store.update(store.resolve(rid), RunDelta(tags_add=["late"]), "tag")
    os.utime(ref, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime as before
    _, rows = _update(repo)
    assert rows[rid]["tags"] == ["late"]


def test_packed_refs_written_moments_ago_is_trusted_by_its_bytes(repo):
    """A pull writes its new refs to packed-refs and the catalog right after it:
    the next listing trusts packed-refs by the digest of its bytes although it
    is within the racy window (it neither re-reads nor rewrites anything), and
    still sees a change that kept packed-refs' mtime and size."""
    a, b = _runs(repo, 2)
    git("pack-refs", "--all", cwd=repo)
    for dirpath, _, _ in os.walk(repo / ".git" / "refs" / "experiments"):
        st = os.stat(dirpath)  # only packed-refs is recent
        os.utime(dirpath, ns=(st.st_atime_ns, st.st_mtime_ns - 10**10))
    reads, rows = _update(repo)
    assert reads == 2 and all(r["packed"] for r in rows.values())
    path = repo / ".git" / "exp" / "catalog" / "runs.parquet"
    before = os.stat(path)
    reads, rows = _update(repo)
    after = os.stat(path)
    assert reads == 0 and set(rows) == {a, b}
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    # a's packed ref rewritten to b's commit, same size, same mtime
    packed = repo / ".git" / "packed-refs"
    st = os.stat(packed)
    sha_a, sha_b = rows[a]["sha"], rows[b]["sha"]
    packed.write_bytes(packed.read_bytes().replace(f"{sha_a} ".encode(), f"{sha_b} ".encode()))
    os.utime(packed, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert os.stat(packed).st_size == st.st_size
    _, rows = _update(repo)
    assert rows[a]["sha"] == sha_b


def test_a_warm_listing_reads_and_writes_nothing(repo):
    _runs(repo, 3)
    _age_catalog(repo)
    path = repo / ".git" / "exp" / "catalog" / "runs.parquet"
    before = os.stat(path)
    reads, rows = _update(repo)
    after = os.stat(path)
    assert reads == 0 and len(rows) == 3
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_changes_made_by_plain_git_in_unchanged_looking_directories_are_seen(repo):
    """Directories whose mtime did not change are not scanned; every way git
    changes refs (create, move, delete, in a new sub-experiment) changes one."""
    a, b, c = _runs(repo, 3)
    _age_catalog(repo)
    [nested] = _runs(repo, 1, experiment="cat/sub")  # a new directory inside cat/
    reads, rows = _update(repo)
    assert reads == 1 and set(rows) == {a, b, c, nested}
    _age_catalog(repo)
    sha_b = git("rev-parse", f"refs/experiments/cat/{b}", cwd=repo).strip()
    git("update-ref", f"refs/experiments/cat/{a}", sha_b, cwd=repo)  # a now points at b's run
    git("update-ref", "-d", f"refs/experiments/cat/{c}", cwd=repo)
    reads, rows = _update(repo)
    assert set(rows) == {a, b, nested} and rows[a]["sha"] == sha_b
    _age_catalog(repo)
    git("update-ref", "-d", f"refs/experiments/cat/sub/{nested}", cwd=repo)
    _, rows = _update(repo)
    assert set(rows) == {a, b}


def test_a_param_whose_type_changes_sorts_and_filters_as_values(repo, gx):
    """lr is a number in two runs and text in a third: the catalog keeps every
    value as it was logged; sorting puts numbers first, then text."""
    ids = [_runs(repo, 1, lr=v)[0] for v in (0.1, 0.01)]
    _age_catalog(repo)
    ids += _runs(repo, 1, lr="auto")
    rows = json.loads(gx.ok("log", "--sort=lr", "--json"))
    assert [r["params.lr"] for r in rows] == [0.01, 0.1, "auto"]
    rows = json.loads(gx.ok("log", "--where", "params.lr < 0.05 or params.lr == 'auto'", "--json"))
    assert sorted(r["id"] for r in rows) == sorted([ids[1], ids[2]])


@pytest.mark.slow
def test_sha_prefixes_resolve_through_the_catalog(repo, gx):
    """With a catalog, `show <sha prefix>` finds the run without reading every
    ref; runs the catalog could not read and ambiguity are seen all the same."""
    from conftest import sha_prefix_collision

    ids = _runs(repo, 3)
    with ExpStore(repo) as store:
        prefix, amb = sha_prefix_collision(store)  # ~300 minimal runs, two sharing a prefix
    gx.ok("log")  # builds the catalog (the minimal runs parse as runs)
    assert (repo / ".git" / "exp" / "catalog" / "runs.parquet").exists()
    for rid in ids:
        sha = git("rev-parse", f"refs/experiments/cat/{rid}", cwd=repo).strip()
        assert json.loads(gx.ok("show", "--json", sha[:8]))["run"] == f"cat/{rid}"
    proc = gx("show", prefix)
    assert proc.returncode == 4 and all(r in proc.stderr for r in amb)
    # a run that does not parse (run.json of an unknown format) is still addressable
    with ExpStore(repo) as store:
        tree = store.repo.update_tree(None, {"run.json": b"{not json"})
        bad = store.repo.write_commit(tree, [store.repo.head()], "damaged")
        assert store.repo.set_ref("refs/experiments/cat/20260101-000000-000bad", None, bad, "t")
    warning = gx("log").stderr
    assert "1 run could not be read and is not listed: cat/20260101-000000-000bad" in warning
    gx.ok("rm", bad[:10])
    assert git("for-each-ref", "refs/experiments/cat/20260101-000000-000bad", cwd=repo) == ""


def test_a_short_hex_address_says_it_is_too_short(repo, gx):
    _runs(repo, 1)
    proc = gx("show", "abc")
    assert proc.returncode == 4 and "at least 4 hex digits" in proc.stderr


def test_a_sha_prefix_found_in_the_catalog_reads_no_ref(repo, monkeypatch):
    import pytest

    from gitexp.catalog import indexed_store

    ids = _runs(repo, 2)
    _update(repo)
    sha = git("rev-parse", f"refs/experiments/cat/{ids[1]}", cwd=repo).strip()
    with indexed_store(repo) as store:
        monkeypatch.setattr(store, "list_refs", lambda *a, **k: pytest.fail("read every ref"))
        assert store.resolve(sha[:6]).run_id == ids[1]
        assert store.resolve(ids[0]).run_id == ids[0]  # a run id: ref names only


def test_tips_are_trusted_only_while_the_refs_are_unchanged(repo):
    """``tips.txt`` answers sha prefixes without pyarrow; a ref directory that
    changed since it was written makes it untrusted, and the catalog answers."""
    ids = _runs(repo, 2)
    _age_catalog(repo)
    ref = f"refs/experiments/cat/{ids[0]}"
    sha = git("rev-parse", ref, cwd=repo).strip()
    with ExpStore(repo) as store:
        assert Catalog(store)._fresh_tips(sha[:6]) == [(ref, sha)]
    [new] = _runs(repo, 1)
    new_ref = f"refs/experiments/cat/{new}"
    new_sha = git("rev-parse", new_ref, cwd=repo).strip()
    with ExpStore(repo) as store:
        cat = Catalog(store)
        assert cat._fresh_tips(new_sha[:8]) is None
        assert cat.tips(new_sha[:8]) == [(new_ref, new_sha)]


def test_many_runs_are_read_through_git_cat_file_as_dulwich_reads_them(repo):
    """A listing of many new runs reads them with one `git cat-file --batch`;
    each record, and each refusal of a damaged run, is the one dulwich gives."""
    from gitexp.store import BATCH_READS

    _runs(repo, BATCH_READS + 2, lr=0.5, name={"nested": [1, 2]})
    with ExpStore(repo) as store:
        bad_tree = store.repo.update_tree(None, {"run.json": b'{"format": 99}'})
        bad = store.repo.write_commit(bad_tree, [store.repo.head()], "from the future")
        store.repo.set_ref("refs/experiments/cat/20260101-000000-000bad", None, bad, "t")
        items = sorted(store.list_refs().items())
        assert len(items) > BATCH_READS
        batch = store._read_listings_batch(items)  # the git cat-file path itself
        assert [b[:2] for b in store.read_listings(items)] == [b[:2] for b in batch]
        for (ref, sha), (bref, bsha, got) in zip(items, batch):
            assert (bref, bsha) == (ref, sha)
            try:
                want = store.read_listing(ref, sha)
            except Exception as exc:  # the same refusal, in the same words
                assert type(got) is type(exc) and str(got) == str(exc)
                continue
            assert (got.info, got.params, got.summary, got.code, got.tree) == (
                want.info,
                want.params,
                want.summary,
                want.code,
                want.tree,
            )


@pytest.mark.slow
def test_a_catalog_file_that_did_not_change_is_not_read_again(repo, monkeypatch):
    import pyarrow.parquet as pq

    import gitexp.catalog as catalog
    from conftest import finished_run
    from gitexp.catalog import Catalog
    from gitexp.store import ExpStore

    monkeypatch.setattr(catalog, "RACY_SECONDS", 0.0)  # no racy window: no rewrite to wait for
    finished_run(params={"lr": 0.1}, metrics={"acc": 0.5})
    reads = []
    real = pq.ParquetFile
    monkeypatch.setattr(pq, "ParquetFile", lambda *a, **k: reads.append(a) or real(*a, **k))
    with ExpStore(repo) as store:
        first = Catalog(store).update()
        Catalog(store).update()
        n = len(reads)
        again = Catalog(store).update()
        assert len(reads) == n  # the same file: the table kept from the last read
        assert again.table.equals(first.table)
        finished_run(params={"lr": 0.2}, metrics={"acc": 0.6})
        assert len(Catalog(store).update()) == 2  # a new run: a new file, read
