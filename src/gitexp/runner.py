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
from typing import IO, TYPE_CHECKING, Any

from gitexp import records as fmt
from gitexp.capture import CodeState, input_source, record_path
from gitexp.errors import CommandNotFound, ConfigError, UsageError
from gitexp.records import ArtifactEntry
from gitexp.store import ExpStore, list_spool, read_entry
from gitexp.tracking import ENV_PATH_MAP, ENV_REPO, ENV_RUN_REF, ENV_WORK_TREE, create_run

if TYPE_CHECKING:
    from gitexp.signals import AlertConfig, RunSignals, Watcher

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
WATCH_INTERVAL = 0.5  # seconds between two looks at what the command logged (alerts)

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
    system_metrics: bool = True,
    system_interval: float | None = None,
    alert_rules: Sequence[str] = (),
    alert_on: str | Sequence[str] | None = None,
    alert_stalled: float | str | None = None,
    stop_on_nan: bool = False,
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

    ``system_metrics``: sample the command's process tree and the machine every
    ``system_interval`` seconds as ``system/...`` metrics (this process samples; the
    command itself never does). ``alert_rules``, ``alert_on``, ``alert_stalled`` and
    ``stop_on_nan``: alerts, added to git config ``exp.alert.*`` (see
    :func:`gitexp.signals.load`); this process watches what the command logs, so
    watching costs the command nothing. With ``stop_on_nan`` a command whose metric
    becomes NaN or infinite gets SIGTERM (SIGKILL STOP_GRACE later) and the run ends
    ``failed`` with the reason.
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

    if system_interval is not None and not system_interval > 0:
        raise UsageError("the system metrics interval must be a positive number of seconds")
    store = ExpStore(repo)
    try:
        store.repo.require_head()  # before the config and inputs go to the CAS
        from gitexp.signals import load

        alerts = load(store.repo, alert_rules, alert_on, alert_stalled, stop_on_nan=stop_on_nan)
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
            _Signals(alerts, system_metrics, system_interval),
        )
    finally:
        store.close()


@dataclass
class _Signals:
    """What the supervisor samples and watches for."""

    alerts: AlertConfig
    system_metrics: bool
    interval: float | None


