"""``reproduce``: replay a recorded run in a temporary copy of its code, and compare.

The service layer behind ``git exp reproduce``, ``git exp checkout-code`` and
``gitexp.reproduce()``. It never prints; it returns data and raises
:mod:`gitexp.errors`. (The package is ``replay``, not ``reproduce``: a submodule
named ``reproduce`` would replace the ``gitexp.reproduce`` function on import.)

A replay, step by step:

1. :func:`plan_replay` reads the run (code commit, command, cwd, the params it
   was *started* with, config, inputs) and checks, without writing anything,
   that everything needed is here: the code commit, every CAS object to
   restore, and the hashes of inputs recorded by hash only.
2. :func:`replay` exports the code commit into a temporary directory through a
   private index (no worktree is registered, the user's work tree, index, HEAD,
   branches and stash are never touched), restores the code files the snapshot
   kept in the CAS, the config file and the stored inputs, copies or links the
   hash-checked ones, and runs the recorded command there as a new run of the
   same experiment: recorded against the user's repository and the original
   run's code commit, with ``links.reproduces`` set to the original run's sha.
3. :func:`compare` gives the verdict: fingerprint components, final metrics,
   output artifacts, environment.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import stat
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import IO, Any

from gitexp import records as fmt
from gitexp.cas import dir_listing, hash_bytes, hash_file, parse_dir_listing
from gitexp.errors import (
    CannotReproduce,
    CommandNotFound,
    DirtyWorkTree,
    GitExpError,
    InputDrift,
    InvalidName,
    ReplayInterrupted,
    StoreError,
    UsageError,
)
from gitexp.git import MODE_TREE
from gitexp.records import ArtifactEntry
from gitexp.seeding import ENV_SEED  # the replay sets it to the recorded seed
from gitexp.store import ExpStore, RunRecord

# Environment variables the replay sets to their recorded value (or unsets when the
# original run did not have them): they change results, not just where things run.
REPLAYED_VARS = (
    "PYTHONHASHSEED",
    "CUBLAS_WORKSPACE_CONFIG",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "TF_DETERMINISTIC_OPS",
    "XLA_FLAGS",
)
# how the recorded ``seed`` param reaches the replay
SEED_VIA = {
    "params": "replayed through the recorded params",
    "command": "replayed through the recorded command line",
    "script": f"logged by the script itself; the replay sets {ENV_SEED} to it, which "
    "gitexp.seed_everything() uses",
}
COPY_LIMIT = 64 << 20  # hash-checked inputs up to this size are copied, larger ones linked
REPLAY_TAG = "reproduce"
# verdicts, best first; and the start of the explanation that blames the program itself
_RANK = {"reproduced": 0, "reproduced_within_tolerance": 1, "differs": 2}
NOT_DETERMINISTIC = "same code, params, inputs, command and environment gave different results"


# --------------------------------------------------------------------- the plan


@dataclass
class InputPlan:
    """One recorded input and how the replay gets it."""

    name: str  # manifest path
    source: str  # repo-relative or absolute, as recorded
    kind: str  # file or dir
    blake3: str
    size: int
    stored: bool  # bytes in the CAS
    given: bool  # passed to ``git exp run --input`` (passed again); else logged by the script
    action: str  # restore | code | copy | link | in-place | drifted | missing | unsupported
    dest: str | None = None  # repo-relative place in the replay dir; None: used in place
    # stored and outside the repository: its absolute path made relative, the place
    # of its copy under the replay's directory for such inputs (used when the
    # original is not as recorded and the command or the params name it)
    restore_as: str | None = None
    unnamed: bool = False  # stored and outside, but nothing the replay is given names it
    origin: str | None = None  # the user's file that is copied or linked
    current: str | None = None  # its BLAKE3 now, when it was hashed
    current_size: int | None = None
    changed_files: list[str] = field(default_factory=list)  # of a drifted directory

    @property
    def drifted(self) -> bool:
        """True when the input the replay would use is not the recorded one."""
        return self.action in ("drifted", "missing")


@dataclass
class ReplayPlan:
    """Everything a replay of one run needs, checked; what ``--dry-run`` prints."""

    run: str
    ref: str
    sha: str
    experiment: str
    name: str | None
    status: str
    code_commit: str | None
    code_tree: str | None
    dirty: bool
    head: str | None
    command: list[str]
    cwd_rel: str
    original_root: str | None  # the work tree path at record time, when known
    params: dict[str, Any]  # the params the run was started with (config + -p)
    config: ArtifactEntry | None
    config_dest: str | None  # repo-relative; None: checked in place at config.source
    config_remap: bool  # the restored config names paths in the original work tree
    code_files: list[ArtifactEntry]
    inputs: list[InputPlan]
    env_set: dict[str, str]
    env_unset: list[str]
    seed: Any
    seed_via: str | None
    submodules: list[str]
    allow_input_drift: bool = False
    problems: list[str] = field(default_factory=list)  # besides input drift
    notes: list[str] = field(default_factory=list)

    @property
    def drift(self) -> list[dict[str, Any]]:
        """The inputs that are not as recorded."""
        return [_drift_json(i) for i in self.inputs if i.drifted]

    def paths(self, work: str) -> list[tuple[str, str]]:
        """(original, replay) pairs of absolute paths the replay in ``work`` points
        elsewhere: the original work tree to ``work``, and each input from outside
        the repository that is restored to its copy. Longest first."""
        pairs = [
            (i.source, _external_path(work, i.restore_as))
            for i in self.inputs
            if i.action == "restore" and i.restore_as
        ]
        if self.original_root and self.original_root != os.sep:
            pairs.append((self.original_root, work))
        return sorted(pairs, key=lambda p: -len(p[0]))

    def argv(self, work: str) -> list[str]:
        """The command to execute in the replay directory ``work``: absolute paths
        into the original work tree point into ``work`` instead, and paths of
        restored inputs from outside the repository to their copies."""
        pairs = self.paths(work)
        return [_remap_all(a, pairs) for a in self.command]

    def to_json(self) -> dict[str, Any]:
        """JSON-ready form (``--dry-run --json``)."""
        out = asdict(self)
        out["config"] = self.config.to_json() if self.config else None
        out["code_files"] = fmt.manifest_to_json(self.code_files)
        out["inputs"] = [asdict(i) for i in self.inputs]
        out["drift"] = self.drift
        out["argv"] = self.argv("<replay-dir>")
        return out


def _drift_json(i: InputPlan) -> dict[str, Any]:
    return {
        "path": i.name,
        "source": i.source,
        "recorded": i.blake3,
        "recorded_size": i.size,
        "current": i.current,
        "current_size": i.current_size,
        "changed_files": i.changed_files,
    }


def _external_root(work: str) -> str:
    """Where inputs from outside the repository are restored for the replay in
    ``work``: beside the code, in the replay's temporary directory."""
    root, base = os.path.split(work)
    return os.path.join(root, "external" if base != "external" else "external-inputs")


