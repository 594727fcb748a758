"""``git exp compare`` (significance) and ``git exp check`` (the CI gate).

Only click is imported at load time; the services (and scipy) in the commands.
"""

from __future__ import annotations

from typing import Any

import click

from gitexp.cli import echo, open_store
from gitexp.cli.model_cmds import safe
from gitexp.cli.render import format_json, format_number, format_table


def _num(v: Any, sign: bool = False) -> str:
    if v is None:
        return "-"
    text = format_number(float(v)) if isinstance(v, (int, float)) else str(v)
    return f"+{text}" if sign and isinstance(v, (int, float)) and v > 0 else text


def _interval(ci: Any) -> str:
    if not ci or ci[0] is None:
        return ""
    return f" [{_num(ci[0])}, {_num(ci[1])}]"


def _p(p: Any) -> str:
    if p is None:
        return "-"
    return f"{p:.3g}" if p >= 1e-4 else f"{p:.1e}"


@click.command("compare")
@click.option("-a", "expr_a", required=True, metavar="EXPR", help="Side A: a --where expression.")
@click.option("-b", "expr_b", required=True, metavar="EXPR", help="Side B: a --where expression.")
@click.option(
    "-m",
    "--metric",
    "metrics",
    multiple=True,
    metavar="METRIC",
    help="A metric to compare; repeatable [default: every metric both sides have].",
)
@click.option(
    "--alpha",
    type=float,
    default=0.05,
    show_default=True,
    help="Significance level; intervals are at 1 - alpha.",
)
@click.option("-e", "--experiment", default=None, help="Only runs of this experiment.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON: one object per metric.")
@click.pass_context
def compare_cmd(
    ctx: click.Context,
    expr_a: str,
    expr_b: str,
    metrics: tuple[str, ...],
    alpha: float,
    experiment: str | None,
    as_json: bool,
) -> None:
    """Is B different from A, or is it noise? Each side is a group of runs (one
    run, or several seeds) selected by a --where expression.

    Per metric: each mean with its confidence interval, the difference B - A
    with a bootstrap interval, the p-value of Welch's t-test (a one-sample
    t-test when a side is a single run), Hedges' g, and a verdict.

    \b
    Examples:
      git exp compare -a 'params.opt == "adam"' -b 'params.opt == "sgd"' -m acc
      git exp compare -a 'tags.baseline' -b 'tags.candidate' --alpha 0.01 --json
    """
    from gitexp.comparison import compare

    with open_store(ctx) as store:
        result = compare(store, expr_a, expr_b, metrics, alpha, experiment)
    if as_json:
        echo(format_json(result.to_json()))
        return
    conf = f"{(1 - result.alpha) * 100:g}%"
    echo(f"A: {len(result.a.runs)} run(s) where {safe(result.a.expression)}")
    echo(f"B: {len(result.b.runs)} run(s) where {safe(result.b.expression)}")
    if result.overlap:
        echo(f"git exp: warning: {len(result.overlap)} run(s) are on both sides", err=True)
    for m in result.metrics:
        c = m.result
        echo("")
        echo(safe(m.metric.removeprefix("metrics.")))
        echo(f"  A     {_num(c.mean_a)}{_interval(c.ci_a)}  (n={c.n_a}, {conf} CI)")
        echo(f"  B     {_num(c.mean_b)}{_interval(c.ci_b)}  (n={c.n_b})")
        boot = f" [{_num(c.ci_low)}, {_num(c.ci_high)}] (bootstrap)" if c.ci_low is not None else ""
        echo(f"  B-A   {_num(c.diff, sign=True)}{boot}")
        test = {"welch": "Welch's t-test", "one-sample": "one-sample t-test"}.get(c.test or "", "")
        stats = f"p = {_p(c.p_value)}" + (f" ({test})" if test else "")
        if c.effect_size is not None:
            stats += f", Hedges' g = {c.effect_size:.3g}"
        echo(f"  test  {stats}")
        echo(f"  => {c.verdict}")


