"""``git exp verify``: the audit report. Only click is imported at load time."""

from __future__ import annotations

from typing import Any

import click

from gitexp.cli import echo, open_store
from gitexp.cli.model_cmds import safe
from gitexp.cli.render import format_json, format_time, human_size

MARK = {"ok": "ok  ", "warning": "WARN", "failed": "FAIL"}


def _report_text(report: Any) -> str:
    f = report.facts
    lines = [report.subject]
    if "model" in f:
        reg = f.get("registered") or {}
        lines.append(
            f"  registered   {format_time(reg.get('time'))} by {safe(reg.get('by'))}"
            + (f': "{safe(reg.get("message"), 80)}"' if reg.get("message") else "")
        )
        promoted = f.get("promoted")
        if promoted:
            how = "rolled back" if promoted.get("op") == "rollback" else "promoted"
            lines.append(
                f"  {how + ' to ' + f['stage']:<12} {format_time(promoted.get('time'))} by "
                f"{safe(promoted.get('by'))}"
                + (f': "{safe(promoted.get("message"), 80)}"' if promoted.get("message") else "")
            )
    lines.append(
        f"  trained by   {safe(f.get('user'))}@{safe(f.get('host'))}, "
        f"{format_time(f.get('start_time'))} to {format_time(f.get('end_time'))} "
        f"(run {safe(f.get('run'))}, {safe(f.get('status'))})"
    )
    code = safe(f.get("code_commit"))[:12] or "?"
    branch = f" on {safe(f.get('branch'))}" if f.get("branch") else ""
    dirty = " (uncommitted changes, snapshot)" if f.get("dirty") else ""
    lines.append(f"  code         commit {code}{branch}{dirty}")
    inputs = f.get("inputs") or []
    data = ", ".join(
        f"{safe(i.get('path'))} (blake3 {safe(i.get('blake3'))[:12]}"
        + (", stored)" if i.get("stored", True) else ")")
        for i in inputs
    )
    lines.append(f"  data         {data or '(none recorded)'}")
    art = f.get("artifact")
    if art:
        lines.append(
            f"  artifact     {safe(art.get('path'))} ({human_size(art.get('size'))}, "
            f"blake3 {safe(art.get('blake3'))[:16]})"
        )
    env = f.get("environment")
    if env:
        lines.append(
            f"  environment  {safe(env.get('python'))} on {safe(env.get('platform'))}, "
            f"{env.get('packages', 0)} packages"
        )
    lines.append("  checks")
    for c in report.checks:
        lines.append(f"    {MARK.get(c.status, c.status)}  {c.name:<12} {safe(c.detail, 160)}")
    lines.append("  verdict      " + ("OK" if report.ok else "FAILED"))
    return "\n".join(lines)


@click.command("verify")
@click.argument("target", required=False, metavar="[RUN | NAME@STAGE]")
@click.option("--strict", is_flag=True, help="Unsigned commits and unrecorded inputs fail too.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def verify_cmd(ctx: click.Context, target: str | None, strict: bool, as_json: bool) -> None:
    """Check a model version's (or a run's) lineage and say who trained it, when,
    from which code and data.

    Checks the signatures of its registry, run and code commits (git
    verify-commit), the artifact's bytes against their BLAKE3, that the code
    commit is here, and that the inputs were recorded. Without TARGET: the
    production version of every model. Exit 1 when a check fails.

    \b
    Examples:
      git exp verify fraud@production
      git exp verify 20261122-143022-7f3a9c --strict
    """
    from gitexp.audit import verify

    with open_store(ctx) as store:
        reports = verify(store, target, strict)
    if as_json:
        echo(format_json([r.to_json() for r in reports]))
    else:
        echo("\n\n".join(_report_text(r) for r in reports))
    if not all(r.ok for r in reports):
        ctx.exit(1)