def _external_path(work: str, rel: str) -> str:
    return os.path.join(_external_root(work), *rel.split("/"))


def _remap_all(arg: str, pairs: list[tuple[str, str]]) -> str:
    for old, new in pairs:
        mapped = _remap(arg, old, new)
        if mapped != arg:
            return mapped
    return arg


def _remap_value(value: Any, pairs: list[tuple[str, str]]) -> Any:
    """``value`` (params: nested dicts and lists) with every string remapped."""
    if not pairs:
        return value
    if isinstance(value, str):
        return _remap_all(value, pairs)
    if isinstance(value, dict):
        return {k: _remap_value(v, pairs) for k, v in value.items()}
    if isinstance(value, list):
        return [_remap_value(v, pairs) for v in value]
    return value


def _remap_text(text: str, root: str, work: str) -> str:
    """``text`` (a config file) with every absolute path ``root`` or under it
    pointed at ``work`` instead (``/a/proj/x`` but not ``/a/proj2/x``)."""
    import re

    if not root or root == os.sep:
        return text
    pattern = r"(?<![\w.~/-])" + re.escape(root) + r"(?=$|[/\\\s\"',:;\]}\)])"
    return re.sub(pattern, lambda m: work, text)


def _names(command: list[str], params: Any, path: str) -> bool:
    """True when an argument or a param string is ``path``, or a path under it."""
    probe = [(path, "\0")]
    if any(_remap(a, path, "\0") != a for a in command):
        return True
    return _remap_value(params, probe) != params


def _remap(arg: str, root: str | None, work: str) -> str:
    if not root or root == os.sep:
        return arg
    for lead in ("", *(arg[: i + 1] for i, c in enumerate(arg) if c == "=")):
        rest = arg[len(lead) :]
        if rest == root or rest.startswith(root + os.sep):
            return lead + work + rest[len(root) :]
    return arg


def _rel_under(path: str, root: str) -> str | None:
    """``path`` relative to ``root`` (posix), or None when outside it (lexically)."""
    path, root = os.path.normpath(path), os.path.normpath(root)
    if path == root:
        return "."
    if path.startswith(root.rstrip(os.sep) + os.sep):
        return os.path.relpath(path, root).replace(os.sep, "/")
    return None


def _short(key: str | None) -> str:
    return key[:12] if key else "-"


def _hash_dir_rows(path: str) -> list[tuple[str, str, int, int]]:
    from gitexp.capture import walk_files

    rows = []
    for rel, full in walk_files(path).files:
        key, size = hash_file(full)
        mode = 0o100755 if os.stat(full).st_mode & 0o111 else 0o100644
        rows.append((rel, key, size, mode))
    return rows


def hash_current(path: str) -> tuple[str, int, list[tuple[str, str, int, int]] | None]:
    """(BLAKE3, size, listing rows of a directory or None) of a file or directory now,
    computed as a run records it but without writing anything."""
    if os.path.isdir(path):
        rows = _hash_dir_rows(path)
        return hash_bytes(dir_listing(rows)), sum(r[2] for r in rows), rows
    key, size = hash_file(path)
    return key, size, None


def _changed_files(
    store: ExpStore, recorded: str, rows: list[tuple[str, str, int, int]] | None
) -> list[str]:
    if rows is None or not store.cas.has(recorded):
        return []
    try:
        before = {p: k for p, k, _, _ in parse_dir_listing(store.cas.get_bytes(recorded))}
    except (GitExpError, ValueError):
        return []
    now = {p: k for p, k, _, _ in rows}
    out = []
    for p in sorted(set(before) | set(now)):
        if p not in now:
            out.append(f"{p} (removed)")
        elif p not in before:
            out.append(f"{p} (added)")
        elif before[p] != now[p]:
            out.append(f"{p} (changed)")
    return out


def _tree_hash(store: ExpStore, tree: str | None, rel: str, kind: str) -> str | None:
    """The BLAKE3 that ``rel`` has in the code tree (file bytes, or a directory's
    Merkle root), or None when the tree does not hold it as that kind."""
    if not tree:
        return None
    try:
        found = store.repo.lookup_path(tree, rel)
        if found is None:
            return None
        mode, sha = found
        if kind == "file":
            if mode not in (0o100644, 0o100755):
                return None
            return hash_bytes(store.repo.read_blob(sha))
        if mode != MODE_TREE:
            return None
        rows = []
        for path, fmode, blob in store.repo.iter_tree_files(sha):
            if fmode not in (0o100644, 0o100755):
                return None  # symlinks: let the user's copy decide
            data = store.repo.read_blob(blob)
            rows.append((path, hash_bytes(data), len(data), fmode))
        return hash_bytes(dir_listing(rows))
    except StoreError:
        return None


def _plan_input(
    store: ExpStore,
    entry: ArtifactEntry,
    given: bool,
    code_tree: str | None,
    code_files: dict[str, str],
) -> InputPlan:
    source = entry.source or entry.path
    plan = InputPlan(
        name=entry.path,
        source=source,
        kind=entry.kind,
        blake3=entry.blake3,
        size=entry.size,
        stored=entry.stored,
        given=given,
        action="",
    )
    if os.path.isabs(source):
        if entry.stored:
            with contextlib.suppress(InvalidName):
                plan.restore_as = fmt.normalize_artifact_path(source.lstrip("/"))
        if not os.path.exists(source):
            plan.action = "missing"
            return plan
        plan.current, plan.current_size, rows = hash_current(source)
        if plan.current == entry.blake3:
            plan.action = "in-place"
        else:
            plan.action = "drifted"
            plan.changed_files = _changed_files(store, entry.blake3, rows)
        return plan
    try:
        rel = fmt.normalize_artifact_path(source)
    except InvalidName:
        plan.action = "unsupported"  # "." (the whole work tree) or a bad recorded path
        return plan
    plan.dest = rel
    if entry.stored:
        plan.action = "restore"
        return plan
    if (
        code_files.get(rel) == entry.blake3
        or _tree_hash(store, code_tree, rel, entry.kind) == entry.blake3
    ):
        plan.action = "code"
        return plan
    work_tree = store.repo.work_tree
    origin = os.path.join(work_tree, rel) if work_tree else None
    plan.origin = origin
    if origin is None or not os.path.exists(origin):
        plan.action = "missing"
        return plan
    plan.current, plan.current_size, rows = hash_current(origin)
    if plan.current == entry.blake3:
        plan.action = "copy" if plan.current_size <= COPY_LIMIT else "link"
    else:
        plan.action = "drifted"
        plan.changed_files = _changed_files(store, entry.blake3, rows)
    return plan