@click.command("check")
@click.argument("run", required=False)
@click.option(
    "-w",
    "--where",
    default=None,
    metavar="EXPR",
    help="The candidate is the group of runs EXPR selects (seeds), instead of RUN.",
)
@click.option(
    "-m",
    "--metric",
    "metrics",
    multiple=True,
    metavar="M[:max|:min]",
    help="Compare M with the reference; :max (default) higher is better, :min lower is.",
)
@click.option(
    "--min",
    "mins",
    multiple=True,
    metavar="M=VALUE",
    help="M must be at least VALUE (the mean, for a group); repeatable.",
)
@click.option(
    "--max",
    "maxs",
    multiple=True,
    metavar="M=VALUE",
    help="M must be at most VALUE; repeatable.",
)
@click.option(
    "--against",
    default=None,
    metavar="NAME@STAGE|RUN",
    help="The reference: a model version (fraud@production) or a run.",
)
@click.option(
    "--against-where",
    default=None,
    metavar="EXPR",
    help="The reference is the group of runs EXPR selects.",
)
@click.option(
    "--tolerance",
    default="0",
    show_default=True,
    metavar="T",
    help="How much worse still passes: a number, or a percentage of the reference (1%).",
)
@click.option(
    "--alpha", type=float, default=0.05, show_default=True, help="Significance level for groups."
)
@click.option("-e", "--experiment", default=None, help="Only runs of this experiment (for -w).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def check_cmd(
    ctx: click.Context,
    run: str | None,
    where: str | None,
    metrics: tuple[str, ...],
    mins: tuple[str, ...],
    maxs: tuple[str, ...],
    against: str | None,
    against_where: str | None,
    tolerance: str,
    alpha: float,
    experiment: str | None,
    as_json: bool,
) -> None:
    """The CI gate: exit 0 when RUN (or the group -w selects) passes, 1 when it
    is worse, with a table of what was compared.

    It passes when every --min/--max bound holds and every --metric is at
    least as good as the reference's, within the tolerance. With one run on
    each side that is a plain comparison; when either side is a group of runs
    (seeds), the significance test decides: it fails only when the candidate
    is worse by more than the tolerance with p < alpha.

    \b
    Examples:
      git exp check $RUN --min auc=0.80 --max latency_ms=50
      git exp check $RUN -m auc --against fraud@production --tolerance 0.005
      git exp check -w 'tags.ci-1a2b3c' -m auc -m loss:min --against fraud@production
    """
    from gitexp.comparison import check, parse_bound

    bounds = [parse_bound(b, "min") for b in mins] + [parse_bound(b, "max") for b in maxs]
    with open_store(ctx) as store:
        result = check(
            store,
            run,
            where,
            metrics,
            bounds,
            against,
            against_where,
            tolerance,
            alpha,
            experiment,
        )
    if as_json:
        echo(format_json(result.to_json()))
    else:
        echo(f"candidate: {safe(result.candidate.label)}")
        if result.reference is not None:
            echo(f"reference: {safe(result.reference.label)}")
        rows = []
        for r in result.rows:
            what = {"min": ">= bound", "max": "<= bound"}.get(r.kind, "vs reference")
            goal = "higher" if r.goal == "max" else "lower"
            n = f" (n={r.n_candidate})" if r.n_candidate > 1 else ""
            rn = f" (n={r.n_reference})" if r.n_reference > 1 else ""
            rows.append(
                {
                    "metric": safe(r.metric.removeprefix("metrics.")),
                    "check": what,
                    "better": goal,
                    "candidate": _num(r.candidate) + n,
                    "reference": _num(r.reference) + rn,
                    "diff": _num(r.diff, sign=True),
                    "tolerance": _num(r.tolerance),
                    "p": _p(r.p_value),
                    "result": ("pass: " if r.passed else "FAIL: ") + r.reason,
                }
            )
        echo(format_table(list(rows[0]), rows))
        failed = [r for r in result.rows if not r.passed]
        echo(
            "check passed"
            if result.passed
            else f"check FAILED: {len(failed)} of {len(result.rows)} check(s)"
        )
    if not result.passed:
        ctx.exit(1)