class _Watch:
    """The supervisor's view of what its command logs: every WATCH_INTERVAL, the
    run's tip and the entries its writers spooled since, fed to the watcher.

    A spool entry is fed once; when the tip moves (a checkpoint, the command's
    last commit) the watcher's state is reset to the tip's summary plus the
    entries the tip does not hold yet, so what was committed before it was seen
    (the last points of a command that exits) is checked too.
    """

    def __init__(self, store: ExpStore, run: Any, watcher: Watcher) -> None:
        self.store = store
        self.run = run
        self.watcher = watcher
        self.tip: str | None = None
        self.done: dict[str, int] = {}
        self.seen: dict[tuple[str, int], Any] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="gitexp-watch", daemon=True)
        self._reported = False

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(WATCH_INTERVAL):
            self.once()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5.0)

    def once(self) -> None:
        """One look; a problem is said once and never stops the run."""
        try:
            self._look()
        except Exception as exc:
            if not self._reported:
                self._reported = True
                import logging

                logging.getLogger("gitexp").warning("git-exp: alerts: cannot read the run: %s", exc)

    def _look(self) -> None:
        from gitexp.records import Summary

        ref = self.run._ref
        tip = self.store.repo.get_ref(str(ref))
        if tip is not None and tip != self.tip:
            rec = self.store.read_listing(ref, tip)
            self.tip = tip
            self.done = {k: int(v) for k, v in (rec.info.get("writers") or {}).items()}
            self.seen = {k: d for k, d in self.seen.items() if k[1] > self.done.get(k[0], -1)}
            self.watcher.set_run(rec.info, rec.params)
            summary = rec.summary
            for delta in self.seen.values():  # spooled, seen, not on the tip yet
                summary = summary.merge(delta.summary)
                self.watcher.observe(Summary(), delta.params, delta.tags_add, delta.tags_remove)
            self.watcher.reset(summary)
        for d, _, _ in self.store.writers_of(ref.run_id):
            wid = os.path.basename(d)
            for seq in list_spool(d):
                if seq <= self.done.get(wid, -1) or (wid, seq) in self.seen:
                    continue
                delta = read_entry(d, seq)
                if delta is None:
                    continue  # committed meanwhile: the next look finds it on the tip
                self.seen[(wid, seq)] = delta
                self.watcher.observe(delta.summary, delta.params, delta.tags_add, delta.tags_remove)
        self.watcher.tick()


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
    signals: _Signals | None = None,
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
    diverged: list[str | None] = [None]  # why the command was stopped on a NaN

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
        try:
            live, watcher = _start_signals(run, store, proc, detach, signals, diverged)
        except Exception as exc:  # the command runs on without system metrics or alerts
            live, watcher = None, None
            warnings.append(f"no system metrics or alerts for this run: {exc}")
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
            if live is not None:
                live.stop_sampling()
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
    if watcher is not None:
        watcher.stop()
        watcher.once()  # what the command committed as it ended
    error: str | None = None
    if stopped:
        status, exit_code = "pruned", (128 - code if code < 0 else code)
    elif diverged[0] is not None:
        status, exit_code, error = "failed", (128 - code if code < 0 else code), diverged[0]
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
    if watcher is not None:
        crashed = code < 0 and not (interrupted[0] or stopped or diverged[0] is not None)
        watcher.once()  # and what the spools of a command that died held
        watcher.watcher.end(
            status,
            exit_code,
            error,
            event="crashed" if crashed else None,
            detail=f"the command died of {_signal_name(-code)}" if code < 0 else "",
        )
    logs = []
    for path, label in ((out_path, "stdout.log"), (err_path, "stderr.log")):
        logs.append(record_path(path, f"logs/{label}", "log", store.cas, True).entry)
    run._pending.artifacts += logs
    run._pending.run.update({"exit_code": exit_code})
    run._finish(status, error=error)
    return RunResult(run.ref, run.id, run.experiment, status, exit_code, warnings, interrupted[0])


def _signal_name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def _start_signals(
    run: Any,
    store: ExpStore,
    proc: subprocess.Popen[bytes],
    detach: bool,
    signals: _Signals | None,
    diverged: list[str | None],
) -> tuple[RunSignals | None, _Watch | None]:
    """Sample the command's process tree, and watch what it logs, from here."""
    if signals is None or not (signals.system_metrics or signals.alerts.watching):
        return None, None
    from gitexp.signals import DEFAULT_INTERVAL, RunSignals

    def stop(reason: str) -> None:
        diverged[0] = reason
        _terminate(proc, detach, signal.SIGTERM)
        timer = threading.Timer(STOP_GRACE, _terminate, (proc, detach, signal.SIGKILL))
        timer.daemon = True
        timer.start()

    start = run._writer.start
    info = dict(start.run) if start is not None else {}
    if not info:
        record = store.read(run._ref)
        info = dict(record.info)
    identity = {
        "ref": run.ref,
        "id": run.id,
        "experiment": run.experiment,
        "name": info.get("name"),
        "host": info.get("host"),
    }
    sig = RunSignals(identity, run._record_alert, signals.alerts, stop, info, run._params)
    run._signals = sig  # the run's finish waits (briefly) for alerts on their way
    if signals.system_metrics:
        sig.start_sampling(run._log_system, proc.pid, signals.interval or DEFAULT_INTERVAL)
    watcher = None
    if sig.watcher is not None:
        watcher = _Watch(store, run, sig.watcher)
        watcher.start()
    return sig, watcher


def _terminate(proc: subprocess.Popen[bytes], detach: bool, signum: int) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if detach:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
