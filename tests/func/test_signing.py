"""Signed run and registry commits (commit.gpgSign), checked by git itself, and
git exp verify: the audit of a model in production.

Keys are made by the tests: ssh-keygen always, gpg where it is installed (CI
installs it: GITEXP_REQUIRE_SERVERS=1 turns a missing gpg into a failure).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import fsck, git, in_process
from modelruns import make_runs
from servers import require

MODEL = "fraud"


def ok(repo: Path, *args: str) -> str:
    proc = in_process(args, repo)
    assert proc.returncode == 0, f"git exp {' '.join(args)} -> {proc.returncode}\n{proc.stderr}"
    return proc.stdout


def ssh_signing(repo: Path, keys: Path) -> Path:
    """Configure ``repo`` to sign with a new ed25519 ssh key; return the key file."""
    keys.mkdir(exist_ok=True)
    key = keys / "id_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "test@example.com", "-f", str(key)],
        check=True,
    )
    allowed = keys / "allowed_signers"
    allowed.write_text(f"test@example.com {(keys / 'id_ed25519.pub').read_text()}")
    for k, v in (
        ("gpg.format", "ssh"),
        ("user.signingKey", str(key)),
        ("commit.gpgSign", "true"),
        ("gpg.ssh.allowedSignersFile", str(allowed)),
    ):
        git("config", k, v, cwd=repo)
    return key


def lineage_commits(repo: Path) -> list[str]:
    """Every commit git-exp wrote: the runs' and the model's."""
    refs = git("for-each-ref", "--format=%(refname)", "refs/experiments/", "refs/models/", cwd=repo)
    shas = set()
    for ref in refs.split():
        base = [] if ref.startswith("refs/models/") else [f"^{ref}~{_depth(repo, ref)}"]
        shas.update(git("rev-list", ref, *base, cwd=repo).split())
    return sorted(shas)


def _depth(repo: Path, ref: str) -> int:
    """How many run commits a run ref has (its first commit's parent is the code)."""
    n = 0
    sha = git("rev-parse", ref, cwd=repo).strip()
    while "run.json" in git("ls-tree", "--name-only", sha, cwd=repo).split():
        n += 1
        sha = git("rev-parse", f"{sha}^", cwd=repo).strip()
    return n


def register_and_promote(repo: Path) -> list[str]:
    runs = make_runs(repo, [0.81, 0.84])
    for ref in runs:
        ok(repo, "model", "register", MODEL, ref)
    ok(repo, "model", "promote", MODEL, "1", "production")
    ok(repo, "model", "promote", MODEL, "2", "production", "-m", "better auc")
    return runs


@pytest.mark.slow
def test_run_and_registry_commits_are_signed_with_an_ssh_key(repo, tmp_path):
    ssh_signing(repo, tmp_path / "keys")
    register_and_promote(repo)
    commits = lineage_commits(repo)
    assert len(commits) >= 6
    for sha in commits:
        proc = subprocess.run(
            ["git", "verify-commit", sha], cwd=repo, capture_output=True, text=True
        )
        assert proc.returncode == 0 and 'Good "git" signature' in proc.stderr, proc.stderr
    shown = git("log", "--show-signature", "-1", f"refs/models/{MODEL}", cwd=repo)
    assert 'Good "git" signature for test@example.com' in shown
    fsck(repo)
    report = json.loads(ok(repo, "verify", f"{MODEL}@production", "--strict", "--json"))[0]
    assert report["ok"] and report["facts"]["run"].startswith("fraud/")
    assert all(s["good"] for s in report["signatures"])
    whats = [s["what"] for s in report["signatures"]]
    assert "registry: register v2" in whats and "registry: promote to production" in whats
    text = ok(repo, "verify", f"{MODEL}@production")
    assert re.search(r"ok +signatures +\d+ commit\(s\), good: test@example.com", text), text
    assert "promoted to production" in text and '"better auc"' in text


def test_the_signature_header_is_the_one_git_writes(repo, tmp_path):
    """ed25519 ssh signatures are deterministic: signing git's own payload gives
    git's signature, and our commit is its payload with the header where git puts it."""
    ssh_signing(repo, tmp_path / "keys")
    from gitexp.git import open_repo

    tree = git("rev-parse", "HEAD^{tree}", cwd=repo).strip()
    theirs = git("commit-tree", "-S", tree, "-p", "HEAD", "-m", "by git", cwd=repo).strip()
    raw = subprocess.run(
        ["git", "cat-file", "commit", theirs], cwd=repo, capture_output=True, check=True
    ).stdout
    with open_repo(repo) as r:
        payload, sig = _split(raw)
        assert r.sign_payload(payload) == sig  # byte for byte what git signed
        mine = r.write_commit(tree, [git("rev-parse", "HEAD", cwd=repo).strip()], "by git-exp")
    raw = subprocess.run(
        ["git", "cat-file", "commit", mine], cwd=repo, capture_output=True, check=True
    ).stdout
    payload, sig = _split(raw)
    head, _, body = payload.partition(b"\n\n")
    header = b"gpgsig " + sig[:-1].replace(b"\n", b"\n ") + b"\n"
    assert raw == head + b"\n" + header + b"\n" + body  # git's do_sign_commit layout
    fsck(repo)


def _split(raw: bytes) -> tuple[bytes, bytes]:
    """A signed commit object -> (the payload, the signature), as git splits it."""
    lines = raw.split(b"\n")
    out, sig, inside = [], [], False
    for i, line in enumerate(lines):
        if line.startswith(b"gpgsig "):
            inside = True
            sig.append(line[len(b"gpgsig ") :])
        elif inside and line.startswith(b" "):
            sig.append(line[1:])
        else:
            inside = False
            out.append(line)
        if line == b"" and not inside:
            out += lines[i + 1 :]
            break
    return b"\n".join(out), b"\n".join(sig) + b"\n"


@pytest.mark.slow
def test_runs_signed_with_gpg_verify(repo, tmp_path, monkeypatch):
    require(shutil.which("gpg") is not None, "gpg (Debian gnupg)")
    home = tmp_path / "gnupg"
    home.mkdir(mode=0o700)
    monkeypatch.setenv("GNUPGHOME", str(home))
    try:
        subprocess.run(
            [
                "gpg",
                "--batch",
                "--passphrase",
                "",
                "--quick-gen-key",
                "Test User <test@example.com>",
                "ed25519",
                "sign",
                "never",
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
        git("config", "commit.gpgSign", "true", cwd=repo)
        register_and_promote(repo)
        for sha in lineage_commits(repo):
            proc = subprocess.run(
                ["git", "verify-commit", "--raw", sha], cwd=repo, capture_output=True, text=True
            )
            assert proc.returncode == 0 and "GOODSIG" in proc.stderr, proc.stderr
        report = json.loads(ok(repo, "verify", f"{MODEL}@production", "--strict", "--json"))[0]
        assert report["ok"], report["checks"]
        assert {s["kind"] for s in report["signatures"]} == {"openpgp"}
        assert "Test User <test@example.com>" in report["signatures"][0]["signer"]
        fsck(repo)
    finally:
        subprocess.run(["gpgconf", "--kill", "gpg-agent"], capture_output=True)


@pytest.mark.slow
def test_verify_fails_on_a_bad_signature_and_on_damaged_bytes(repo, tmp_path):
    ssh_signing(repo, tmp_path / "keys")
    register_and_promote(repo)
    # the promotion rewritten after it was signed: git refuses its signature
    tip = git("rev-parse", f"refs/models/{MODEL}", cwd=repo).strip()
    raw = subprocess.run(["git", "cat-file", "commit", tip], cwd=repo, capture_output=True).stdout
    forged = (
        subprocess.run(
            ["git", "hash-object", "-t", "commit", "-w", "--stdin"],
            cwd=repo,
            input=raw.replace(b"better auc", b"approved by QA"),
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .strip()
    )
    git("update-ref", f"refs/models/{MODEL}", forged, tip, cwd=repo)
    proc = in_process(("verify", f"{MODEL}@production"), repo)
    assert proc.returncode == 1
    assert re.search(r"FAIL +signatures +bad signature: registry: promote", proc.stdout)
    git("update-ref", f"refs/models/{MODEL}", tip, forged, cwd=repo)
    assert in_process(("verify", f"{MODEL}@production"), repo).returncode == 0
    # the artifact's bytes damaged in the store
    key = json.loads(ok(repo, "model", "show", f"{MODEL}@production", "--json"))["artifact"]
    obj = repo / ".git" / "exp" / "objects" / key["blake3"][:2] / key["blake3"][2:]
    obj.chmod(0o644)
    obj.write_bytes(b"not the model")
    proc = in_process(("verify", f"{MODEL}@production"), repo)
    assert proc.returncode == 1 and re.search(r"FAIL +artifact +.*damaged", proc.stdout)


def test_unsigned_commits_are_a_warning_and_strict_makes_them_fail(repo):
    runs = register_and_promote(repo)
    assert "gpgsig" not in git("cat-file", "-p", runs[0], cwd=repo)
    text = ok(repo, "verify")  # every model's production version
    assert "fraud v2 (production)" in text and "WARN  signatures" in text
    assert "verdict      OK" in text
    assert "trained by   " in text and "data         data.csv" in text
    proc = in_process(("verify", "--strict"), repo)
    assert proc.returncode == 1 and "verdict      FAILED" in proc.stdout
    run = in_process(("verify", runs[0]), repo)
    assert run.returncode == 0 and "run fraud/" in run.stdout


def test_a_commit_that_cannot_be_signed_is_not_written(repo, tmp_path):
    (run,) = make_runs(repo, [0.8])
    git("config", "gpg.format", "ssh", cwd=repo)
    git("config", "user.signingKey", str(tmp_path / "no-such-key"), cwd=repo)
    git("config", "commit.gpgSign", "true", cwd=repo)
    proc = in_process(("model", "register", MODEL, run), repo)
    assert proc.returncode == 6 and "failed to sign" in proc.stderr, proc.stderr
    assert git("for-each-ref", "refs/models/", cwd=repo) == ""  # no unsigned fallback
