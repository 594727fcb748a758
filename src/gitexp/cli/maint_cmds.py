"""``git exp fsck | gc | rm | tag | note``."""

from __future__ import annotations

from typing import Any

import click

from gitexp.cli import echo, open_store


@click.command("fsck")
@click.argument("runs", nargs=-1)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option(
    "--no-verify-data",
    is_flag=True,
    help="Check that CAS objects exist without re-hashing their bytes.",
)
@click.pass_context
def fsck_cmd(
    ctx: click.Context, runs: tuple[str, ...], as_json: bool, no_verify_data: bool
) -> None:
    """Verify runs: trees parse, format known, code commits and artifacts present
    and intact (BLAKE3). Exits 1 when anything is wrong.

    \b
    Example:
      git exp fsck            # every run
      git exp fsck 20261122-143022-7f3a9c
    """
    from gitexp.cli.render import format_json
    from gitexp.maintenance import fsck, report_json

    with open_store(ctx) as store:
        checks = fsck(store, runs, verify_data=not no_verify_data)
    bad = [c for c in checks if not c.ok]
    if as_json:
        echo(format_json(report_json(checks)))
    else:
        for c in checks:
            if c.ok:
                echo(f"ok      {c.run}")
            else:
                echo(f"BROKEN  {c.run}")
                for p in c.problems:
                    echo(f"        {p}")
        echo(f"{len(checks)} run(s) checked, {len(bad)} with problems", err=True)
    ctx.exit(1 if bad else 0)


@click.command("gc")
@click.option("--dry-run", is_flag=True, help="Report what would be freed; change nothing.")
@click.option(
    "--grace",
    default="1d",
    show_default=True,
    metavar="AGE",
    help="Keep unreferenced objects younger than this (30m, 12h, 2d...).",
)
@click.option("--no-pack", is_flag=True, help="Do not run git gc to pack loose git objects.")
@click.pass_context
def gc_cmd(ctx: click.Context, dry_run: bool, grace: str, no_pack: bool) -> None:
    """Free artifact-store objects that no run references, and pack git objects.

    Runs in progress never lose an object: objects they spooled are kept, and
    so is anything younger than the grace period.
    """
    from gitexp.cli.render import human_size
    from gitexp.maintenance import gc, parse_age

    with open_store(ctx) as store:
        r = gc(store, grace=parse_age(grace), dry_run=dry_run, pack=not no_pack)
    verb = "would free" if dry_run else "freed"
    echo(
        f"{verb} {r.objects_removed} object(s), {human_size(r.bytes_removed)}; "
        f"kept {r.objects_kept} referenced and {r.young_kept} younger than {grace}; "
        f"{'would remove' if dry_run else 'removed'} {r.temp_removed} temporary file(s)"
        + (f" and {r.spools_removed} abandoned spool(s)" if r.spools_removed else "")
        + (f"; finalised {r.runs_settled} crashed run(s)" if r.runs_settled else "")
        + ("; packed git objects" if r.git_packed else "")
    )
    for run in r.postponed:
        echo(
            f"git exp: warning: crashed run not finalised yet (a later command will): {run}",
            err=True,
        )
    for problem in r.problems:
        echo(f"git exp: warning: cannot read run {problem}", err=True)
    if r.problems:
        echo(
            "git exp: error: no object was freed while a run cannot be read "
            "(see 'git exp fsck'; repair or 'git exp rm' it)",
            err=True,
        )
        ctx.exit(1)


def _run_filters(f: Any) -> Any:
    """The filters that select runs to remove or archive, as ``git exp log`` has them."""
    for option in reversed(
        [
            click.option("-e", "--experiment", default=None, help="Only runs of this experiment."),
            click.option(
                "--older-than",
                default=None,
                metavar="AGE",
                help="Only runs started before AGE ago (30d, 6mo).",
            ),
            click.option(
                "-s", "--status", "statuses", multiple=True, help="Only runs with this status."
            ),
            click.option(
                "-t",
                "--tag",
                "tags",
                multiple=True,
                help="Only runs with this tag (repeat: all of them).",
            ),
            click.option(
                "--unless-tag",
                "unless_tags",
                multiple=True,
                metavar="TAG",
                help="Leave out runs with this tag (repeat: any of them).",
            ),
            click.option(
                "-w",
                "--where",
                default=None,
                metavar="EXPR",
                help="Only runs for which EXPR holds (as for 'git exp log --where').",
            ),
        ]
    ):
        f = option(f)
    return f


def _require_selection(verb: str, runs: tuple[str, ...], *filters: Any) -> None:
    """UsageError unless runs are named or a filter is given (``-e ""`` counts:
    it is refused by name later)."""
    if not runs and not any(x is not None and x != () for x in filters):
        from gitexp.errors import UsageError

        raise UsageError(
            f"name the runs to {verb}, or give filters (-e, -s, -t, --unless-tag, -w, --older-than)"
        )


