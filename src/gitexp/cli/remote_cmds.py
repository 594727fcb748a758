"""``git exp push | fetch | pull | ls-remote | get | install-hooks``.

Only click is imported at load time; the services (dulwich, pyarrow) are
imported inside the commands.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import click

from gitexp.cli import echo, open_store, repo_of
from gitexp.cli.render import human_size


class ProgressLine:
    """Renders service progress on stderr: a live line on a terminal, else a
    line every few seconds (only long transfers print anything)."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self.start = time.monotonic()
        self.last = 0.0
        self.open = False
        self.pending = ""  # an unfinished line of the server's progress text

    def __call__(self, p: Any) -> None:
        if self.quiet:
            return
        now = time.monotonic()
        final = p.total and p.done >= p.total
        if p.text:
            # the server's progress comes in chunks that may hold several
            # \r-separated updates, or part of one: show the last whole one
            parts = (self.pending + p.text).replace("\n", "\r").split("\r")
            self.pending = parts.pop()[-500:]
            parts = [t for t in parts if t.strip()]
            if self.tty and parts:
                click.echo("\r\033[K" + parts[-1][:120], nl=False, err=True)
                self.open = True
            return
        every = 0.1 if self.tty else 2.0
        if not final and now - self.last < every:
            return
        if not self.tty and (now - self.start < 2.0):
            return
        self.last = now
        counts = f" {p.done}/{p.total}" if p.total else ""
        size = f", {human_size(p.nbytes)}" if p.nbytes else ""
        if p.total_bytes and p.nbytes:
            size += f" of {human_size(p.total_bytes)}"
        line = f"{p.phase}:{counts}{size}"
        if self.tty:
            click.echo("\r\033[K" + line, nl=False, err=True)
            self.open = True
        else:
            click.echo(line, err=True)

    def done(self) -> None:
        """End the live line."""
        if self.open:
            click.echo("\r\033[K", nl=False, err=True)
            self.open = False


def _short(ref: str) -> str:
    return ref[len("refs/experiments/") :] if ref.startswith("refs/experiments/") else ref


def _counted(refs: Any) -> tuple[dict[str, int], str]:
    """Statuses of the run refs among ``refs``, counted; and '; sweeps: ...' for
    the sweep records among them ('' when there are none)."""
    from gitexp.records.sweeps import SWEEP_NAMESPACE

    runs: dict[str, int] = {}
    sweeps: dict[str, int] = {}
    for r in refs:
        into = sweeps if r.ref.startswith(SWEEP_NAMESPACE) else runs
        into[r.status] = into.get(r.status, 0) + 1
    extra = ", ".join(f"{n} {s}" for s, n in sorted(sweeps.items()))
    return runs, f"; sweeps: {extra}" if extra else ""