def _drift_line(i: InputPlan, run: str | None = None) -> str:
    if i.action == "missing":
        where = i.source if os.path.isabs(i.source) else f"{i.source} in your work tree"
        return (
            f"input {i.name}: recorded {_short(i.blake3)} ({i.size} bytes), "
            f"now missing ({where} does not exist)"
        ) + _unnamed_hint(i, run)
    line = (
        f"input {i.name} drifted: recorded {_short(i.blake3)} ({i.size} bytes), "
        f"now {_short(i.current)} ({i.current_size} bytes)"
    )
    if i.changed_files:
        shown = ", ".join(i.changed_files[:5])
        more = f" and {len(i.changed_files) - 5} more" if len(i.changed_files) > 5 else ""
        line += f": {shown}{more}"
    return line + _unnamed_hint(i, run)


def _unnamed_hint(i: InputPlan, run: str | None = None) -> str:
    if not i.unnamed:
        return ""
    return (
        " (its recorded bytes are in the artifact store, but neither the command nor the "
        "params name this path, so the replay cannot be pointed at a restored copy; "
        f"git exp get {run or 'RUN'} {i.name} -o {i.source}"
        + (" -f" if i.action == "drifted" else "")
        + " puts them back)"
    )


def _first_commit(store: ExpStore, rec: RunRecord) -> RunRecord:
    history = store.history(rec.sha)
    return store.read(rec.ref, history[-1]) if history[-1] != rec.sha else rec


def plan_replay(store: ExpStore, address: str, allow_input_drift: bool = False) -> ReplayPlan:
    """Read a run and check that it can be replayed; write nothing.

    Problems (a missing code commit or CAS object, drifted inputs when
    ``allow_input_drift`` is false) are listed in ``problems``; :func:`check`
    turns them into :class:`~gitexp.errors.CannotReproduce`.
    """
    rec = store.get(address)
    problems: list[str] = []
    notes: list[str] = []
    if rec.status == "running":
        problems.append(f"run {rec.ref.short} is still running; reproduce it once it has ended")
    elif rec.status in ("crashed", "killed"):
        notes.append(
            f"the original run {rec.status}: its metrics are partial, a complete replay will differ"
        )

    code_commit = rec.code_commit
    code_tree = rec.code.get("tree")
    if not code_commit:
        problems.append(f"run {rec.ref.short} records no code commit")
    elif not store.repo.has_object(code_commit):
        problems.append(
            f"the run's code commit {code_commit[:12]} is missing from this repository "
            "(fetch the run with its code: git exp pull)"
        )
        code_tree = None
    else:
        code_tree = store.repo.commit_info(code_commit).tree

    command = [str(a) for a in (rec.info.get("command") or [])]
    if not command:
        problems.append(f"run {rec.ref.short} records no command to replay")
    elif any("ipykernel" in a for a in command[:4]):
        problems.append(
            f"run {rec.ref.short} was recorded from a notebook kernel; reproduce replays "
            "commands (run the notebook's code as a script under git exp run)"
        )

    cwd = rec.info.get("cwd")
    cwd_rel = rec.info.get("cwd_rel")
    if cwd_rel is None and isinstance(cwd, str) and store.repo.work_tree:
        cwd_rel = _rel_under(cwd, store.repo.work_tree)  # runs recorded before cwd_rel
    if not isinstance(cwd_rel, str):
        if cwd:
            notes.append(
                f"the run's working directory {cwd} is not inside this work tree; "
                "replaying from the top of the code"
            )
        cwd_rel = "."
    if cwd_rel != ".":
        try:
            cwd_rel = fmt.normalize_artifact_path(cwd_rel)
        except InvalidName:
            problems.append(f"run {rec.ref.short} records an unusable cwd {cwd_rel!r}")
            cwd_rel = "."
    original_root: str | None = None
    if isinstance(cwd, str) and os.path.isabs(cwd):
        depth = 0 if cwd_rel == "." else cwd_rel.count("/") + 1
        original_root = os.path.normpath(os.path.join(cwd, *([os.pardir] * depth)))

    first = _first_commit(store, rec)
    params = dict(first.params)
    given = {(a.role, a.path) for a in first.artifacts if a.role == "input"}

    code_files = [a for a in rec.artifacts if a.role == "code"]
    for a in code_files:
        if not store.cas.has(a.blake3):
            problems.append(
                f"code file {a.path} ({_short(a.blake3)}) is missing from the artifact store "
                "(git exp pull fetches it)"
            )

    config = next((a for a in first.artifacts if a.role == "config"), None)
    config_dest: str | None = None
    if config is not None:
        src = config.source or config.path
        rel = _rel_under(src, original_root) if original_root and os.path.isabs(src) else None
        if rel and rel != ".":
            config_dest = rel
            if not store.cas.has(config.blake3):
                problems.append(
                    f"config {config.path} ({_short(config.blake3)}) is missing from the "
                    "artifact store"
                )
        elif store.cas.has(config.blake3) and not os.path.isabs(src):
            config_dest = config.path
        else:
            try:
                now = hash_current(src)[0] if os.path.isfile(src) else None
            except OSError:
                now = None
            if now != config.blake3:
                problems.append(
                    f"config {src} is outside the work tree and is not the recorded one "
                    f"(recorded {_short(config.blake3)}, now {_short(now)})"
                )

    config_remap = False
    if config is not None and config_dest and original_root and store.cas.has(config.blake3):
        with contextlib.suppress(GitExpError, UnicodeDecodeError):
            text = store.cas.get_bytes(config.blake3).decode("utf-8")
            config_remap = _remap_text(text, original_root, "\0") != text
        if config_remap:
            notes.append(
                f"the config file {config.path} names paths in the original work tree "
                f"({original_root}); in the replay's copy they are pointed into the copy"
            )
    code_map = {a.path: a.blake3 for a in code_files}
    inputs: list[InputPlan] = []
    for entry in rec.inputs():
        ip = _plan_input(store, entry, ("input", entry.path) in given, code_tree, code_map)
        inputs.append(ip)
        if ip.restore_as and ip.drifted:
            # outside the repository, stored, and not as recorded here: restore it
            # beside the code when what the replay is given names it
            if _names(command, params, ip.source):
                ip.action = "restore"
            else:
                ip.unnamed = True
        if ip.action == "restore":
            missing = _missing_objects(store, entry)
            if missing:
                problems.append(
                    f"input {entry.path}: "
                    f"{len(missing)} stored object(s) missing from the artifact store "
                    f"({', '.join(_short(k) for k in missing[:3])})"
                )
        elif ip.action == "unsupported":
            notes.append(f"input {ip.name} ({ip.source}) is not checked or restored")
    for i in inputs:
        if i.drifted and allow_input_drift:
            notes.append(
                _drift_line(i, rec.ref.short) + " (allowed: replaying with the current data)"
            )
    variables = rec.env.get("variables") or {}
    env_set = {k: str(variables[k]) for k in REPLAYED_VARS if k in variables}
    env_unset = [k for k in REPLAYED_VARS if k not in variables]
    if "PYTHONHASHSEED" not in variables:
        notes.append(
            "PYTHONHASHSEED was not set in the original run: the order of sets of strings "
            "(and anything derived from it) may differ between runs"
        )
    final_params = rec.params
    seed = final_params.get("seed")
    seed_via: str | None = None
    if seed is not None:
        if "seed" in params:
            seed_via = "params"
        elif _seed_in_command(command, seed):
            seed_via = "command"
        else:
            seed_via = "script"
        if isinstance(seed, int) and not isinstance(seed, bool):
            env_set[ENV_SEED] = str(seed)
    submodules: list[str] = []
    if code_tree:
        submodules = store.repo.submodules(code_tree)
        if submodules:
            notes.append("submodules are not materialised: " + ", ".join(submodules[:5]))
    return ReplayPlan(
        run=rec.ref.short,
        ref=str(rec.ref),
        sha=rec.sha,
        experiment=rec.experiment,
        name=rec.name,
        status=rec.status,
        code_commit=code_commit,
        code_tree=code_tree,
        dirty=bool(rec.code.get("dirty")),
        head=rec.code.get("head"),
        command=command,
        cwd_rel=cwd_rel,
        original_root=original_root,
        params=params,
        config=config,
        config_dest=config_dest,
        config_remap=config_remap,
        code_files=code_files,
        inputs=inputs,
        env_set=env_set,
        env_unset=env_unset,
        seed=seed,
        seed_via=seed_via,
        submodules=submodules,
        allow_input_drift=allow_input_drift,
        problems=problems,
        notes=notes,
    )


