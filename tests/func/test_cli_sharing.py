"""Sharing runs through real git remotes and artifact stores on 127.0.0.1.

Every scenario goes through the ``git exp`` command as a user runs it, and
ends with ``git fsck --strict`` on both sides.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from conftest import GitExp, fsck, git, make_repo
from servers import S3_ENV, bare

MAKE_RUN = """\
import os, sys
import gitexp
experiment = sys.argv[1]
for seed in sys.argv[2:]:
    os.makedirs("ckpt", exist_ok=True)
    with open("model.bin", "wb") as f:
        f.write(("model " + seed).encode() * 100)
    for i in range(3):
        with open(f"ckpt/part{i}.bin", "wb") as f:
            f.write(f"{seed}-{i}".encode() * 50)
    with gitexp.start_run(experiment=experiment, params={"seed": int(seed)}) as run:
        run.log_metrics({"loss": 1.0 / (1 + int(seed))}, step=0)
        run.log_artifact("model.bin")
        run.log_artifact("ckpt")
"""
# Objects per run: model.bin, the ckpt listing and its three files.
OBJECTS_PER_RUN = 5


def project(path: Path) -> Path:
    make_repo(path)
    (path / "make_run.py").write_text(MAKE_RUN)
    (path / ".gitignore").write_text("*.npz\nmodel.bin\nckpt/\n")
    git("add", ".", cwd=path)
    git("commit", "-q", "-m", "add make_run", cwd=path)
    return path


def new_runs(cwd: Path, *seeds: int, experiment: str = "share") -> list[str]:
    """Record one run per seed (one Python process for all); their refs, in seed order."""
    before = set(run_refs(cwd))
    subprocess.run(
        ["python", "make_run.py", experiment, *map(str, seeds)],
        cwd=cwd,
        check=True,
        capture_output=True,
    )
    by_seed = {}
    for ref in set(run_refs(cwd)) - before:
        by_seed[json.loads(git("show", f"{ref}:params.json", cwd=cwd))["seed"]] = ref
    return [by_seed[s] for s in seeds]


def new_run(gx: GitExp, cwd: Path, seed: int, experiment: str = "share") -> str:
    """Record one run through ``git exp run``, as a user does."""
    before = set(run_refs(cwd))
    gx.ok(
        "run",
        "-q",
        "-e",
        experiment,
        "-p",
        f"seed={seed}",
        "--",
        "python",
        "make_run.py",
        experiment,
        str(seed),
        cwd=cwd,
    )
    (ref,) = set(run_refs(cwd)) - before
    return ref


def run_refs(cwd: Path) -> dict[str, str]:
    out = git("for-each-ref", "--format=%(refname) %(objectname)", "refs/experiments/", cwd=cwd)
    return dict(line.split() for line in out.splitlines())


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def clone(src: str, dest: Path, env: dict[str, str] | None = None) -> Path:
    dest.parent.mkdir(parents=True, exist_ok=True)
    git("clone", "-q", src, str(dest), cwd=dest.parent, env=env)
    return dest


@pytest.fixture
def proj(tmp_path, monkeypatch) -> Path:
    path = project(tmp_path / "alice")
    monkeypatch.chdir(path)
    return path


@pytest.fixture
def gx(proj) -> GitExp:
    return GitExp(proj)


def share_light(
    gx: GitExp,
    proj: Path,
    url: str,
    remote_dir: Path,
    tmp: Path,
    env: dict[str, str] | None = None,
    store: bool = False,
) -> None:
    """Push one run to ``url``, pull it into a plain ``git clone``, restore its artifact."""
    env = env or {}
    git("remote", "add", "origin", url, cwd=proj)
    if store:
        git("config", "remote.origin.expstore", str(tmp / "store"), cwd=proj)
    (run,) = new_runs(proj, 1)
    out = gx.ok("push", env=env)
    assert "1 new" in out and "uploaded 5 object(s)" in out, out
    assert "nothing to upload" in gx.ok("push", env=env)
    # no branch was pushed: the code commit the run points at travelled with it
    code = git("rev-parse", "HEAD", cwd=proj).strip()
    assert git("branch", "--list", cwd=remote_dir) == ""
    assert git("cat-file", "-t", code, cwd=remote_dir).strip() == "commit"
    assert run.rsplit("/", 1)[1] in gx.ok("ls-remote", env=env)
    bob = clone(str(remote_dir), tmp / "bob")
    git("remote", "set-url", "origin", url, cwd=bob)
    if store:
        git("config", "remote.origin.expstore", str(tmp / "store"), cwd=bob)
    bx = GitExp(bob)
    assert "downloaded 5 object(s)" in bx.ok("pull", env=env)
    assert run_refs(bob) == run_refs(proj) == run_refs(remote_dir)
    bx.ok("get", run, "ckpt/part1.bin", "-o", str(tmp / "p1"))
    assert (tmp / "p1").read_bytes() == b"1-1" * 50
    fsck(proj)
    fsck(remote_dir)
    fsck(bob)


def share_and_check(
    gx: GitExp,
    proj: Path,
    url: str,
    remote_dir: Path,
    tmp: Path,
    env: dict[str, str] | None = None,
    store: bool = False,
) -> None:
    """Push two runs to ``url``, pull them into a plain ``git clone``, and check them."""
    env = env or {}
    git("remote", "add", "origin", url, cwd=proj)
    if store:  # a shared directory as the artifact store, configured in both clones
        git("config", "remote.origin.expstore", str(tmp / "store"), cwd=proj)
    git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=proj, env=env)
    a = new_run(gx, proj, 1)
    b = new_run(gx, proj, 2)
    out = gx.ok("push", env=env)
    assert "new" in out and "2 new" in out, out
    assert "uploaded" in out
    again = gx.ok("push", env=env)
    assert "2 up to date" in again and "nothing to upload" in again, again
    assert run_refs(remote_dir) == run_refs(proj)
    listed = gx.ok("ls-remote", env=env)
    assert a.rsplit("/", 1)[1] in listed and "same" in listed

    bob = clone(url, tmp / "bob", env=env)
    if store:
        git("config", "remote.origin.expstore", str(tmp / "store"), cwd=bob)
    bx = GitExp(bob)
    pulled = bx.ok("pull", env=env)
    assert "2 new" in pulled, pulled
    assert run_refs(bob) == run_refs(proj)
    board = json.loads(bx.ok("log", "--json"))
    assert {r["ref"] for r in board} == {a, b}
    shown = json.loads(bx.ok("show", a.rsplit("/", 1)[1], "--json"))
    assert shown["params"] == {"seed": 1}
    diff = json.loads(bx.ok("diff", a, b, "--json"))
    assert diff["params"][0]["key"] == "seed"
    # artifacts arrived and restore byte for byte, verified
    bx.ok("get", a, "model.bin", "-o", str(tmp / "model-a.bin"))
    assert digest(tmp / "model-a.bin") == hashlib.sha256(b"model 1" * 100).hexdigest()
    bx.ok("get", b, "ckpt", "-o", str(tmp / "ckpt-b"))
    assert sorted(os.listdir(tmp / "ckpt-b")) == ["part0.bin", "part1.bin", "part2.bin"]
    assert (tmp / "ckpt-b" / "part2.bin").read_bytes() == b"2-2" * 50
    fsck(proj)
    fsck(remote_dir)
    fsck(bob)


# ------------------------------------------------------------- transports


@pytest.mark.slow
def test_bare_repo_by_path_shares_runs_and_artifacts(gx, proj, tmp_path):
    remote = bare(tmp_path, "shared.git")
    share_and_check(gx, proj, str(remote), remote, tmp_path)
    # zero-config store: inside the shared bare repository
    assert any((remote / "exp" / "objects").iterdir())


@pytest.mark.slow
def test_file_url(gx, proj, tmp_path):
    remote = bare(tmp_path, "shared.git")
    share_light(gx, proj, f"file://{remote}", remote, tmp_path)


@pytest.mark.slow
def test_git_daemon(gx, proj, tmp_path, git_daemon):
    remote = bare(git_daemon.base, "daemon-share.git")
    share_light(gx, proj, git_daemon.url("daemon-share.git"), remote, tmp_path, store=True)


@pytest.mark.slow
def test_smart_http(gx, proj, tmp_path, git_http):
    remote = bare(git_http.base, "http-share.git")
    share_and_check(gx, proj, git_http.url("http-share.git"), remote, tmp_path, store=True)


@pytest.mark.slow
def test_ssh(gx, proj, tmp_path, sshd):
    remote = bare(sshd.base, "ssh-share.git")
    env = {"GIT_SSH_COMMAND": sshd.command}
    share_light(gx, proj, sshd.url("ssh-share.git"), remote, tmp_path, env=env, store=True)
    # the scp-like form (the port then comes from the ssh command, as for git)
    scp = f"root@127.0.0.1:{remote}"
    env = {"GIT_SSH_COMMAND": f"{sshd.command} -p {sshd.port}"}
    assert "same" in gx.ok("ls-remote", scp, env=env)
    (run,) = new_runs(proj, 2)
    assert "1 new" in gx.ok("push", scp, env=env)
    assert run in run_refs(remote)


@pytest.mark.slow
def test_s3_artifact_store(gx, proj, tmp_path, s3):
    s3.make_bucket("gitexp-artifacts")
    remote = bare(tmp_path, "shared.git")
    git("remote", "add", "origin", str(remote), cwd=proj)
    store_url = s3.url("gitexp-artifacts", "team")
    git("config", "remote.origin.expstore", store_url, cwd=proj)
    (run,) = new_runs(proj, 3)
    proc = gx("push")
    out = proc.stdout
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr  # no noise at exit either
    assert "uploaded 5 object(s)" in out, out  # model, listing, 3 parts
    assert "nothing to upload" in gx.ok("push")
    bob = clone(str(remote), tmp_path / "bob")
    git("config", "remote.origin.expstore", store_url, cwd=bob)
    bx = GitExp(bob)
    assert "downloaded 5 object(s)" in bx.ok("pull")
    bx.ok("get", run, "model.bin", "-o", str(tmp_path / "m.bin"))
    assert (tmp_path / "m.bin").read_bytes() == b"model 3" * 100
    fsck(bob)
    fsck(remote)
    # the endpoint from the usual AWS setting instead of the URL
    carol = clone(str(remote), tmp_path / "carol")
    git("config", "remote.origin.expstore", "s3://gitexp-artifacts/team", cwd=carol)
    out = GitExp(carol).ok("pull", env={"AWS_ENDPOINT_URL": f"http://{s3.endpoint}"})
    assert "downloaded 5 object(s)" in out, out


@pytest.mark.slow
@pytest.mark.parametrize("form", ["path", "file-url", "relative"])
def test_store_url_forms(gx, proj, tmp_path, git_http, form):
    """remote.<name>.expstore as a path, a file:// URL, or a path relative to the work tree."""
    remote = bare(git_http.base, f"store-{form}.git")
    shared = tmp_path / "team-store"
    url = {"path": str(shared), "file-url": f"file://{shared}", "relative": "../team-store"}
    git("remote", "add", "origin", git_http.url(remote.name), cwd=proj)
    git("config", "remote.origin.expstore", url[form], cwd=proj)
    (run,) = new_runs(proj, 15)
    assert "uploaded 5 object(s)" in gx.ok("push")
    assert len([p for p in (shared / "objects").rglob("*") if p.is_file()]) == OBJECTS_PER_RUN
    bob = clone(git_http.url(remote.name), tmp_path / "bob")
    git("config", "remote.origin.expstore", url[form], cwd=bob)
    bx = GitExp(bob)
    assert "downloaded 5 object(s)" in bx.ok("pull")
    bx.ok("get", run, "model.bin", "-o", str(tmp_path / "m.bin"))
    assert (tmp_path / "m.bin").read_bytes() == b"model 15" * 100
    fsck(bob)