@click.command("push")
@click.argument("remote", required=False)
@click.argument("runs", nargs=-1)
@click.option("-e", "--experiment", default=None, help="Push only this experiment's runs.")
@click.option(
    "-f",
    "--force",
    is_flag=True,
    help="Overwrite remote runs that diverged (their remote-only commits are lost there).",
)
@click.option(
    "-n", "--dry-run", is_flag=True, help="Say what would be pushed and uploaded; change nothing."
)
@click.option("-q", "--quiet", is_flag=True, help="Print only problems.")
@click.pass_context
def push_cmd(
    ctx: click.Context,
    remote: str | None,
    runs: tuple[str, ...],
    experiment: str | None,
    force: bool,
    dry_run: bool,
    quiet: bool,
) -> None:
    """Push runs (all, -e EXPERIMENT, or the RUNs named) and their artifacts to REMOTE.

    Artifacts go to the remote's artifact store first (git config
    remote.<name>.expstore, or inside a local remote), then the run refs,
    with the code commits they point at. Only fast-forwards: a run that
    diverged on the remote is reported and left alone. The model registry
    (refs/models/) goes too; a model both sides changed gets the local
    changes replayed on top of the remote's.

    \b
    Examples:
      git exp push                    # every run, to origin
      git exp push origin -e mnist
      git exp push origin 20261122-143022-7f3a9c
    """
    from gitexp.cli.model_cmds import render_model_sync
    from gitexp.records.models import MODELS_NAMESPACE
    from gitexp.registry.sync import push_models, sync_error
    from gitexp.remotes import push

    bar = ProgressLine(quiet)
    with open_store(ctx) as store:
        result = push(
            store,
            remote,
            runs,
            experiment,
            progress=bar,
            force=force,
            dry_run=dry_run,
            also=[MODELS_NAMESPACE],
        )
        # the registry (refs/models/) goes with the runs, from the same listing
        where = result.remote.name or result.remote.url
        models = push_models(store, where, force=force, dry_run=dry_run, listed=result.also)
    bar.done()
    rem = result.remote
    render_model_sync(models, quiet, dry_run, pushing=True)
    models_err = sync_error(models, rem.label)
    if not result.refs:
        if not quiet and not models:
            echo("no runs to push")
        if models_err is not None:
            raise models_err
        return
    would = "would " if dry_run else ""
    if not quiet:
        echo(f"would push to {rem.url} (dry run: nothing changed)" if dry_run else f"To {rem.url}")
    counts, sweeps = _counted(result.refs)
    for r in result.refs:
        if quiet and r.status != "rejected":
            continue
        if r.status == "up to date" and len(result.refs) > 20:
            continue
        reason = f" ({r.reason})" if r.reason else ""
        line = f"  {r.status:<11} {_short(r.ref)}{reason}"
        echo(line, err=r.status == "rejected")
    if not quiet:
        line = "runs: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        if result.git_objects:
            line += f" ({result.git_objects} git object(s), {human_size(result.git_bytes)})"
        echo(line + sweeps)
    if result.local_only or result.local_only_runs:
        name = rem.name or "<remote>"
        what = (
            f"{result.local_only} object(s)"
            if result.local_only
            else f"the artifacts of {result.local_only_runs} run(s)"
        )
        echo(
            f"git exp: artifacts stay local: {rem.label} has no artifact store, so "
            f"{what} {'would not be' if dry_run else 'were not'} "
            "uploaded; set one with "
            f"'git config remote.{name}.expstore <url>' (s3://bucket/path, a shared "
            "directory, ...) and push again",
            err=True,
        )
    elif not quiet:
        if result.objects:
            echo(
                f"artifacts: {would}upload{'' if dry_run else 'ed'} {result.objects} object(s), "
                f"{human_size(result.nbytes)} to {rem.store_url}"
            )
        elif result.checked:
            echo(f"artifacts: nothing to upload ({result.checked} already in {rem.store_url})")
        elif rem.store_url:
            echo(f"artifacts: nothing to upload (the runs are in sync with {rem.store_url})")
        else:
            echo(f"artifacts: none uploaded ({rem.label} has no artifact store)")
    if result.missing_local:
        echo(
            f"git exp: warning: {len(result.missing_local)} referenced object(s) are not in "
            f"the local store and {'would not be' if dry_run else 'were not'} uploaded "
            "(git exp pull fetches them)",
            err=True,
        )
    err = result.error() or models_err
    if err is not None:
        raise err


def _render_fetch(result: Any, quiet: bool) -> None:
    counts, sweeps = _counted(result.refs)
    for r in result.refs:
        bad = r.status in ("diverged", "refused", "skipped")
        if r.status in ("up to date", "local ahead") or (quiet and not bad):
            continue
        reason = f" ({r.reason})" if r.reason else ""
        echo(f"  {r.status:<11} {_short(r.ref)}{reason}", err=bad)
    if not quiet:
        summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no runs"
        echo(f"From {result.remote.url}: {summary}{sweeps}")


def _selection_options(f: Any) -> Any:
    """``-e EXPERIMENT`` and ``--since DATE``: a partial fetch, pull or clone."""
    f = click.option(
        "--since",
        default=None,
        metavar="DATE",
        help="Only runs started at or after DATE (2026-11-20, 2026-11-20T14:30, or an "
        "age: 12h, 7d, 2w; UTC).",
    )(f)
    return click.option(
        "-e", "--experiment", default=None, help="Only this experiment's runs (and below it)."
    )(f)


def _selection(experiment: str | None, since: str | None, runs: tuple[str, ...]) -> Any:
    from gitexp.remotes import Selection, parse_since

    return Selection(
        experiment=experiment, since=parse_since(since) if since else None, runs=list(runs)
    )


@click.command("fetch")
@click.argument("remote", required=False)
@click.argument("runs", nargs=-1)
@_selection_options
@click.option("-q", "--quiet", is_flag=True, help="Print only problems.")
@click.pass_context
def fetch_cmd(
    ctx: click.Context,
    remote: str | None,
    runs: tuple[str, ...],
    experiment: str | None,
    since: str | None,
    quiet: bool,
) -> None:
    """Bring REMOTE's runs (all, the RUNs named, -e, --since) into refs/experiments/,
    and its models.

    No artifacts. A local run whose history diverged from the remote's is kept
    and reported. A model both sides changed gets the local changes replayed on
    top of the remote's.
    """
    from gitexp.cli.model_cmds import render_model_sync
    from gitexp.records.models import MODELS_NAMESPACE
    from gitexp.registry.sync import fetch_models, sync_error
    from gitexp.remotes import fetch

    selection = _selection(experiment, since, runs)
    bar = ProgressLine(quiet)
    with open_store(ctx) as store:
        result = fetch(store, remote, progress=bar, selection=selection, also=[MODELS_NAMESPACE])
        where = result.remote.name or result.remote.url
        models = fetch_models(store, where, listed=result.also)
    bar.done()
    _render_fetch(result, quiet)
    render_model_sync(models, quiet)
    err = result.error() or sync_error(models, result.remote.label)
    if err is not None:
        raise err


