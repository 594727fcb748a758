"""``git exp run``: run any command and record it as a run.

Everything that can be checked is checked before anything is written (the
command exists, the config parses, the inputs exist, the names are valid).
The child reaches the same run through ``GITEXP_RUN_REF``/``GITEXP_REPO``;
its stdout and stderr are streamed to the sinks the caller gives (the
terminal) and stored as ``log`` artifacts.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from gitexp import records as fmt
from gitexp.capture import CodeState, input_source, record_path
from gitexp.errors import CommandNotFound, ConfigError, UsageError
from gitexp.records import ArtifactEntry
from gitexp.store import ExpStore
from gitexp.tracking import ENV_PATH_MAP, ENV_REPO, ENV_RUN_REF, ENV_WORK_TREE, create_run

# a second SIGINT this soon after the first is the same Ctrl-C (see _supervise)
SIGINT_DEBOUNCE = 0.5


@dataclass
class RunResult:
    """What ``git exp run`` reports when the command is done."""

    ref: str
    run_id: str
    experiment: str
    status: str
    exit_code: int
    warnings: list[str]
    interrupted: bool = False  # a SIGINT, SIGTERM or SIGHUP reached the supervisor


# a command a ``watch`` stops gets SIGTERM, then SIGKILL after this long
STOP_GRACE = 5.0

# after the command exits, how long its output may take to drain: past that, the pipes
# are held by a process it left running in the background (`cmd &`), which is not waited for
DRAIN_GRACE = 2.0


def parse_value(text: str) -> Any:
    """A ``-p key=value`` value: JSON when it parses (numbers, true, null, lists), else text."""
    try:
        return json.loads(text)
    except ValueError:
        low = text.lower()
        if low in ("true", "false"):
            return low == "true"
        return text


def parse_assignments(items: Sequence[str]) -> dict[str, Any]:
    """``["lr=0.1", "opt.name=adam"]`` -> nested params."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"param {item!r} is not key=value")
        fmt.set_dotted(out, key, parse_value(value))
    return out


