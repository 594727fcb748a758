"""``git exp reproduce | checkout-code``."""

from __future__ import annotations

import json
import math
import sys
from typing import TYPE_CHECKING, Any

import click

from gitexp.cli import echo, open_store

if TYPE_CHECKING:
    from gitexp.errors import CannotReproduce

_ACTIONS = {
    "restore": "restored from the artifact store",
    "code": "already in the recorded code",
    "copy": "copied from your work tree (hash matches)",
    "link": "linked to your work tree's copy (hash matches; large, so not copied)",
    "in-place": "read where it is (hash matches)",
    "drifted": "DRIFTED",
    "missing": "MISSING",
    "unsupported": "not checked",
}


def _num(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.10g}"
    return str(v)


def _short(key: Any) -> str:
    return str(key)[:12] if key else "-"


def format_plan(plan: dict[str, Any]) -> str:
    """The ``--dry-run`` report."""
    lines = [f"would reproduce {plan['run']} ({plan['sha'][:12]})"]
    code = f"commit {_short(plan['code_commit'])}"
    if plan["dirty"]:
        code += f" (snapshot of the dirty work tree at {_short(plan['head'])})"
    lines.append(f"  code:     {code}, tree {_short(plan['code_tree'])}")
    for f in plan["code_files"]:
        lines.append(f"            + {f['path']} restored from the artifact store")
    cwd = "the top of the code" if plan["cwd_rel"] == "." else plan["cwd_rel"]
    lines.append(f"  where:    a temporary directory holding that code; working directory: {cwd}")
    lines.append("  command:  " + " ".join(plan["argv"]))
    lines.append("  params:   " + (json.dumps(plan["params"], sort_keys=True) or "{}"))
    if plan["config"]:
        how = (
            f"restored at {plan['config_dest']}"
            if plan["config_dest"]
            else f"read at {plan['config'].get('source')}"
        )
        lines.append(
            f"  config:   {plan['config']['path']} ({_short(plan['config']['blake3'])}), {how}"
        )
    if plan["inputs"]:
        width = max(len(i["name"]) for i in plan["inputs"])
        for n, i in enumerate(plan["inputs"]):
            head = "  inputs:   " if n == 0 else "            "
            how = _ACTIONS.get(i["action"], i["action"])
            if i["action"] == "restore" and i.get("restore_as"):
                how += ", outside the repository (the command is pointed at the copy)"
            lines.append(f"{head}{i['name']:<{width}}  {how} ({_short(i['blake3'])})")
    else:
        lines.append("  inputs:   none recorded")
    env = [f"{k}={v}" for k, v in sorted(plan["env_set"].items())]
    if plan["env_unset"]:
        env.append("unset " + " ".join(plan["env_unset"]))
    lines.append("  env:      " + "; ".join(env))
    if plan["seed"] is not None:
        from gitexp.replay import SEED_VIA

        lines.append(f"  seed:     {plan['seed']} ({SEED_VIA[plan['seed_via']]})")
    repeat = int(plan.get("repeat") or 1)
    runs = "a new run" if repeat == 1 else f"{repeat} new runs, one per replay,"
    lines.append(
        f"  records:  {runs} in experiment {plan['experiment']}, reproduces {plan['sha'][:12]}"
    )
    for note in plan["notes"]:
        lines.append(f"note: {note}")
    for problem in plan["problems"]:
        lines.append(f"problem: {problem}")
    if not plan["allow_input_drift"]:
        for d in plan["drift"]:
            lines.append(f"problem: input {d['path']} is not as recorded")
    return "\n".join(lines)


