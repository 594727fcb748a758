"""``git exp``: the command line. Parses, calls a service, renders. Nothing else.

Commands live in modules that import only click at import time; the services
(and with them dulwich and pyarrow) are imported inside each command, so
``git exp --help`` stays fast.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

import click

# command name -> "module:function"; every module imports only click at load time
COMMANDS = {
    "run": "gitexp.cli.commands:run_cmd",
    "log": "gitexp.cli.commands:log_cmd",
    "show": "gitexp.cli.commands:show_cmd",
    "diff": "gitexp.cli.commands:diff_cmd",
    "export": "gitexp.cli.export_cmds:export_cmd",
    "fsck": "gitexp.cli.maint_cmds:fsck_cmd",
    "gc": "gitexp.cli.maint_cmds:gc_cmd",
    "rm": "gitexp.cli.maint_cmds:rm_cmd",
    "tag": "gitexp.cli.maint_cmds:tag_cmd",
    "note": "gitexp.cli.maint_cmds:note_cmd",
    "reindex": "gitexp.cli.maint_cmds:reindex_cmd",
    "reproduce": "gitexp.cli.repro_cmds:reproduce_cmd",
    "checkout-code": "gitexp.cli.repro_cmds:checkout_code_cmd",
    "push": "gitexp.cli.remote_cmds:push_cmd",
    "fetch": "gitexp.cli.remote_cmds:fetch_cmd",
    "pull": "gitexp.cli.remote_cmds:pull_cmd",
    "clone": "gitexp.cli.remote_cmds:clone_cmd",
    "ls-remote": "gitexp.cli.remote_cmds:ls_remote_cmd",
    "get": "gitexp.cli.remote_cmds:get_cmd",
    "install-hooks": "gitexp.cli.remote_cmds:install_hooks_cmd",
    "sweep": "gitexp.cli.sweep_cmds:sweep_cmd",
    "ui": "gitexp.cli.ui_cmds:ui_cmd",
    "report": "gitexp.cli.ui_cmds:report_cmd",
}


class LazyGroup(click.Group):
    """A group whose commands are imported when they are used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attr = target.split(":")
        cmd = getattr(importlib.import_module(module), attr)
        return cmd  # type: ignore[no-any-return]


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="git-exp", prog_name="git exp")
@click.option(
    "-C",
    "repo",
    default=".",
    metavar="PATH",
    help="Run as if git exp was started in PATH.",
)
@click.pass_context
def cli(ctx: click.Context, repo: str) -> None:
    """git-exp: experiment tracking that lives in your git repository.

    Every run is a commit on refs/experiments/<experiment>/<run-id>; large
    files are stored once in .git/exp, keyed by BLAKE3.

    \b
    Examples:
      git exp run -e mnist -p lr=0.01 -- python train.py
      git exp log --sort=-acc
      git exp show 20261122-143022-7f3a9c
      git exp diff <run-a> <run-b>
    """
    if repo != ".":
        # like `git -C`: everything (the command run, relative --config/--input
        # paths, the recorded cwd) happens as if started in PATH
        try:
            os.chdir(repo)
        except OSError as exc:
            raise click.BadParameter(f"cannot change to {repo}: {exc.strerror}") from exc
    ctx.obj = {"repo": "."}


def _debug() -> bool:
    return os.environ.get("GITEXP_DEBUG", "") not in ("", "0")


def invoke(argv: list[str] | None = None) -> int:
    """Run the CLI once and return its exit code.

    Expected failures (a GitExpError, bad usage, an interrupt, an OS error on a
    file the user named) become one line on stderr and their exit code; a bug
    propagates, so that a caller in the same process (the test suite) sees its
    traceback. :func:`main` is the entry point that also turns bugs into one line.
    """
    from gitexp.errors import GitExpError

    try:
        # outside standalone mode click does not exit: a ctx.exit(code) (how ``run``
        # hands back the command's exit code) comes back as main's return value
        code = cli.main(args=argv, prog_name="git exp", standalone_mode=False)
    except GitExpError as exc:
        if _debug():
            raise
        click.echo(f"git exp: error: {exc}", err=True)
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("git exp: aborted", err=True)
        return 130
    except KeyboardInterrupt:
        click.echo("git exp: interrupted", err=True)
        return 130
    except BrokenPipeError:
        raise
    except OSError as exc:
        if _debug():
            raise
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        click.echo(f"git exp: error:{where}: {exc.strerror or exc}", err=True)
        return 1
    return code if isinstance(code, int) else 0


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI, turning every error into one line and an exit code."""
    try:
        code = invoke(argv)
    except BrokenPipeError:
        # output piped into head/less that closed early: not an error
        try:
            sys.stdout = open(os.devnull, "w")
        finally:
            sys.exit(0)
    except Exception as exc:  # a bug: one line, and how to see more
        if _debug():
            raise
        click.echo(
            f"git exp: internal error: {type(exc).__name__}: {exc} "
            "(set GITEXP_DEBUG=1 for a traceback, and please report it)",
            err=True,
        )
        sys.exit(70)
    sys.exit(code)


def echo(text: str = "", err: bool = False) -> None:
    """Print a line of output."""
    click.echo(text, err=err)


def open_store(ctx: click.Context) -> Any:
    """The run store of the command's repository, resolving sha prefixes through
    the catalog (``git exp show <sha>`` stays quick with 100,000 runs)."""
    from gitexp.catalog import indexed_store

    return indexed_store(repo_of(ctx))


def repo_of(ctx: click.Context) -> Any:
    """The repository path given with -C (default: the working directory)."""
    obj = ctx.find_root().obj or {}
    return obj.get("repo", ".")