def _seed_in_command(command: list[str], seed: Any) -> bool:
    """True when the command line passes ``seed`` (``--seed 3``, ``--seed=3``, ``seed=3``)."""
    text = str(seed)
    for prev, arg in zip(["", *command], command):
        if arg == text and "seed" in prev.lower():
            return True
        key, sep, value = arg.rpartition("=")
        if sep and value == text and "seed" in key.lower():
            return True
    return False


def _missing_objects(store: ExpStore, entry: ArtifactEntry) -> list[str]:
    if not store.cas.has(entry.blake3):
        return [entry.blake3]
    if entry.kind != "dir":
        return []
    try:
        rows = parse_dir_listing(store.cas.get_bytes(entry.blake3))
    except (GitExpError, ValueError):
        return [entry.blake3]
    return [key for _, key, _, _ in rows if not store.cas.has(key)]


def check(plan: ReplayPlan) -> None:
    """Raise :class:`CannotReproduce` when the plan has problems, or
    :class:`InputDrift` when inputs drifted and drift was not allowed."""
    drift = [] if plan.allow_input_drift else [i for i in plan.inputs if i.drifted]
    if plan.problems:
        lines = plan.problems + [_drift_line(i, plan.run) for i in drift]
        raise CannotReproduce(f"cannot reproduce {plan.run}: " + "; ".join(lines), lines)
    if drift:
        lines = [_drift_line(i, plan.run) for i in drift]
        raise InputDrift(
            f"cannot reproduce {plan.run}: inputs changed since the run: "
            + "; ".join(lines)
            + " (pass --allow-input-drift to replay with the current data)",
            lines,
            [_drift_json(i) for i in drift],
        )


# ------------------------------------------------------------------- the replay


class _Terminated(BaseException):
    """SIGTERM/SIGHUP while preparing or cleaning up: unwind through ``finally``."""