@pytest.mark.slow
def test_ls_remote_downloads_nothing(tmp_path, git_http):
    remote = bare(git_http.base, "ls.git")
    url = git_http.url("ls.git")
    alice = project(tmp_path / "alice")
    git("remote", "add", "origin", url, cwd=alice)
    git("config", "remote.origin.expstore", str(tmp_path / "store"), cwd=alice)
    git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=alice)
    bob = clone(url, tmp_path / "bob")
    (run,) = new_runs(alice, 16)
    GitExp(alice).ok("push")

    def objects() -> list[str]:
        return sorted(str(p) for p in (bob / ".git" / "objects").rglob("*"))

    before = objects()
    bx = GitExp(bob)
    listed = json.loads(bx.ok("ls-remote", "--json"))
    assert [(r["ref"], r["local"]) for r in listed] == [(run, "absent")]
    assert listed[0]["sha"] == run_refs(remote)[run]
    assert objects() == before and run_refs(bob) == {}
    assert not (bob / ".git" / "exp").exists()
    bx.ok("fetch")
    assert json.loads(bx.ok("ls-remote", "--json"))[0]["local"] == "same"
    fsck(bob)


@pytest.mark.slow
def test_remote_without_store_says_artifacts_stay_local(gx, proj, tmp_path, git_daemon):
    remote = bare(git_daemon.base, "nostore.git")
    git("remote", "add", "origin", git_daemon.url("nostore.git"), cwd=proj)
    new_runs(proj, 4)
    proc = gx("push")
    assert proc.returncode == 0, proc.stderr
    assert "artifacts stay local" in proc.stderr
    assert "git config remote.origin.expstore" in proc.stderr
    assert len(run_refs(remote)) == 1
    fsck(remote)
    fsck(proj)


