"""Hostile and bad input: a clear message, a non-zero exit, nothing recorded is lost."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import shutil
import socket
import stat
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import gitexp
from conftest import fsck, git, make_repo
from gitexp.errors import (
    FormatError,
    IntegrityError,
    InvalidName,
    InvalidValue,
    StoreError,
    UnsupportedFormat,
    UsageError,
)
from gitexp.store import ExpStore


def one_line_error(proc: subprocess.CompletedProcess, code: int | None = None) -> str:
    assert proc.returncode != 0
    if code is not None:
        assert proc.returncode == code, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, proc.stderr
    return lines[0]


# ---------------------------------------------------------------- metrics


def test_nan_and_infinities_are_stored_and_shown_faithfully(repo, gx):
    with gitexp.start_run(experiment="odd", repo=repo) as run:
        run.log_metric("v", float("nan"))
        run.log_metric("v", float("inf"))
        run.log_metric("v", float("-inf"))
        run.log_metric("w", np.float32("nan"))
    with ExpStore(repo) as store:
        rec = store.read_settled(run.id)
        values = store.read_metrics(rec).column("value").to_pylist()
    assert math.isnan(values[0]) and values[1] == math.inf and values[2] == -math.inf
    shown = gx.ok("show", run.id)
    assert "-inf" in shown
    data = json.loads(gx.ok("show", run.id, "--json"))
    assert data["metrics"]["v"]["final"] == "-Infinity"
    assert json.loads(gx.ok("log", "--json"))[0]["metrics.w"] == "NaN"


def test_non_numeric_values_and_bad_keys_are_refused_without_losing_the_run(repo):
    run = gitexp.start_run(experiment="odd", repo=repo)
    run.log_metric("ok", 1.0)
    for bad in ("1.5", None, object(), b"x", [object()]):
        with pytest.raises(InvalidValue) as info:
            run.log_metric("loss", bad)
        assert "loss" in str(info.value)
    with pytest.raises(InvalidValue):
        run.log_metric("k" * 251, 1.0)
    with pytest.raises(InvalidValue):
        run.log_metric("bad\nkey", 1.0)
    with pytest.raises(InvalidValue):
        run.log_metric("step", 1.0, step=-1)
    run.finish()
    with ExpStore(repo) as store:
        rec = store.read_settled(run.id)
    assert rec.status == "finished" and rec.summary.metrics["ok"].count == 1


def test_steps_out_of_order_and_repeated_are_kept_as_logged(repo):
    with gitexp.start_run(experiment="odd", repo=repo) as run:
        for step in (5, 3, 3, 9, 0):
            run.log_metric("x", float(step), step=step)
    with ExpStore(repo) as store:
        table = store.read_metrics(store.read_settled(run.id))
    assert table.column("step").to_pylist() == [5, 3, 3, 9, 0]
    with ExpStore(repo) as store:
        assert store.read_settled(run.id).summary.metrics["x"].last == 0.0


@pytest.mark.slow
def test_ten_thousand_distinct_keys_in_one_run(repo, gx):
    with gitexp.start_run(experiment="wide", repo=repo) as run:
        run.log_metrics({f"layer{i}.grad_norm": float(i) for i in range(10_000)}, step=0)
    with ExpStore(repo) as store:
        assert len(store.read_settled(run.id).summary.metrics) == 10_000
    assert gx("show", run.id).returncode == 0


# ----------------------------------------------------------------- params


def test_params_of_many_kinds_are_stored_sensibly(repo):
    params = {
        "np_int": np.int64(3),
        "np_float": np.float32(0.5),
        "np_array": np.arange(3),
        "when": dt.date(2026, 11, 22),
        "path": Path("data/train"),
        "nested": {"opt": {"lr": 0.1, "betas": (0.9, 0.999)}},
        "nan": float("nan"),
    }
    with gitexp.start_run(experiment="params", repo=repo, params=params) as run:
        pass
    stored = json.loads(git("show", f"{run.ref}:params.json", cwd=repo))
    assert stored == {
        "np_int": 3,
        "np_float": 0.5,
        "np_array": [0, 1, 2],
        "when": "2026-11-22",
        "path": "data/train",
        "nested": {"opt": {"lr": 0.1, "betas": [0.9, 0.999]}},
        "nan": "NaN",
    }


def test_a_param_with_no_json_form_names_the_key(repo):
    with pytest.raises(InvalidValue) as info:
        gitexp.start_run(experiment="params", repo=repo, params={"model": {"net": object()}})
    assert "model.net" in str(info.value)
    assert git("for-each-ref", "refs/experiments/", cwd=repo) == ""


# ------------------------------------------------------------------ names

HOSTILE_NAMES = [
    "has space",
    "a..b",
    "tilde~",
    "caret^",
    "colon:",
    "q?",
    "star*",
    "br[",
    "back\\slash",
    "-leading",
    ".hidden",
    "x.lock",
    "ctrl\x01",
    "tab\tname",
    "x" * 201,
    "a//b",
    "/abs",
    "end/",
    "@",
    "a@{b",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_experiment_names_are_refused_by_the_api(repo, name):
    with pytest.raises(InvalidName):
        gitexp.start_run(experiment=name, repo=repo)


def test_hostile_experiment_names_are_refused_by_the_cli_with_one_line(repo, gx):
    for name in ("has space", "a..b", "-leading", "ctrl\x01x", "x" * 300):
        proc = gx("run", "-e", name, "--", sys.executable, "-c", "pass")
        assert "experiment name" in one_line_error(proc, 2)
    assert git("for-each-ref", "refs/experiments/", cwd=repo) == ""
    assert not (repo / ".git" / "exp" / "objects").exists()


def test_unicode_names_work_end_to_end(repo, gx):
    with gitexp.start_run(experiment="实验/変数", name="ünïcødé run ✓", repo=repo) as run:
        run.log_metric("точность", 0.5)
    out = json.loads(gx.ok("log", "--json", "-e", "实验"))
    assert out[0]["name"] == "ünïcødé run ✓" and out[0]["metrics.точность"] == 0.5
    fsck(repo)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.text(min_size=1, max_size=40))
def test_any_experiment_name_is_either_refused_or_a_valid_git_ref(tmp_path_factory, name):
    from gitexp.records import ExpRef, new_run_id, validate_experiment

    try:
        validate_experiment(name)
    except InvalidName:
        return
    ref = str(ExpRef(name, new_run_id()))
    proc = subprocess.run(["git", "check-ref-format", ref], capture_output=True)
    assert proc.returncode == 0, ref


# -------------------------------------------------------------- artifacts


def test_artifact_names_that_escape_are_refused(repo):
    (repo / "m.bin").write_bytes(b"x")
    with gitexp.start_run(experiment="art", repo=repo) as run:
        for bad in ("/etc/passwd", "../x", "a/../../x", "", "."):
            with pytest.raises(InvalidName):
                run.log_artifact(repo / "m.bin", name=bad)
        run.log_artifact(repo / "m.bin", name="./sub//m.bin")
    with ExpStore(repo) as store:
        assert [a.path for a in store.read_settled(run.id).artifacts] == ["sub/m.bin"]


def test_symlinks_out_of_a_directory_are_not_followed_and_fifos_are_skipped(repo, tmp_path):
    outside = tmp_path / "secret.txt"
    outside.write_text("do not copy")
    d = repo / "out"
    d.mkdir()
    (d / "weights.bin").write_bytes(b"w" * 100)
    (d / "inside-link").symlink_to("weights.bin")
    (d / "escape").symlink_to(outside)
    os.mkfifo(d / "pipe")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(d / "sock"))
    if os.geteuid() == 0:  # a character device, as /dev/null is
        os.mknod(d / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    try:
        with (
            gitexp.start_run(experiment="art", repo=repo) as run,
            pytest.warns(gitexp.GitExpWarning),
        ):
            entry = run.log_artifact(d)
            for special in ("pipe", "sock", "null", "escape"):
                if (d / special).exists() or special == "escape":
                    assert any(w.startswith(special) for w in run.warnings), run.warnings
            with pytest.raises(UsageError):  # one named directly is refused, not read
                run.log_artifact(d / "pipe")
    finally:
        sock.close()
    assert entry.kind == "dir" and entry.files == 2
    from gitexp.cas import parse_dir_listing

    with ExpStore(repo) as store:
        listing = parse_dir_listing(store.cas.get_bytes(entry.blake3))
        assert [p for p, *_ in listing] == ["inside-link", "weights.bin"]
        for key in store.cas.iter_keys():
            assert store.cas.get_bytes(key) != b"do not copy"


def test_a_file_that_changes_while_it_is_hashed_is_detected(repo):
    big = repo / "growing.bin"
    big.write_bytes(os.urandom(1 << 20) * 48)
    stop = threading.Event()

    def grow():
        with open(big, "ab") as f:
            while not stop.is_set():
                f.write(b"more")
                f.flush()

    run = gitexp.start_run(experiment="art", repo=repo)
    t = threading.Thread(target=grow)
    t.start()
    try:
        with pytest.raises(StoreError) as info:
            for _ in range(5):
                run.log_artifact(big)
        assert "changed while" in str(info.value)
    finally:
        stop.set()
        t.join()
    run.finish()


# ---------------------------------------------------------- damaged data


def _run_with_artifact(repo):
    (repo / "m.bin").write_bytes(b"model bytes")
    with gitexp.start_run(experiment="dmg", repo=repo) as run:
        run.log_metric("loss", 0.5)
        run.log_artifact(repo / "m.bin")
    return run


def _rewrite_file_in_run(repo, ref, path, data: bytes):
    """Replace one file of a run's tree using plain git plumbing (a hostile edit)."""
    blob = (
        subprocess.run(
            ["git", "hash-object", "-w", "--stdin"],
            cwd=repo,
            input=data,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip()
    )
    env = {**os.environ, "GIT_INDEX_FILE": str(repo / ".git" / "hostile-index")}
    subprocess.run(["git", "read-tree", ref], cwd=repo, env=env, check=True)
    subprocess.run(
        ["git", "update-index", "--cacheinfo", f"100644,{blob},{path}"],
        cwd=repo,
        env=env,
        check=True,
    )
    tree = subprocess.run(
        ["git", "write-tree"], cwd=repo, env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
    commit = git("commit-tree", tree, "-p", ref, "-m", "hostile edit", cwd=repo).strip()
    git("update-ref", ref, commit, cwd=repo)
    os.unlink(repo / ".git" / "hostile-index")


def test_a_run_tree_that_does_not_parse_is_reported_not_fatal(repo, gx):
    good = _run_with_artifact(repo)
    bad = _run_with_artifact(repo)
    _rewrite_file_in_run(repo, bad.ref, "run.json", b"{not json")
    line = one_line_error(gx("show", bad.id), 6)
    assert "run.json" in line
    proc = gx("log", "--json")
    assert proc.returncode == 0
    assert [r["id"] for r in json.loads(proc.stdout)] == [good.id]
    assert bad.id in proc.stderr
    fsck_out = gx("fsck")
    assert fsck_out.returncode == 1 and "BROKEN" in fsck_out.stdout


def test_a_manifest_that_does_not_parse_is_refused(repo, gx):
    run = _run_with_artifact(repo)
    _rewrite_file_in_run(
        repo,
        run.ref,
        "artifacts.json",
        json.dumps([{"path": "../../x", "blake3": "0" * 64, "size": 1}]).encode(),
    )
    assert "'..'" in one_line_error(gx("show", run.id), 6)


def test_unknown_format_version_is_refused_naming_it(repo, gx):
    run = _run_with_artifact(repo)
    data = json.loads(git("show", f"{run.ref}:run.json", cwd=repo))
    data["format"] = 99
    _rewrite_file_in_run(repo, run.ref, "run.json", json.dumps(data).encode())
    line = one_line_error(gx("show", run.id), 6)
    assert "99" in line and "version" in line
    with ExpStore(repo) as store, pytest.raises(UnsupportedFormat) as info:
        store.read_settled(run.id)
    assert info.value.version == 99


def test_a_truncated_metric_segment_is_reported(repo, gx):
    run = _run_with_artifact(repo)
    seg = git("ls-tree", "--name-only", f"{run.ref}:metrics", cwd=repo).split()[0]
    raw = subprocess.run(
        ["git", "cat-file", "blob", f"{run.ref}:metrics/{seg}"],
        cwd=repo,
        capture_output=True,
        check=True,
    ).stdout
    _rewrite_file_in_run(repo, run.ref, f"metrics/{seg}", raw[: len(raw) // 2])
    assert "truncated" in one_line_error(gx("show", run.id), 6)
    with ExpStore(repo) as store, pytest.raises(FormatError):
        store.read_metrics(store.read_settled(run.id))
    assert gx("fsck").returncode == 1


def test_a_damaged_cas_object_is_refused_on_restore_and_reported_by_fsck(repo, gx, tmp_path):
    run = _run_with_artifact(repo)
    with ExpStore(repo) as store:
        entry = next(a for a in store.read_settled(run.id).artifacts if a.path == "m.bin")
        path = store.cas.path_for(entry.blake3)
        os.chmod(path, 0o644)
        Path(path).write_bytes(b"tampered bytes")
        dest = tmp_path / "restored.bin"
        with pytest.raises(IntegrityError):
            store.cas.restore(entry.blake3, dest)
        assert not dest.exists()
    proc = gx("fsck", "--json")
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert "damaged" in report[0]["problems"][0]


# ------------------------------------------------------------ repositories


def test_git_exp_run_in_a_bare_repository(tmp_path, gx):
    src = make_repo(tmp_path / "src")
    bare = tmp_path / "bare.git"
    git("clone", "-q", "--bare", str(src), str(bare))
    gx.ok("run", "-e", "bare", "--", sys.executable, "-c", "print('in bare')", cwd=bare)
    (row,) = json.loads(gx.ok("log", "--json", cwd=bare))
    assert row["status"] == "finished"
    assert git("for-each-ref", "refs/heads/", cwd=bare) == git(
        "for-each-ref", "refs/heads/", cwd=src
    )
    fsck(bare)


def test_hostile_run_addresses_are_one_line_errors(repo, gx):
    _run_with_artifact(repo)
    for address in (
        "..",
        "../../HEAD",
        "refs/experiments/../../HEAD",
        "-x",
        "~^:?*[",
        "a\x01b",
        "@{-1}",
        "HEAD",
        "x" * 5000,
        "refs/heads/main",
    ):
        line = one_line_error(gx("show", "--", address), 4)
        assert len(line) < 400, line


def test_bare_repository(tmp_path, gx):
    src = make_repo(tmp_path / "src")
    bare = tmp_path / "bare.git"
    git("clone", "-q", "--bare", str(src), str(bare))
    with gitexp.start_run(experiment="bare", repo=bare) as run:
        run.log_metric("x", 1.0)
    assert gx.ok("log", cwd=bare).count("bare") == 1
    with ExpStore(bare) as store:
        rec = store.read_settled(run.id)
    assert (
        rec.code["dirty"] is False
        and rec.code["commit"] == git("rev-parse", "HEAD", cwd=bare).strip()
    )
    fsck(bare)


def test_shallow_detached_and_packed_refs(tmp_path, gx):
    src = make_repo(tmp_path / "src")
    (src / "b.txt").write_text("two\n")
    git("add", ".", cwd=src)
    git("commit", "-qm", "second", cwd=src)
    shallow = tmp_path / "shallow"
    git("clone", "-q", "--depth", "1", f"file://{src}", str(shallow))
    git("checkout", "-q", "--detach", "HEAD", cwd=shallow)
    proc = gx("run", "-e", "sh", "--", sys.executable, "-c", "print(1)", cwd=shallow)
    assert proc.returncode == 0, proc.stderr
    git("pack-refs", "--all", cwd=shallow)
    run_id = json.loads(gx.ok("log", "--json", cwd=shallow))[0]["id"]
    gx.ok("tag", run_id, "after-pack", cwd=shallow)
    rec = json.loads(gx.ok("show", run_id, "--json", cwd=shallow))
    assert rec["code"]["branch"] is None and "after-pack" in rec["info"]["tags"]
    fsck(shallow)


def test_writing_while_git_gc_runs(repo):
    stop = threading.Event()

    def gc_loop():
        while not stop.is_set():
            # plain `git gc` (unreachable objects expire after two weeks): what users and
            # `gc --auto` run. `--prune=now` next to a writer is unsafe for git itself.
            subprocess.run(["git", "gc", "-q"], cwd=repo, capture_output=True)
            subprocess.run(["git", "repack", "-a", "-d", "-q"], cwd=repo, capture_output=True)

    t = threading.Thread(target=gc_loop)
    t.start()
    try:
        ids = []
        for i in range(15):
            with gitexp.start_run(experiment="gc", repo=repo, params={"i": i}) as run:
                run.log_metrics({"x": float(i)}, step=0)
            ids.append(run.id)
    finally:
        stop.set()
        t.join()
    with ExpStore(repo) as store:
        assert sorted(r.run_id for r in store.iter_records("gc")) == sorted(ids)
    fsck(repo)


def _mount_or_skip(args: list[str]) -> None:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("needs root to mount a filesystem")
    proc = subprocess.run(["mount", *args], capture_output=True)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount here: {proc.stderr.decode().strip()}")


@pytest.mark.slow
def test_read_only_repository(tmp_path, gx):
    src = make_repo(tmp_path / "src")
    gx.ok("run", "-e", "ro", "--", sys.executable, "-c", "print(1)", cwd=src)
    ro = tmp_path / "ro"
    ro.mkdir()
    _mount_or_skip(["--bind", str(src), str(ro)])
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(ro)], check=True)
        assert len(json.loads(gx.ok("log", "--json", cwd=ro))) == 1  # reading works
        proc = gx("run", "-e", "ro", "--", sys.executable, "-c", "print(1)", cwd=ro)
        assert "Read-only" in one_line_error(proc)
    finally:
        subprocess.run(["umount", str(ro)])
    assert len(json.loads(gx.ok("log", "--json", cwd=src))) == 1
    fsck(src)


def test_full_disk_leaves_no_partial_object_and_loses_nothing(tmp_path, gx):
    mnt = tmp_path / "small"
    mnt.mkdir()
    _mount_or_skip(["-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)])
    try:
        repo = make_repo(mnt / "project")
        with gitexp.start_run(experiment="full", repo=repo) as first:
            first.log_metric("x", 1.0)
        big = tmp_path / "big.bin"  # outside the small filesystem
        big.write_bytes(os.urandom(4 << 20))
        run = gitexp.start_run(experiment="full", repo=repo)
        with pytest.raises(StoreError) as info:
            run.log_artifact(big)
        assert "No space left" in str(info.value)
        run.log_metric("y", 2.0)
        run.finish()
        objects = repo / ".git" / "exp" / "objects"
        for p in objects.rglob("*") if objects.exists() else []:
            assert p.is_dir() or p.stat().st_size < (4 << 20)
        tmp = repo / ".git" / "exp" / "tmp"
        assert not tmp.exists() or not any(tmp.iterdir())
        rows = json.loads(gx.ok("log", "--json", cwd=repo))
        assert {r["id"] for r in rows} == {first.id, run.id}
        fsck(repo)
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


def _fill(path: Path) -> None:
    """Write zeros to ``path`` until the filesystem holding it is full."""
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == 28, exc


def _leftovers(repo: Path) -> list[str]:
    """Partial objects, lock and temporary files a failed write must not leave."""
    out = []
    for top in (repo / ".git" / "objects", repo / ".git" / "refs", repo / ".git" / "exp"):
        for p in top.rglob("*"):
            if p.name.endswith(".lock") or p.name.startswith("tmp_obj_") or ".tmp" in p.name:
                out.append(str(p.relative_to(repo)))
    return out


def test_full_disk_while_writing_git_objects_and_refs(tmp_path, gx):
    """Checkpoint, finish, a new run and a tag edit on a full disk: each fails with one
    line ("No space left on device"), leaves no partial object, lock or temporary file,
    and once there is room again the open run finishes with everything logged."""
    mnt = tmp_path / "small"
    mnt.mkdir()
    _mount_or_skip(["-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mnt)])
    try:
        repo = make_repo(mnt / "project")
        run = gitexp.start_run(experiment="full", repo=repo, params={"lr": 0.1})
        run.log_metric("loss", 1.0, step=0)
        run.checkpoint()
        tip = run.sha
        filler = mnt / "filler"
        _fill(filler)
        for step in range(1, 400):  # in memory: logging never fails
            run.log_metrics({f"m{k}": float(step) for k in range(20)}, step=step)
        with pytest.raises(StoreError) as info:
            run.log_param("late", 1)  # durable when it returns, so it cannot return
        assert "No space left" in str(info.value)
        for action in (run.checkpoint, run.finish):
            with pytest.raises(StoreError) as info:
                action()
            assert "No space left" in str(info.value)
        with pytest.raises(StoreError):
            gitexp.start_run(experiment="full", repo=repo)
        assert "No space left" in one_line_error(gx("tag", run.id, "x", cwd=repo))
        assert _leftovers(repo) == []
        assert run.sha == tip  # the ref did not move, and still reads
        fsck(repo)
        filler.unlink()
        run.finish()
        with ExpStore(repo) as store:
            rec = store.read_settled(run.id)
            table = store.read_metrics(rec)
        assert rec.status == "finished" and rec.params == {"lr": 0.1, "late": 1}
        assert table.num_rows == 1 + 399 * 20
        assert rec.summary.metrics["m19"].last == 399.0
        assert _leftovers(repo) == []
        fsck(repo)
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


BAD = os.fsdecode(b"\xff")  # bytes that are not UTF-8, as Python hands them to a script


@pytest.mark.slow
def test_text_that_is_not_unicode_is_refused_naming_it_and_the_run_goes_on(repo, gx):
    """Undecodable bytes (a file name, an argument) in a param, key, tag, note or name:
    refused at the call with one line; a file with such a name in an artifact directory
    is skipped with a warning; a command line with them is recorded exactly."""
    for bad in ({"p": BAD}, {f"k{BAD}": 1}, {"a": {BAD: 1}}):
        with pytest.raises(InvalidValue) as info:
            gitexp.start_run(experiment="u", repo=repo, params=bad)
        assert "not valid Unicode" in str(info.value)
    with pytest.raises(InvalidName):
        gitexp.start_run(experiment="u", repo=repo, name=f"n{BAD}")
    assert git("for-each-ref", "refs/experiments/", cwd=repo) == ""
    run = gitexp.start_run(experiment="u", repo=repo)
    run.log_metric("ok", 1.0)
    for call in (
        lambda: run.log_metric(f"loss{BAD}", 1.0),
        lambda: run.log_param("x", BAD),
        lambda: run.set_tags(f"t{BAD}"),
        lambda: run.note(f"n{BAD}"),
    ):
        with pytest.raises((InvalidValue, InvalidName)):
            call()
    d = repo / "out"
    d.mkdir()
    (d / "w.bin").write_bytes(b"w")
    (d / os.fsdecode(b"bad\xff.bin")).write_bytes(b"x")
    with pytest.warns(gitexp.GitExpWarning, match="not valid UTF-8"):
        entry = run.log_artifact(d)
    assert entry.files == 1
    run.finish()
    assert one_line_error(gx("tag", run.id, f"t{BAD}"), 2)
    assert one_line_error(gx("note", run.id, f"n{BAD}"), 2)
    assert "not valid Unicode" in one_line_error(gx("run", "-p", f"a={BAD}", "--", "true"), 2)
    gx.ok("run", "-e", "u", "--", "true", BAD)
    with ExpStore(repo) as store:
        recs = {r.run_id: r for r in store.iter_records("u")}
    assert recs[run.id].status == "finished" and recs[run.id].summary.metrics["ok"].count == 1
    (replay,) = set(recs) - {run.id}
    assert recs[replay].info["command"] == ["true", BAD]
    shown = subprocess.run(["git", "exp", "show", replay], cwd=repo, capture_output=True)
    assert shown.returncode == 0 and b"true \xff" in shown.stdout  # the bytes, as ls does
    assert len(json.loads(gx.ok("log", "--json", "-e", "u"))) == 2
    fsck(repo)


def test_a_tree_from_elsewhere_with_undecodable_text_is_skipped_not_fatal(repo, gx):
    good = _run_with_artifact(repo)
    bad = _run_with_artifact(repo)
    _rewrite_file_in_run(repo, bad.ref, "params.json", b'{"lr": "\\udcff"}\n')
    proc = gx("log", "--json")
    assert proc.returncode == 0 and bad.id in proc.stderr
    assert [r["id"] for r in json.loads(proc.stdout)] == [good.id]
    assert "not valid Unicode" in one_line_error(gx("show", bad.id), 6)
    assert gx("fsck").returncode == 1
