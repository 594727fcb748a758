"""fsck, gc, rm, and crashes at random moments of a write."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gitexp
from conftest import fsck, git, kill_when_ready, run_refs
from gitexp.errors import GitExpError
from gitexp.store import ExpStore
from gitexp.store.validate import parse_record


def _cas_files(repo):
    root = repo / ".git" / "exp" / "objects"
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def _run(repo, experiment="m", payload=b"payload", status="finished", **params):
    (repo / "a.bin").write_bytes(payload)
    run = gitexp.start_run(experiment=experiment, repo=repo, params=params)
    run.log_metric("x", 1.0)
    run.log_artifact(repo / "a.bin")
    run.finish(status)
    return run


def test_fsck_reports_each_run_and_exits_zero_when_all_is_well(repo, gx):
    a, b = _run(repo), _run(repo, payload=b"other")
    out = gx.ok("fsck")
    assert f"ok      m/{a.id}" in out and f"ok      m/{b.id}" in out
    data = json.loads(gx.ok("fsck", "--json"))
    assert [r["ok"] for r in data] == [True, True]


def test_fsck_reports_per_run_what_is_wrong_in_text_and_json(repo, gx):
    """A missing code commit, a missing git object of the run tree, a damaged CAS
    object: each named under its own run, the healthy run still ok, exit 1."""
    ok = _run(repo, payload=b"healthy")
    no_code = _run(repo, payload=b"no code")
    no_blob = _run(repo, payload=b"no blob")
    damaged = _run(repo, payload=b"damaged")
    code = json.loads(git("show", f"{no_code.ref}:code.json", cwd=repo))
    code["commit"] = "0" * 40
    _replace_in_run(repo, no_code.ref, "code.json", json.dumps(code))
    seg = git("rev-parse", f"{no_blob.ref}:metrics/000000.parquet", cwd=repo).strip()
    _drop_object(repo, seg)
    with ExpStore(repo) as store:
        entry = store.read_settled(damaged.id).artifacts[0]
        path = store.cas.path_for(entry.blake3)
    os.chmod(path, 0o644)
    with open(path, "ab") as f:
        f.write(b"!")
    proc = gx("fsck")
    assert proc.returncode == 1
    assert f"ok      m/{ok.id}" in proc.stdout
    report = {r["run"]: r for r in json.loads(gx("fsck", "--json").stdout)}
    assert report[f"m/{ok.id}"]["ok"] is True
    assert "code commit 000000000000 is missing" in report[f"m/{no_code.id}"]["problems"][0]
    assert seg in report[f"m/{no_blob.id}"]["problems"][0]
    assert "damaged" in report[f"m/{damaged.id}"]["problems"][0]
    assert gx("fsck", ok.id).returncode == 0
    assert gx("fsck", damaged.id).returncode == 1


def _drop_object(repo, sha):
    """Remove one object from the repository, packed or loose (a damaged clone)."""
    git("repack", "-q", "-a", "-d", "--no-write-bitmap-index", cwd=repo)
    keep = set(
        git("cat-file", "--batch-all-objects", "--batch-check=%(objectname)", cwd=repo).split()
    ) - {sha}
    pack_dir = repo / ".git" / "objects" / "pack"
    new = repo.parent / "newpack"
    new.mkdir()
    git("pack-objects", "-q", str(new / "pack"), cwd=repo, input="\n".join(keep) + "\n")
    for p in pack_dir.iterdir():
        p.unlink()
    for p in new.iterdir():
        p.rename(pack_dir / p.name)
    assert subprocess.run(["git", "cat-file", "-e", sha], cwd=repo).returncode != 0


@pytest.mark.slow
def test_rm_older_than_removes_old_runs_and_running_ones_only_when_asked(repo, gx, monkeypatch):
    import datetime as dt

    from gitexp import records as fmt

    real = fmt.utc_now
    monkeypatch.setattr(fmt, "utc_now", lambda: real() - dt.timedelta(days=40))
    old_failed = _run(repo, experiment="sweep", status="failed")
    old_ok = _run(repo, experiment="sweep")
    monkeypatch.setattr(fmt, "utc_now", real)
    young_failed = _run(repo, experiment="sweep", status="failed")
    live = gitexp.start_run(experiment="sweep", repo=repo)
    try:
        out = gx.ok("rm", "-e", "sweep", "--older-than", "30d", "--status", "failed")
        assert out.strip() == f"removed sweep/{old_failed.id}"
        assert gx.ok("rm", "-e", "sweep", "--older-than", "30d").strip() == (
            f"removed sweep/{old_ok.id}"
        )
        assert live.id not in gx.ok("rm", "-e", "sweep", "--dry-run")
        assert live.id in gx.ok("rm", "-e", "sweep", "--status", "running", "--dry-run")
        ids = {r["id"] for r in json.loads(gx.ok("log", "--json", "-e", "sweep"))}
        assert ids == {young_failed.id, live.id}
    finally:
        live.finish()


def test_fsck_finds_a_missing_object(repo, gx):
    _run(repo)
    for p in _cas_files(repo):
        os.chmod(p, 0o644)
        p.unlink()
    proc = gx("fsck")
    assert proc.returncode == 1 and "not in the local store" in proc.stdout


@pytest.mark.slow
def test_gc_frees_only_unreferenced_objects_after_the_grace_period(repo, gx):
    keep = _run(repo, payload=b"keep me")
    drop = _run(repo, payload=b"drop me")
    assert len(_cas_files(repo)) == 2
    gx.ok("rm", drop.id)
    assert "would free 0" in gx.ok("gc", "--dry-run")  # grace period: too young
    out = gx.ok("gc", "--dry-run", "--grace", "0s")
    assert "would free 1 object" in out and len(_cas_files(repo)) == 2
    gx.ok("gc", "--grace", "0s")
    left = _cas_files(repo)
    assert len(left) == 1 and left[0].read_bytes() == b"keep me"
    assert json.loads(gx.ok("fsck", "--json"))[0]["run"] == f"m/{keep.id}"
    fsck(repo)


def test_gc_keeps_objects_of_a_run_in_progress(repo, gx):
    (repo / "live.bin").write_bytes(b"logged by a live run")
    run = gitexp.start_run(experiment="live", repo=repo)
    run.log_artifact(repo / "live.bin")  # spooled, not yet committed to the ref
    gx.ok("gc", "--grace", "0s")
    run.finish()
    with ExpStore(repo) as store:
        entry = store.read_settled(run.id).artifacts[0]
        assert store.cas.get_bytes(entry.blake3) == b"logged by a live run"


@pytest.mark.slow
def test_gc_removes_temporary_files_left_by_a_crash(repo, gx):
    big = repo / "big.bin"
    big.write_bytes(os.urandom(1 << 20) * 300)
    script = repo / "slow.py"
    script.write_text(
        "import gitexp, sys\nrun = gitexp.start_run()\nrun.log_artifact(sys.argv[1])\n"
    )
    proc = subprocess.Popen([sys.executable, str(script), str(big)], cwd=repo)
    tmp = repo / ".git" / "exp" / "tmp"
    deadline = time.time() + 30
    while time.time() < deadline and not (tmp.exists() and any(tmp.glob("obj-*"))):
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert any(tmp.glob("obj-*")), "the copy finished before the kill"
    assert _cas_files(repo) == []  # no partial object ever appears under objects/
    gx.ok("log")  # settles the crashed run
    out = gx.ok("gc", "--grace", "0s")
    assert "removed 1 temporary file" in out
    assert not any(tmp.iterdir())
    fsck(repo)


@pytest.mark.slow
def test_rm_with_retention_filters(repo, gx):
    failed = _run(repo, experiment="sweep", status="failed")
    ok = _run(repo, experiment="sweep")
    other = _run(repo, experiment="other", status="failed")
    assert gx.ok("rm", "-e", "sweep", "--status", "failed", "--dry-run").strip() == (
        f"would remove sweep/{failed.id}"
    )
    assert gx.ok("rm", "-e", "sweep", "--older-than", "30d").strip() == ""  # all too young
    gx.ok("rm", "-e", "sweep", "--status", "failed")
    ids = {r["id"] for r in json.loads(gx.ok("log", "--json"))}
    assert ids == {ok.id, other.id}
    proc = gx("rm")
    assert proc.returncode == 2 and "name the runs" in proc.stderr
    proc = gx("rm", "--older-than", "soon")
    assert proc.returncode == 2 and "30d" in proc.stderr


LOGGER = r"""
import sys, time, gitexp
run = gitexp.start_run(experiment="spool")
run.checkpoint()  # the run's ref exists: what follows is only spooled
with open(sys.argv[1], "wb") as f:
    f.write(sys.argv[1].encode() * 100)
