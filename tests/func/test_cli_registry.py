"""git exp model: versions, stages, aliases, rollback, get, GTO tags; in real git.

The commands run in this process (``in_process``: the same path from argv to
exit code as the installed command), one through the installed ``git exp``;
``git fsck --strict`` after every change, and plain git reads what was written.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from conftest import fsck, git, in_process, show_json
from modelruns import isolated_repo, make_runs

MODEL = "fraud"


def gx(repo: Path, *args: str) -> tuple[int, str, str]:
    proc = in_process(args, repo)
    return proc.returncode, proc.stdout, proc.stderr


def ok(repo: Path, *args: str) -> str:
    code, out, err = gx(repo, *args)
    assert code == 0, f"git exp {' '.join(args)} -> {code}\n{out}\n{err}"
    return out


def model_tip(repo: Path) -> str:
    return git("rev-parse", "-q", "--verify", f"refs/models/{MODEL}", cwd=repo, check=False).strip()


def subjects(repo: Path) -> list[str]:
    return git("log", "--format=%s", f"refs/models/{MODEL}", cwd=repo).splitlines()


@pytest.fixture
def runs(repo) -> list[str]:
    return make_runs(repo, [0.80, 0.82, 0.85])


def test_every_change_is_a_commit_that_plain_git_reads(repo, runs):
    for ref in runs:
        out = ok(repo, "model", "register", MODEL, ref, "-m", "nightly")
        assert "registered" in out and "stage development" in out
        fsck(repo)
    ok(repo, "model", "promote", MODEL, "1", "production", "-m", "first deploy")
    fsck(repo)
    out = ok(repo, "model", "promote", MODEL, "v2", "production", "--alias", "champion")
    assert "fraud v2 -> production (archived: v1)" in out and "alias champion -> v2" in out
    fsck(repo)
    assert "production: v2 -> v1" in ok(repo, "model", "rollback", MODEL, "production")
    fsck(repo)
    assert subjects(repo) == [
        "roll back production of fraud (v2 -> v1 is back)",
        "set alias champion of fraud to v2",
        "promote fraud v2 to production",
        "promote fraud v1 to production: first deploy",
        "register fraud v3: nightly",
        "register fraud v2: nightly",
        "register fraud v1: nightly",
    ]
    # the audit trail names who did it; each commit's one parent is the one before
    authors = git("log", "--format=%an <%ae>", f"refs/models/{MODEL}", cwd=repo).split("\n")
    assert set(filter(None, authors)) == {"Test User <test@example.com>"}
    chain = git("rev-list", "--parents", f"refs/models/{MODEL}", cwd=repo).splitlines()
    assert [len(line.split()) for line in chain] == [2] * 6 + [1]
    state = show_json(repo, f"refs/models/{MODEL}", "model.json")
    assert state["versions"] == {
        "development": [3],
        "staging": [],
        "production": [1],
        "archived": [2],
    }
    assert state["holders"] == {"production": [1]} and state["aliases"] == {"champion": [2]}
    assert state["event"]["op"] == "rollback"
    assert state["event"]["by"] == "Test User <test@example.com>"
    # a version: its artifact is the run's, byte for byte what the run recorded
    version = show_json(repo, f"refs/models/{MODEL}", "versions/3/version.json")
    manifest = show_json(repo, runs[2], "artifacts.json")
    assert version["artifact"] == next(a for a in manifest if a["role"] == "output")
    assert version["metrics"]["auc"] == 0.85 and version["run"]["ref"] == runs[2]
    assert version["lineage"]["inputs"] == [a for a in manifest if a["role"] == "input"]
    # the run's tree and the code's tree are in the registry, readable with git show
    assert show_json(repo, f"refs/models/{MODEL}", "versions/3/run/params.json") == {"seed": 2}
    code = version["lineage"]["code_commit"]
    assert (
        git("rev-parse", f"refs/models/{MODEL}:versions/3/code", cwd=repo).strip()
        == git("rev-parse", f"{code}^{{tree}}", cwd=repo).strip()
    )


def test_show_list_history_and_json(repo, runs):
    for ref in runs:
        ok(repo, "model", "register", MODEL, ref)
    ok(repo, "model", "promote", MODEL, "3", "staging", "--alias", "candidate", "-m", "why not")
    listed = ok(repo, "model", "list")
    assert "fraud" in listed and "v3" in listed and "candidate=v3" in listed
    data = json.loads(ok(repo, "model", "show", MODEL, "--json"))
    assert data["stages"] == {"staging": 3, "production": None}
    assert [v["stage"] for v in data["versions"]] == ["development", "development", "staging"]
    one = json.loads(ok(repo, "model", "show", f"{MODEL}@candidate", "--json"))
    assert one["version"] == 3 and one["aliases"] == ["candidate"] and one["stage"] == "staging"
    text = ok(repo, "model", "show", f"{MODEL}@staging")
    assert "fraud v3" in text and "data.csv" in text and "auc" in text
    history = json.loads(ok(repo, "model", "history", MODEL, "--json", "-n", "2"))
    assert [h["op"] for h in history] == ["promote", "promote"]
    assert history[0]["alias"] == "candidate" and history[1]["message"] == "why not"
    assert "register v1" in ok(repo, "model", "history", MODEL)


def test_get_restores_verified_bytes_and_the_python_api_hands_out_a_path(repo, runs, tmp_path):
    import gitexp

    v = gitexp.registry.register(MODEL, runs[1], message="from python")
    assert v.number == 1 and v.artifact.path == "model.bin"
    events = gitexp.registry.promote(MODEL, 1, "production", alias="live")
    assert [e.get("stage") or e.get("alias") for e in events] == ["production", "live"]
    out = ok(repo, "model", "get", f"{MODEL}@production", "-o", str(tmp_path / "m.bin"))
    assert "verified" in out
    want = b"weights 1 " * 64
    assert (tmp_path / "m.bin").read_bytes() == want
    path = gitexp.registry.get(f"{MODEL}@live")
    assert Path(path).read_bytes() == want and ".git/exp/cache/models/" in path
    assert gitexp.registry.get(f"{MODEL}@live") == path  # the verified copy is reused
    Path(path).chmod(0o644)
    Path(path).write_bytes(b"tampered")
    assert Path(gitexp.registry.get(f"{MODEL}@live")).read_bytes() == want  # checked again
    # a damaged object in the store is refused, and nothing is written
    obj = repo / ".git" / "exp" / "objects" / v.artifact.blake3[:2] / v.artifact.blake3[2:]
    obj.chmod(0o644)
    obj.write_bytes(b"bit rot")
    code, _, err = gx(repo, "model", "get", MODEL, "-o", str(tmp_path / "bad.bin"))
    assert code == 6 and "damaged" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "bad.bin").exists()


@pytest.mark.slow
def test_the_installed_command_registers_and_promotes(repo, runs):
    from conftest import GitExp

    cli = GitExp(repo)
    out = cli.ok("model", "register", MODEL, runs[0].rsplit("/", 1)[1], "--json")
    assert json.loads(out)["version"] == 1
    assert "-> staging" in cli.ok("model", "promote", MODEL, "1", "staging")
    proc = cli("model", "promote", MODEL, "1", "nowhere")
    assert proc.returncode == 2 and proc.stderr.startswith("git exp: error: unknown stage")
    fsck(repo)


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """One repository for the commands that must change nothing: fraud v1
    (archived), v2 (production), and a run without an artifact (the last ref)."""
    refs: list[str] = []

    def build(repo: Path) -> None:
        refs.extend(make_runs(repo, [0.80, 0.82]))
        refs.extend(make_runs(repo, [0.5], artifact=False, seed0=9))
        for n, ref in enumerate(refs[:2], 1):
            ok(repo, "model", "register", MODEL, ref)
            ok(repo, "model", "promote", MODEL, str(n), "production")

    return isolated_repo(tmp_path_factory, "shared", build), refs


@pytest.mark.parametrize(
    "args, code, words",
    [
        (["model", "show", "nope"], 4, "no model 'nope'"),
        (["model", "show", "fraud@v9"], 4, "no version 9"),
        (["model", "show", "fraud@gold"], 4, "no stage or alias 'gold'"),
        (["model", "get", "fraud@staging"], 4, "no version of model fraud is in staging"),
        (["model", "promote", "fraud", "9", "staging"], 4, "no version 9"),
        (["model", "promote", "fraud", "1", "prod"], 2, "unknown stage 'prod'"),
        (["model", "promote", "fraud", "1", "staging", "--alias", "v2"], 2, "reserved"),
        (["model", "promote", "fraud", "1"], 2, "name a stage or an alias"),
        (["model", "promote", "fraud", "1", "staging"], 7, "archived and cannot be promoted"),
        (["model", "rollback", "fraud", "staging"], 7, "no version ever held staging"),
        (["model", "rollback", "fraud", "champion"], 4, "no alias 'champion'"),
        (["model", "register", "bad/name", "RUN0"], 2, "model name 'bad/name' is not valid"),
        (["model", "register", "fraud", "RUN0", "--artifact", "nope.bin"], 2, "no artifact"),
        (["model", "register", "fraud", "NOART"], 2, "no output artifact"),
        (["model", "register", "fraud", "20991231-000000-abcdef"], 4, "no run"),
        (["model", "history", "nope"], 4, "no model 'nope'"),
        (["compare", "-a", "params.seed > 99", "-b", "params.seed >= 0"], 4, "matches no run"),
        (["check", "RUN0", "-m", "auc", "--against", "fraud@staging"], 4, "in staging"),
        (["check", "RUN0", "-m", "auc"], 2, "need a reference"),
        (["verify", "fraud@archived"], 0, ""),
    ],
)
def test_bad_input_is_one_line_a_non_zero_exit_and_nothing_changed(shared, args, code, words):
    repo, refs = shared
    before = (model_tip(repo), git("for-each-ref", cwd=repo), sorted(os.listdir(repo)))
    args = [refs[0] if a == "RUN0" else refs[-1] if a == "NOART" else a for a in args]
    got, out, err = gx(repo, *args)
    if code == 0:  # the archived version still verifies: it is not broken, only retired
        assert got == 0, err
        return
    assert got == code, (got, out, err)
    assert words in err and err.startswith("git exp: error: ")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert (model_tip(repo), git("for-each-ref", cwd=repo), sorted(os.listdir(repo))) == before


def test_get_of_bytes_neither_here_nor_remote_fails_and_writes_nothing(repo, runs, tmp_path):
    ok(repo, "model", "register", MODEL, runs[0])
    key = json.loads(ok(repo, "model", "show", f"{MODEL}@v1", "--json"))["artifact"]["blake3"]
    (repo / ".git" / "exp" / "objects" / key[:2] / key[2:]).unlink()
    code, _, err = gx(repo, "model", "get", f"{MODEL}@v1", "-o", str(tmp_path / "m.bin"))
    assert code == 6 and "not in the local store and there is no remote" in err
    assert not (tmp_path / "m.bin").exists()
    remote = tmp_path / "empty.git"
    git("init", "-q", "--bare", str(remote), cwd=tmp_path)
    git("remote", "add", "origin", str(remote), cwd=repo)
    code, _, err = gx(repo, "model", "get", f"{MODEL}@v1", "-o", str(tmp_path / "m.bin"))
    assert code == 6 and "not in" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.bin").exists()


def test_gc_keeps_a_registered_models_bytes_after_its_run_is_removed(repo, runs, tmp_path):
    from gitexp.maintenance import gc
    from gitexp.store import ExpStore

    ok(repo, "model", "register", MODEL, runs[0])
    ok(repo, "model", "promote", MODEL, "1", "production")
    with ExpStore(repo) as store:
        keep = json.loads(ok(repo, "model", "show", f"{MODEL}@production", "--json"))
        other = next(a for a in show_json(repo, runs[1], "artifacts.json") if a["role"] == "output")
        ok(repo, "rm", runs[0], runs[1])
        time.sleep(0.2)
        report = gc(store, grace=0, pack=False)
        assert not report.problems, report.problems
        assert store.cas.has(keep["artifact"]["blake3"])  # the model's: kept
        assert not store.cas.has(other["blake3"])  # the other removed run's: freed
    ok(repo, "model", "get", f"{MODEL}@production", "-o", str(tmp_path / "m.bin"))
    assert (tmp_path / "m.bin").read_bytes() == b"weights 0 " * 64
    fsck(repo)


def test_gto_tags_export_and_import_round_trip(repo, runs):
    for ref in runs:
        ok(repo, "model", "register", MODEL, ref)
    ok(repo, "model", "promote", MODEL, "1", "production")
    ok(repo, "model", "promote", MODEL, "2", "production")
    ok(repo, "model", "promote", MODEL, "3", "staging")
    ok(repo, "model", "rollback", MODEL, "production")
    out = ok(repo, "model", "export-gto")
    assert "tags: 7 created" in out
    tags = {
        name: git("rev-parse", f"{name}^{{commit}}", cwd=repo).strip()
        for name in git("tag", "-l", cwd=repo).split()
    }
    commits = {
        n: show_json(repo, f"refs/models/{MODEL}", f"versions/{n}/version.json")["run"]["commit"]
        for n in (1, 2, 3)
    }
    assert tags == {
        "fraud@v1.0.0": commits[1],
        "fraud@v2.0.0": commits[2],
        "fraud@v3.0.0": commits[3],
        "fraud#production#1": commits[1],
        "fraud#production#2": commits[2],
        "fraud#staging#3": commits[3],
        "fraud#production#4": commits[1],  # the rollback: v1 holds production again
    }
    assert git("cat-file", "-t", "fraud#production#4", cwd=repo).strip() == "tag"  # annotated
    assert "Assigning stage production" in git("tag", "-l", "-n1", "fraud#production#1", cwd=repo)
    assert "tags: 7 exists" in ok(repo, "model", "export-gto")  # idempotent
    # a teammate with the tags but no registry gets the same models back from them
    git("update-ref", "-d", f"refs/models/{MODEL}", cwd=repo)
    out = ok(repo, "model", "import-gto")
    assert "3 registered" in out and "2 promoted" in out, out
    data = json.loads(ok(repo, "model", "show", MODEL, "--json"))
    assert data["stages"] == {"production": 1, "staging": 3}
    assert [v["source"] for v in data["versions"]] == [
        {"gto": "fraud@v1.0.0"},
        {"gto": "fraud@v2.0.0"},
        {"gto": "fraud@v3.0.0"},
    ]
    assert "5 imported already" in ok(repo, "model", "import-gto")
    fsck(repo)


CONCURRENT = """
import sys
from gitexp.registry import ops
from gitexp.store import ExpStore
with ExpStore(".") as store:
    for ref in sys.argv[1:]:
        ops.register(store, "fraud", ref, message=ref)
"""


@pytest.mark.slow
def test_two_processes_registering_at_once_get_distinct_versions(repo):
    import subprocess
    import sys

    runs = make_runs(repo, [0.7 + i / 100 for i in range(8)])
    procs = [
        subprocess.Popen([sys.executable, "-c", CONCURRENT, *part], cwd=repo)
        for part in (runs[:4], runs[4:])
    ]
    assert [p.wait(120) for p in procs] == [0, 0]
    versions = json.loads(ok(repo, "model", "show", MODEL, "--json"))["versions"]
    assert [v["version"] for v in versions] == list(range(1, 9))
    assert sorted(v["run"]["ref"] for v in versions) == sorted(runs)  # each once, none lost
    assert len(subjects(repo)) == 8
    fsck(repo)