def load_config(path: str) -> dict[str, Any]:
    """Parse a JSON, YAML or TOML config file into params."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file {path} does not exist")
    ext = os.path.splitext(path)[1].lower()
    try:
        with open(path, "rb") as f:
            raw = f.read()
        if ext == ".json":
            data = json.loads(raw.decode("utf-8"))
        elif ext in (".yaml", ".yml"):
            data = _load_yaml(raw.decode("utf-8"), path)
        elif ext == ".toml":
            if sys.version_info >= (3, 11):
                import tomllib
            else:  # Python 3.10
                import tomli as tomllib
            data = tomllib.loads(raw.decode("utf-8"))
        else:
            raise ConfigError(
                f"config file {path}: unknown type {ext!r} (use .json, .yaml or .toml)"
            )
    except ConfigError:
        raise
    except Exception as exc:  # each parser has its own error type
        raise ConfigError(f"config file {path} does not parse: {_parse_problem(exc)}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of params at the top")
    return fmt.to_jsonable(data)  # type: ignore[no-any-return]


# the most values a YAML config may expand to: anchors and aliases let a few hundred
# bytes stand for billions of values ("billion laughs"); a config is a few hundred
MAX_CONFIG_VALUES = 1_000_000


def _load_yaml(text: str, path: str) -> Any:
    """``yaml.safe_load``, refusing a document whose aliases expand past
    MAX_CONFIG_VALUES values or into a value that contains itself (ConfigError),
    counted on the composed node graph before anything is built."""
    import yaml

    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_expansion(node, path)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _check_expansion(root: Any, path: str) -> None:
    """How many values the YAML node graph ``root`` stands for once every alias
    is expanded: each node counted once, with memory, without recursion."""
    import yaml

    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[Any, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        if isinstance(node, yaml.ScalarNode):
            sizes[id(node)] = 1
            continue
        children: list[Any] = (
            [n for pair in node.value for n in pair]
            if isinstance(node, yaml.MappingNode)
            else list(node.value)
        )
        if done:
            open_nodes.discard(id(node))
            total = 1 + sum(sizes[id(c)] for c in children)
            if total > MAX_CONFIG_VALUES:
                raise ConfigError(
                    f"config file {path}: its aliases expand to more than "
                    f"{MAX_CONFIG_VALUES:,} values"
                )
            sizes[id(node)] = total
            continue
        if id(node) in sizes:
            continue
        if id(node) in open_nodes:
            raise ConfigError(f"config file {path}: an alias makes a value contain itself")
        open_nodes.add(id(node))
        stack.append((node, True))
        for child in children:
            if id(child) in open_nodes:
                raise ConfigError(f"config file {path}: an alias makes a value contain itself")
            if id(child) not in sizes:
                stack.append((child, False))


def _parse_problem(exc: Exception) -> str:
    """One line saying what is wrong and where (YAML spreads it over several)."""
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None)
    if mark is not None and problem:  # yaml.MarkedYAMLError
        return f"{problem} (line {mark.line + 1}, column {mark.column + 1})"
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def check_program(argv: Sequence[str], cwd: str) -> None:
    """Raise CommandNotFound unless ``argv[0]`` can be started from ``cwd``."""
    if not argv:
        raise UsageError("no command given: git exp run [options] -- COMMAND [ARGS...]")
    prog = argv[0]
    if os.sep in prog:
        full = prog if os.path.isabs(prog) else os.path.join(cwd, prog)
        if not os.path.isfile(full):
            raise CommandNotFound(f"command not found: {prog}")
        if not os.access(full, os.X_OK):
            raise CommandNotFound(f"command is not executable: {prog}")
    elif shutil.which(prog) is None:
        raise CommandNotFound(f"command not found: {prog}")


def _pump(src: IO[bytes], sinks: list[IO[bytes]], stop: threading.Event) -> None:
    while True:
        chunk = src.read1(65536) if hasattr(src, "read1") else src.read(65536)
        if not chunk or stop.is_set():  # stopped: the terminal is no longer ours to write
            break
        for sink in sinks:
            try:
                sink.write(chunk)
                sink.flush()
            except (OSError, ValueError):
                pass


def run_command(
    argv: Sequence[str],
    *,
    repo: str = ".",
    experiment: str | None = None,
    name: str | None = None,
    params: Sequence[str] = (),
    config: str | None = None,
    inputs: Sequence[str] = (),
    store_inputs: bool = False,
    tags: Sequence[str] = (),
    stdout: IO[bytes] | None = None,
    stderr: IO[bytes] | None = None,
    environ: Mapping[str, str] | None = None,
    cwd: str | None = None,
    extra: Mapping[str, Any] | None = None,
    base_params: Mapping[str, Any] | None = None,
    artifacts: Sequence[ArtifactEntry] = (),
    code: CodeState | None = None,
    work_tree: str | None = None,
    detach: bool = False,
    path_map: Mapping[str, str] | None = None,
    watch: Callable[[str], bool] | None = None,
    watch_interval: float = 0.25,
) -> RunResult:
    """Run ``argv`` as a tracked run; return its status and exit code.

    For ``reproduce``, which runs a recorded command in an exported copy of its code:
    ``base_params`` are params as data (under the config's and ``params``'),
    ``artifacts`` manifest entries already recorded, ``code`` the code version to
    record instead of the work tree's, and ``work_tree`` the directory that stands
    for the work tree (inputs under it are named relative to it, here and in the child),
    and ``detach`` runs the command in a session of its own with stdin from
    ``/dev/null``: every SIGINT, SIGTERM and SIGHUP this process gets is passed on to
    the command's process group exactly once, whether it came from the terminal or
    from ``kill`` to this process alone (a replay is not interactive).
    ``path_map`` maps restored copies of inputs from outside the repository to the
    original paths they are recorded as (here and in the child).
    ``watch(ref)`` is called every ``watch_interval`` seconds while the command
    runs (a sweep's pruner reads the run's live metrics there); when it returns
    True the command is stopped (SIGTERM, then SIGKILL after STOP_GRACE) and
    the run ends ``pruned``, with everything it logged kept.
    """
    env = dict(os.environ if environ is None else environ)
    cwd = os.path.abspath(cwd or os.getcwd())
    experiment = fmt.DEFAULT_EXPERIMENT if experiment is None else experiment
    fmt.validate_experiment(experiment)
    fmt.validate_run_name(name)
    tag_list = sorted({fmt.validate_tag(t) for t in tags})
    check_program(argv, cwd)
    merged: dict[str, Any] = {}
    if config:
        merged = load_config(config)
    merged = fmt.deep_merge(dict(base_params or {}), merged)
    merged = fmt.deep_merge(merged, parse_assignments(params))
    merged = fmt.to_jsonable(merged)  # -p values from the shell are checked like any param
    for p in inputs:
        if not os.path.exists(p):
            raise UsageError(f"input {p}: no such file or directory")

    store = ExpStore(repo)
    try:
        store.repo.require_head()  # before the config and inputs go to the CAS
        entries = list(artifacts)
        warnings: list[str] = []
        if config:
            hashed = record_path(
                config,
                os.path.basename(config),
                "config",
                store.cas,
                True,
                source=os.path.abspath(config),
            )
            entries.append(hashed.entry)
        for p in inputs:
            label, source = input_source(p, work_tree or store.repo.work_tree, path_map)
            hashed = record_path(p, label, "input", store.cas, store_inputs, source=source)
            warnings += hashed.warnings
            entries.append(hashed.entry)
        if work_tree:
            env[ENV_WORK_TREE] = os.path.abspath(work_tree)
        if path_map:
            env[ENV_PATH_MAP] = json.dumps(dict(path_map), sort_keys=True)
        run = create_run(
            store,
            experiment=experiment,
            name=name,
            params=merged,
            tags=tag_list,
            command=list(argv),
            environ=env,
            artifacts=entries,
            code=code,
            extra={
                "cwd": cwd,
                "config": os.path.basename(config) if config else None,
                **(extra or {}),
            },
            defer=False,  # the command attaches to the run through its ref
        )
        return _supervise(
            run,
            store,
            list(argv),
            env,
            cwd,
            stdout,
            stderr,
            warnings,
            detach,
            watch,
            watch_interval,
        )
    finally:
        store.close()


def _wait(
    proc: subprocess.Popen[bytes],
    ref: str,
    watch: Callable[[str], bool] | None,
    interval: float,
    detach: bool,
) -> bool:
    """Wait for the command; with ``watch``, ask it every ``interval`` seconds
    whether to stop the command. True when the command was stopped that way."""
    if watch is None:
        proc.wait()
        return False
    while True:
        try:
            proc.wait(timeout=interval)
            return False
        except subprocess.TimeoutExpired:
            pass
        if not watch(ref):
            continue
        for sig, grace in ((signal.SIGTERM, STOP_GRACE), (signal.SIGKILL, None)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if detach:
                    os.killpg(proc.pid, sig)
                else:
                    proc.send_signal(sig)
            try:
                proc.wait(timeout=grace)
                break
            except subprocess.TimeoutExpired:
                continue
        return True


def _supervise(
    run: Any,
    store: ExpStore,
    argv: list[str],
    env: dict[str, str],
    cwd: str,
    stdout: IO[bytes] | None,
    stderr: IO[bytes] | None,
    warnings: list[str],
    detach: bool = False,
    watch: Callable[[str], bool] | None = None,
    watch_interval: float = 0.25,
) -> RunResult:
    env[ENV_RUN_REF] = run.ref
    env[ENV_REPO] = store.repo.work_tree or store.repo.git_dir
    env.setdefault("PYTHONUNBUFFERED", "1")
    log_dir = os.path.join(run._writer.dir, "output")
    os.makedirs(log_dir, exist_ok=True)
    out_path = os.path.join(log_dir, "stdout.log")
    err_path = os.path.join(log_dir, "stderr.log")
    # Plain values, not a threading.Event: a second signal can arrive while the
    # handler for the first still runs, and Event.set() would deadlock on its own lock
    interrupted = [False]
    last_sigint = [-math.inf]

    def on_signal(signum: int, frame: Any) -> None:
        interrupted[0] = True
        if proc.poll() is not None:
            return
        if not detach:
            if signum != signal.SIGINT:
                proc.send_signal(signum)  # SIGTERM/SIGHUP to us: pass it on
            return  # SIGINT: the terminal sent it to the command too
        if signum == signal.SIGINT:
            # Ctrl-C under 'git exp' reaches us twice: from the terminal and from git,
            # which passes it on; the command gets one
            now = time.monotonic()
            if now - last_sigint[0] < SIGINT_DEBOUNCE:
                return
            last_sigint[0] = now
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signum)

    with open(out_path, "wb") as out_f, open(err_path, "wb") as err_f:
        try:
            proc = subprocess.Popen(
                argv,
                cwd=cwd,
                env=env,
                stdin=subprocess.DEVNULL if detach else None,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=detach,
            )
        except OSError as exc:
            run._finish("failed", error=f"could not start {argv[0]}: {exc.strerror}")
            raise CommandNotFound(f"cannot run {argv[0]}: {exc.strerror}") from exc
        previous = {}
        in_main = threading.current_thread() is threading.main_thread()
        if in_main:
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
                previous[sig] = signal.signal(sig, on_signal)
        pumps: list[tuple[threading.Thread, IO[bytes] | None]] = []
        stop = threading.Event()
        try:
            for src, f, sink in ((proc.stdout, out_f, stdout), (proc.stderr, err_f, stderr)):
                # daemons: a pipe that a left-over background process holds open must
                # not keep this process alive at exit either
                t = threading.Thread(
                    target=_pump, args=(src, [f, *([sink] if sink else [])], stop), daemon=True
                )
                t.start()
                pumps.append((t, src))
            stopped = _wait(proc, run.ref, watch, watch_interval, detach)
            code = proc.returncode
            deadline = time.monotonic() + DRAIN_GRACE
            for t, _ in pumps:
                t.join(max(0.0, deadline - time.monotonic()))
            if any(t.is_alive() for t, _ in pumps):
                stop.set()
                warnings.append(
                    "the command left a process running that still holds its output; "
                    "what it prints from now on is not shown or recorded"
                )
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            for t, pipe in pumps:  # drained; a pipe a pump still reads is left to it
                if pipe is not None and not t.is_alive():
                    pipe.close()
    if stopped:
        status, exit_code = "pruned", (128 - code if code < 0 else code)
    elif code < 0:
        status, exit_code = "killed", 128 - code
    elif interrupted[0] and code != 0:
        status, exit_code = "killed", code
    else:
        status, exit_code = ("finished" if code == 0 else "failed"), code
    # a child writer that died without finishing left a spool: take it in first
    for d, _, alive in store.writers_of(run.id):
        if not alive and d != run._writer.dir:
            store.replay(run._ref, d)
            shutil.rmtree(d, ignore_errors=True)
    logs = []
    for path, label in ((out_path, "stdout.log"), (err_path, "stderr.log")):
        logs.append(record_path(path, f"logs/{label}", "log", store.cas, True).entry)
    run._pending.artifacts += logs
    run._pending.run.update({"exit_code": exit_code})
    run._finish(status)
    return RunResult(run.ref, run.id, run.experiment, status, exit_code, warnings, interrupted[0])
