"""The ``git-exp(1)`` man page, rendered from the commands themselves.

``git exp --help`` never reaches git-exp: git turns ``git <cmd> --help`` into
``git help <cmd>``, which runs ``man git-exp``. The package installs this page
as ``share/man/man1/git-exp.1`` (``man`` finds it next to the ``bin/`` on
``PATH``, a virtualenv's included). The checked-in copy is regenerated with
``python -m gitexp.cli.manpage > docs/git-exp.1``; a test keeps the two equal.
"""

from __future__ import annotations

import inspect
import sys

import click

from gitexp.cli import COMMANDS, cli

SEE_ALSO = (
    "docs/cli.md (every command, exit codes, JSON output), docs/python-api.md "
    "(the tracking API), docs/query.md (--where), docs/format.md (the on-disk "
    "format), in the git-exp sources; git-exp COMMAND -h for one command's options."
)


def _esc(text: str) -> str:
    """Text as roff reads it literally: backslashes, and a leading dot or quote."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    lines = []
    for line in text.split("\n"):
        lines.append("\\&" + line if line.startswith((".", "'")) else line)
    return "\n".join(lines)


def _paragraphs(help_text: str) -> list[str]:
    """A click help text as roff: prose paragraphs filled, ``\\b`` blocks kept as written."""
    out: list[str] = []
    for block in inspect.cleandoc(help_text).split("\n\n"):
        if block.startswith("\b\n"):
            out += [".PP", ".nf", _esc(block[2:].rstrip()), ".fi"]
        else:
            out += [".PP", _esc(" ".join(ln.strip() for ln in block.splitlines()))]
    return out


def _options(ctx: click.Context, command: click.Command) -> list[str]:
    out: list[str] = []
    for param in command.get_params(ctx):
        if isinstance(param, click.Argument):  # named in the usage line
            continue
        record = param.get_help_record(ctx)
        if record is None:
            continue
        names, help_text = record
        out += [".TP", f"\\fB{_esc(names)}\\fR", _esc(help_text) if help_text else ""]
    return out


# what each exit code means to the user (docs/cli.md#exit-codes); a test checks that
# every code an error class carries is here
EXIT_CODES = {
    0: "Success.",
    1: "Any other error: a git subprocess failed, a file could not be read.",
    2: "Bad usage: an unknown option, an invalid name, tag, param or metric value, "
    "a config file that does not parse.",
    3: "Not inside a git repository, or the repository has no commits yet.",
    4: "No run matches the address, or several do (they are listed).",
    5: "A run ref kept moving under a compare-and-swap update; try again.",
    6: "Recorded data is missing or damaged, or in a format this release cannot read.",
    7: "An operation the run's state does not allow.",
    8: "git exp reproduce could not replay the run (reproduce exits 1 when it ran "
    "but the results differ).",
    9: "The command would overwrite uncommitted work.",
    10: "A remote problem: unknown remote, cannot connect, authentication, diverged runs.",
    11: "git exp sweep: the executor cannot be used.",
    70: "An internal error (a bug): set GITEXP_DEBUG=1 for the traceback.",
    127: "git exp run: the command does not exist or is not executable.",
    130: "Interrupted (Ctrl-C).",
}


def _exit_status() -> list[str]:
    out = []
    for code, meaning in EXIT_CODES.items():
        out += [".TP", f"\\fB{code}\\fR", _esc(meaning)]
    out += [
        ".PP",
        _esc("git exp run exits with its command's exit code (128 + N when it died of signal N)."),
    ]
    return out


def commands(root: click.Context) -> list[tuple[str, click.Command, click.Context]]:
    """(name, command, context) of every command, sorted, each group followed by
    its subcommands (``import``, ``import mlflow``, ``import tensorboard``)."""
    out: list[tuple[str, click.Command, click.Context]] = []
    for name in sorted(COMMANDS):
        command = cli.get_command(root, name)
        if command is None:
            continue
        ctx = click.Context(command, info_name=f"git exp {name}", parent=root)
        out.append((name, command, ctx))
        if isinstance(command, click.Group):
            for sub in sorted(command.list_commands(ctx)):
                subcommand = command.get_command(ctx, sub)
                if subcommand is not None:
                    subctx = click.Context(
                        subcommand, info_name=f"git exp {name} {sub}", parent=ctx
                    )
                    out.append((f"{name} {sub}", subcommand, subctx))
    return out


def render() -> str:
    """The whole page, roff source."""
    from gitexp import __version__

    root = click.Context(cli, info_name="git exp", **cli.context_settings)
    lines = [
        f'.TH GIT\\-EXP 1 "" "git-exp {__version__}" "git-exp manual"',
        ".SH NAME",
        "git\\-exp \\- experiment tracking that lives in your git repository",
        ".SH SYNOPSIS",
        ".nf",
        "\\fBgit exp\\fR [\\fB\\-C\\fR \\fIPATH\\fR] \\fICOMMAND\\fR "
        "[\\fIOPTIONS\\fR] [\\fIARGS\\fR]",
        "\\fBgit exp\\fR \\fICOMMAND\\fR \\fB\\-h\\fR",
        ".fi",
        ".SH DESCRIPTION",
        *_paragraphs(cli.help or ""),
        ".SH OPTIONS",
        *_options(root, cli),
        ".SH COMMANDS",
    ]
    for name, command, ctx in commands(root):
        usage = " ".join(command.collect_usage_pieces(ctx))
        lines += [f".SS {_esc(f'git exp {name} {usage}')}", *_paragraphs(command.help or "")]
        lines += _options(ctx, command)
    lines += [".SH EXIT STATUS", *_exit_status()]
    lines += [
        ".SH ENVIRONMENT",
        ".TP",
        "\\fBGITEXP_DEBUG\\fR",
        "Set to 1 to see the traceback of an error instead of its one line.",
        ".TP",
        "\\fBGITEXP_RUN_REF\\fR, \\fBGITEXP_REPO\\fR",
        _esc(
            "Set by git exp run for the command it starts: gitexp in that process "
            "logs into the run they name."
        ),
    ]
    lines += [".SH SEE ALSO", _esc(SEE_ALSO), ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.stdout.write(render())