def format_verdict(v: dict[str, Any]) -> str:
    """The human report of a replay."""
    lines = [f"reproduce {v['original']['run']} ({v['original']['sha'][:12]})"]
    replays = v.get("replays") or []
    if len(replays) > 1:
        counts: dict[str, int] = {}
        for r in replays:
            counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
        tally = ", ".join(f"{n} {_WORDS[w].lower()}" for w, n in counts.items())
        lines.append(f"  replays:     {len(replays)} ({tally}); below, the one furthest off:")
    lines.append(f"  replay:      {v['replay']['run']} ({v['replay']['sha'][:12]})")
    fp = v["fingerprint"]
    if fp["same"]:
        lines.append(
            "  fingerprint: identical (code tree, params, inputs, command)"
            + (
                "; paths into the replay directory counted as the original's"
                if fp.get("paths_mapped")
                else ""
            )
        )
    else:
        lines.append("  fingerprint: differs in " + ", ".join(fp["differs"] or ["?"]))
        for p in fp["params"]:
            lines.append(
                f"    param {p['key']}: {json.dumps(p['original'])} -> {json.dumps(p['replay'])}"
            )
        for i in fp["inputs"]:
            lines.append(f"    input {i['path']}: {_short(i['original'])} -> {_short(i['replay'])}")
    st = v["status"]

    def status(word: str, code: Any) -> str:
        return word if code is None else f"{word} (exit {code})"

    lines.append(
        f"  status:      {status(st['original'], st['original_exit_code'])} -> "
        f"{status(st['replay'], st['replay_exit_code'])}"
    )
    if st.get("replay_stderr_tail"):
        lines.append("  replay stderr, last lines:")
        lines += [f"    | {ln}" for ln in st["replay_stderr_tail"]]
    if v["metrics"]:
        lines.append("  metrics:")
        width = max(len(m["key"]) for m in v["metrics"])
        for m in v["metrics"]:
            status = m["status"].replace("_", " ")
            if m["status"] == "identical":
                detail = _num(m["original"])
            else:
                detail = f"{_num(m['original'])} -> {_num(m['replay'])}"
                if m.get("delta") is not None:
                    detail += f" (delta {m['delta']:+.3g})"
                if m.get("first_divergent_step") is not None:
                    detail += f", first differs at step {m['first_divergent_step']}"
            lines.append(f"    {m['key']:<{width}}  {status:<16}  {detail}")
    else:
        lines.append("  metrics:     none logged")
    if v.get("ignored_metrics"):
        lines.append("  ignored:     " + ", ".join(v["ignored_metrics"]))
    if v["outputs"]:
        lines.append("  outputs:")
        width = max(len(o["path"]) for o in v["outputs"])
        for o in v["outputs"]:
            if o["status"] == "identical":
                detail = f"blake3 {_short(o['original'])}"
            else:
                detail = f"{_short(o['original'])} -> {_short(o['replay'])}"
            lines.append(f"    {o['path']:<{width}}  {o['status']:<16}  {detail}")
    lines += _format_spread(v, len(replays))
    env = v["env"]
    diffs = []
    for part in ("python", "platform", "cpu", "gpus", "variables"):
        if part in env:
            diffs.append(
                f"    {part}: {json.dumps(env[part]['a'], sort_keys=True)} -> "
                f"{json.dumps(env[part]['b'], sort_keys=True)}"
            )
    for p in env.get("packages") or []:
        diffs.append(f"    package {p['name']}: {p['a'] or 'absent'} -> {p['b'] or 'absent'}")
    if diffs:
        lines.append("  environment: differs")
        lines += diffs[:20]
        if len(diffs) > 20:
            lines.append(f"    ... and {len(diffs) - 20} more")
    else:
        lines.append("  environment: same Python, packages, platform and hardware")
    for d in v.get("drift") or []:
        lines.append(
            f"  input drift: {d['path']} {_short(d['recorded'])} -> {_short(d['current'])}"
        )
    for e in v["explanations"]:
        lines.append(f"why: {e}")
    for n in v.get("notes") or []:
        lines.append(f"note: {n}")
    for kept in v.get("kept_dirs") or ([v["kept_dir"]] if v.get("kept_dir") else []):
        lines.append(f"kept: {kept}")
    lines.append(f"verdict: {_WORDS[v['verdict']]}")
    return "\n".join(lines)


_WORDS = {
    "reproduced": "REPRODUCED",
    "reproduced_within_tolerance": "REPRODUCED within tolerance",
    "differs": "DIFFERS",
}


def _format_spread(v: dict[str, Any], n: int) -> list[str]:
    """With several replays: each final metric and output file across them."""
    spread = v.get("spread")
    if not spread or n < 2:
        return []
    rows = []
    for m in spread["metrics"]:
        if m["agree"]:
            detail = f"same in every replay: {_num(m['replays'][0])}"
        else:
            distinct = len({repr(x) for x in m["replays"]})
            detail = f"{distinct} different values, {_num(m['min'])} .. {_num(m['max'])}"
        rows.append((m["key"], "agree" if m["agree"] else "VARY", detail))
    for o in spread["outputs"]:
        if o["agree"]:
            detail = f"same bytes in every replay: {_short(o['replays'][0])}"
        else:
            detail = ", ".join(_short(h) for h in o["replays"])
        rows.append((o["path"], "agree" if o["agree"] else "VARY", detail))
    if not rows:
        return []
    width = max(len(r[0]) for r in rows)
    return [f"  across the {n} replays:"] + [
        f"    {key:<{width}}  {word:<5}  {detail}" for key, word, detail in rows
    ]


