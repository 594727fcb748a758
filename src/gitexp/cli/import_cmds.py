"""``git exp import mlflow`` and ``git exp import tensorboard``."""

from __future__ import annotations

from typing import Any

import click

from gitexp.cli import echo, open_store


@click.group("import")
def import_cmd() -> None:
    """Bring runs from another tracker into this repository, as git-exp runs.

    Importing the same runs again adds nothing; each imported run records where
    it came from (run.json "origin").

    \b
    Examples:
      git exp import mlflow ./mlruns
      git exp import mlflow sqlite:///mlflow.db -e legacy
      git exp import mlflow http://127.0.0.1:5000 --mlflow-experiment fraud
      git exp import tensorboard runs/
    """


def _report(report: Any, what: str) -> None:
    for line in report.skipped:
        echo(f"git exp: skipped {line}", err=True)
    for line in report.warnings:
        echo(f"git exp: {line}", err=True)
    parts = [f"imported {len(report.imported)} run(s) from {what}"]
    if report.already:
        parts.append(f"{len(report.already)} imported before")
    if report.skipped:
        parts.append(f"{len(report.skipped)} skipped")
    echo(", ".join(parts))


@import_cmd.command("mlflow")
@click.argument("source", metavar="PATH_OR_URI")
@click.option(
    "-e",
    "--experiment",
    default=None,
    help="Import every run into this experiment (default: each MLflow experiment's "
    "name; MLflow's Default is default).",
)
@click.option(
    "--mlflow-experiment",
    "only",
    multiple=True,
    metavar="NAME",
    help="Only this MLflow experiment (name or id); repeat for more.",
)
@click.pass_context
def import_mlflow_cmd(
    ctx: click.Context, source: str, experiment: str | None, only: tuple[str, ...]
) -> None:
    """Import the runs of an MLflow store: an mlruns directory, a sqlite:///
    database (or .db file), or a tracking server URL.

    Params, every metric point (steps and times), tags, name, notes, status,
    times and artifacts (MLflow 3 logged models too) are recorded; runs still
    running are left for a later import. Needs MLflow: pip install 'git-exp[mlflow]'.
    """
    from gitexp.interop.mlflow_store import import_mlflow, shown_uri

    with open_store(ctx) as store:
        report = import_mlflow(
            store, source, experiment=experiment, only=only, progress=lambda line: echo(line)
        )
    _report(report, shown_uri(source))


@import_cmd.command("tensorboard")
@click.argument("logdir", metavar="LOGDIR")
@click.option(
    "-e",
    "--experiment",
    default=None,
    help="The experiment to import into (default: LOGDIR's name).",
)
@click.pass_context
def import_tensorboard_cmd(ctx: click.Context, logdir: str, experiment: str | None) -> None:
    """Import the scalars (and hparams) of TensorBoard event files: every
    directory under LOGDIR that holds tfevents files is one run.

    Needs TensorBoard: pip install 'git-exp[tensorboard]'.
    """
    from gitexp.interop.tensorboard import import_tensorboard

    with open_store(ctx) as store:
        report = import_tensorboard(
            store, logdir, experiment=experiment, progress=lambda line: echo(line)
        )
    _report(report, logdir)