def test_expstore_none_keeps_artifacts_out_of_a_local_remote(gx, proj, tmp_path):
    """`remote.<name>.expstore none`: the runs go, the artifacts stay here, even
    for a remote on a local path (whose store would otherwise be inside it)."""
    remote = bare(tmp_path, "runs-only.git")
    git("remote", "add", "origin", str(remote), cwd=proj)
    git("config", "remote.origin.expstore", "none", cwd=proj)
    (run,) = new_runs(proj, 4)
    proc = gx("push")
    assert proc.returncode == 0, proc.stderr
    assert "artifacts stay local" in proc.stderr
    assert list(run_refs(remote)) == [run]
    assert not (remote / "exp").exists()
    git("config", "remote.origin.expstore", "NONE ", cwd=proj)  # any case, spaces around
    (second,) = new_runs(proj, 5)
    proc = gx("push")
    assert "artifacts stay local" in proc.stderr and second in run_refs(remote)
    assert "has no artifact store" in gx.ok("push")  # nothing new: said, not warned
    assert not (remote / "exp").exists()
    fsck(remote)


# ----------------------------------------------------------- plain git


@pytest.mark.slow
def test_plain_git_teammate_reads_runs(gx, proj, tmp_path):
    remote = bare(tmp_path, "shared.git")
    git("remote", "add", "origin", str(remote), cwd=proj)
    git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=proj)
    (run,) = new_runs(proj, 5)
    gx.ok("push", "origin", "-e", "share")
    carol = clone(str(remote), tmp_path / "carol")
    git("fetch", "-q", "origin", "refs/experiments/*:refs/experiments/*", cwd=carol)
    assert json.loads(git("show", f"{run}:params.json", cwd=carol)) == {"seed": 5}
    # the same clone can then use git exp on what plain git fetched
    cx = GitExp(carol)
    assert run.rsplit("/", 1)[1] in cx.ok("log")
    assert "1 up to date" in cx.ok("pull")
    cx.ok("get", run, "ckpt/part1.bin", "-o", str(tmp_path / "p1"))
    assert (tmp_path / "p1").read_bytes() == b"5-1" * 50
    fsck(carol)


