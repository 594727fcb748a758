"""``git exp run | log | show | diff``."""

from __future__ import annotations

import sys

import click

from gitexp.cli import echo, open_store, repo_of


@click.command(
    "run",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option(
    "-e", "--experiment", default=None, help="Experiment (group) name [default: default]."
)
@click.option("-n", "--name", default=None, help="A human name for the run.")
@click.option(
    "-p",
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="A param; repeat for more. Dotted keys nest (opt.lr=0.1).",
)
@click.option(
    "--config",
    default=None,
    metavar="FILE",
    help="A JSON, YAML or TOML config file: its content becomes params, the file an artifact.",
)
@click.option(
    "--input",
    "inputs",
    multiple=True,
    metavar="PATH",
    help="A data input to hash (a directory by Merkle root); repeat for more.",
)
@click.option(
    "--store-inputs",
    is_flag=True,
    help="Also copy the inputs into the artifact store (so reproduce can restore them).",
)
@click.option("-t", "--tag", "tags", multiple=True, help="A tag; repeat for more.")
@click.option("-q", "--quiet", is_flag=True, help="Do not print the run summary line at the end.")
@click.option(
    "--system-metrics/--no-system-metrics",
    default=True,
    show_default=True,
    help="Sample CPU, memory, disk and network I/O and GPUs of the command as system/... metrics.",
)
@click.option(
    "--system-interval",
    type=float,
    default=None,
    metavar="SECONDS",
    help="Seconds between two system metric samples [default: 5].",
)
@click.option(
    "--alert",
    "alert_rules",
    multiple=True,
    metavar="EXPR",
    help="Alert the first time EXPR holds, e.g. 'metrics.val_acc > 0.95' "
    "(the --where language); repeat for more.",
)
@click.option(
    "--alert-on",
    default=None,
    metavar="EVENTS",
    help="Built-in alerts: nan, stalled, finished, failed, killed, crashed, or none "
    "[default: git config exp.alert.on, else nan,failed,crashed].",
)
@click.option(
    "--alert-stalled",
    default=None,
    metavar="AGE",
    help="Alert when the command logs no metric for AGE (30m, 2h).",
)
@click.option(
    "--stop-on-nan",
    is_flag=True,
    help="End the run as failed as soon as a metric becomes NaN or infinite.",
)
@click.argument("command", nargs=-1, type=click.UNPROCESSED, required=True)
@click.pass_context
def run_cmd(
    ctx: click.Context,
    experiment: str | None,
    name: str | None,
    params: tuple[str, ...],
    config: str | None,
    inputs: tuple[str, ...],
    store_inputs: bool,
    tags: tuple[str, ...],
    quiet: bool,
    system_metrics: bool,
    system_interval: float | None,
    alert_rules: tuple[str, ...],
    alert_on: str | None,
    alert_stalled: str | None,
    stop_on_nan: bool,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND and record it as a run.

    The command's output streams to the terminal as usual and is stored with
    the run; a Python script that uses gitexp logs into the same run. The exit
    code is the command's.

    Alerts (rules, NaN, the run's end...) are recorded in the run and sent
    to the hook .git/hooks/exp-alert and the webhooks of git config
    exp.alert.webhook (docs/monitoring.md).

    \b
    Examples:
      git exp run -e mnist -p lr=0.01 --input data/ -- python train.py --epochs 5
      git exp run --alert 'metrics.val_acc > 0.95' --stop-on-nan -- python train.py
    """
    from gitexp.runner import run_command

    result = run_command(
        list(command),
        repo=repo_of(ctx),
        cwd=repo_of(ctx),
        experiment=experiment,
        name=name,
        params=params,
        config=config,
        inputs=inputs,
        store_inputs=store_inputs,
        tags=tags,
        stdout=sys.stdout.buffer,
        stderr=sys.stderr.buffer,
        system_metrics=system_metrics,
        system_interval=system_interval,
        alert_rules=alert_rules,
        alert_on=alert_on,
        alert_stalled=alert_stalled,
        stop_on_nan=stop_on_nan,
    )
    for w in result.warnings:
        echo(f"git exp: warning: {w}", err=True)
    if not quiet:
        echo(
            f"git exp: run {result.experiment}/{result.run_id} {result.status} "
            f"(exit {result.exit_code})",
            err=True,
        )
    ctx.exit(result.exit_code)


@click.command("log")
@click.option("-e", "--experiment", default=None, help="Only this experiment (and those below it).")
@click.option(
    "-s",
    "--status",
    "statuses",
    multiple=True,
    help="Only runs with this status (running, finished, failed, crashed, killed).",
)
@click.option(
    "-t", "--tag", "tags", multiple=True, help="Only runs with this tag (repeat: all of them)."
)
@click.option(
    "--sweep",
    "sweep_id",
    default=None,
    metavar="ID",
    help="Only the trial runs of sweep ID (git exp sweep list).",
)
@click.option(
    "--unless-tag",
    "unless_tags",
    multiple=True,
    metavar="TAG",
    help="Leave out runs with this tag (repeat: any of them).",
)
@click.option(
    "--sort",
    default=None,
    metavar="COLUMN",
    help="Sort by a metric, param or column; -COLUMN for descending (--sort=-acc).",
)
@click.option("-n", "--limit", type=int, default=None, help="Show at most N runs.")
@click.option(
    "-c",
    "--columns",
    default=None,
    metavar="A,B,...",
    help="Columns to show, e.g. id,name,params.lr,metrics.acc.",
)
@click.option(
    "-w",
    "--where",
    default=None,
    metavar="EXPR",
    help="Only runs for which EXPR holds, e.g. 'params.lr < 0.01 and metrics.acc > 0.9' "
    "(the language: docs/query.md).",
)
@click.option(
    "--group-by",
    default=None,
    metavar="PARAM[,PARAM]",
    help="One row per value of PARAM: metric mean, std and count over its runs (e.g. seeds).",
)
@click.option(
    "--baseline",
    default=None,
    metavar="RUN",
    help="Add delta(...) columns: each metric minus RUN's (any run address, "
    "or tag:NAME for the newest run with tag NAME).",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON (one object per run).")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV.")
@click.pass_context
def log_cmd(
    ctx: click.Context,
    experiment: str | None,
    statuses: tuple[str, ...],
    tags: tuple[str, ...],
    sweep_id: str | None,
    unless_tags: tuple[str, ...],
    sort: str | None,
    limit: int | None,
    columns: str | None,
    where: str | None,
    group_by: str | None,
    baseline: str | None,
    as_json: bool,
    as_csv: bool,
) -> None:
    """List runs as a leaderboard.

    One row per run: id, experiment, name, status, start, duration, the params
    that differ between the runs listed, and the final metrics.

    \b
    Examples:
      git exp log -e mnist --sort=-acc --limit 10
      git exp log --where 'params.lr < 0.01 and metrics.acc > 0.9 or tags.baseline'
      git exp log --group-by lr          # mean/std/count of each metric over seeds
      git exp log --baseline 20261122-143022-7f3a9c
      git exp log --sweep 20261206-040000-1a2b3c --sort=-val_accuracy
    """
    from gitexp.cli.render import format_csv, format_table, iter_json_array, unreadable_warning
    from gitexp.errors import UsageError
    from gitexp.leaderboard import Query, leaderboard

    if as_json and as_csv:
        raise UsageError("--json and --csv cannot be used together")
    if limit is not None and limit < 0:
        raise UsageError("--limit must be positive")
    if sweep_id is not None:
        from gitexp.sweeps import sweep_tag
        from gitexp.sweeps.record import validate_id

        tags = (*tags, sweep_tag(validate_id(sweep_id)))
    query = Query(
        experiment=experiment,
        status=statuses,
        tags=tags,
        unless_tags=unless_tags,
        where=where,
        sort=sort,
        limit=limit,
        columns=[c.strip() for c in columns.split(",") if c.strip()] if columns else None,
        group_by=[c.strip() for c in group_by.split(",") if c.strip()]
        if group_by is not None
        else None,
        baseline=baseline,
        every_param=as_json or as_csv,
    )
    with open_store(ctx) as store:
        board = leaderboard(store, query)
        hint = None if board.runs_in_repository else remote_runs_hint(store)
    warning = unreadable_warning(board.problems)
    if warning:
        echo(warning, err=True)
    if as_json:
        extra = ("ids",) if board.grouped else ("ref", "sha")
        items = (
            {c: r.get(c) for c in board.columns} | {k: r.get(k) for k in extra} for r in board.rows
        )
        for chunk in iter_json_array(items):  # streamed: 100,000 runs need no big string
            click.echo(chunk, nl=False)
        click.echo("")
    elif as_csv:
        click.echo(format_csv(board.columns, board.rows), nl=False)
    elif not board.rows:
        if board.runs_in_repository or (query.filtered and not hint):
            echo("no runs match", err=True)
        else:
            echo(hint or "no runs yet: record one with 'git exp run -- <command>'", err=True)
    else:
        echo(format_table(board.columns, board.rows))


def remote_runs_hint(store: object) -> str | None:
    """What to say when the repository has no runs but a remote it fetched from has some."""
    from gitexp.leaderboard import remotes_with_runs

    names = remotes_with_runs(store)  # type: ignore[arg-type]
    if not names:
        return None
    return f"no runs here yet, but {names[0]} has some: get them with 'git exp pull {names[0]}'"


@click.command("show")
@click.argument("run")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def show_cmd(ctx: click.Context, run: str, as_json: bool) -> None:
    """Show everything about one run.

    RUN is a run id, experiment/run-id, a full ref, or a commit sha prefix.
    """
    from gitexp.cli.render import format_json, format_show
    from gitexp.show import describe

    with open_store(ctx) as store:
        data = describe(store, store.read_settled(run))
    echo(format_json(data) if as_json else format_show(data))


@click.command("diff")
@click.argument("a")
@click.argument("b")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--code", "with_code", is_flag=True, help="Also print the source diff between the code commits."
)
@click.pass_context
def diff_cmd(ctx: click.Context, a: str, b: str, as_json: bool, with_code: bool) -> None:
    """Compare two runs: params, metrics, data, code, environment, artifacts."""
    from gitexp.cli.render import format_diff, format_json
    from gitexp.rundiff import diff_records

    with open_store(ctx) as store:
        data = diff_records(store, store.read_settled(a), store.read_settled(b))
        source = ""
        if with_code and data["code"]["a"] and data["code"]["b"]:
            source = store.repo.diff_text(
                data["code"]["a"], data["code"]["b"], color=sys.stdout.isatty()
            )
    if as_json:
        if with_code:
            data["code"]["source_diff"] = source
        echo(format_json(data))
    else:
        echo(format_diff(data))
        if with_code:
            echo("")
            click.echo(
                source if source else "(no source differences)", nl=not source.endswith("\n")
            )
