"""``git exp ui`` and ``git exp report``."""

from __future__ import annotations

import click

from gitexp.cli import echo, repo_of


@click.command("ui")
@click.option(
    "--port", type=int, default=0, show_default=True, help="Port (0, or a taken one: a free port)."
)
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    metavar="ADDR",
    help="Address to listen on (anything but loopback is reachable by others: a warning).",
)
@click.option("--open/--no-open", "open_browser", default=False, help="Open the page in a browser.")
@click.option(
    "--sweep",
    "sweep_id",
    default=None,
    metavar="ID",
    help="Open on the trials of sweep ID (git exp sweep list); the address printed says so.",
)
@click.pass_context
def ui_cmd(
    ctx: click.Context, port: int, host: str, open_browser: bool, sweep_id: str | None
) -> None:
    """Serve the runs of this repository in a browser.

    Prints the page's address (http://127.0.0.1:PORT/) when it is ready; Ctrl-C
    stops it. Runs recorded while the page is open appear without a reload.
    The page's JSON API is described in docs/ui.md.

    \b
    Examples:
      git exp ui --port 8765
      git exp ui --sweep 20261206-040000-1a2b3c
    """
    from gitexp.errors import UsageError
    from gitexp.ui.server import is_loopback, serve

    if not 0 <= port <= 65535:
        raise UsageError(f"--port must be between 0 and 65535, not {port}")
    if sweep_id is not None:
        from gitexp.sweeps import describe
        from gitexp.sweeps.record import validate_id

        describe(validate_id(sweep_id), repo_of(ctx))  # no such sweep: an error before serving
    try:
        server = serve(repo_of(ctx), host, port)
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    if not is_loopback(host):
        echo(
            f"git exp: warning: listening on {host}: anyone who can reach this machine "
            "can read these runs",
            err=True,
        )
    url = server.url if sweep_id is None else f"{server.url}?sweep={sweep_id}"
    click.echo(url)
    if open_browser:
        import webbrowser

        webbrowser.open(url)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        server.dashboard.close()


@click.command("report")
@click.argument("runs", nargs=-1)
@click.option("-e", "--experiment", default=None, help="Only this experiment (and those below it).")
@click.option("-w", "--where", default=None, metavar="EXPR", help="Only runs for which EXPR holds.")
@click.option("-t", "--tag", "tags", multiple=True, help="Only runs with this tag (repeat: all).")
@click.option(
    "--sweep",
    "sweep_id",
    default=None,
    metavar="ID",
    help="Only the trials of sweep ID, with the sweep's summary (git exp sweep show).",
)
@click.option(
    "--sort", default=None, metavar="COLUMN", help="Order of the table; -COLUMN descending."
)
@click.option("-n", "--limit", type=int, default=None, help="At most N runs.")
@click.option("--title", default=None, help="The report's title.")
@click.option(
    "-o",
    "--output",
    required=True,
    metavar="FILE",
    help="The HTML file to write (e.g. report.html).",
)
@click.pass_context
def report_cmd(
    ctx: click.Context,
    runs: tuple[str, ...],
    experiment: str | None,
    where: str | None,
    tags: tuple[str, ...],
    sweep_id: str | None,
    sort: str | None,
    limit: int | None,
    title: str | None,
    output: str,
) -> None:
    """Write one self-contained HTML file: the runs table, their overlaid
    curves and parallel coordinates (scripts, styles and data inline; opening
    it makes no network request).

    RUN...: only these runs (any run address); otherwise the runs the filters select.

    \b
    Examples:
      git exp report -e mnist -w 'metrics.acc > 0.9' -o report.html
      git exp report 20261122-143022-7f3a9c 20261122-150102-19c2d4 -o pr.html
      git exp report --sweep 20261206-040000-1a2b3c -o sweep.html
    """
    from gitexp.errors import UsageError
    from gitexp.ui.report import build_report, write_report

    if limit is not None and limit < 0:
        raise UsageError("--limit must be positive")
    args = {
        "experiment": experiment or "",
        "where": where or "",
        "tag": ",".join(tags),
        "sweep": sweep_id or "",
        "sort": sort or "",
        "limit": "" if limit is None else str(limit),
    }
    html = build_report(repo_of(ctx), args, runs, title)
    size = write_report(html, output)
    echo(f"git exp: wrote {output} ({size:,} bytes)", err=True)
