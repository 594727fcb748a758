"""``git exp sweep``: run, resume, show and list hyperparameter sweeps."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from gitexp.cli import echo, repo_of


class SweepGroup(click.Group):
    """``git exp sweep FILE`` starts a sweep; ``git exp sweep show|list|resume`` are subcommands."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["start", *args]
        return super().parse_args(ctx, args)


@click.group("sweep", cls=SweepGroup, context_settings={"help_option_names": ["-h", "--help"]})
def sweep_cmd() -> None:
    """Search hyperparameters: every trial is an ordinary run, linked to its sweep.

    \b
    Examples:
      git exp sweep sweep.yaml -j 2          # prints the sweep id, then runs the trials
      git exp sweep sweep.yaml --dry-run     # the configurations and budgets, nothing run
      git exp sweep sweep.yaml --executor dask://10.0.0.5:8786   # trials on a Dask cluster
      git exp sweep show 20261206-040000-1a2b3c
      git exp sweep list
      git exp sweep resume 20261206-040000-1a2b3c
      git exp log --sweep 20261206-040000-1a2b3c --sort=-val_accuracy

    The sweep file (YAML, TOML or JSON) is described in docs/sweeps.md.
    """


def _gpus(text: str | None) -> list[str]:
    from gitexp.errors import UsageError

    if not text:
        return []
    gpus = [g.strip() for g in text.split(",")]
    if any(not g or not g.replace("-", "").isalnum() for g in gpus):
        raise UsageError(f"--gpus {text!r}: give device ids separated by commas, e.g. 0,1")
    return gpus


def _short(value: Any, width: int = 60) -> str:
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
    text = "".join(ch if ch.isprintable() else "?" for ch in text)
    return text if len(text) <= width else text[: width - 1] + "…"


def _progress_line(p: Any, metric: str | None) -> str:
    parts = [
        f"{p.done}/{p.total} done",
        f"{p.running} running",
        f"{p.pruned} pruned",
        f"{p.failed} failed",
    ]
    if p.best is not None and metric:
        parts.append(f"best {metric}={p.best['value']:.6g} (trial {p.best['trial']})")
    return "sweep: " + ", ".join(parts)


def _run(starter: Any, metric: str | None, quiet: bool) -> None:
    """Start or resume: the id on stdout's first line, progress on stderr, the end."""
    last = [""]

    def on_start(sweep_id: str) -> None:
        click.echo(sweep_id)
        sys.stdout.flush()

    def on_progress(p: Any) -> None:
        if quiet:
            return
        if p.last is not None and p.last.get("state") in ("failed", "killed"):
            err = p.last.get("error") or ""
            echo(f"sweep: trial {p.last['trial']} {p.last['state']}: {_short(err, 200)}", err=True)
            p.last = None
        line = _progress_line(p, metric)
        if line != last[0]:
            last[0] = line
            echo(line, err=True)

    result = starter(on_start, on_progress)
    for w in result.warnings:
        echo(f"git exp: warning: {w}", err=True)
    best = result.best
    if best is not None:
        echo(
            f"sweep {result.id}: {result.status}; best trial {best['trial']} "
            f"{metric}={best['value']:.6g} {_short(best.get('params'))} ({best.get('run')})",
            err=True,
        )
    else:
        echo(f"sweep {result.id}: {result.status}", err=True)
    if result.reason:
        echo(f"git exp: error: {result.reason}", err=True)
    if result.status != "finished" or result.progress.failed:
        raise click.exceptions.Exit(1)


@sweep_cmd.command("start", hidden=True)
@click.argument("spec_file", metavar="FILE")
@click.option(
    "-j",
    "--jobs",
    type=int,
    default=None,
    help="Trials at once (default: 1; with Dask, the cluster's worker threads).",
)
@click.option(
    "--executor",
    default="local",
    show_default=True,
    metavar="ADDRESS",
    help="Where trials run: local (processes on this machine) or dask://HOST:PORT "
    "(a Dask distributed scheduler).",
)
@click.option(
    "--remote",
    default=None,
    metavar="REMOTE",
    help="With a cluster: the git remote workers push runs to (default: as git exp push).",
)
@click.option(
    "--gpus",
    default=None,
    metavar="IDS",
    help="Give each trial one of these GPUs (CUDA_VISIBLE_DEVICES), e.g. 0,1.",
)
@click.option("--dry-run", is_flag=True, help="Print the configurations and budgets; run nothing.")
@click.option("--json", "as_json", is_flag=True, help="With --dry-run: print JSON.")
@click.option("-q", "--quiet", is_flag=True, help="No progress display.")
@click.pass_context
def start_cmd(
    ctx: click.Context,
    spec_file: str,
    jobs: int | None,
    executor: str,
    remote: str | None,
    gpus: str | None,
    dry_run: bool,
    as_json: bool,
    quiet: bool,
) -> None:
    """Run the sweep described in FILE."""
    from gitexp import sweeps

    spec, raw = sweeps.load_spec(spec_file)
    gpu_list = _gpus(gpus)
    if dry_run:
        plan = sweeps.dry_run(spec)
        if as_json:
            click.echo(json.dumps(plan, indent=2, sort_keys=True))
            return
        echo(f"{spec.method} search, seed {spec.seed}: {plan['trials']} configuration(s)")
        for line in plan["brackets_text"]:
            echo(line)
        for c in plan["configurations"]:
            budget = "" if c["budget"] is None else f" budget={c['budget']}"
            cmd = " ".join(c.get("command") or [])
            echo(f"trial {c['trial']}{budget}: {_short(c['params'], 200)}  $ {_short(cmd, 200)}")
        return

    def starter(on_start: Any, on_progress: Any) -> Any:
        return sweeps.start(
            spec,
            repo=repo_of(ctx),
            spec_name=spec_file,
            spec_bytes=raw,
            jobs=jobs,
            executor=executor,
            remote=remote,
            gpus=gpu_list,
            on_start=on_start,
            on_progress=on_progress,
        )

    _run(starter, spec.metric, quiet)


