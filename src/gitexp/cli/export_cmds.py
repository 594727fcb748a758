"""``git exp export``."""

from __future__ import annotations

import click

from gitexp.cli import echo, open_store


@click.command("export")
@click.option(
    "-o",
    "--output",
    required=True,
    metavar="FILE",
    help="Where to write the runs: FILE.parquet or FILE.csv.",
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
    output: str,
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
    """
    from gitexp.cli.render import unreadable_warning
    from gitexp.export import export_selected, format_of, metrics_path_for
    from gitexp.leaderboard import Query

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
