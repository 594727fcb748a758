"""The CLI reference covers every command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from gitexp.cli import COMMANDS

CLI_MD = Path(__file__).resolve().parents[2] / "docs" / "cli.md"


@pytest.mark.skipif(not CLI_MD.exists(), reason="docs/cli.md is not written yet")
@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_command_is_documented(command):
    text = CLI_MD.read_text(encoding="utf-8")
    assert re.search(rf"git exp {re.escape(command)}\b", text), (
        f"docs/cli.md does not mention 'git exp {command}'"
    )