@click.command("pull")
@click.argument("remote", required=False)
@click.argument("runs", nargs=-1)
@_selection_options
@click.option(
    "--no-artifacts", is_flag=True, help="Fetch runs only; get artifacts later with git exp get."
)
@click.option("-q", "--quiet", is_flag=True, help="Print only problems.")
@click.pass_context
def pull_cmd(
    ctx: click.Context,
    remote: str | None,
    runs: tuple[str, ...],
    experiment: str | None,
    since: str | None,
    no_artifacts: bool,
    quiet: bool,
) -> None:
    """Fetch REMOTE's runs (all, the RUNs named, -e, --since), then their artifacts.

    Artifacts are verified by BLAKE3: one whose path is hostile or whose bytes
    do not match its hash is refused; nothing is written outside the local
    store. Only what is new is looked at: runs already in sync cost nothing.

    \b
    Examples:
      git exp pull                          # every run of origin
      git exp pull -e mnist --since 7d      # last week's mnist runs
      git exp pull origin 20261122-143022-7f3a9c
    """
    from gitexp.records.models import MODELS_NAMESPACE
    from gitexp.registry.sync import fetch_models
    from gitexp.remotes import pull

    selection = _selection(experiment, since, runs)
    bar = ProgressLine(quiet)
    with open_store(ctx) as store:
        result = pull(
            store,
            remote,
            artifacts=not no_artifacts,
            progress=bar,
            selection=selection,
            also=[MODELS_NAMESPACE],
        )
        fetched = result.fetch
        models = fetch_models(store, fetched.remote.name or fetched.remote.url, fetched.also)
    bar.done()
    _render_pull(result, quiet, models)


def _render_pull(result: Any, quiet: bool, models: Any) -> None:
    from gitexp.cli.model_cmds import render_model_sync
    from gitexp.registry.sync import sync_error

    _render_fetch(result.fetch, quiet)
    render_model_sync(models, quiet)
    rem = result.fetch.remote
    for r in result.refused:
        echo(f"git exp: refused artifact {r}", err=True)
    if result.unavailable:
        shown = ", ".join(result.unavailable[:3]) + (" ..." if len(result.unavailable) > 3 else "")
        echo(
            f"git exp: warning: {len(result.unavailable)} artifact object(s) are not in "
            f"{rem.store_url}: {shown}",
            err=True,
        )
    if result.no_store and not quiet:
        echo(
            f"artifacts: {rem.label} has no artifact store; set one with "
            f"'git config remote.{rem.name or '<remote>'}.expstore <url>'",
            err=True,
        )
    elif not result.skipped and not quiet and result.store_error is None:
        echo(
            f"artifacts: downloaded {result.objects} object(s), "
            f"{human_size(result.nbytes)}, verified"
        )
    err = result.error() or sync_error(models, rem.label) or sync_error(models, rem.label)
    if err is not None:
        raise err


@click.command("clone")
@click.argument("url")
@click.argument("directory", required=False)
@_selection_options
@click.option(
    "--no-artifacts", is_flag=True, help="Pull runs only; get artifacts later with git exp get."
)
@click.option("--no-hooks", is_flag=True, help="Do not install the pre-push hook.")
@click.option("-q", "--quiet", is_flag=True, help="Print only problems.")
def clone_cmd(
    url: str,
    directory: str | None,
    experiment: str | None,
    since: str | None,
    no_artifacts: bool,
    no_hooks: bool,
    quiet: bool,
) -> None:
    """Clone URL into DIRECTORY set up for runs, then pull them (all, -e, --since).

    From then on a plain `git fetch` brings teammates' runs too (as
    remote-tracking refs, which `git exp pull` takes without downloading them
    again), and a plain `git push` pushes your runs and their artifacts first
    (the pre-push hook).

    \b
    Examples:
      git exp clone https://git.example.com/team/project.git
      git exp clone ssh://host/srv/project.git -e mnist --since 30d
    """
    from gitexp.remotes import clone

    bar = ProgressLine(quiet)
    result = clone(
        url,
        directory,
        selection=_selection(experiment, since, ()),
        artifacts=not no_artifacts,
        hooks=not no_hooks,
        progress=bar,
    )
    from gitexp.registry.sync import fetch_models
    from gitexp.store import ExpStore

    with ExpStore(result.path) as store:
        models = fetch_models(store, "origin")
    bar.done()
    if not quiet:
        echo(f"Cloned into {result.path}")
        if result.refspec:
            echo(f"git fetch brings runs too (remote.origin.fetch {result.refspec})")
        else:
            echo("git fetch is not set up to bring runs (a date is no refspec): git exp pull")
        if result.hook == "installed":
            echo("git push pushes your runs and their artifacts too (the pre-push hook)")
    _render_pull(result.pull, quiet, models)