@click.command("rm")
@click.argument("runs", nargs=-1)
@_run_filters
@click.option("--dry-run", is_flag=True, help="List what would be removed, and remove nothing.")
@click.option(
    "--remote", default=None, metavar="REMOTE", help="Also delete the runs on this git remote."
)
@click.pass_context
def rm_cmd(
    ctx: click.Context,
    runs: tuple[str, ...],
    experiment: str | None,
    older_than: str | None,
    statuses: tuple[str, ...],
    tags: tuple[str, ...],
    unless_tags: tuple[str, ...],
    where: str | None,
    dry_run: bool,
    remote: str | None,
) -> None:
    """Delete runs (their refs), here and with --remote on a git remote too.

    Their data is freed later by 'git exp gc'.

    \b
    Examples:
      git exp rm 20261122-143022-7f3a9c
      git exp rm -e sweep --older-than 30d --status failed
      git exp rm -w 'metrics.acc < 0.5' --unless-tag keep --dry-run
    """
    from gitexp.maintenance import remove, select_for_removal

    _require_selection("remove", runs, experiment, older_than, statuses, tags, unless_tags, where)
    with open_store(ctx) as store:
        refs = select_for_removal(
            store, runs, experiment, older_than, statuses, where, tags, unless_tags
        )
        if dry_run:
            for r in refs:
                echo(f"would remove {r.short}" + (f" (here and on {remote})" if remote else ""))
            if not refs:
                echo("no runs matched", err=True)
            return
        remote_result: dict[str, str] = {}
        if remote and refs:  # the remote first: a failure there leaves the local runs
            from gitexp.remotes import delete_runs

            remote_result = delete_runs(store, remote, [str(r) for r in refs])
        removed = remove(store, refs)
    for name in removed:
        echo(f"removed {name}")
    for ref, outcome in sorted(remote_result.items()):
        echo(f"{remote}: {outcome} {ref.removeprefix('refs/experiments/')}")
    if not removed:
        echo("no runs matched", err=True)


@click.command("archive")
@click.argument("runs", nargs=-1)
@click.option(
    "--to", "remote", required=True, metavar="REMOTE", help="The archive remote (a name or URL)."
)
@_run_filters
@click.option("--dry-run", is_flag=True, help="List what would be archived; change nothing.")
@click.pass_context
def archive_cmd(
    ctx: click.Context,
    runs: tuple[str, ...],
    remote: str,
    experiment: str | None,
    older_than: str | None,
    statuses: tuple[str, ...],
    tags: tuple[str, ...],
    unless_tags: tuple[str, ...],
    where: str | None,
    dry_run: bool,
) -> None:
    """Move runs to an archive remote: push them with their artifacts, check the
    remote holds them, then remove them here.

    A run is removed here only once the remote shows its ref at the commit
    pushed and has every artifact object it refers to. 'git exp ls-remote
    REMOTE' lists archived runs; 'git exp pull REMOTE' brings them back;
    'git exp gc' frees the local bytes.

    \b
    Examples:
      git exp archive --to archive --older-than 90d --unless-tag important
      git exp archive --to archive -e sweeps -s failed --dry-run
      git exp archive --to /mnt/nas/exp-archive.git 20261122-143022-7f3a9c
    """
    from gitexp.retention import archive

    _require_selection("archive", runs, experiment, older_than, statuses, tags, unless_tags, where)
    with open_store(ctx) as store:
        result = archive(
            store,
            remote,
            runs,
            experiment,
            older_than,
            statuses,
            where,
            tags,
            unless_tags,
            dry_run=dry_run,
        )
    verb = "would archive" if dry_run else "archived"
    for name in result.archived:
        echo(f"{verb} {name}")
    for name, why in sorted(result.kept.items()):
        echo(f"kept {name}: {why}", err=True)
    if not result.selected:
        echo("no runs matched", err=True)
    elif not dry_run and result.archived:
        echo(
            f"{len(result.archived)} run(s) now only on {result.remote}; "
            "'git exp gc' frees their bytes here",
            err=True,
        )
    err = result.error()
    if err is not None:
        raise err


@click.command("tag")
@click.argument("run")
@click.argument("tags", nargs=-1, required=True)
@click.option("-d", "--delete", is_flag=True, help="Remove these tags instead of adding them.")
@click.pass_context
def tag_cmd(ctx: click.Context, run: str, tags: tuple[str, ...], delete: bool) -> None:
    """Add tags to a run (or remove them with -d)."""
    from gitexp.maintenance import edit

    with open_store(ctx) as store:
        if delete:
            sha = edit(store, run, remove_tags=tags)
        else:
            sha = edit(store, run, add_tags=tags)
    echo(sha)


@click.command("note")
@click.argument("run")
@click.argument("text")
@click.pass_context
def note_cmd(ctx: click.Context, run: str, text: str) -> None:
    """Attach a note to a run."""
    from gitexp.maintenance import edit

    with open_store(ctx) as store:
        echo(edit(store, run, note=text))


@click.command("reindex")
@click.pass_context
def reindex_cmd(ctx: click.Context) -> None:
    """Rebuild the run catalog (.git/exp/catalog) from the refs.

    Never needed for correctness: the catalog updates itself from changed refs.
    """
    from gitexp.catalog import Catalog

    with open_store(ctx) as store:
        n = Catalog(store).rebuild()
    echo(f"catalog rebuilt: {n} run(s)")