run.log_artifact(sys.argv[1])
print("logged", flush=True)
time.sleep(600)
"""


def _killed_logger(repo, name):
    """A process that logged an artifact (spooled, not yet on its ref), then died.
    Returns its run id."""
    live = repo / ".git" / "exp" / "live"
    before = set(os.listdir(live)) if live.exists() else set()
    (repo / "logger.py").write_text(LOGGER)
    kill_when_ready(["logger.py", name], repo, "logged")
    (run_id,) = set(os.listdir(live)) - before
    return run_id


@pytest.mark.slow
def test_gc_finalises_crashed_runs_and_removes_abandoned_spools(repo, gx):
    crashed = _killed_logger(repo, "kept.bin")
    removed = _killed_logger(repo, "freed.bin")
    gx.ok("rm", removed)  # by name: its dead writer's spool stays behind
    live = repo / ".git" / "exp" / "live"
    assert (live / removed).exists() and (live / crashed).exists()
    out = gx.ok("gc", "--grace", "0s")
    assert "1 abandoned spool" in out and "finalised 1 crashed run" in out, out
    assert "freed 1 object" in out and "packed git objects" in out, out
    assert not any(live.iterdir())
    with ExpStore(repo) as store:
        rec = store.read(store.resolve(crashed))  # no settle needed: gc did it
        assert rec.status == "crashed"
        (entry,) = rec.artifacts
        assert store.cas.get_bytes(entry.blake3) == b"kept.bin" * 100
    assert [p.read_bytes() for p in _cas_files(repo)] == [b"kept.bin" * 100]
    loose = dict(ln.split(": ") for ln in git("count-objects", "-v", cwd=repo).splitlines())
    assert int(loose["count"]) == 0  # git objects packed
    fsck(repo)


EARLY = r"""
import sys, time, gitexp, gitexp.tracking
gitexp.tracking.FIRST_COMMIT_DELAY = 3600  # killed before the run's first commit, surely
run = gitexp.start_run(experiment="early", params={"lr": 0.5})
with open(sys.argv[1], "wb") as f:
    f.write(b"early" * 100)