@sweep_cmd.command("resume")
@click.argument("sweep_id", metavar="ID")
@click.option("-j", "--jobs", type=int, default=None, help="Trials at once (default: as before).")
@click.option(
    "--executor", default=None, metavar="ADDRESS", help="Where trials run (default: as before)."
)
@click.option(
    "--remote",
    default=None,
    metavar="REMOTE",
    help="With a cluster: the git remote (default: as before).",
)
@click.option("--gpus", default=None, metavar="IDS", help="Give each trial one of these GPUs.")
@click.option("-q", "--quiet", is_flag=True, help="No progress display.")
@click.pass_context
def resume_cmd(
    ctx: click.Context,
    sweep_id: str,
    jobs: int | None,
    executor: str | None,
    remote: str | None,
    gpus: str | None,
    quiet: bool,
) -> None:
    """Go on with an interrupted sweep: trials whose runs ended are not run again."""
    from gitexp import sweeps

    info = sweeps.describe(sweep_id, repo_of(ctx))
    metric = (info.get("metric") or {}).get("name")
    gpu_list = _gpus(gpus)

    def starter(on_start: Any, on_progress: Any) -> Any:
        return sweeps.resume(
            sweep_id,
            repo=repo_of(ctx),
            jobs=jobs,
            executor=executor,
            remote=remote,
            gpus=gpu_list,
            on_start=on_start,
            on_progress=on_progress,
        )

    _run(starter, metric, quiet)


@sweep_cmd.command("show")
@click.argument("sweep_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def show_cmd(ctx: click.Context, sweep_id: str, as_json: bool) -> None:
    """A sweep: its trials, the best, pruned and failed counts, parameter importance."""
    from gitexp import sweeps
    from gitexp.cli.render import format_table

    info = sweeps.describe(sweep_id, repo_of(ctx))
    if as_json:
        click.echo(json.dumps(info, indent=2, sort_keys=True, default=str))
        return
    metric = (info.get("metric") or {}).get("name")
    counts = info.get("counts") or {}
    echo(f"sweep       {info['id']}")
    echo(f"experiment  {_short(info.get('experiment'))}")
    echo(f"method      {info.get('method')} (seed {info.get('seed')})")
    echo(f"status      {info.get('status')}")
    if metric:
        echo(f"metric      {_short(metric)} ({(info.get('metric') or {}).get('goal')})")
    echo("trials      " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    best = info.get("best")
    if best:
        echo(
            f"best        trial {best['trial']}: {best['value']:.6g} "
            f"{_short(best.get('params'), 200)} ({best.get('run')})"
        )
    rows = []
    for t in info["trials"]:
        run = str(t.get("run") or "")
        rows.append(
            {
                "trial": t["trial"],
                "rung": t.get("rung"),
                "budget": t.get("budget"),
                "state": t.get("state"),
                "value": t.get("value"),
                "params": _short(t.get("params")),
                "run": run.rsplit("/", 1)[-1],
            }
        )
    if rows:
        echo("")
        echo(format_table(["trial", "rung", "budget", "state", "value", "params", "run"], rows))
    imp = [i for i in info.get("importance") or [] if i["importance"] is not None]
    if imp:
        echo("")
        echo("parameter importance (|rank correlation| with the metric, 0..1):")
        for i in imp:
            name = _short(i["param"], 40)
            how = f"({i['measure']}, {i['trials']} trials)"
            echo(f"  {name:<20} {i['importance']:.2f}  {how}")


@sweep_cmd.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def list_cmd(ctx: click.Context, as_json: bool) -> None:
    """Every sweep in the repository, newest first."""
    from gitexp import sweeps
    from gitexp.cli.render import format_table

    items = sweeps.list_sweeps(repo_of(ctx))
    if as_json:
        click.echo(json.dumps(items, indent=2, sort_keys=True))
        return
    if not items:
        echo("no sweeps yet: start one with 'git exp sweep FILE'", err=True)
        return
    rows = []
    for s in items:
        best = s.get("best") or {}
        rows.append(
            {
                "id": s["id"],
                "experiment": _short(s.get("experiment"), 30),
                "method": s.get("method"),
                "status": s.get("status"),
                "trials": s.get("trials"),
                "failed": (s.get("counts") or {}).get("failed", 0),
                "best": best.get("value"),
            }
        )
    echo(format_table(["id", "experiment", "method", "status", "trials", "failed", "best"], rows))
