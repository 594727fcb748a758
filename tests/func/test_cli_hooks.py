"""The pre-push hook and ``git exp install-hooks``: chaining, core.hooksPath, uninstall."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
import yaml
from test_cli_sharing import new_runs, project, run_refs

from conftest import fsck, git
from gitexp.hooks import MARK, PRE_PUSH
from servers import bare

ROOT = Path(__file__).resolve().parents[2]


def setup(tmp_path: Path):
    from conftest import GitExp

    proj = project(tmp_path / "proj")
    remote = bare(tmp_path, "remote.git")
    git("remote", "add", "origin", str(remote), cwd=proj)
    return proj, remote, GitExp(proj)


def test_shipped_hook_is_the_one_installed():
    shipped = ROOT / "hooks" / "pre-push"
    assert shipped.read_text() == PRE_PUSH
    assert os.stat(shipped).st_mode & stat.S_IXUSR
    entries = yaml.safe_load((ROOT / ".pre-commit-hooks.yaml").read_text())
    assert entries[0]["stages"] == ["pre-push"] and "git-exp push" in entries[0]["entry"]


@pytest.mark.slow
def test_pre_commit_manifest_is_valid_and_its_entry_pushes(tmp_path):
    """pre-commit's own loader accepts the manifest; its entry, run the way
    pre-commit runs it for a pre-push (shlex-split, PRE_COMMIT_REMOTE_NAME set,
    no file names), pushes the runs, and does nothing inside a hook-made push."""
    import shlex

    from pre_commit.clientlib import load_manifest

    (hook,) = load_manifest(str(ROOT / ".pre-commit-hooks.yaml"))
    assert hook["id"] == "git-exp-push" and hook["stages"] == ["pre-push"]
    assert hook["pass_filenames"] is False and hook["always_run"] is True
    proj, remote, _ = setup(tmp_path)
    git("remote", "rename", "origin", "team", cwd=proj)
    (run,) = new_runs(proj, 5)
    argv = shlex.split(hook["entry"]) + hook["args"]
    env = {**os.environ, "PRE_COMMIT_REMOTE_NAME": "team", "GITEXP_IN_HOOK": "1"}
    subprocess.run(argv, cwd=proj, check=True, env=env)
    assert run_refs(remote) == {}
    del env["GITEXP_IN_HOOK"]
    proc = subprocess.run(argv, cwd=proj, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert run in run_refs(remote) and any((remote / "exp" / "objects").iterdir())
    fsck(remote)


@pytest.mark.slow
def test_git_push_also_pushes_runs(tmp_path):
    proj, remote, gx = setup(tmp_path)
    (run,) = new_runs(proj, 1)
    assert "installed" in gx.ok("install-hooks")
    assert "already installed" in gx.ok("install-hooks")
    git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=proj)
    assert run in run_refs(remote)
    assert any((remote / "exp" / "objects").iterdir())  # artifacts went too
    # the guard: inside a hook-triggered push, the hook does nothing
    (run2,) = new_runs(proj, 2)
    git("push", "-q", "origin", "HEAD:refs/heads/other", cwd=proj, env={"GITEXP_IN_HOOK": "1"})
    assert run2 not in run_refs(remote)
    fsck(remote)


@pytest.mark.slow
def test_existing_hook_is_chained_and_restored(tmp_path):
    proj, remote, gx = setup(tmp_path)
    hooks = proj / ".git" / "hooks"
    mine = '#!/bin/sh\ncat > "$(dirname "$0")/../seen-by-my-hook"\nexit 0\n'
    (hooks / "pre-push").write_text(mine)
    os.chmod(hooks / "pre-push", 0o750)
    (run,) = new_runs(proj, 3)
    out = gx.ok("install-hooks")
    assert "pre-push.local" in out
    assert (hooks / "pre-push.local").read_text() == mine
    git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=proj)
    assert "refs/heads/main" in (proj / ".git" / "seen-by-my-hook").read_text()  # got stdin
    assert run in run_refs(remote)
    # the user's hook still decides: when it fails, nothing is pushed
    (hooks / "pre-push.local").write_text("#!/bin/sh\nexit 1\n")
    assert git("push", "-q", "origin", "HEAD:refs/heads/blocked", cwd=proj, check=False) == ""
    assert "refs/heads/blocked" not in git("ls-remote", str(remote), cwd=proj)
    (hooks / "pre-push.local").write_text(mine)
    assert "uninstalled" in gx.ok("install-hooks", "--uninstall")
    assert (hooks / "pre-push").read_text() == mine
    assert stat.S_IMODE(os.stat(hooks / "pre-push").st_mode) == 0o750
    assert not (hooks / "pre-push.local").exists()
    assert "not installed" in gx.ok("install-hooks", "--uninstall")


def test_respects_core_hooks_path_and_never_overwrites(tmp_path):
    proj, _, gx = setup(tmp_path)
    git("config", "core.hooksPath", ".githooks", cwd=proj)
    gx.ok("install-hooks")
    assert MARK in (proj / ".githooks" / "pre-push").read_text()
    assert not (proj / ".git" / "hooks" / "pre-push").exists()
    gx.ok("install-hooks", "--uninstall")
    assert not (proj / ".githooks").exists()  # install made it, uninstall removed it
    # both pre-push and pre-push.local exist: refuse, change nothing
    (proj / ".githooks").mkdir()
    (proj / ".githooks" / "pre-push").write_text("#!/bin/sh\necho one\n")
    (proj / ".githooks" / "pre-push.local").write_text("#!/bin/sh\necho two\n")
    proc = gx("install-hooks")
    assert proc.returncode == 2 and "will not overwrite" in proc.stderr
    assert (proj / ".githooks" / "pre-push").read_text() == "#!/bin/sh\necho one\n"
    assert (proj / ".githooks" / "pre-push.local").read_text() == "#!/bin/sh\necho two\n"


@pytest.mark.slow
def test_symlinked_hook_stays_a_symlink(tmp_path):
    """A pre-push that is a symlink (to a script kept in the repository) is chained as
    that symlink, so edits to the script still count, and uninstall puts the link back."""
    proj, remote, gx = setup(tmp_path)
    hooks = proj / ".git" / "hooks"
    (proj / "tools").mkdir()
    note = '#!/bin/sh\necho {} >> "$(git rev-parse --git-dir)/seen"\n'
    (proj / "tools" / "pp").write_text(note.format("first"))
    os.chmod(proj / "tools" / "pp", 0o755)
    os.symlink("../../tools/pp", hooks / "pre-push")
    (run,) = new_runs(proj, 1)
    gx.ok("install-hooks")
    assert os.readlink(hooks / "pre-push.local") == "../../tools/pp"
    (proj / "tools" / "pp").write_text(note.format("edited"))
    git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=proj)
    assert (proj / ".git" / "seen").read_text() == "edited\n"
    assert run in run_refs(remote)
    gx.ok("install-hooks", "--uninstall")
    assert os.path.islink(hooks / "pre-push")
    assert os.readlink(hooks / "pre-push") == "../../tools/pp"
    assert not os.path.lexists(hooks / "pre-push.local")
    # a dangling link is an existing hook too: kept, never an error
    os.unlink(hooks / "pre-push")
    os.symlink("/nonexistent/hook", hooks / "pre-push")
    gx.ok("install-hooks")
    git("push", "-q", "origin", "HEAD:refs/heads/dangling", cwd=proj)
    gx.ok("install-hooks", "--uninstall")
    assert os.readlink(hooks / "pre-push") == "/nonexistent/hook"


def test_a_hand_made_link_to_the_shipped_hook_counts_as_installed(tmp_path):
    proj, _, gx = setup(tmp_path)
    hooks = proj / ".git" / "hooks"
    os.symlink(ROOT / "hooks" / "pre-push", hooks / "pre-push")
    assert "already installed" in gx.ok("install-hooks")
    assert not os.path.lexists(hooks / "pre-push.local")
    assert "not installed" in gx.ok("install-hooks", "--uninstall")  # not ours to remove
    assert os.readlink(hooks / "pre-push") == str(ROOT / "hooks" / "pre-push")


def test_uninstall_removes_the_hooks_directory_it_created(tmp_path):
    proj, _, gx = setup(tmp_path)
    git("config", "core.hooksPath", "ci/hooks", cwd=proj)
    gx.ok("install-hooks")
    assert (proj / "ci" / "hooks" / "pre-push").exists()
    gx.ok("install-hooks", "--uninstall")
    assert not (proj / "ci").exists()
    # a directory that was there before stays, even when empty
    (proj / "ci" / "hooks").mkdir(parents=True)
    gx.ok("install-hooks")
    gx.ok("install-hooks", "--uninstall")
    assert (proj / "ci" / "hooks").is_dir() and not any((proj / "ci" / "hooks").iterdir())


@pytest.mark.slow
def test_git_push_dry_run_pushes_no_runs(tmp_path):
    proj, remote, gx = setup(tmp_path)
    gx.ok("install-hooks")
    (run,) = new_runs(proj, 4)
    for flag in ("--dry-run", "-n", "-qn"):
        proc = subprocess.run(
            ["git", "push", flag, "origin", "HEAD:refs/heads/main"],
            cwd=proj,
            capture_output=True,
            text=True,
        )
        assert proc.returncode == 0, proc.stderr
        assert run_refs(remote) == {}, flag
        assert "would push" in proc.stderr and run.rsplit("/", 1)[1] in proc.stderr, proc.stderr
    assert not (remote / "exp").exists()
    git("push", "-q", "origin", "HEAD:refs/heads/main", cwd=proj)
    assert run in run_refs(remote)