run.log_artifact(sys.argv[1])
print("logged", flush=True)
time.sleep(600)
"""


def test_gc_records_a_run_killed_before_its_first_commit(repo, gx):
    """Its spool is the only trace of it (no ref yet): gc records it as crashed with
    what it spooled instead of removing the spool as abandoned, and keeps its objects."""
    (repo / "early.py").write_text(EARLY)
    kill_when_ready(["early.py", "early.bin"], repo, "logged")
    assert run_refs(repo) == []
    (run_id,) = os.listdir(repo / ".git" / "exp" / "live")
    out = gx.ok("gc", "--grace", "0s")
    assert "finalised 1 crashed run" in out and "abandoned" not in out, out
    assert not (repo / ".git" / "exp" / "live" / run_id).exists()
    with ExpStore(repo) as store:
        rec = store.read(store.resolve(run_id))
        assert rec.status == "crashed" and rec.params == {"lr": 0.5}
        (entry,) = rec.artifacts
        assert store.cas.get_bytes(entry.blake3) == b"early" * 100
        # its history: the start its writer never wrote, what it spooled, the crash
        subjects = [store.repo.commit_info(c).message.split()[0] for c in store.history(rec.sha)]
    assert subjects == ["crash", "recover", "start"]
    fsck(repo)


@pytest.mark.slow
def test_gc_postpones_a_crashed_run_whose_ref_a_killed_writer_left_locked(repo, gx):
    """A writer killed inside a ref update leaves ``<ref>.lock`` (broken after 30 s).
    gc cannot finalise that run yet: it says so, exits 0, and keeps the objects
    the dead writer spooled; the next command after the lock goes finalises it."""
    crashed = _killed_logger(repo, "spooled.bin")
    with ExpStore(repo) as store:
        ref = store.resolve(crashed)
    lock = repo / ".git" / f"{ref}.lock"
    lock.write_text("")
    proc = gx("gc", "--grace", "0s")
    assert proc.returncode == 0, proc.stderr
    assert "not finalised yet" in proc.stderr and crashed in proc.stderr
    assert [p.read_bytes() for p in _cas_files(repo)] == [b"spooled.bin" * 100]
    lock.unlink(missing_ok=True)  # gc --grace 0s may already have removed it as a leftover
    rows = json.loads(gx.ok("log", "--json", "-e", "spool"))
    assert [r["status"] for r in rows] == ["crashed"]
    with ExpStore(repo) as store:
        (entry,) = store.read(ref).artifacts
        assert store.cas.get_bytes(entry.blake3) == b"spooled.bin" * 100


def test_gc_keeps_objects_of_runs_on_remote_tracking_refs(repo, gx):
    tracked = _run(repo, payload=b"only on a remote-tracking ref")
    _run(repo, payload=b"on no ref at all")  # its ref is removed below, with rm
    gone = _run(repo, payload=b"gone")
    sha = git("rev-parse", tracked.ref, cwd=repo).strip()
    git("update-ref", f"refs/remotes/origin/experiments/m/{tracked.id}", sha, cwd=repo)
    git("update-ref", "-d", tracked.ref, cwd=repo)
    gx.ok("rm", gone.id)
    out = gx.ok("gc", "--grace", "0s")
    assert "freed 1 object" in out, out
    left = sorted(p.read_bytes() for p in _cas_files(repo))
    assert left == [b"on no ref at all", b"only on a remote-tracking ref"]


@pytest.mark.slow
def test_gc_frees_nothing_while_a_run_cannot_be_read(repo, gx):
    bad = _run(repo, payload=b"written by a newer git-exp")
    gone = _run(repo, payload=b"removed")
    data = json.loads(git("show", f"{bad.ref}:run.json", cwd=repo))
    data["format"] = 99  # a run written by a newer version: its objects are unknown
    _replace_in_run(repo, bad.ref, "run.json", json.dumps(data))
    gx.ok("rm", gone.id)
    proc = gx("gc", "--grace", "0s")
    assert proc.returncode == 1
    assert f"m/{bad.id}" in proc.stderr and "99" in proc.stderr
    assert "no object was freed" in proc.stderr
    assert len(_cas_files(repo)) == 2
    gx.ok("rm", bad.id)
    assert "freed 2 object(s)" in gx.ok("gc", "--grace", "0s")
    assert _cas_files(repo) == []


def _replace_in_run(repo, ref, name, text):
    """A new commit on a run's ref with one top-level file replaced (plain git)."""
    blob = git("hash-object", "-w", "--stdin", cwd=repo, input=text).strip()
    lines = [
        f"100644 blob {blob}\t{name}" if ln.endswith(f"\t{name}") else ln
        for ln in git("ls-tree", ref, cwd=repo).splitlines()
    ]
    tree = git("mktree", cwd=repo, input="\n".join(lines) + "\n").strip()
    commit = git("commit-tree", tree, "-p", ref, "-m", "hostile edit", cwd=repo).strip()
    git("update-ref", ref, commit, cwd=repo)


