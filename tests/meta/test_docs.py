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


REFERENCE_MD = CLI_MD.parent / "cli-reference.md"


def test_the_option_reference_is_the_generated_one():
    from gitexp.cli.reference import render

    assert REFERENCE_MD.read_text(encoding="utf-8") == render(), (
        "docs/cli-reference.md is stale: python -m gitexp.cli.reference > docs/cli-reference.md"
    )


def _sections() -> dict[str, str]:
    """``### git exp NAME`` (and ``### git exp GROUP SUB``) sections of docs/cli.md,
    each up to the next heading."""
    text = CLI_MD.read_text(encoding="utf-8")
    out = {}
    for part in re.split(r"^#{2,4} ", text, flags=re.M):
        m = re.match(r"git exp ([a-z-]+)(?: ([a-z-]+))?\n", part)
        if m and m.group(1) in COMMANDS:
            out[" ".join(filter(None, m.groups()))] = part
    return out


def _command(name: str) -> tuple[object, object]:
    """(click command, its context) for ``NAME`` or ``GROUP SUB``."""
    import click

    from gitexp.cli import cli

    parts = name.split()
    ctx = click.Context(cli, info_name="git exp")
    command = cli
    for part in parts:
        sub = command.get_command(ctx, part)  # type: ignore[attr-defined]
        assert sub is not None, name
        ctx = click.Context(sub, info_name=part, parent=ctx)
        command = sub
    return command, ctx


def _all_commands() -> list[str]:
    """Every command, and every subcommand of a group as ``GROUP SUB``."""
    import click

    out = []
    for name in sorted(COMMANDS):
        out.append(name)
        command, ctx = _command(name)
        if isinstance(command, click.Group):
            for sub in command.list_commands(ctx):  # type: ignore[arg-type]
                found = command.get_command(ctx, sub)  # type: ignore[arg-type]
                if found is not None and not found.hidden:
                    out.append(f"{name} {sub}")
    return out


def _click_options(name: str) -> set[str]:
    import click

    command, ctx = _command(name)
    return {
        opt
        for p in command.get_params(ctx)  # type: ignore[attr-defined]
        if isinstance(p, click.Option)
        for opt in (*p.opts, *p.secondary_opts)
        if opt not in ("-h", "--help")
    }


@pytest.mark.parametrize("command", _all_commands())
def test_an_option_table_in_cli_md_agrees_with_the_command(command):
    """Where cli.md gives a command an option table, it lists exactly its options
    (the full reference for every command is the generated cli-reference.md)."""
    section = _sections().get(command, "")
    rows = [ln.split("|")[1] for ln in section.splitlines() if ln.startswith("| `-")]
    if not rows:
        return
    documented = {opt for cell in rows for opt in re.findall(r"`(--?[a-zA-Z][\w-]*)", cell)} - {
        "-h",
        "--help",
    }
    real = _click_options(command)
    assert documented == real, (
        f"docs/cli.md, git exp {command}: stale {sorted(documented - real)}, "
        f"missing {sorted(real - documented)}"
    )


def test_every_option_cli_md_names_for_a_command_exists():
    commands = set(_all_commands())
    for command, section in _sections().items():
        named = set(re.findall(r"`git exp " + re.escape(command) + r"\b[^`]*`", section))
        for example in named:
            words = example.strip("`").split()
            which = command
            if len(words) > 3 and f"{command} {words[3]}" in commands:
                which = f"{command} {words[3]}"  # a subcommand of a group
            real = _click_options(which)
            for opt in re.findall(r"(?<![\w-])(--[a-z][\w-]*)", example.split(" -- ")[0]):
                assert opt.split("=")[0] in real | {"--help"}, (
                    f"docs/cli.md shows '{example}': git exp {which} has no {opt}"
                )


def test_the_exit_code_table_lists_every_code():
    from gitexp.cli.manpage import EXIT_CODES

    text = CLI_MD.read_text(encoding="utf-8")
    table = text[text.index("### Exit codes") :]
    listed = {int(m) for m in re.findall(r"^\| (\d+) \|", table, flags=re.M)}
    assert listed == set(EXIT_CODES), set(EXIT_CODES) ^ listed


def test_the_command_list_of_help_says_what_each_command_says_of_itself():
    """`git exp -h` lists the commands from SUMMARIES without importing them; the
    summaries stay the first sentence of each command's own help."""
    import click

    from gitexp.cli import SUMMARIES, cli

    ctx = click.Context(cli)
    assert set(SUMMARIES) == set(COMMANDS)
    for name in COMMANDS:
        cmd = cli.get_command(ctx, name)
        assert cmd is not None
        assert SUMMARIES[name] == cmd.get_short_help_str(limit=10**6), name
