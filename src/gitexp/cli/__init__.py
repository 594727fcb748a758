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
    "import": "gitexp.cli.import_cmds:import_cmd",
    "fsck": "gitexp.cli.maint_cmds:fsck_cmd",
    "gc": "gitexp.cli.maint_cmds:gc_cmd",
    "rm": "gitexp.cli.maint_cmds:rm_cmd",
    "archive": "gitexp.cli.maint_cmds:archive_cmd",
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
    "model": "gitexp.cli.model_cmds:model_cmd",
    "compare": "gitexp.cli.compare_cmds:compare_cmd",
    "check": "gitexp.cli.compare_cmds:check_cmd",
    "verify": "gitexp.cli.audit_cmds:verify_cmd",
}


# the first sentence of each command's help, which `git exp -h` lists beside it
# (tests/meta/test_docs.py keeps them equal to the commands' own): listing the
# commands imports none of their modules
SUMMARIES = {
    "archive": (
        "Move runs to an archive remote: push them with their artifacts, check the remote"
        " holds them, then remove them here."
    ),
    "check": (
        "The CI gate: exit 0 when RUN (or the group -w selects) passes, 1 when it is "
        "worse, with a table of what was compared."
    ),
    "checkout-code": "Create a branch at RUN's code commit and check it out.",
    "clone": "Clone URL into DIRECTORY set up for runs, then pull them (all, -e, --since).",
    "compare": (
        "Is B different from A, or is it noise? Each side is a group of runs (one run, or"
        " several seeds) selected by a --where expression."
    ),
    "diff": "Compare two runs: params, metrics, data, code, environment, artifacts.",
    "export": (
        "Write all runs (one row each: params, final metrics, status, times, tags) to a "
        "Parquet or CSV file, for pandas, polars or DuckDB."
    ),
    "fetch": (
        "Bring REMOTE's runs (all, the RUNs named, -e, --since) into refs/experiments/,"
        " and its models."
    ),
    "fsck": (
        "Verify runs: trees parse, format known, code commits and artifacts present and "
        "intact (BLAKE3)."
    ),
    "gc": "Free artifact-store objects that no run references, and pack git objects.",
    "get": "Restore artifact or input PATH of RUN (a file, or a whole directory entry).",
    "import": "Bring runs from another tracker into this repository, as git-exp runs.",
    "install-hooks": "Install the pre-push hook: `git push` then also pushes your runs.",
    "log": "List runs as a leaderboard.",
    "ls-remote": "List the runs REMOTE has, from its refs alone (nothing is downloaded).",
    "model": (
        "The model registry: versions made from runs' artifacts, promoted through stages "
        "(development, staging, production, archived), aliases, rollback."
    ),
    "note": "Attach a note to a run.",
    "pull": "Fetch REMOTE's runs (all, the RUNs named, -e, --since), then their artifacts.",
    "push": "Push runs (all, -e EXPERIMENT, or the RUNs named) and their artifacts to REMOTE.",
    "reindex": "Rebuild the run catalog (.git/exp/catalog) from the refs.",
    "report": (
        "Write one self-contained HTML file: the runs table, their overlaid curves and "
        "parallel coordinates (scripts, styles and data inline; opening it makes no "
        "network request)."
    ),
    "reproduce": "Replay RUN from its recorded code, params, config and inputs; compare.",
    "rm": "Delete runs (their refs), here and with --remote on a git remote too.",
    "run": "Run COMMAND and record it as a run.",
    "show": "Show everything about one run.",
    "sweep": "Search hyperparameters: every trial is an ordinary run, linked to its sweep.",
    "tag": "Add tags to a run (or remove them with -d).",
    "ui": "Serve the runs of this repository in a browser.",
    "verify": (
        "Check a model version's (or a run's) lineage and say who trained it, when, from "
        "which code and data."
    ),
}


class LazyGroup(click.Group):
    """A group whose commands are imported when they are used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of ``-h`` as click makes it, from SUMMARIES: no command
        module is imported."""
        names = self.list_commands(ctx)
        if names:
            limit = formatter.width - 6 - max(len(n) for n in names)
            rows = [(n, _shorten(SUMMARIES.get(n, ""), limit)) for n in names]
            with formatter.section("Commands"):
                formatter.write_dl(rows)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, attr = target.split(":")
        cmd = getattr(importlib.import_module(module), attr)
        return cmd  # type: ignore[no-any-return]


def _shorten(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` characters, cut between words with ``...``
    (as click shortens a command's help)."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 3].rsplit(" ", 1)[0].rstrip(",;:")
    return cut + "..."


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="git-exp", prog_name="git exp")
@click.option(
    "-C",
    "repo",
    multiple=True,
    metavar="PATH",
    help=(
        "Run as if git exp was started in PATH: like git -C, the working directory "
        "changes, for the repository, the command run and every relative path. "
        "Several are taken in turn, each relative to the one before."
    ),
)
@click.pass_context
def cli(ctx: click.Context, repo: tuple[str, ...]) -> None:
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
    for path in repo:
        # like `git -C`: everything (the command run, relative --config/--input
        # and output paths, the recorded cwd) happens as if started in PATH; an
        # empty PATH leaves the directory as it is, as git's does
        if not path:
            continue
        try:
            os.chdir(path)
        except OSError as exc:
            raise click.BadParameter(f"cannot change to {path}: {exc.strerror}") from exc
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
