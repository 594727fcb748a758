"""The replay planner: what a reproduce will run, and whether it can.

:func:`plan_replay` reads a run (code commit, command, cwd, the params it was
*started* with, config, inputs, seed, the environment variables that change
results) and checks, without writing anything, that everything needed is here:
the code commit, every CAS object to restore, and the hashes of inputs recorded
by hash only. The result is a :class:`ReplayPlan` (what ``--dry-run`` prints);
:func:`check` turns its problems into :class:`~gitexp.errors.CannotReproduce`.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import asdict, dataclass, field
from typing import Any

from gitexp import records as fmt
from gitexp.cas import dir_listing, hash_bytes, hash_file, parse_dir_listing
from gitexp.errors import CannotReproduce, GitExpError, InputDrift, InvalidName, StoreError
from gitexp.git import MODE_TREE
from gitexp.records import ArtifactEntry
from gitexp.replay.paths import external_path, names_path, rel_under, remap_all, remap_text
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
            (i.source, external_path(work, i.restore_as))
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
        return [remap_all(a, pairs) for a in self.command]

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
    rec = store.read_settled(address)
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
        cwd_rel = rel_under(cwd, store.repo.work_tree)  # runs recorded before cwd_rel
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
        rel = rel_under(src, original_root) if original_root and os.path.isabs(src) else None
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
            config_remap = remap_text(text, original_root, "\0") != text
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
            if names_path(command, params, ip.source):
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
            f"cannot reproduce {plan.run}: inputs changed since the run: " + "; ".join(lines),
            lines,
            [_drift_json(i) for i in drift],
        )