WRITER = r"""
import os, gitexp
i = 0
while True:
    with open("a.bin", "wb") as f:
        f.write(os.urandom(20000))
    with gitexp.start_run(experiment="kill", params={"i": i}) as run:
        if i == 0:
            open("started", "w").close()
        for s in range(30):
            run.log_metrics({"x": float(s)}, step=s)
        run.log_artifact("a.bin")
        run.note(f"note {i}")
    i += 1
"""


@pytest.mark.slow
def test_sigkill_at_random_moments_never_leaves_a_ref_to_a_missing_object(repo, gx):
    (repo / "writer.py").write_text(WRITER)
    rng = random.Random(1234)
    for _ in range(15):
        (repo / "started").unlink(missing_ok=True)
        proc = subprocess.Popen([sys.executable, "writer.py"], cwd=repo)
        # the random moment counts from the first run's start, not from an
        # interpreter start that a loaded machine can stretch past it
        deadline = time.monotonic() + 60
        while not (repo / "started").exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.75))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        git("fsck", "--connectivity-only", cwd=repo)
    gx.ok("log")  # finalises the crashed runs
    proc = gx("fsck")
    assert proc.returncode == 0, proc.stdout
    gx.ok("gc", "--grace", "0s")  # leftovers of killed writes (temp and lock files) go
    fsck(repo)
    rows = json.loads(gx.ok("log", "--json", "-e", "kill"))
    assert rows and {r["status"] for r in rows} <= {"finished", "crashed"}


# ----------------------------------------------------------- fuzz target

_FILES = st.sampled_from(
    ["run.json", "params.json", "summary.json", "artifacts.json", "env.json", "code.json"]
)
_JSONISH = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda kids: (
        st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=6), kids, max_size=3)
    ),
    max_leaves=8,
)


