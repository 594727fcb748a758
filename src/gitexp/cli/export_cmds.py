"""``git exp export``."""

from __future__ import annotations

import click

from gitexp.cli import echo, open_store


@click.command("export")
@click.option(
    "-o",
    "--output",
    default=None,
    metavar="FILE",
    help="Where to write the runs: FILE.parquet or FILE.csv.",
)
@click.option(
    "--tensorboard",
    "tensorboard_dir",
    default=None,
    metavar="DIR",
    help="Write the runs as TensorBoard event files instead: DIR/<experiment>/<run-id>/ "
    "(needs pip install 'git-exp[tensorboard]').",
)
@click.option(
    "--metrics",
    "with_metrics",
    is_flag=True,
    help="Also write every metric point (id, experiment, key, step, value, time) "
    "to FILE.metrics.parquet (or .csv).",
)
@click.option(
    "--metrics-output",
    default=None,
    metavar="FILE",
    help="Where --metrics writes the points (implies --metrics).",
)
@click.option("-e", "--experiment", default=None, help="Only this experiment (and those below it).")
@click.option("-s", "--status", "statuses", multiple=True, help="Only runs with this status.")
@click.option("-t", "--tag", "tags", multiple=True, help="Only runs with this tag.")
@click.option("-w", "--where", default=None, metavar="EXPR", help="Only runs for which EXPR holds.")
@click.pass_context
def export_cmd(
    ctx: click.Context,
    output: str | None,
    tensorboard_dir: str | None,
    with_metrics: bool,
    metrics_output: str | None,
    experiment: str | None,
    statuses: tuple[str, ...],
    tags: tuple[str, ...],
    where: str | None,
) -> None:
    """Write all runs (one row each: params, final metrics, status, times, tags)
    to a Parquet or CSV file, for pandas, polars or DuckDB.

    \b
    Examples:
      git exp export -o runs.parquet
      git exp export -o runs.csv --metrics        # also runs.metrics.csv
      git exp export -o sweep.parquet -e sweep --where 'status == "finished"'
      git exp export --tensorboard tb/ -e mnist      # then: tensorboard --logdir tb/
    """
    from gitexp.cli.render import unreadable_warning
    from gitexp.errors import UsageError
    from gitexp.export import export_selected, format_of, metrics_path_for
    from gitexp.leaderboard import Query

    if (output is None) == (tensorboard_dir is None):
        raise UsageError("give one of -o/--output FILE and --tensorboard DIR")
    if tensorboard_dir is not None:
        if with_metrics or metrics_output:
            raise UsageError("--tensorboard writes every metric point already; drop --metrics")
        _export_tensorboard(ctx, tensorboard_dir, experiment, statuses, tags, where)
        return
    assert output is not None

    format_of(output)
    points_path = metrics_output or (metrics_path_for(output) if with_metrics else None)
    problems: list[str] = []
    with open_store(ctx) as store:
        query = Query(experiment=experiment, status=statuses, tags=tags, where=where)
        result = export_selected(store, query, output, points_path, problems)
    warning = unreadable_warning(problems)
    if warning:
        echo(warning, err=True)
    msg = f"wrote {result.runs} run(s) to {result.path}"
    if result.metrics_path:
        msg += f" and {result.points} metric point(s) to {result.metrics_path}"
    echo(msg, err=True)


def _export_tensorboard(
    ctx: click.Context,
    directory: str,
    experiment: str | None,
    statuses: tuple[str, ...],
    tags: tuple[str, ...],
    where: str | None,
) -> None:
    from gitexp.cli.render import unreadable_warning
    from gitexp.interop.tensorboard import export_selected_tensorboard
    from gitexp.leaderboard import Query

    problems: list[str] = []
    with open_store(ctx) as store:
        query = Query(experiment=experiment, status=statuses, tags=tags, where=where)
        result = export_selected_tensorboard(store, query, directory, problems)
    warning = unreadable_warning(problems)
    if warning:
        echo(warning, err=True)
    echo(
        f"wrote {result.runs} run(s), {result.points} metric point(s) as TensorBoard "
        f"event files under {result.directory}",
        err=True,
    )