@click.command("ls-remote")
@click.argument("remote", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def ls_remote_cmd(ctx: click.Context, remote: str | None, as_json: bool) -> None:
    """List the runs REMOTE has, from its refs alone (nothing is downloaded).

    The last column compares with this repository: same, absent, unfetched
    (fetch to compare), behind, ahead or diverged.
    """
    from gitexp.remotes import ls_remote

    with open_store(ctx) as store:
        _, runs = ls_remote(store, remote)
    if as_json:
        import json

        echo(json.dumps([{"ref": r.ref, "sha": r.sha, "local": r.local} for r in runs], indent=2))
        return
    for r in runs:
        echo(f"{r.sha[:12]}  {_short(r.ref):<60} {r.local}")


@click.command("get")
@click.argument("run")
@click.argument("path", required=False)
@click.option(
    "-o",
    "--out",
    "dest",
    default=None,
    metavar="DEST",
    help="Where to write it [default: its name, in the current directory].",
)
@click.option(
    "-r", "--remote", default=None, help="Remote whose store to fetch missing objects from."
)
@click.option("-f", "--force", is_flag=True, help="Overwrite DEST if it exists.")
@click.pass_context
def get_cmd(
    ctx: click.Context,
    run: str,
    path: str | None,
    dest: str | None,
    remote: str | None,
    force: bool,
) -> None:
    """Restore artifact or input PATH of RUN (a file, or a whole directory entry).

    Objects missing here are fetched from the remote's artifact store. Every
    byte is verified by BLAKE3 before it is written. Without PATH: fetch every
    stored artifact and input of RUN into the local store (after a
    `git exp pull --no-artifacts`), writing no file.

    \b
    Example:
      git exp get 20261122-143022-7f3a9c model.npz -o /tmp/model.npz
      git exp get 20261122-143022-7f3a9c
    """
    from gitexp.errors import UsageError
    from gitexp.remotes import fetch_run_artifacts, get

    bar = ProgressLine()
    if path is None:
        if dest is not None or force:
            raise UsageError(
                "-o/--force need a PATH to restore; without PATH, get fetches the run's "
                "artifacts into the local store"
            )
        with open_store(ctx) as store:
            fetched = fetch_run_artifacts(store, run, remote=remote, progress=bar)
        bar.done()
        for r in fetched.refused:
            echo(f"git exp: refused artifact {r}", err=True)
        for label in fetched.unavailable:
            echo(f"git exp: missing artifact {label}", err=True)
        if fetched.remote is None:
            echo(f"{fetched.run}: all {fetched.present} object(s) are here already")
        else:
            echo(
                f"{fetched.run}: fetched {fetched.objects} object(s), {human_size(fetched.nbytes)} "
                f"from {fetched.remote.store_url}, verified ({fetched.present} here already)"
            )
        err = fetched.error()
        if err is not None:
            raise err
        return
    from gitexp.errors import TargetExists

    with open_store(ctx) as store:
        try:
            result = get(store, run, path, dest, remote=remote, force=force, progress=bar)
        except TargetExists as exc:
            raise TargetExists(f"{exc}; use --force to overwrite it", exc.path) from None
    bar.done()
    what = f"{result.files} file(s)" if result.entry.kind == "dir" else "1 file"
    fetched_n = f", {result.downloaded} object(s) fetched" if result.downloaded else ""
    echo(
        f"{result.dest}: {what}, {human_size(result.nbytes)} from {result.run}{fetched_n}, verified"
    )


@click.command("install-hooks")
@click.option("--uninstall", is_flag=True, help="Remove the hook and restore the previous one.")
@click.pass_context
def install_hooks_cmd(ctx: click.Context, uninstall: bool) -> None:
    """Install the pre-push hook: `git push` then also pushes your runs.

    Respects core.hooksPath. An existing pre-push hook is kept as
    pre-push.local and still runs first; --uninstall puts it back.
    """
    from gitexp.hooks import install_in

    result = install_in(repo_of(ctx), uninstall=uninstall)
    extra = (
        " (your previous hook runs first, kept as pre-push.local)"
        if (result.chained and result.action == "installed")
        else ""
    )
    if result.action == "uninstalled" and result.chained:
        extra = " (your previous hook is back)"
    echo(f"{result.action}: {result.path}{extra}")