@contextlib.contextmanager
def _unwind_on_signals() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into an exception (SIGINT already is one), so the
    temporary directory is removed however the replay is stopped."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def raise_(signum: int, frame: Any) -> None:
        raise _Terminated(signum)

    previous = {sig: signal.signal(sig, raise_) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _safe_dest(work: str, rel: str) -> str:
    """``work/rel``, refusing a place reached through a symlink out of ``work``."""
    dest = os.path.join(work, *rel.split("/"))
    real_work = os.path.realpath(work)
    probe = os.path.dirname(dest)
    while not os.path.lexists(probe):
        probe = os.path.dirname(probe)
    real = os.path.realpath(probe)
    if real != real_work and not real.startswith(real_work + os.sep):
        raise CannotReproduce(f"{rel}: the code links this path outside the replay directory")
    return dest


def _clear(path: str) -> None:
    if os.path.islink(path) or os.path.isfile(path):
        os.unlink(path)
    elif os.path.isdir(path):
        shutil.rmtree(path)


def _restore_entry(store: ExpStore, entry: ArtifactEntry, work: str, rel: str) -> None:
    dest = _safe_dest(work, rel)
    if entry.kind == "dir":
        _clear(dest)
        for path, key, _, mode in parse_dir_listing(store.cas.get_bytes(entry.blake3)):
            sub = fmt.normalize_artifact_path(path)
            store.cas.restore(key, _safe_dest(work, f"{rel}/{sub}"), mode)
        os.makedirs(dest, exist_ok=True)
        return
    if os.path.isdir(dest) and not os.path.islink(dest):
        shutil.rmtree(dest)
    store.cas.restore(entry.blake3, dest, entry.mode)


def _materialise(store: ExpStore, plan: ReplayPlan, work: str) -> list[str]:
    """Export the code and put config and inputs in place; return the --input paths."""
    assert plan.code_commit
    store.repo.export_tree(plan.code_commit, work, os.path.dirname(work))
    for entry in plan.code_files:
        _restore_entry(store, entry, work, entry.path)
    if plan.config is not None and plan.config_dest:
        _restore_entry(store, plan.config, work, plan.config_dest)
        if plan.config_remap and plan.original_root:
            dest = _safe_dest(work, plan.config_dest)
            with open(dest, encoding="utf-8") as f:
                text = _remap_text(f.read(), plan.original_root, work)
            os.chmod(dest, stat.S_IMODE(os.stat(dest).st_mode) | stat.S_IWUSR)
            with open(dest, "w", encoding="utf-8") as f:
                f.write(text)
    given: list[str] = []
    for i in plan.inputs:
        entry = ArtifactEntry(path=i.name, blake3=i.blake3, size=i.size, kind=i.kind, role="input")
        if i.action == "restore" and i.restore_as:  # from outside the repository
            os.makedirs(_external_root(work), exist_ok=True)
            _restore_entry(store, entry, _external_root(work), i.restore_as)
            if i.given:
                given.append(_external_path(work, i.restore_as))
        elif i.dest is not None:
            dest = _safe_dest(work, i.dest)
            if i.action == "restore":
                _restore_entry(store, entry, work, i.dest)
            elif i.action in ("copy", "link", "drifted") and i.origin:
                _clear(dest)
                os.makedirs(os.path.dirname(dest), exist_ok=True)
                small = (i.current_size or 0) <= COPY_LIMIT
                if i.action == "copy" or (i.action == "drifted" and small):
                    if os.path.isdir(i.origin):
                        shutil.copytree(i.origin, dest, symlinks=True)
                    else:
                        shutil.copy2(i.origin, dest)
                else:
                    os.symlink(i.origin, dest)
            if i.given:
                given.append(dest)
        elif i.given:
            given.append(i.source)
    return given


def replay(
    store: ExpStore,
    plan: ReplayPlan,
    *,
    keep: bool = False,
    stdout: IO[bytes] | None = None,
    stderr: IO[bytes] | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[RunRecord, str | None, str]:
    """Run a checked plan; return the replay run, the kept directory (or None) and
    the directory the code ran in (removed unless kept).

    Raises :class:`ReplayInterrupted` when the replay is stopped by a signal.
    """
    from gitexp.capture import CodeState
    from gitexp.runner import run_command

    check(plan)
    root = tempfile.mkdtemp(prefix="gitexp-reproduce-")
    kept: str | None = None
    try:
        with _unwind_on_signals():
            base = os.path.basename(store.repo.work_tree or "") or "code"
            work = os.path.join(root, base)
            os.makedirs(work)
            try:
                given = _materialise(store, plan, work)
            except (StoreError, OSError) as exc:
                raise CannotReproduce(f"cannot reproduce {plan.run}: {exc}") from exc
            cwd = work if plan.cwd_rel == "." else _safe_dest(work, plan.cwd_rel)
            os.makedirs(cwd, exist_ok=True)
            env = dict(os.environ if environ is None else environ)
            for k in plan.env_unset:
                env.pop(k, None)
            env.update(plan.env_set)
            original = store.read(fmt.ExpRef.from_ref(plan.ref), plan.sha)
            code = CodeState(
                data=dict(original.code),
                code_commit=str(plan.code_commit),
                code_tree=str(plan.code_tree),
                large_files=list(plan.code_files),
            )
            user_root = store.repo.work_tree or store.repo.git_dir
            logical_cwd = (
                user_root if plan.cwd_rel == "." else os.path.join(user_root, plan.cwd_rel)
            )
            try:
                result = run_command(
                    plan.argv(work),
                    repo=user_root,
                    experiment=plan.experiment,
                    name=plan.name,
                    base_params=_remap_value(plan.params, plan.paths(work)),
                    inputs=given,
                    store_inputs=any(i.stored for i in plan.inputs if i.given),
                    artifacts=[plan.config] if plan.config is not None else [],
                    tags=[REPLAY_TAG],
                    stdout=stdout,
                    stderr=stderr,
                    environ=env,
                    cwd=cwd,
                    code=code,
                    work_tree=work,
                    detach=True,
                    path_map={
                        copy: original
                        for original, copy in plan.paths(work)
                        if original != plan.original_root
                    },
                    extra={
                        "command": plan.command,
                        "cwd": logical_cwd,
                        "cwd_rel": plan.cwd_rel,
                        "config": plan.config.path if plan.config else None,
                        "links": {"reproduces": plan.sha},
                    },
                )
            except CommandNotFound as exc:
                raise CannotReproduce(f"cannot reproduce {plan.run}: {exc}") from exc
            new = store.get(result.ref)
            if result.status == "killed" or result.interrupted:
                raise ReplayInterrupted(
                    f"replay of {plan.run} interrupted; recorded as {result.status} run "
                    f"{new.ref.short} (your work tree was not touched)"
                )
            if keep:
                kept = work
            return new, kept, work
    except (KeyboardInterrupt, _Terminated) as exc:
        raise ReplayInterrupted(
            f"replay of {plan.run} interrupted (your work tree was not touched)"
        ) from exc
    finally:
        if kept is None:
            _remove_tree(root)


def _remove_tree(root: str) -> None:
    """Remove the replay directory, with signals held off so it is not left half-removed."""
    blocked = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
    in_main = threading.current_thread() is threading.main_thread()
    if in_main:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, blocked)
    try:

        def retry(func: Any, path: str, exc: Any) -> None:
            with contextlib.suppress(OSError):  # a directory the replay made read-only
                os.chmod(os.path.dirname(path), stat.S_IRWXU)
                func(path)

        if sys.version_info >= (3, 12):
            shutil.rmtree(root, onexc=retry)
        else:
            shutil.rmtree(root, onerror=retry)
    finally:
        if in_main:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


# ------------------------------------------------------------------ the verdict


def _same_value(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _close(a: float, b: float, rtol: float, atol: float) -> bool:
    if math.isnan(a) or math.isnan(b) or math.isinf(a) or math.isinf(b):
        return False
    return abs(a - b) <= atol + rtol * abs(a)


def _first_divergence(
    store: ExpStore, a: RunRecord, b: RunRecord, keys: list[str], rtol: float, atol: float
) -> dict[str, int | None]:
    if not keys or not a.segments or not b.segments:
        return {}
    from gitexp.metrics import series

    try:
        ta, tb = store.read_metrics(a), store.read_metrics(b)
    except GitExpError:
        return {}
    out: dict[str, int | None] = {}
    for key in keys:
        sa = dict(zip(*series(ta, key)))
        sb = dict(zip(*series(tb, key)))
        first = None
        for step in sorted(set(sa) | set(sb)):
            x, y = sa.get(step), sb.get(step)
            if x is None or y is None or not (x == y or _close(x, y, rtol, atol)):
                first = step
                break
        out[key] = first
    return out


def _log_tail(store: ExpStore, rec: RunRecord, path: str, lines: int = 10) -> list[str]:
    """The last ``lines`` lines of a run's stored log (why a replay failed)."""
    entry = next((a for a in rec.artifacts if a.path == path), None)
    if entry is None or entry.size == 0:
        return []
    try:
        data = store.cas.get_bytes(entry.blake3)
    except GitExpError:
        return []
    return data[-16384:].decode("utf-8", "replace").splitlines()[-lines:]


def compare(
    store: ExpStore,
    original: RunRecord,
    new: RunRecord,
    rtol: float | None = None,
    atol: float | None = None,
    paths: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """The verdict on a replay ``new`` of ``original``, as JSON-ready data.

    ``paths``: (original, replay) absolute paths the replay was pointed at instead
    (:meth:`ReplayPlan.paths`): the work tree the original ran in and its own
    directory, inputs from outside the repository and their restored copies.
    Params the script logged from them (an output path, say) are compared as the
    original's paths.
    """
    from gitexp.rundiff import diff_records

    tolerant = rtol is not None or atol is not None
    r, t = float(rtol or 0.0), float(atol or 0.0)

    # fingerprint, component by component
    components = {
        "code_tree": (original.code.get("tree"), new.code.get("tree")),
        "params": (
            original.params,
            _remap_value(new.params, sorted(((b, a) for a, b in paths), key=lambda p: -len(p[0]))),
        ),
        "inputs": (
            {e.path: e.blake3 for e in original.inputs()},
            {e.path: e.blake3 for e in new.inputs()},
        ),
        "command": (original.info.get("command"), new.info.get("command")),
    }
    differs = [k for k, (x, y) in components.items() if not _same_value(x, y)]
    pa, pb = fmt.flatten(original.params), fmt.flatten(components["params"][1])
    fingerprint = {
        "same": not differs,
        # the stored fingerprints differ only through paths into the replay directory
        "paths_mapped": not differs
        and original.info.get("fingerprint") != new.info.get("fingerprint"),
        "original": original.info.get("fingerprint"),
        "replay": new.info.get("fingerprint"),
        "differs": differs,
        "params": [
            {"key": k, "original": pa.get(k), "replay": pb.get(k)}
            for k in sorted(set(pa) | set(pb))
            if not _same_value(pa.get(k), pb.get(k))
        ],
        "inputs": [
            {
                "path": k,
                "original": components["inputs"][0].get(k),
                "replay": components["inputs"][1].get(k),
            }
            for k in sorted(set(components["inputs"][0]) | set(components["inputs"][1]))
            if components["inputs"][0].get(k) != components["inputs"][1].get(k)
        ],
    }

    ma, mb = original.summary.final_values(), new.summary.final_values()
    metrics = []
    for key in sorted(set(ma) | set(mb)):
        a, b = ma.get(key), mb.get(key)
        if a is None:
            status = "new"
        elif b is None:
            status = "missing"
        elif a == b or (math.isnan(a) and math.isnan(b)):
            status = "identical"
        elif tolerant and _close(a, b, r, t):
            status = "within_tolerance"
        else:
            status = "different"
        delta = b - a if a is not None and b is not None and status != "identical" else None
        if delta is not None and (math.isnan(delta) or math.isinf(delta)):
            delta = None
        metrics.append({"key": key, "status": status, "original": a, "replay": b, "delta": delta})
    diverging = [m["key"] for m in metrics if m["status"] in ("different", "within_tolerance")]
    for key, step in _first_divergence(store, original, new, diverging, r, t).items():
        for m in metrics:
            if m["key"] == key:
                m["first_divergent_step"] = step

    def outputs_of(rec: RunRecord) -> dict[str, ArtifactEntry]:
        return {e.path: e for e in rec.artifacts if e.role == "output"}

    oa, ob = outputs_of(original), outputs_of(new)
    outputs = []
    for path in sorted(set(oa) | set(ob)):
        x, y = oa.get(path), ob.get(path)
        if x and y:
            status = "identical" if x.blake3 == y.blake3 else "different"
        else:
            status = "missing" if x else "new"
        outputs.append(
            {
                "path": path,
                "status": status,
                "original": x.blake3 if x else None,
                "replay": y.blake3 if y else None,
                "original_size": x.size if x else None,
                "replay_size": y.size if y else None,
            }
        )

    env = diff_records(store, original, new)["env"]
    env_differs = bool(env.get("packages")) or any(k != "packages" for k in env)

    run_status = {
        "original": original.status,
        "replay": new.status,
        "original_exit_code": original.info.get("exit_code"),
        "replay_exit_code": new.info.get("exit_code"),
    }
    codes = (original.info.get("exit_code"), new.info.get("exit_code"))
    # a run made by start_run() in a plain script records no exit code
    status_same = original.status == new.status and (None in codes or codes[0] == codes[1])
    if not status_same and new.status != "finished":
        run_status["replay_stderr_tail"] = _log_tail(store, new, "logs/stderr.log")
    metrics_identical = all(m["status"] == "identical" for m in metrics)
    metrics_ok = all(m["status"] in ("identical", "within_tolerance") for m in metrics)
    outputs_identical = all(o["status"] == "identical" for o in outputs)
    if status_same and metrics_identical and outputs_identical:
        verdict = "reproduced"
    elif (
        status_same
        and tolerant
        and metrics_ok
        and all(o["status"] in ("identical", "different") for o in outputs)
    ):
        verdict = "reproduced_within_tolerance"
    else:
        verdict = "differs"

    explanations: list[str] = []
    if verdict != "reproduced":
        if not status_same:
            explanations.append(
                f"the replay {new.status} (exit {new.info.get('exit_code')}) where the "
                f"original {original.status} (exit {original.info.get('exit_code')})"
            )
        if "seed" in {p["key"] for p in fingerprint["params"]}:
            explanations.append(
                "the seed differs: the script draws its own; pass it as a param or use "
                "gitexp.seed_everything()"
            )
        if diverging and not differs and not env_differs:
            first = [m for m in metrics if m.get("first_divergent_step") is not None]
            earliest = min((m["first_divergent_step"] for m in first), default=None)
            explanations.append(
                f"{NOT_DETERMINISTIC}: the run is not deterministic (unseeded random numbers, "
                "time- or order-dependent code, threads, non-deterministic GPU kernels)"
                + (f"; first divergence at step {earliest}" if earliest is not None else "")
            )
        if "inputs" in differs:
            explanations.append("the inputs differ from the recorded ones")
        if "code_tree" in differs:
            explanations.append("the code differs from the recorded code")
        if env_differs and diverging:
            explanations.append(
                "the environment differs (see env): package versions, Python, platform "
                "or hardware can change numerical results"
            )
        if verdict == "reproduced_within_tolerance" and not outputs_identical:
            explanations.append(
                "output files differ in their bytes (tolerances apply to metrics only)"
            )
    return {
        "verdict": verdict,
        "reproduced": verdict != "differs",
        "original": {"run": original.ref.short, "sha": original.sha},
        "replay": {"run": new.ref.short, "sha": new.sha, "ref": str(new.ref)},
        "tolerance": {"rtol": rtol, "atol": atol} if tolerant else None,
        "status": run_status,
        "fingerprint": fingerprint,
        "metrics": metrics,
        "outputs": outputs,
        "env": env,
        "explanations": explanations,
    }


# ------------------------------------------------------------------- entry point


def reproduce_run(
    store: ExpStore,
    address: str,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    allow_input_drift: bool = False,
    keep: bool = False,
    repeat: int = 1,
    stdout: IO[bytes] | None = None,
    stderr: IO[bytes] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Replay a run and return the verdict (see :func:`compare`), plus the plan's
    notes and inputs and, with ``keep``, the replay directory kept.

    ``repeat``: replay that many times, one new run each; the verdict is that of
    the replay furthest from the original, with every replay listed and the
    spread of each metric across replays (see :func:`combine`)."""
    for name, value in (("rtol", rtol), ("atol", atol)):
        if value is not None and (not math.isfinite(value) or value < 0):
            raise UsageError(f"--{name} must be a finite number >= 0, not {value}")
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise UsageError(f"--repeat must be a whole number >= 1, not {repeat}")
    plan = plan_replay(store, address, allow_input_drift)
    check(plan)
    original = store.read(fmt.ExpRef.from_ref(plan.ref), plan.sha)
    verdicts: list[dict[str, Any]] = []
    for _ in range(repeat):
        new, kept, work = replay(
            store, plan, keep=keep, stdout=stdout, stderr=stderr, environ=environ
        )
        verdicts.append(compare(store, original, new, rtol, atol, plan.paths(work)))
        verdicts[-1]["kept_dir"] = kept
    verdict = combine(verdicts, rtol, atol) if repeat > 1 else verdicts[0]
    verdict["notes"] = [
        n
        for n in plan.notes
        # a possible cause of differences is noise when there are none
        if verdict["verdict"] != "reproduced" or not n.startswith("PYTHONHASHSEED")
    ]
    if plan.seed is not None:
        verdict["notes"].insert(0, f"seed {plan.seed} {SEED_VIA[str(plan.seed_via)]}")
    if not verdict["metrics"] and not verdict["outputs"]:
        verdict["notes"].insert(
            0,
            "neither run logged metrics or output files: only their status and exit "
            "code were compared",
        )
    verdict["inputs"] = [
        {"path": i.name, "action": i.action, "blake3": i.blake3} for i in plan.inputs
    ]
    verdict["drift"] = plan.drift
    return verdict


def combine(
    verdicts: Sequence[dict[str, Any]], rtol: float | None = None, atol: float | None = None
) -> dict[str, Any]:
    """One verdict for several replays of one run (each a :func:`compare` result).

    The report is that of the replay furthest from the original (the first
    such), so the whole is reproduced only when every replay is. Added:
    ``replays`` (run, sha and verdict of each, in order), ``spread`` (each
    final metric and output file across the replays: their values, and whether
    the replays agree with one another), ``kept_dirs``. The explanations say
    which of the two usual stories the replays support: they differ from one
    another (the program is not deterministic), or they agree with one another
    but not with the original (something outside the program changed).
    """
    worst = max(verdicts, key=lambda v: _RANK[v["verdict"]])
    out = dict(worst)
    n = len(verdicts)
    out["replays"] = [
        {"run": v["replay"]["run"], "sha": v["replay"]["sha"], "verdict": v["verdict"]}
        for v in verdicts
    ]
    r, t = float(rtol or 0.0), float(atol or 0.0)

    def agree(a: Any, b: Any) -> bool:
        if a is None or b is None:
            return a is b
        return _same_value(a, b) or _close(a, b, r, t)

    metrics = []
    keys = sorted({m["key"] for v in verdicts for m in v["metrics"]})
    for key in keys:
        found = [next((m for m in v["metrics"] if m["key"] == key), None) for v in verdicts]
        original = next((m["original"] for m in found if m is not None), None)
        values = [m["replay"] if m is not None else None for m in found]
        finite = [x for x in values if x is not None and math.isfinite(x)]
        metrics.append(
            {
                "key": key,
                "original": original,
                "replays": values,
                "agree": all(agree(values[0], x) for x in values[1:]),
                "min": min(finite) if finite else None,
                "max": max(finite) if finite else None,
            }
        )
    outputs = []
    paths = sorted({o["path"] for v in verdicts for o in v["outputs"]})
    for path in paths:
        found = [next((o for o in v["outputs"] if o["path"] == path), None) for v in verdicts]
        hashes = [o["replay"] if o is not None else None for o in found]
        outputs.append(
            {
                "path": path,
                "original": next((o["original"] for o in found if o is not None), None),
                "replays": hashes,
                "agree": len(set(hashes)) == 1,
            }
        )
    out["spread"] = {"metrics": metrics, "outputs": outputs}
    out["kept_dirs"] = [v["kept_dir"] for v in verdicts if v.get("kept_dir")]
    out["kept_dir"] = out["kept_dirs"][0] if out["kept_dirs"] else None

    varying = [m["key"] for m in metrics if not m["agree"]]
    varying += [o["path"] for o in outputs if not o["agree"]]
    explanations = [e for e in worst["explanations"] if not e.startswith(NOT_DETERMINISTIC)]
    if varying:
        explanations.insert(
            0,
            f"the {n} replays differ from one another ({', '.join(varying)}): the program "
            "is not deterministic here (unseeded random numbers, time- or order-dependent "
            "code, threads, non-deterministic GPU kernels)",
        )
    elif out["verdict"] != "reproduced":
        if worst["fingerprint"]["differs"]:
            where = "its " + ", ".join(worst["fingerprint"]["differs"]).replace("_", " ")
        elif worst["env"].get("packages") or any(k != "packages" for k in worst["env"]):
            where = "the environment (see env)"
        else:
            where = (
                "something the run does not record (hardware, drivers, an environment "
                "variable, a file or service read outside the recorded inputs, the date)"
            )
        explanations.insert(
            0,
            f"the {n} replays agree with one another but not with the original: the "
            f"program is deterministic here, so what changed since the original is "
            f"outside it: {where}",
        )
    out["explanations"] = explanations
    return out


def reproduce(
    run: str,
    rtol: float | None = None,
    atol: float | None = None,
    allow_input_drift: bool = False,
    *,
    keep: bool = False,
    dry_run: bool = False,
    stream: bool = False,
    repeat: int = 1,
    repo: str | os.PathLike[str] = ".",
) -> dict[str, Any]:
    """Replay a recorded run and say whether the result is the same.

    The run's code is exported into a temporary directory (your work tree,
    index, HEAD, branches and stash are not touched), its config and stored
    inputs restored, and its command run again as a new run of the same
    experiment linked to the original (``links.reproduces``).

    Args:
        run: a run address: run id, ``experiment/run-id``, full ref or sha prefix.
        rtol, atol: tolerances for final metrics (``|a - b| <= atol + rtol * |a|``);
            without them only identical metrics and output files reproduce.
        allow_input_drift: replay even when inputs recorded by hash only changed.
        keep: keep the replay directory (its path is ``kept_dir`` in the result).
        dry_run: only plan: return what would be run, where, with which inputs.
        stream: copy the replay's stdout/stderr to this process's.
        repeat: replay this many times (one new run each): replays that differ from
            one another show a program that is not deterministic; replays that agree
            with one another but not with the original, a change outside it.
        repo: a path inside the git repository.

    Returns:
        The verdict as data: ``verdict`` (``reproduced``,
        ``reproduced_within_tolerance`` or ``differs``), ``reproduced`` (bool),
        ``fingerprint``, ``metrics``, ``outputs``, ``env``, ``explanations``,
        ``notes``, ``original`` and ``replay`` runs; with ``repeat`` > 1, also
        ``replays`` and ``spread`` (see :func:`combine`). With ``dry_run``, the plan.

    Raises:
        InputDrift: inputs recorded by hash only changed (and not allowed).
        CannotReproduce: the code commit or a stored object is missing.
        ReplayInterrupted: the replay was interrupted.
        RunNotFound: no run matches ``run``.
    """

    from gitexp.catalog import indexed_store

    with indexed_store(repo) as store:
        if dry_run:
            plan = plan_replay(store, run, allow_input_drift)
            return plan.to_json()
        return reproduce_run(
            store,
            run,
            rtol=rtol,
            atol=atol,
            allow_input_drift=allow_input_drift,
            keep=keep,
            repeat=repeat,
            stdout=sys.stdout.buffer if stream and hasattr(sys.stdout, "buffer") else None,
            stderr=sys.stderr.buffer if stream and hasattr(sys.stderr, "buffer") else None,
        )


# ---------------------------------------------------------------- checkout-code


def checkout_code(store: ExpStore, address: str, branch: str | None = None) -> dict[str, Any]:
    """Create ``branch`` (default ``exp/<run-id>``) at the run's code commit and check
    it out. Refuses a work tree with uncommitted changes; restores the large code
    files the snapshot kept in the CAS where nothing is in their way."""
    repo = store.repo
    if repo.work_tree is None:
        raise UsageError("checkout-code needs a work tree; this repository is bare")
    rec = store.get(address)
    commit = rec.code_commit
    if not commit or not repo.has_object(commit):
        raise CannotReproduce(
            f"the code commit of run {rec.ref.short} "
            f"({commit[:12] if commit else 'none'}) is not in this repository"
        )
    name = branch or f"exp/{rec.run_id}"
    if not repo.check_branch_name(name):
        raise UsageError(f"{name!r} is not a valid branch name")
    dirty = repo.uncommitted_changes()
    if dirty:
        shown = ", ".join(dirty[:5]) + (f" and {len(dirty) - 5} more" if len(dirty) > 5 else "")
        raise DirtyWorkTree(
            f"your work tree has uncommitted changes ({shown}): commit or stash them "
            "first; nothing was changed",
            dirty,
        )
    existing = repo.get_ref(f"refs/heads/{name}")
    if existing is not None and existing != commit:
        raise UsageError(
            f"branch {name} already exists at {existing[:12]}, not at the run's code "
            f"{commit[:12]}; choose another name with --branch"
        )
    try:
        if existing is None:
            repo.switch_to_new_branch(name, commit)
        else:
            repo.switch_to_branch(name)
    except GitExpError as exc:
        if "would be overwritten" in str(exc):  # untracked files of the user's in the way
            raise DirtyWorkTree(f"{exc}; nothing was changed") from exc
        raise
    tree = repo.commit_info(commit).tree
    restored, skipped = [], []
    for entry in (a for a in rec.artifacts if a.role == "code"):
        dest = os.path.join(repo.work_tree, *entry.path.split("/"))
        if os.path.lexists(dest) and repo.lookup_path(tree, entry.path) is None:
            skipped.append(entry.path)  # an untracked file of the user's: leave it
            continue
        try:
            real = os.path.realpath(os.path.dirname(dest))
            root = os.path.realpath(repo.work_tree)
            if real != root and not real.startswith(root + os.sep) and os.path.exists(real):
                skipped.append(entry.path)
                continue
            store.cas.restore(entry.blake3, dest, entry.mode)
            restored.append(entry.path)
        except StoreError:
            skipped.append(entry.path)
    return {
        "run": rec.ref.short,
        "branch": name,
        "commit": commit,
        "created": existing is None,
        "snapshot": bool(rec.code.get("dirty")),
        "head": rec.code.get("head"),
        "restored": restored,
        "skipped": skipped,
    }