# ------------------------------------------------------------ failures


@pytest.mark.slow
def test_push_killed_half_way_leaves_remote_consistent(gx, proj, tmp_path, git_http):
    remote = bare(git_http.base, "killed.git")
    git("remote", "add", "origin", git_http.url("killed.git"), cwd=proj)
    git("config", "remote.origin.expstore", str(tmp_path / "store"), cwd=proj)
    # a big code commit makes a pack the client is still sending when it dies
    (proj / "weights.init").write_bytes(os.urandom(12 << 20))
    git("add", "weights.init", cwd=proj)
    git("commit", "-q", "-m", "initial weights", cwd=proj)
    new_runs(proj, 6)
    git_http.arrived.clear()
    git_http.release.clear()
    git_http.hold.set()
    proc = subprocess.Popen(
        ["git-exp", "push"], cwd=proj, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    try:
        assert git_http.arrived.wait(30), "the push never reached receive-pack"
        # artifacts went first: they are all there, and no ref points anywhere yet
        assert len(list((tmp_path / "store" / "objects").rglob("*"))) > 0
        time.sleep(0.3)  # let the client fill the socket with part of the pack
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
    finally:
        git_http.hold.clear()
        git_http.release.set()
    time.sleep(0.2)
    assert run_refs(remote) == {}
    fsck(remote)
    out = gx.ok("push")
    assert "1 new" in out and "nothing to upload" in out, out
    assert run_refs(remote) == run_refs(proj)
    fsck(remote)
    fsck(proj)


@pytest.mark.slow
def test_concurrent_pushes_from_two_clones_both_land(tmp_path, git_daemon, monkeypatch):
    remote = bare(git_daemon.base, "concurrent.git")
    url = git_daemon.url("concurrent.git")
    alice = project(tmp_path / "alice")
    git("remote", "add", "origin", url, cwd=alice)
    git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=alice)
    bob = clone(url, tmp_path / "bob")
    store = str(tmp_path / "store")
    for who in (alice, bob):
        git("config", "remote.origin.expstore", store, cwd=who)
    ax = GitExp(alice)
    mine = new_runs(alice, 10, 11)
    theirs = new_runs(bob, 20, 21)
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
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    assert set(run_refs(remote)) == set(mine + theirs)
    fsck(remote)
    # and each side can pull the other's runs with their artifacts
    assert "2 new" in ax.ok("pull")
    ax.ok("get", theirs[0], "model.bin", "-o", str(tmp_path / "t.bin"))
    assert (tmp_path / "t.bin").read_bytes() == b"model 20" * 100
    fsck(alice)
    fsck(bob)


@pytest.mark.slow
def test_diverged_run_is_never_overwritten(gx, proj, tmp_path):
    remote = bare(tmp_path, "shared.git")
    git("remote", "add", "origin", str(remote), cwd=proj)
    (run,) = new_runs(proj, 7)
    gx.ok("push")
    bob = clone(str(remote), tmp_path / "bob")
    bx = GitExp(bob)
    bx.ok("pull")
    short = run.rsplit("/", 1)[1]
    # both sides add a commit to the same run: histories diverge
    for who in (proj, bob):
        tip = run_refs(who)[run]
        tree = git("rev-parse", f"{tip}^{{tree}}", cwd=who).strip()
        new = git("commit-tree", tree, "-p", tip, "-m", f"note from {who.name}", cwd=who).strip()
        git("update-ref", run, new, tip, cwd=who)
    bob_tip = run_refs(bob)[run]
    gx.ok("push", "origin", short)
    proc = bx("push", "origin", short)
    assert proc.returncode == 10 and "rejected" in proc.stderr, proc.stderr
    proc = bx("fetch")
    assert proc.returncode == 10 and "diverged" in proc.stderr, proc.stderr
    assert run_refs(bob)[run] == bob_tip  # kept as it was
    assert "forced" in bx.ok("push", "--force", "origin", short)
    assert run_refs(remote)[run] == bob_tip
    fsck(bob)
    fsck(remote)


def _put(store: Path, data: bytes) -> str:
    import blake3

    key = blake3.blake3(data).hexdigest()
    path = store / "objects" / key[:2] / key[2:]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return key


