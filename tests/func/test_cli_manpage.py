"""``git exp --help``: git turns it into ``man git-exp``, so git-exp ships that page."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from gitexp import errors
from gitexp.cli import COMMANDS
from gitexp.cli.manpage import EXIT_CODES, render

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "git-exp.1"


def test_the_shipped_page_is_the_rendered_one():
    assert PAGE.read_text() == render(), (
        "docs/git-exp.1 is stale: python -m gitexp.cli.manpage > docs/git-exp.1"
    )


def test_the_package_installs_the_page_where_man_looks():
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    data_files = config["tool"]["setuptools"]["data-files"]
    assert data_files["share/man/man1"] == ["docs/git-exp.1"]


def test_every_command_option_and_exit_code_is_on_the_page():
    page = render()
    for name in COMMANDS:
        assert f".SS git exp {name.replace('-', chr(92) + '-')} " in page, name
    assert "\\fB\\-\\-sort COLUMN\\fR" in page and "\\fB\\-\\-store\\-inputs\\fR" in page
    codes = {
        obj.exit_code
        for obj in vars(errors).values()
        if isinstance(obj, type) and issubclass(obj, errors.GitExpError)
    }
    assert codes <= set(EXIT_CODES), codes - set(EXIT_CODES)


@pytest.mark.skipif(shutil.which("man") is None, reason="needs man (man-db)")
def test_git_exp_help_shows_the_page(tmp_path, repo):
    """An install prefix as pip makes one: bin/git-exp and share/man/man1/git-exp.1;
    man finds the page from the bin/ on PATH, with no MANPATH set."""
    prefix = tmp_path / "prefix"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "share" / "man" / "man1").mkdir(parents=True)
    shutil.copy(PAGE, prefix / "share" / "man" / "man1" / "git-exp.1")
    exe = shutil.which("git-exp")
    assert exe
    (prefix / "bin" / "git-exp").symlink_to(exe)
    env = {k: v for k, v in os.environ.items() if k not in ("MANPATH", "GIT_MAN_VIEWER")}
    env.update(
        PATH=f"{prefix / 'bin'}{os.pathsep}{env['PATH']}",
        MANPAGER="cat",
        PAGER="cat",
        MANWIDTH="100",
    )
    for argv in (["git", "exp", "--help"], ["git", "help", "exp"]):
        out = subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        assert "No manual entry" not in out.stderr
        text = out.stdout
        assert "git-exp - experiment tracking" in text
        for name in COMMANDS:
            assert f"git exp {name} " in text, name
        assert "EXIT STATUS" in text and "GITEXP_DEBUG" in text