def _tolerance(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and (not math.isfinite(value) or value < 0):
        raise click.BadParameter(f"must be a finite number >= 0, not {value}")
    return value


def _with_flag(exc: CannotReproduce) -> CannotReproduce:
    """The core states the fact (inputs drifted); the CLI names the flag that replays anyway."""
    from gitexp.errors import InputDrift

    if isinstance(exc, InputDrift):
        return InputDrift(
            f"{exc} (pass --allow-input-drift to replay with the current data)",
            exc.problems,
            exc.drift,
        )
    return exc


@click.command("reproduce")
@click.argument("run")
@click.option(
    "--rtol",
    type=float,
    default=None,
    callback=_tolerance,
    help="Relative tolerance for final metrics.",
)
@click.option(
    "--atol",
    type=float,
    default=None,
    callback=_tolerance,
    help="Absolute tolerance for final metrics.",
)
@click.option(
    "--ignore-metric",
    "ignore_metrics",
    multiple=True,
    metavar="KEY",
    help="Leave this final metric out of the verdict (a glob: 'time/*'; repeat for more). "
    "Default: the git config values of exp.reproduce.ignoreMetric.",
)
@click.option(
    "--allow-input-drift",
    is_flag=True,
    help="Replay even if inputs recorded by hash only have changed since the run.",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print what would be run, where, and with which inputs; run nothing, write nothing.",
)
@click.option("--keep", is_flag=True, help="Keep the temporary directory and print its path.")
@click.option(
    "--repeat",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    metavar="N",
    help="Replay N times: replays that differ from one another show a program that is "
    "not deterministic; replays that agree but not with the original, a change outside it.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("-q", "--quiet", is_flag=True, help="Do not show the replay's own output.")
@click.pass_context
def reproduce_cmd(
    ctx: click.Context,
    run: str,
    rtol: float | None,
    atol: float | None,
    ignore_metrics: tuple[str, ...],
    allow_input_drift: bool,
    dry_run: bool,
    keep: bool,
    repeat: int,
    as_json: bool,
    quiet: bool,
) -> None:
    """Replay RUN from its recorded code, params, config and inputs; compare.

    The code is exported into a temporary directory (your work tree, index,
    HEAD, branches and stash are never touched) and the recorded command runs
    there as a new run of the same experiment, linked to RUN. The replay's own
    output goes to stderr; the report to stdout.

    \b
    Exit status: 0 reproduced (identical, or within --rtol/--atol when given),
    1 results differ, 8 could not replay (missing code or stored object, input
    drift), 130 interrupted.

    \b
    Examples:
      git exp reproduce 20261122-143022-7f3a9c
      git exp reproduce 1a2b3c4d --rtol 1e-6 --json
      git exp reproduce 1a2b3c4d --ignore-metric 'time/*'
      git exp reproduce 20261122-143022-7f3a9c --repeat 3 -q
      git exp reproduce example/20261122-143022-7f3a9c --dry-run
    """
    from gitexp.cli.render import format_json
    from gitexp.errors import CannotReproduce, InputDrift
    from gitexp.replay import check, plan_replay, reproduce_run

    with open_store(ctx) as store:
        if dry_run:
            plan = plan_replay(store, run, allow_input_drift)
            data = plan.to_json()
            data["repeat"] = repeat
            echo(format_json(data) if as_json else format_plan(data))
            try:
                check(plan)
            except CannotReproduce as exc:
                raise _with_flag(exc) from None
            return
        sink = None if quiet else sys.stderr.buffer
        try:
            verdict = reproduce_run(
                store,
                run,
                rtol=rtol,
                atol=atol,
                ignore_metrics=list(ignore_metrics) or None,
                allow_input_drift=allow_input_drift,
                keep=keep,
                repeat=repeat,
                stdout=sink,
                stderr=sink,
            )
        except CannotReproduce as exc:
            worded = _with_flag(exc)
            if as_json and worded.exit_code == 8:
                echo(
                    format_json(
                        {
                            "verdict": "cannot_reproduce",
                            "reproduced": False,
                            "error": str(worded),
                            "problems": worded.problems,
                            "drift": worded.drift if isinstance(worded, InputDrift) else [],
                        }
                    )
                )
            raise worded from None
    echo(format_json(verdict) if as_json else format_verdict(verdict))
    ctx.exit(0 if verdict["reproduced"] else 1)


@click.command("checkout-code")
@click.argument("run")
@click.option(
    "-b",
    "--branch",
    default=None,
    metavar="NAME",
    help="Name of the branch to create [default: exp/<run-id>].",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def checkout_code_cmd(ctx: click.Context, run: str, branch: str | None, as_json: bool) -> None:
    """Create a branch at RUN's code commit and check it out.

    The code commit is the commit the run was made from, or the snapshot of
    the work tree when it had uncommitted changes. Refuses to run while your
    work tree has uncommitted changes; large code files the snapshot kept in
    the artifact store are restored where nothing of yours is in the way.

    \b
    Example:
      git exp checkout-code 20261122-143022-7f3a9c --branch retry-lr
    """
    from gitexp.cli.render import format_json
    from gitexp.errors import BranchExists
    from gitexp.replay import checkout_code

    with open_store(ctx) as store:
        try:
            data = checkout_code(store, run, branch)
        except BranchExists as exc:
            raise BranchExists(
                f"{exc}; choose another name with --branch", exc.branch, exc.commit
            ) from None
    if as_json:
        echo(format_json(data))
        return
    verb = "switched to new branch" if data["created"] else "switched to branch"
    what = (
        f"the snapshot of the dirty work tree (parent {_short(data['head'])})"
        if data["snapshot"]
        else "the commit the run was made from"
    )
    echo(f"{verb} {data['branch']} at {_short(data['commit'])}: {what} of run {data['run']}")
    if data["restored"]:
        echo("restored from the artifact store: " + ", ".join(data["restored"]))
    if data["skipped"]:
        echo(
            "not restored (a file of yours is in the way): " + ", ".join(data["skipped"]),
            err=True,
        )
    if data["missing"]:
        echo(
            "not restored (not in the local artifact store; git exp get RUN fetches them): "
            + ", ".join(data["missing"]),
            err=True,
        )
