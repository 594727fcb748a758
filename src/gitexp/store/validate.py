"""Reading a run tree into a :class:`RunRecord`: every check of a run tree is here."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

from gitexp import records as fmt
from gitexp.errors import (
    FormatError,
)
from gitexp.git import MODE_TREE, GitRepo
from gitexp.records import (
    ALERTS_JSON,
    ARTIFACTS_JSON,
    CODE_JSON,
    ENV_JSON,
    METRICS_DIR,
    PARAMS_JSON,
    RUN_JSON,
    SUMMARY_JSON,
    ArtifactEntry,
    ExpRef,
    Summary,
)
from gitexp.store.records import RunRecord

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
# run.json fields that come from the system, not the user: a command line, cwd or
# error text may hold bytes that are not UTF-8, kept exactly by JSON escapes
_SYSTEM_TEXT = ("command", "cwd", "cwd_rel", "error", "config")


def parse_record(
    repo: GitRepo,
    ref: ExpRef,
    sha: str,
    listing: bool = False,
    parsed: dict[tuple[str, str], Any] | None = None,
) -> RunRecord:
    info = repo.commit_info(sha)
    return record_from(
        repo, ref, sha, info.tree, repo.read_tree(info.tree), repo.read_blob, listing, parsed
    )


LISTING_FILES = (RUN_JSON, PARAMS_JSON, SUMMARY_JSON, CODE_JSON)  # what a listing reads


def read_document(
    read_blob: Callable[[str, int], bytes], blob: str, name: str, where: str
) -> bytes:
    """The bytes of the run-tree document ``name`` (blob ``blob``), refused with a
    FormatError naming it when larger than its bound, before they are read."""
    try:
        return read_blob(blob, fmt.doc_limit(name))
    except FormatError as exc:
        raise FormatError(f"{where}: {name}: {exc}") from None


def read_manifest(repo: GitRepo, ref: ExpRef, sha: str) -> list[ArtifactEntry]:
    """What a run commit needs of the artifact store: its manifest, once its
    ``run.json`` says it is a format this release reads (a newer one may need
    anything). Nothing else of the tree is read: a malformed summary or tags
    change nothing of what the commit refers to (``gc`` reads every commit of
    every run this way)."""
    info = repo.commit_info(sha)
    entries = repo.read_tree(info.tree)
    where = f"run {ref.short} ({sha[:12]})"
    if RUN_JSON not in entries:
        raise FormatError(f"{where} has no run.json: it is not a git-exp run")
    data = read_document(repo.read_blob, entries[RUN_JSON][1], RUN_JSON, where)
    run = fmt.parse_json(data, f"{where}: {RUN_JSON}", fmt.doc_limit(RUN_JSON))
    if not isinstance(run, dict):
        raise FormatError(f"{where}: run.json is not an object")
    fmt.check_version(run, where)
    if ARTIFACTS_JSON not in entries:
        return []
    name = ARTIFACTS_JSON
    data = read_document(repo.read_blob, entries[name][1], name, where)
    return fmt.manifest_from_json(fmt.parse_json(data, f"{where}: {name}", fmt.doc_limit(name)))


def check_run(repo: GitRepo, ref: ExpRef, sha: str) -> None:
    """Raise FormatError (or StoreError) when the commit ``sha`` is not a run every
    git-exp reader can read as ``ref``: the checks of :meth:`ExpStore.read`, all of
    them, for a run that is not in this repository yet (what ``pull`` brings)."""
    parse_record(repo, ref, sha)


def record_from(
    repo: GitRepo,
    ref: ExpRef,
    sha: str,
    tree: str,
    entries: Mapping[str, tuple[int, str]],
    read_blob: Callable[[str, int], bytes],
    listing: bool,
    parsed: dict[tuple[str, str], Any] | None = None,
) -> RunRecord:
    """A run record from its tree's entries; every check of a run tree is here.

    ``read_blob(sha, limit)`` refuses (FormatError) a blob larger than ``limit``
    before reading it: each document has its bound (:func:`records.doc_limit`).
    ``parsed``: a memo of files parsed already, by (name, blob sha), for a
    caller reading many runs that share blobs (one ``env.json`` and one
    ``code.json`` for a whole sweep); the values in it are shared, not copied.
    """
    where = f"run {ref.short} ({sha[:12]})"

    def load(name: str, default: Any) -> Any:
        if name not in entries:
            return default
        memo = (name, entries[name][1])
        if parsed is not None and memo in parsed:
            return parsed[memo]
        value = _load(name)
        if parsed is not None and name in (ENV_JSON, CODE_JSON):
            parsed[memo] = value
        return value

    def _load(name: str) -> Any:
        data = read_document(read_blob, entries[name][1], name, where)
        value = fmt.parse_json(data, f"{where}: {name}", fmt.doc_limit(name))
        if name in (RUN_JSON, PARAMS_JSON, SUMMARY_JSON) and _SURROGATE_ESCAPE.search(data):
            # git-exp writes names, tags, params and metric keys as valid Unicode
            # only; a tree from elsewhere that escapes lone surrogates cannot be
            # listed or compared (Parquet, terminals): refuse it like any bad tree
            shown = (
                {k: v for k, v in value.items() if k not in _SYSTEM_TEXT}
                if isinstance(value, dict) and name == RUN_JSON
                else value
            )
            if fmt.has_surrogates(json.dumps(shown, ensure_ascii=False)):
                raise FormatError(f"{where}: {name} holds text that is not valid Unicode")
        return value

    if RUN_JSON not in entries:
        raise FormatError(f"{where} has no run.json: it is not a git-exp run")
    run = load(RUN_JSON, {})
    if not isinstance(run, dict):
        raise FormatError(f"{where}: run.json is not an object")
    fmt.check_version(run, where)
    params = load(PARAMS_JSON, {})
    env = {} if listing else load(ENV_JSON, {})
    code = load(CODE_JSON, {})
    for name, value in ((PARAMS_JSON, params), (ENV_JSON, env), (CODE_JSON, code)):
        if not isinstance(value, dict):
            raise FormatError(f"{where}: {name} is not an object")
    for key in ("tags", "notes", "command"):
        if not isinstance(run.get(key) or [], list):
            raise FormatError(f"{where}: run.json '{key}' is not a list")
    if not isinstance(run.get("status", "running"), str):
        raise FormatError(f"{where}: run.json 'status' is not text")
    segments: list[tuple[str, str]] = []
    if not listing and METRICS_DIR in entries and entries[METRICS_DIR][0] == MODE_TREE:
        segs = repo.read_tree(entries[METRICS_DIR][1])
        segments = sorted((n, s) for n, (_, s) in segs.items() if n.endswith(".parquet"))
    return RunRecord(
        ref=ref,
        sha=sha,
        info=run,
        params=params,
        summary=Summary.from_json(load(SUMMARY_JSON, {})),
        artifacts=[] if listing else fmt.manifest_from_json(load(ARTIFACTS_JSON, [])),
        env=env,
        code=code,
        segments=segments,
        tree=tree,
        alerts=[] if listing else fmt.parse_alerts(load(ALERTS_JSON, []), where),
    )