@pytest.mark.slow
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    name=_FILES,
    content=st.one_of(
        st.binary(max_size=64),
        _JSONISH.map(lambda v: json.dumps(v).encode()),
        st.fixed_dictionaries(
            {},
            optional={
                k: _JSONISH
                for k in (
                    "metrics",
                    "final",
                    "status",
                    "tags",
                    "notes",
                    "command",
                    "path",
                    "blake3",
                    "size",
                    "kind",
                    "files",
                    "source",
                    "commit",
                    "format",
                )
            },
        ).map(lambda v: json.dumps(v).encode()),
        st.lists(
            st.fixed_dictionaries(
                {"path": st.text(max_size=8), "blake3": st.just("a" * 64), "size": _JSONISH},
                optional={"files": _JSONISH, "kind": _JSONISH, "role": _JSONISH, "mode": _JSONISH},
            ),
            max_size=2,
        ).map(lambda v: json.dumps(v).encode()),
    ),
)
def test_fuzz_run_tree_reader_fails_only_with_gitexp_errors(repo, name, content):
    """Whatever bytes a run tree holds, reading it raises a GitExpError or succeeds."""
    with ExpStore(repo) as store:
        base = parse_record(store.repo, *next(iter(_fuzz_base(store).items())))
        if name == "run.json" and isinstance(_maybe_json(content), dict):
            data = _maybe_json(content)
            data.setdefault("format", 1)
            content = json.dumps(data).encode()
        tree = store.repo.update_tree(base.tree, {name: content})
        commit = store.repo.write_commit(tree, [base.sha], "fuzz")
        try:
            rec = parse_record(store.repo, base.ref, commit)
            rec.summary.final_values()
            [a.to_json() for a in rec.artifacts]
        except GitExpError:
            pass


@pytest.mark.slow
@settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    cut=st.integers(0, 4000),
    flips=st.lists(st.tuples(st.integers(0, 4000), st.integers(1, 255)), max_size=4),
    junk=st.binary(max_size=32),
)
def test_fuzz_metric_segment_reader_fails_only_with_gitexp_errors(repo, cut, flips, junk):
    """A real metric segment truncated, with bytes flipped or junk appended: reading the
    run's metrics (and fsck) raises a GitExpError naming the segment, or succeeds."""
    with ExpStore(repo) as store:
        base = parse_record(store.repo, *next(iter(_fuzz_base(store).items())))
        raw = bytearray(store.repo.read_blob(base.segments[0][1]))
        for at, mask in flips:
            raw[at % len(raw)] ^= mask
        data = bytes(raw[: max(1, len(raw) - cut % len(raw))]) + junk
        tree = store.repo.update_tree(base.tree, {f"metrics/{base.segments[0][0]}": data})
        commit = store.repo.write_commit(tree, [base.sha], "fuzz")
        rec = parse_record(store.repo, base.ref, commit)
        try:
            table = store.read_metrics(rec)
            assert table.schema.names == ["key", "step", "value", "time"]
        except GitExpError as exc:
            assert "metrics/" in str(exc) and "\n" not in str(exc)


def _maybe_json(data: bytes):
    try:
        return json.loads(data)
    except ValueError:
        return None


def _fuzz_base(store):
    refs = store.list_refs("fuzz")
    if not refs:
        with gitexp.start_run(experiment="fuzz", repo=store.repo.work_tree) as run:
            for i in range(100):
                run.log_metrics({"x": float(i), "loss": 1.0 / (i + 1)}, step=i)
        refs = store.list_refs("fuzz")
    return refs


def test_gc_removes_stale_temporary_git_object_files_and_locks(repo, gx):
    """What a writer killed inside a loose-object or ref write leaves (and git's own
    tmp_obj_ files): removed once older than an hour, kept while young."""
    run = _run(repo)
    objects = repo / ".git" / "objects" / "ab"
    objects.mkdir(exist_ok=True)
    stale = [objects / "tmp_obj_Xy12ab", objects / ("cd" * 19 + ".lock")]
    ref_lock = repo / ".git" / "refs" / "experiments" / "m" / f"{run.id}.lock"
    stale.append(ref_lock)
    young = objects / "tmp_obj_young1"
    for p in [*stale, young]:
        p.write_bytes(b"partial")
    for p in stale:
        os.utime(p, (time.time() - 7200, time.time() - 7200))
    out = gx.ok("gc", "--no-pack")
    assert "removed 3 temporary file(s)" in out, out
    assert not any(p.exists() for p in stale) and young.exists()
    young.unlink()
    fsck(repo)
