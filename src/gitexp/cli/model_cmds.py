"""``git exp model``: the model registry (register, promote, rollback, list, show,
get, history, GTO tags), and the lines push/fetch/pull print for models.

Only click is imported at load time; the services are imported in the commands.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import click

from gitexp.cli import echo, open_store
from gitexp.cli.render import format_number, format_table, format_time, human_size


def safe(value: Any, width: int = 0) -> str:
    """Text from a registry (possibly another clone's) as one printable line."""
    text = "" if value is None else str(value)
    text = "".join(ch if ch.isprintable() else "?" for ch in text.replace("\n", " "))
    if width and len(text) > width:
        text = text[: width - 1] + "…"
    return text


def _json(data: Any) -> None:
    from gitexp.cli.render import format_json

    echo(format_json(data))


@click.group("model", context_settings={"help_option_names": ["-h", "--help"]})
def model_cmd() -> None:
    """The model registry: versions made from runs' artifacts, promoted through
    stages (development, staging, production, archived), aliases, rollback.

    A model is refs/models/NAME; every register, promote and rollback is a
    commit on it (git log refs/models/NAME is the audit trail). git exp push
    and pull carry the models. Address a version as NAME (the latest),
    NAME@production, NAME@v3 or NAME@ALIAS.

    \b
    Examples:
      git exp model register fraud 20261122-143022-7f3a9c -m "new features"
      git exp model promote fraud 3 production -m "passes the CI gate"
      git exp model get fraud@production -o model.npz
      git exp model rollback fraud production
      git exp model history fraud
    """


@model_cmd.command("register")
@click.argument("name")
@click.argument("run")
@click.option(
    "-a",
    "--artifact",
    default=None,
    metavar="PATH",
    help="The run's artifact to register [default: its only output artifact].",
)
@click.option("-m", "--message", default="", help="Why: recorded with the version.")
@click.option("--json", "as_json", is_flag=True, help="Print the new version as JSON.")
@click.pass_context
def register_cmd(
    ctx: click.Context, name: str, run: str, artifact: str | None, message: str, as_json: bool
) -> None:
    """Make the next version of model NAME from RUN's artifact.

    The version records the artifact's BLAKE3, the run's final metrics and its
    lineage (run, code commit, inputs, environment); it starts in development.
    """
    from gitexp.errors import UsageError
    from gitexp.registry.ops import register, version_data

    with open_store(ctx) as store:
        try:
            version = register(store, name, run, artifact, message)
        except UsageError as exc:
            if "output artifacts: name one" in str(exc):
                raise UsageError(f"{exc} with --artifact") from None
            raise
    if as_json:
        _json(version_data(version))
        return
    a = version.artifact
    echo(
        f"{safe(name)} v{version.number} registered from run {safe(version.run.get('experiment'))}"
        f"/{safe(version.run.get('id'))}: {safe(a.path)} ({human_size(a.size)}, "
        f"blake3 {a.blake3[:12]}), stage {version.stage}"
    )


@model_cmd.command("promote")
@click.argument("name")
@click.argument("version")
@click.argument("stage", required=False)
@click.option(
    "--alias", "aliases", multiple=True, metavar="ALIAS", help="Also set this alias; repeatable."
)
@click.option("-m", "--message", default="", help="Why: recorded with the change.")
@click.pass_context
def promote_cmd(
    ctx: click.Context,
    name: str,
    version: str,
    stage: str | None,
    aliases: tuple[str, ...],
    message: str,
) -> None:
    """Put VERSION of NAME in STAGE, and/or set aliases on it.

    VERSION is a number (3 or v3), or latest, an alias or a stage: the version
    it names now. STAGE is development, staging, production or archived. The version that
    held staging or production before is archived. An archived version cannot
    be promoted (git exp model rollback brings a stage's previous holder back).
    """
    from gitexp.registry.ops import promote

    with open_store(ctx) as store:
        events = promote(store, name, version, stage, aliases, message)
    for ev in events:
        if ev.get("alias") is not None:
            was = f" (was v{ev['from']})" if ev.get("from") is not None else ""
            echo(f"{safe(name)}: alias {safe(ev['alias'])} -> v{ev['version']}{was}")
        else:
            archived = ev.get("archived") or []
            extra = f" (archived: {', '.join(f'v{v}' for v in archived)})" if archived else ""
            echo(f"{safe(name)} v{ev['version']} -> {ev['stage']}{extra}")


@model_cmd.command("rollback")
@click.argument("name")
@click.argument("target", metavar="STAGE|ALIAS")
@click.option("-m", "--message", default="", help="Why: recorded with the change.")
@click.pass_context
def rollback_cmd(ctx: click.Context, name: str, target: str, message: str) -> None:
    """Bring back the version that held STAGE (staging, production) or ALIAS
    before the current one; the current holder is archived."""
    from gitexp.registry.ops import rollback

    with open_store(ctx) as store:
        ev = rollback(store, name, target, message)
    back = f"v{ev['to']}" if ev.get("to") is not None else "nothing (alias removed)"
    was = f"v{ev['from']}" if ev.get("from") is not None else "none"
    archived = f", v{ev['from']} archived" if ev.get("stage") and ev.get("from") else ""
    echo(f"{safe(name)} {safe(target)}: {was} -> {back}{archived}")


@model_cmd.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def list_cmd(ctx: click.Context, as_json: bool) -> None:
    """List the models: versions, who holds staging and production, aliases."""
    from gitexp.registry.ops import list_models

    with open_store(ctx) as store:
        models = list_models(store)
    if as_json:
        _json([m.__dict__ for m in models])
        return
    if not models:
        echo("no models yet: register one with 'git exp model register NAME RUN'", err=True)
        return
    rows = [
        {
            "model": safe(m.name),
            "versions": m.versions,
            "latest": f"v{m.latest}",
            "staging": f"v{m.stages['staging']}" if m.stages.get("staging") else "",
            "production": f"v{m.stages['production']}" if m.stages.get("production") else "",
            "aliases": safe(", ".join(f"{a}=v{v}" for a, v in m.aliases.items()), 40),
            "updated": format_time(m.updated),
        }
        for m in models
    ]
    echo(format_table(list(rows[0]), rows))


def _metrics_text(metrics: Any, limit: int = 3) -> str:
    if not isinstance(metrics, dict):
        return ""
    items = sorted(metrics.items())[:limit]
    more = f" +{len(metrics) - limit}" if len(metrics) > limit else ""
    return safe(", ".join(f"{k}={format_number(v)}" for k, v in items) + more, 60)


def _version_text(d: dict[str, Any]) -> str:
    run = d.get("run") or {}
    art = d.get("artifact") or {}
    lin = d.get("lineage") or {}
    reg = d.get("registered") or {}
    lines = [
        f"model       {safe(d['model'])} v{d['version']}",
        f"stage       {d['stage']}"
        + (f" (aliases: {safe(', '.join(d['aliases']))})" if d.get("aliases") else ""),
        f"registered  {format_time(reg.get('time'))} by {safe(reg.get('by'))}"
        + (f": {safe(reg.get('message'), 80)}" if reg.get("message") else ""),
        f"artifact    {safe(art.get('path'))} ({human_size(art.get('size'))}, "
        f"blake3 {safe(art.get('blake3'))})",
        f"run         {safe(run.get('experiment'))}/{safe(run.get('id'))} "
        f"({safe(run.get('status'))}) at commit {safe(run.get('commit'))[:12]}",
        f"trained     {format_time(run.get('start_time'))} to {format_time(run.get('end_time'))}"
        f" by {safe(run.get('user'))}@{safe(run.get('host'))}",
        f"code        {safe(lin.get('code_commit'))[:12]}"
        + (f" on {safe(lin.get('branch'))}" if lin.get("branch") else "")
        + (" (uncommitted changes, snapshot)" if lin.get("dirty") else ""),
    ]
    inputs = lin.get("inputs") or []
    lines.append(
        "data        "
        + (
            ", ".join(f"{safe(i.get('path'))} ({safe(i.get('blake3'))[:12]})" for i in inputs)
            or "(no inputs recorded)"
        )
    )
    env = lin.get("environment") or {}
    lines.append(
        f"environment {safe(env.get('python'))} on {safe(env.get('platform'))}, "
        f"{env.get('packages', 0)} packages"
    )
    if d.get("source"):
        lines.append(f"source      {safe(json.dumps(d['source']))}")
    metrics = d.get("metrics") or {}
    if metrics:
        lines.append("metrics")
        width = max(len(k) for k in metrics)
        for k, v in sorted(metrics.items()):
            lines.append(f"  {safe(k):<{width}}  {format_number(v)}")
    return "\n".join(lines)


@model_cmd.command("show")
@click.argument("address", metavar="NAME[@STAGE|@vN|@ALIAS]")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def show_cmd(ctx: click.Context, address: str, as_json: bool) -> None:
    """Show a model (its versions, stages, aliases) or one version of it (who
    registered it, when and why, its artifact, metrics and lineage)."""
    from gitexp.registry.ops import describe

    with open_store(ctx) as store:
        data = describe(store, address)
    if as_json:
        _json(data)
        return
    if "versions" not in data:
        echo(_version_text(data))
        return
    stages = data["stages"]
    head = [
        f"model       {safe(data['model'])} ({data['ref']} at {data['sha'][:12]})",
        "staging     " + (f"v{stages['staging']}" if stages.get("staging") else "-"),
        "production  " + (f"v{stages['production']}" if stages.get("production") else "-"),
    ]
    if data["aliases"]:
        head.append(
            "aliases     " + safe(", ".join(f"{a}=v{v}" for a, v in data["aliases"].items()))
        )
    rows = []
    for v in data["versions"]:
        reg = v.get("registered") or {}
        run = v.get("run") or {}
        rows.append(
            {
                "version": f"v{v['version']}",
                "stage": v["stage"],
                "aliases": safe(",".join(v.get("aliases") or []), 30),
                "run": safe(f"{run.get('experiment')}/{run.get('id')}", 50),
                "artifact": safe((v.get("artifact") or {}).get("path"), 30),
                "metrics": _metrics_text(v.get("metrics")),
                "registered": format_time(reg.get("time")),
                "by": safe(reg.get("by"), 30),
            }
        )
    echo("\n".join(head))
    if rows:
        echo("")
        echo(format_table(list(rows[0]), rows))


@model_cmd.command("get")
@click.argument("address", metavar="NAME[@STAGE|@vN|@ALIAS]")
@click.option(
    "-o",
    "--out",
    "dest",
    default=None,
    metavar="PATH",
    help="Where to write it [default: its name, in the current directory].",
)
@click.option(
    "-r", "--remote", default=None, help="Remote whose store to fetch missing bytes from."
)
@click.option("-f", "--force", is_flag=True, help="Overwrite PATH if it exists.")
@click.pass_context
def get_cmd(
    ctx: click.Context, address: str, dest: str | None, remote: str | None, force: bool
) -> None:
    """Write the artifact of a model version (NAME@production, ...) to PATH.

    The bytes come from the local store, or from the remote's artifact store
    when they are not here; every byte is verified by BLAKE3 before it is
    written.
    """
    from gitexp.cli.remote_cmds import ProgressLine
    from gitexp.errors import TargetExists
    from gitexp.registry.artifacts import get

    bar = ProgressLine()
    with open_store(ctx) as store:
        try:
            result = get(store, address, dest, remote, force, bar)
        except TargetExists as exc:
            raise TargetExists(f"{exc}; use --force to overwrite it", exc.path) from None
    bar.done()
    what = f"{result.files} file(s)" if result.entry.kind == "dir" else "1 file"
    fetched = f", {result.downloaded} object(s) fetched" if result.downloaded else ""
    echo(
        f"{result.dest}: {what}, {human_size(result.nbytes)} from {safe(result.run)}"
        f"{fetched}, verified"
    )


def _event_text(ev: dict[str, Any]) -> str:
    op = ev.get("op")
    if op == "register":
        text = f"register v{ev.get('version')}"
        if ev.get("source"):
            text += f" (from {safe(json.dumps(ev['source']))})"
    elif op == "promote" and ev.get("alias") is not None:
        text = f"alias {safe(ev['alias'])} -> v{ev.get('version')}"
    elif op == "promote":
        archived = ev.get("archived") or []
        text = f"promote v{ev.get('version')} to {safe(ev.get('stage'))}"
        if archived:
            text += f" (archived {', '.join(f'v{v}' for v in archived)})"
    elif op == "rollback":
        what = ev.get("alias") if ev.get("alias") is not None else ev.get("stage")
        back = f"v{ev['to']}" if ev.get("to") is not None else "none"
        text = f"rollback {safe(what)}: v{ev.get('from')} -> {back}"
    else:
        text = safe(op)
    return text


@model_cmd.command("history")
@click.argument("name")
@click.option("-n", "--limit", type=int, default=None, help="Show at most N events.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def history_cmd(ctx: click.Context, name: str, limit: int | None, as_json: bool) -> None:
    """The model's events, newest first: what changed, who, when, why (the
    commits of refs/models/NAME)."""
    from gitexp.registry.ops import history

    with open_store(ctx) as store:
        events = history(store, name, limit)
    if as_json:
        _json(events)
        return
    for ev in events:
        why = f": {safe(ev.get('message'), 60)}" if ev.get("message") else ""
        echo(
            f"{ev['sha'][:12]}  {format_time(ev.get('time'))}  {safe(ev.get('by'), 40)}  "
            f"{_event_text(ev)}{why}"
        )


def _tag_lines(results: Sequence[Any]) -> None:
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
        if r.status in ("exists", "imported already"):
            continue
        reason = f" ({safe(r.reason)})" if r.reason else ""
        target = f" -> {r.target[:12]}" if r.target else ""
        bad = r.status in ("conflict", "skipped")
        echo(f"  {r.status:<10} {safe(r.tag)}{target}{reason}", err=bad)
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no tags"
    echo(f"tags: {summary}")


@model_cmd.command("export-gto")
@click.argument("names", nargs=-1)
@click.pass_context
def export_gto_cmd(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Write the models (all, or NAMEs) as GTO's git tags: NAME@vN.0.0 per
    version, NAME#STAGE#E per stage change; push them with git push --tags.

    For teams that use GTO or DVC Studio. Tags that exist are kept.
    """
    from gitexp.registry.gto import export_tags

    with open_store(ctx) as store:
        results = export_tags(store, names)
    _tag_lines(results)
    if any(r.status == "conflict" for r in results):
        ctx.exit(1)


@model_cmd.command("import-gto")
@click.argument("names", nargs=-1)
@click.pass_context
def import_gto_cmd(ctx: click.Context, names: tuple[str, ...]) -> None:
    """Register the versions GTO tags name (NAME@vX.Y.Z on a run commit, or on
    a code commit one run was made from) and promote what the newest
    NAME#STAGE#N tags say. Tags already imported are skipped."""
    from gitexp.registry.gto import import_tags

    with open_store(ctx) as store:
        results = import_tags(store, names)
    _tag_lines(results)


# ------------------------------------------------- push / fetch / pull lines


def render_model_sync(
    results: Sequence[Any], quiet: bool, dry_run: bool = False, pushing: bool = False
) -> None:
    """The lines push, fetch and pull print for models."""
    counts: dict[str, int] = {}
    for r in results:
        counts[r.status] = counts.get(r.status, 0) + 1
        bad = not r.ok
        if r.status in ("up to date", "local ahead") or (quiet and not bad):
            continue
        reason = f" ({safe(r.reason)})" if r.reason else ""
        if pushing and r.status == "diverged":
            reason = f" ({safe(r.reason)}; git exp push --force overwrites the remote's)"
        if r.replayed:
            reason = f" ({r.replayed} local change(s) replayed on top of the other side's)"
        echo(f"  {r.status:<11} model {safe(r.name)}{reason}", err=bad)
    if counts and not quiet:
        would = "would be: " if dry_run else ""
        echo("models: " + would + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