def _plumbed_run(remote: Path, run_id: str, manifest: list) -> str:
    """A run commit made with plain git plumbing in ``remote``; returns its ref."""
    run = {
        "format": 1,
        "id": run_id,
        "experiment": "evil",
        "status": "finished",
        "tags": [],
        "notes": [],
        "links": {},
        "writers": {},
    }

    def blob(data: str) -> str:
        return subprocess.run(
            ["git", "hash-object", "-w", "--stdin"],
            cwd=remote,
            input=data,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    entries = [
        f"100644 blob {blob(json.dumps(run, indent=2) + chr(10))}\trun.json",
        f"100644 blob {blob(json.dumps(manifest, indent=2) + chr(10))}\tartifacts.json",
        f"100644 blob {blob('{}' + chr(10))}\tparams.json",
    ]
    tree = subprocess.run(
        ["git", "mktree"],
        cwd=remote,
        input="\n".join(entries) + "\n",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    main = git("rev-parse", "refs/heads/main", cwd=remote).strip()
    commit = git("commit-tree", tree, "-p", main, "-m", "a hostile run", cwd=remote).strip()
    ref = f"refs/experiments/evil/{run_id}"
    git("update-ref", ref, commit, cwd=remote)
    return ref


def _entry(path: str, key: str, size: int, **extra) -> dict:
    return {"path": path, "blake3": key, "size": size, "mode": "100644", "role": "output", **extra}


@pytest.mark.slow
def test_hostile_remote_run_is_refused_on_pull(gx, proj, tmp_path):
    remote = bare(tmp_path / "srv", "shared.git")
    store = remote / "exp"
    git("remote", "add", "origin", str(remote), cwd=proj)
    git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=proj)
    evil = _put(store, b"evil")
    # 1. hostile paths in the manifest: the whole run is refused, it would break git exp log
    paths_ref = _plumbed_run(
        remote,
        "20261122-000000-aaaaaa",
        [
            _entry("../../x", evil, 4),
            _entry("/tmp/gitexp-evil-abs", evil, 4),
        ],
    )
    # 2. a valid manifest whose store serves lies: those artifacts are refused one by one
    good = b"honest bytes\n"
    good_key = _put(store, good)
    import blake3

    liar_key = blake3.blake3(b"what the manifest promised").hexdigest()
    (store / "objects" / liar_key[:2]).mkdir(parents=True, exist_ok=True)
    (store / "objects" / liar_key[:2] / liar_key[2:]).write_bytes(b"something else")
    listing_key = _put(store, f"100644 {evil} 4 ../escape\n".encode())
    lies_ref = _plumbed_run(
        remote,
        "20261122-000000-bbbbbb",
        [
            _entry("liar.bin", liar_key, 26),
            _entry("good.txt", good_key, len(good)),
            _entry("ckpt", listing_key, 4, mode="40000", kind="dir", files=1),
        ],
    )
    # 3. a ref under refs/experiments/ that is not a run at all
    blob = subprocess.run(
        ["git", "hash-object", "-w", "--stdin"],
        cwd=remote,
        input="x",
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    git("update-ref", "refs/experiments/evil/20261122-000000-cccccc", blob, cwd=remote)

    victim = clone(str(remote), tmp_path / "deep" / "er" / "victim")
    before = sorted(p for p in tmp_path.rglob("*") if "victim" not in p.parts)
    vx = GitExp(victim)
    proc = vx("pull")
    assert proc.returncode == 6, proc.stdout + proc.stderr
    err = proc.stderr
    assert "Traceback" not in err
    assert "'../../x'" in err and "contains '..'" in err
    assert "/tmp/gitexp-evil-abs" in err and "absolute" in err
    assert "liar.bin" in err and "hash to" in err
    assert "hostile path in directory listing" in err
    assert "000000-cccccc" in err and "not a commit" in err
    assert "2 run(s) and 2 artifact(s) refused" in err
    refs = run_refs(victim)
    assert paths_ref not in refs and "refs/experiments/evil/20261122-000000-cccccc" not in refs
    assert lies_ref in refs  # the run itself is fine, minus its refused artifacts
    # nothing was written outside the CAS, and no lying bytes entered it
    cas = victim / ".git" / "exp" / "objects"
    assert not (cas / liar_key[:2] / liar_key[2:]).exists()
    assert (cas / good_key[:2] / good_key[2:]).read_bytes() == good
    assert not (tmp_path / "deep" / "x").exists() and not (tmp_path / "x").exists()
    assert not os.path.exists("/tmp/gitexp-evil-abs")
    assert sorted(p for p in tmp_path.rglob("*") if "victim" not in p.parts) == before
    # the victim's git exp still works, and get refuses the bad artifacts too
    assert "bbbbbb" in vx.ok("log")
    out = vx("get", lies_ref, "liar.bin", "-o", str(tmp_path / "liar"))
    assert out.returncode == 6 and "hash to" in out.stderr
    out = vx("get", lies_ref, "ckpt", "-o", str(tmp_path / "ck"))
    assert out.returncode == 6 and "hostile path" in out.stderr
    assert not (tmp_path / "liar").exists() and not (tmp_path / "ck").exists()
    assert not (tmp_path / "escape").exists()
    out = vx("get", lies_ref)  # the whole run: the same refusals, nothing written
    assert out.returncode == 6 and "liar.bin" in out.stderr and "hostile path" in out.stderr
    assert "Traceback" not in out.stderr
    assert not (cas / liar_key[:2] / liar_key[2:]).exists()
    vx.ok("get", lies_ref, "good.txt", "-o", str(tmp_path / "good.txt"))
    assert (tmp_path / "good.txt").read_bytes() == good
    fsck(victim)
    fsck(remote)


@pytest.mark.slow
def test_bad_input_is_one_line(gx, proj, tmp_path):
    proc = gx("push", "nosuchremote")
    assert proc.returncode == 10 and proc.stderr.count("\n") == 1, proc.stderr
    assert "no remote named 'nosuchremote'" in proc.stderr
    proc = gx("pull", str(tmp_path / "missing.git"))
    assert proc.returncode == 10 and "Traceback" not in proc.stderr, proc.stderr
    proc = gx("fetch", "http://127.0.0.1:9/nothing.git")
    assert proc.returncode == 10 and proc.stderr.count("\n") == 1, proc.stderr
    (run,) = new_runs(proj, 8)
    proc = gx("get", run, "nope.bin")
    assert proc.returncode == 2 and "no artifact" in proc.stderr
    proc = gx("get", run, "../../etc/passwd")
    assert proc.returncode == 2 and "contains '..'" in proc.stderr
    fsck(proj)


@pytest.mark.slow
def test_get_fetches_missing_objects_from_remote_store(gx, proj, tmp_path):
    remote = bare(tmp_path, "shared.git")
    git("remote", "add", "origin", str(remote), cwd=proj)
    run, _ = new_runs(proj, 9, 99)
    assert "1 new" in gx.ok("push", run.rsplit("/", 1)[1])  # a run where REMOTE would be
    bob = clone(str(remote), tmp_path / "bob")
    bx = GitExp(bob)
    out = bx.ok("pull", "--no-artifacts")
    assert "downloaded" not in out
    assert not (bob / ".git" / "exp" / "objects").exists()
    # pushing those runs elsewhere: the refs go, and push says what it could not upload
    # (the model and the listing; the files of the directory are unknown without it)
    mirror = bare(tmp_path, "mirror.git")
    proc = bx("push", str(mirror))
    assert proc.returncode == 0 and "2 referenced object(s) are not in the local store" in (
        proc.stderr
    ), proc.stderr
    assert run in run_refs(mirror)
    fsck(mirror)
    out = bx.ok("get", run, "ckpt", "-o", str(tmp_path / "ck"))
    assert "3 file(s)" in out and "fetched" in out
    assert (tmp_path / "ck" / "part0.bin").read_bytes() == b"9-0" * 50
    proc = bx("get", run, "ckpt", "-o", str(tmp_path / "ck"))
    assert proc.returncode == 2 and "exists" in proc.stderr
    bx.ok("get", run, "ckpt", "-o", str(tmp_path / "ck"), "--force")
    fsck(bob)


def test_help_does_not_import_dulwich_or_pyarrow():
    code = (
        "import sys; from gitexp.cli import cli, main\n"
        "import gitexp.cli.remote_cmds\n"
        "assert 'dulwich' not in sys.modules and 'pyarrow' not in sys.modules, "
        "sorted(m for m in sys.modules if m.split('.')[0] in ('dulwich', 'pyarrow'))"
    )
    subprocess.run(["python", "-c", code], check=True)
    assert S3_ENV["AWS_EC2_METADATA_DISABLED"] == "true"


def test_push_service_reports_progress_and_status_per_ref(gx, proj, tmp_path):
    from gitexp.remotes import Progress, push
    from gitexp.store import ExpStore

    remote = bare(tmp_path, "shared.git")
    git("remote", "add", "origin", str(remote), cwd=proj)
    (run,) = new_runs(proj, 12)
    events: list[Progress] = []
    with ExpStore(proj) as store:
        result = push(store, progress=events.append)
    assert [(r.ref, str(r.status)) for r in result.refs] == [(run, "new")]
    uploads = [e for e in events if e.phase == "uploading artifacts"]
    assert uploads[-1].done == uploads[-1].total == result.objects == OBJECTS_PER_RUN
    assert uploads[-1].nbytes == result.nbytes > 0
    fsck(remote)


@pytest.mark.slow
@pytest.mark.parametrize("transport", ["path", "http"])
def test_rm_remote_deletes_runs_there_too(gx, proj, tmp_path, transport, request):
    if transport == "http":
        server = request.getfixturevalue("git_http")
        remote, url = bare(server.base, "rm-share.git"), server.url("rm-share.git")
    else:
        remote = bare(tmp_path, "rm-share.git")
        url = str(remote)
    git("remote", "add", "origin", url, cwd=proj)
    keep, drop = new_runs(proj, 1, 2)
    gx.ok("push", "origin")
    assert set(run_refs(remote)) == {keep, drop}
    run_id = drop.rsplit("/", 1)[1]
    out = gx.ok("rm", "--remote", "origin", run_id)
    assert f"origin: deleted share/{run_id}" in out
    assert set(run_refs(remote)) == {keep}
    assert set(run_refs(proj)) == {keep}
    fsck(remote)


@pytest.mark.slow
def test_push_dry_run_writes_nothing(gx, proj, tmp_path):
    remote = bare(tmp_path, "shared.git")
    git("remote", "add", "origin", str(remote), cwd=proj)
    (run,) = new_runs(proj, 13)
    out = gx.ok("push", "--dry-run")
    assert "would push to" in out and f"new         {run[len('refs/experiments/') :]}" in out, out
    assert "would upload 5 object(s)" in out, out
    assert run_refs(remote) == {} and not (remote / "exp").exists()
    gx.ok("push")
    out = gx.ok("push", "-n")
    assert "1 up to date" in out and "nothing to upload" in out, out
    # a run that moved on the remote: the dry run reports the rejection, exit 10
    bob = clone(str(remote), tmp_path / "bob")
    GitExp(bob).ok("fetch")
    for who in (proj, bob):
        tip = run_refs(who)[run]
        tree = git("rev-parse", f"{tip}^{{tree}}", cwd=who).strip()
        new = git("commit-tree", tree, "-p", tip, "-m", f"note from {who.name}", cwd=who).strip()
        git("update-ref", run, new, tip, cwd=who)
    GitExp(bob).ok("push")
    before = run_refs(remote)
    proc = gx("push", "--dry-run")
    assert proc.returncode == 10 and "rejected" in proc.stderr, proc.stderr
    assert run_refs(remote) == before
    fsck(remote)


@pytest.mark.slow
def test_progress_of_a_large_push_on_a_terminal(gx, proj, tmp_path):
    """A big artifact and a big code commit: a live progress line on a terminal,
    with bytes moving inside the one large object and the git objects counted."""
    import pty

    remote = bare(tmp_path, "shared.git")
    git("remote", "add", "origin", str(remote), cwd=proj)
    (proj / "weights.init").write_bytes(os.urandom(3 << 20))
    git("add", "weights.init", cwd=proj)
    git("commit", "-q", "-m", "initial weights", cwd=proj)
    (proj / "big.py").write_text(
        "import os, gitexp\n"
        "open('big.bin', 'wb').write(os.urandom(6 << 20))\n"
        "with gitexp.start_run(experiment='big') as run:\n"
        "    run.log_artifact('big.bin')\n"
    )
    subprocess.run(["python", "big.py"], cwd=proj, check=True)
    from gitexp.remotes import Progress, push
    from gitexp.store import ExpStore

    events: list[Progress] = []
    with ExpStore(proj) as store:
        result = push(store, progress=events.append)
    ups = [e for e in events if e.phase == "uploading artifacts"]
    assert any(e.done == 0 and 0 < e.nbytes < e.total_bytes for e in ups), ups[:3]
    assert ups[-1].done == 1 and ups[-1].nbytes == ups[-1].total_bytes == 6 << 20
    sent = [e for e in events if e.phase == "sending git objects"]
    assert sent and sent[-1].done == sent[-1].total == result.git_objects > 3
    assert result.git_bytes > 3 << 20
    # the command on a terminal renders it; the summary counts the git objects too
    git("update-ref", "-d", result.refs[0].ref, cwd=remote)
    subprocess.run(["rm", "-rf", str(remote / "exp")], check=True)
    main, child = pty.openpty()
    proc = subprocess.Popen(["git", "exp", "push"], cwd=proj, stdout=subprocess.PIPE, stderr=child)
    os.close(child)
    chunks = []
    while True:
        try:
            data = os.read(main, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    out, _ = proc.communicate(timeout=60)
    os.close(main)
    tty = b"".join(chunks).decode()
    assert proc.returncode == 0, tty
    assert "uploading artifacts: 1/1, 6.0 MiB of 6.0 MiB" in tty, tty
    assert "sending git objects:" in tty, tty
    assert "git object(s)" in out.decode() and "uploaded 1 object(s), 6.0 MiB" in out.decode()
    fsck(remote)


@pytest.mark.slow
def test_push_killed_while_receive_pack_reads_the_pack(gx, proj, tmp_path, git_daemon):
    """Kill the client while the real receive-pack behind git daemon is reading
    the pack (its quarantine directory exists): no ref moves, fsck is clean, and
    the next push completes."""
    remote = bare(git_daemon.base, "killed-daemon.git")
    git("remote", "add", "origin", git_daemon.url("killed-daemon.git"), cwd=proj)
    git("config", "remote.origin.expstore", str(tmp_path / "store"), cwd=proj)
    (proj / "weights.init").write_bytes(os.urandom(24 << 20))
    git("add", "weights.init", cwd=proj)
    git("commit", "-q", "-m", "initial weights", cwd=proj)
    new_runs(proj, 14)
    proc = subprocess.Popen(
        ["git-exp", "push"], cwd=proj, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    objects = remote / "objects"
    end = time.monotonic() + 60
    try:
        while not any(p.name.startswith("tmp_objdir-incoming") for p in objects.iterdir()):
            assert proc.poll() is None, "the push ended before receive-pack got the pack"
            assert time.monotonic() < end, "receive-pack never started"
            time.sleep(0.005)
        # artifacts went first; no ref points anywhere yet
        assert any((tmp_path / "store" / "objects").iterdir())
        assert run_refs(remote) == {}
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
    # (git's receive-pack may leave its quarantine directory behind: garbage, no ref)
    assert run_refs(remote) == {}
    fsck(remote)
    out = gx.ok("push")
    assert "1 new" in out and "nothing to upload" in out, out
    assert run_refs(remote) == run_refs(proj)
    code = git("rev-parse", "HEAD", cwd=proj).strip()
    assert git("cat-file", "-t", code, cwd=remote).strip() == "commit"  # the code went too
    fsck(remote)


@pytest.mark.slow
def test_get_a_whole_run_after_pull_no_artifacts(tmp_path, git_http):
    """`git exp get RUN`: every stored object of one run into the local CAS,
    verified; the other runs' artifacts stay on the remote."""
    remote = bare(git_http.base, "get-run.git")
    url = git_http.url("get-run.git")
    alice = project(tmp_path / "alice")
    git("remote", "add", "origin", url, cwd=alice)
    git("config", "remote.origin.expstore", str(tmp_path / "store"), cwd=alice)
    git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=alice)
    want, other = new_runs(alice, 17, 18)
    GitExp(alice).ok("push")
    bob = clone(url, tmp_path / "bob")
    git("config", "remote.origin.expstore", str(tmp_path / "store"), cwd=bob)
    bx = GitExp(bob)
    bx.ok("pull", "--no-artifacts")
    out = bx.ok("get", want.rsplit("/", 1)[1])
    assert "fetched 5 object(s)" in out and "verified" in out, out
    cas = bob / ".git" / "exp" / "objects"
    assert len([p for p in cas.rglob("*") if p.is_file()]) == OBJECTS_PER_RUN
    assert "all 5 object(s) are here already" in bx.ok("get", want)
    fsck(remote)
    # everything is local now: restoring needs no remote at all
    git("remote", "remove", "origin", cwd=bob)
    bx.ok("get", want, "ckpt/part2.bin", "-o", str(tmp_path / "p2"))
    assert (tmp_path / "p2").read_bytes() == b"17-2" * 50
    proc = bx("get", other)
    assert proc.returncode == 10 and "no remote" in proc.stderr, proc.stderr
    proc = bx("get", want, "-o", str(tmp_path / "x"))
    assert proc.returncode == 2 and "need a PATH" in proc.stderr, proc.stderr
    fsck(bob)


@pytest.mark.slow
def test_runs_that_move_on_push_updated_fetch_updated_and_local_ahead(tmp_path, git_daemon):
    remote = bare(git_daemon.base, "moves.git")
    url = git_daemon.url("moves.git")
    alice = project(tmp_path / "alice")
    git("remote", "add", "origin", url, cwd=alice)
    git("config", "remote.origin.expstore", str(tmp_path / "store"), cwd=alice)
    ax = GitExp(alice)
    (run,) = new_runs(alice, 19)
    ax.ok("push")
    bob = clone(url, tmp_path / "bob")
    git("config", "remote.origin.expstore", str(tmp_path / "store"), cwd=bob)
    bx = GitExp(bob)
    assert "1 new" in bx.ok("pull")
    ax.ok("tag", run, "best")
    assert json.loads(ax.ok("ls-remote", "--json"))[0]["local"] == "ahead"
    out = ax.ok("push")
    assert f"updated     {run[len('refs/experiments/') :]}" in out and "1 updated" in out, out
    assert "nothing to upload" in out
    assert json.loads(bx.ok("ls-remote", "--json"))[0]["local"] == "unfetched"
    out = bx.ok("fetch")
    assert "updated" in out and "1 updated" in out, out
    assert "best" in json.loads(bx.ok("show", run, "--json"))["info"]["tags"]
    bx.ok("note", run, "looked at it")
    assert json.loads(bx.ok("ls-remote", "--json"))[0]["local"] == "ahead"
    assert json.loads(ax.ok("ls-remote", "--json"))[0]["local"] == "same"
    out = bx.ok("fetch")  # bob is ahead: kept, nothing to say but the summary
    assert "1 local ahead" in out and run_refs(bob)[run] != run_refs(remote)[run], out
    assert "1 updated" in bx.ok("push")
    ax.ok("fetch")
    assert run_refs(alice) == run_refs(bob) == run_refs(remote)
    fsck(remote)
    fsck(alice)
    fsck(bob)


def test_progress_line_shows_whole_server_lines(capsys):
    """The server's progress text arrives in arbitrary chunks: only whole
    updates are shown, each on a cleared line."""
    from gitexp.cli.remote_cmds import ProgressLine
    from gitexp.remotes import Progress

    bar = ProgressLine()
    bar.tty = True
    for chunk in (
        "Counting objects:  50% (1/",
        "2)\rCounting objects: 100% (2/2)\r",
        "Compressing",
        " objects: 100% (2/2), done.\n",
    ):
        bar(Progress("fetching runs", text=chunk))
    bar.done()
    # (click drops the line-clearing escape when stderr is not a real terminal)
    shown = [s for s in capsys.readouterr().err.replace("\x1b[K", "").split("\r") if s]
    assert shown == ["Counting objects: 100% (2/2)", "Compressing objects: 100% (2/2), done."]


@pytest.mark.slow
def test_unreachable_store_says_what_was_done(gx, proj, tmp_path, s3):
    """A store that cannot be reached: push moves no run (artifacts go first) and
    says so; pull still reports the runs it fetched, then the store error."""
    remote = bare(tmp_path, "shared.git")
    git("remote", "add", "origin", str(remote), cwd=proj)
    # a bucket that is not there (a typo): S3 answers at once; a dead endpoint is the
    # same path after the SDK's retries
    git("config", "remote.origin.expstore", s3.url("no-such-bucket-here"), cwd=proj)
    (run,) = new_runs(proj, 22)
    proc = gx("push")
    assert proc.returncode == 10 and proc.stderr.count("\n") == 1, proc.stderr
    assert "no run was pushed" in proc.stderr and "Traceback" not in proc.stderr
    assert run_refs(remote) == {}
    git("config", "--unset", "remote.origin.expstore", cwd=proj)
    gx.ok("push")
    bob = clone(str(remote), tmp_path / "bob")
    (tmp_path / "not-a-dir").write_text("")  # a mount that went away, quicker than S3's retries
    git("config", "remote.origin.expstore", str(tmp_path / "not-a-dir" / "store"), cwd=bob)
    proc = GitExp(bob)("pull")
    assert proc.returncode == 10, proc.stderr
    assert "1 new" in proc.stdout and run in run_refs(bob), proc.stdout
    assert "runs fetched, artifacts not downloaded" in proc.stderr, proc.stderr
    assert "downloaded 0" not in proc.stdout
