"""Optuna in git-exp: ``method: optuna`` sweeps, and the runs of an existing study.

- :class:`OptunaSearch`: the search of a ``method: optuna`` sweep. The sampler
  (TPE unless the sweep file names another) picks each trial's configuration
  when the trial starts (Optuna's ask-and-tell interface); the pruner, when the
  sweep file names one, is fed the trial's metric as the trial logs it and
  stops a trial it prunes (the run ends ``pruned``, its metrics kept).
- :class:`OptunaCallback` (``gitexp.OptunaCallback``): a callback for
  ``study.optimize`` that records each trial of a study someone already has as
  a git-exp run.

Optuna is an optional extra (``pip install 'git-exp[optuna]'``), imported here
and only when one of these is used.
"""

from __future__ import annotations

import functools
import inspect
import json
import math
import os
import sys
import threading
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from gitexp import records as fmt
from gitexp.errors import GitExpError, SpecError
from gitexp.sweeps import methods as m
from gitexp.sweeps.spec import Spec

EXTRA = "pip install 'git-exp[optuna]'"
DEFAULT_SAMPLER = "TPESampler"
_PRIMITIVE = (type(None), bool, int, float, str)


def load_optuna() -> Any:
    """The optuna module; SpecError naming the extra when it is not installed."""
    try:
        import optuna
    except ImportError as exc:
        raise SpecError(f"method optuna needs Optuna, which is not installed ({EXTRA})") from exc
    return optuna


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return "".join(c if c.isprintable() else "?" for c in text)[:300]


def _norm(name: str, kind: str) -> str:
    low = name.lower().replace("_", "").replace("-", "")
    return low[: -len(kind)] if low.endswith(kind) and low != kind else low


def find_class(module: Any, base: type, name: str, kind: str) -> type:
    """The Optuna class ``name`` names: its class name (``TPESampler``) or the
    same without the suffix, in any case, with or without ``_`` (``tpe``,
    ``successive_halving``)."""
    choices: dict[str, type] = {}
    for attr in getattr(module, "__all__", []):
        cls = getattr(module, attr, None)
        if (
            isinstance(cls, type)
            and issubclass(cls, base)
            and cls is not base
            and not attr.startswith("Base")
        ):
            choices[attr] = cls
    for attr, cls in choices.items():
        if name == attr or _norm(name, kind) == _norm(attr, kind):
            return cls
    known = ", ".join(sorted(_norm(a, kind) for a in choices))
    raise SpecError(f"unknown Optuna {kind} {name!r} (one of {known})")


def _build(optuna: Any, kind: str, name: str, args: Mapping[str, Any], spec: Spec) -> Any:
    module = optuna.samplers if kind == "sampler" else optuna.pruners
    base = module.BaseSampler if kind == "sampler" else module.BasePruner
    cls = find_class(module, base, name, kind)
    kwargs = dict(args)
    for key, value in list(kwargs.items()):  # a pruner that wraps another (PatientPruner)
        if kind == "pruner" and isinstance(value, dict) and isinstance(value.get("name"), str):
            inner = {k: v for k, v in value.items() if k != "name"}
            kwargs[key] = _build(optuna, "pruner", value["name"], inner, spec)
    try:
        accepted = inspect.signature(cls).parameters
    except (TypeError, ValueError):
        accepted = {}  # type: ignore[assignment]
    if kind == "sampler" and "seed" in accepted and "seed" not in kwargs:
        kwargs["seed"] = spec.seed
    if cls is optuna.samplers.GridSampler and "search_space" not in kwargs:
        kwargs["search_space"] = _grid_space(spec)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return cls(**kwargs)
    except Exception as exc:  # each class checks its arguments its own way
        raise SpecError(f"{kind} {name}: {_one_line(exc)}") from exc


def _grid_space(spec: Spec) -> dict[str, list[Any]]:
    space: dict[str, list[Any]] = {}
    for p in spec.parameters:
        if p.kind == "values":
            space[p.name] = [_encode(v) for v in p.values]
        elif p.kind != "fixed":
            raise SpecError(
                f"sampler grid needs 'values' for every searched parameter; {p.name} has "
                f"a {p.kind} distribution"
            )
    return space


def _encode(value: Any) -> Any:
    """A choice as Optuna keeps it: primitives as they are, anything else as JSON text."""
    if isinstance(value, _PRIMITIVE):
        return value
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def distributions(optuna: Any, spec: Spec) -> tuple[dict[str, Any], dict[str, dict[Any, Any]]]:
    """The search space as Optuna distributions, and how to decode each choice.

    ``values`` are categorical (non-primitive choices as JSON text); ``uniform``
    and ``log_uniform`` are float ranges (a step ``q`` is applied to what the
    sampler picks); ``int_uniform`` an int range with its step. Fixed params are
    not searched."""
    d = optuna.distributions
    out: dict[str, Any] = {}
    decode: dict[str, dict[Any, Any]] = {}
    for p in spec.parameters:
        if p.kind == "values":
            out[p.name] = d.CategoricalDistribution([_encode(v) for v in p.values])
            decode[p.name] = {_encode(v): v for v in p.values}
        elif p.kind == "int_uniform":
            step = int(p.q or 1)
            low = int(p.low)
            high = low + step * ((int(p.high) - low) // step)
            out[p.name] = d.IntDistribution(low, high, step=step)
        elif p.kind in ("uniform", "log_uniform"):
            out[p.name] = d.FloatDistribution(p.low, p.high, log=p.kind == "log_uniform")
    return out, decode


def check(spec: Spec) -> None:
    """What must hold before an Optuna sweep starts: Optuna is installed, the
    sampler and pruner exist, take the arguments given, and work: one trial is
    asked, reported and failed on a throwaway study (an argument of the wrong
    type shows only when it is used)."""
    optuna = load_optuna()
    name = spec.sampler or DEFAULT_SAMPLER
    sampler = _build(optuna, "sampler", name, spec.sampler_args, spec)
    pruner = None
    if spec.pruner is not None:
        pruner = _build(optuna, "pruner", spec.pruner, spec.pruner_args, spec)
    space, _ = distributions(optuna, spec)
    verbosity = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # no "study created" line
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            study = optuna.create_study(
                direction=spec.goal, sampler=sampler, pruner=pruner or optuna.pruners.NopPruner()
            )
            try:
                trial = study.ask(space)
            except Exception as exc:
                raise SpecError(f"sampler {name}: {_one_line(exc)}") from exc
            if pruner is not None:
                try:
                    trial.report(0.0, 0)
                    trial.should_prune()
                except Exception as exc:
                    raise SpecError(f"pruner {spec.pruner}: {_one_line(exc)}") from exc
    finally:
        optuna.logging.set_verbosity(verbosity)


def quiet() -> None:
    """Optuna's per-trial log lines off (the sweep's own progress display says it)."""
    optuna = load_optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)


class OptunaSearch:
    """The ask-and-tell loop of a ``method: optuna`` sweep; thread-safe."""

    def __init__(self, spec: Spec, sweep_id: str) -> None:
        optuna = load_optuna()
        self.optuna = optuna
        self.spec = spec
        sampler = _build(
            optuna, "sampler", spec.sampler or DEFAULT_SAMPLER, spec.sampler_args, spec
        )
        self.pruner = (
            _build(optuna, "pruner", spec.pruner, spec.pruner_args, spec) if spec.pruner else None
        )
        self.study = optuna.create_study(
            study_name=f"gitexp-sweep-{sweep_id}",
            direction=spec.goal,
            sampler=sampler,
            pruner=self.pruner or optuna.pruners.NopPruner(),
        )
        self.distributions, self._decode = distributions(optuna, spec)
        self._lock = threading.Lock()
        self._trials: dict[int, Any] = {}  # our trial number -> Optuna's Trial
        self.exhausted = False  # the sampler said it has nothing new to try

    @property
    def prunes(self) -> bool:
        """Whether a pruner watches the trials."""
        return self.pruner is not None

    def _params(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for p in self.spec.parameters:
            if p.kind == "fixed":
                out[p.name] = p.value
            elif p.kind == "values":
                out[p.name] = self._decode[p.name].get(raw[p.name], raw[p.name])
            elif p.kind == "int_uniform":
                out[p.name] = int(raw[p.name])
            else:
                out[p.name] = p.quantize(float(raw[p.name]))
        return out

    def ask(self, job: m.Job) -> m.Job:
        """The job with the configuration the sampler picks for it now."""
        with self._lock:
            trial = self.study.ask(self.distributions)
            self._trials[job.trial] = trial
            params = self._params(trial.params)
        return m.Job(job.trial, params, job.budget, job.rung, job.bracket)

    def report(self, trial: int, points: Iterable[tuple[int, float]]) -> bool:
        """Give the pruner a running trial's new ``(step, value)`` points; True
        when it says to stop the trial."""
        t = self._trials.get(trial)
        if t is None or self.pruner is None:
            return False
        with self._lock:
            reported = False
            for step, value in points:
                if math.isfinite(value):
                    t.report(float(value), int(step))
                    reported = True
            return bool(reported and t.should_prune())

    def tell(self, job: m.Job, outcome: m.Outcome) -> None:
        """What became of a trial: its value, pruned, or failed."""
        states = self.optuna.trial.TrialState
        with self._lock:
            t = self._trials.pop(job.trial, None)
            if t is None:
                return
            if outcome.state == m.FINISHED and outcome.value is not None:
                if math.isfinite(outcome.value):
                    self._tell(t, values=outcome.value)
                    return
            if outcome.state == m.PRUNED:
                self._tell(t, state=states.PRUNED)
            else:
                self._tell(t, state=states.FAIL)

    def _tell(self, trial: Any, **how: Any) -> None:
        try:
            self.study.tell(trial, **how)
        except RuntimeError as exc:
            # a sampler that has seen everything (the grid sampler) calls
            # study.stop(), which only works inside study.optimize; the trial's
            # state is stored all the same: the search is over
            if "stop" not in str(exc):
                raise
            self.exhausted = True

    def add_recorded(
        self,
        params: Mapping[str, Any],
        outcome: m.Outcome,
        intermediate: Mapping[int, float] | None = None,
    ) -> None:
        """A trial a resumed sweep found ended: the sampler and pruner learn from it."""
        states = self.optuna.trial.TrialState
        state = {m.FINISHED: states.COMPLETE, m.PRUNED: states.PRUNED}.get(
            outcome.state, states.FAIL
        )
        value = outcome.value if state == states.COMPLETE else None
        if state == states.COMPLETE and (value is None or not math.isfinite(value)):
            state, value = states.FAIL, None
        raw = {
            name: _encode(params[name]) if name in self._decode else params[name]
            for name in self.distributions
            if name in params
        }
        if set(raw) != set(self.distributions):
            return  # not a configuration of this search: nothing to learn
        try:
            trial = self.optuna.trial.create_trial(
                params=raw,
                distributions=self.distributions,
                value=value,
                state=state,
                intermediate_values={
                    int(s): float(v) for s, v in (intermediate or {}).items() if math.isfinite(v)
                },
            )
            with self._lock:
                self.study.add_trial(trial)
        except ValueError:
            return  # a recorded value outside today's space


# ------------------------------------------------------------ existing studies


class OptunaCallback:
    """Record each trial of an Optuna study as a git-exp run.

    ::

        import gitexp, optuna

        callback = gitexp.OptunaCallback(metric="val_loss", experiment="tuning")
        study = optuna.create_study(direction="minimize")
        study.optimize(objective, n_trials=50, callbacks=[callback])

    Each trial becomes a run of ``experiment`` with the trial's params, its
    intermediate values (``trial.report``) as the metric ``metric`` at their
    steps, its value as the metric's final value (several values: ``metric``,
    ``metric_1``, ...), its user attributes as params under ``user_attrs``, its
    state as the run's status (complete: ``finished``, pruned: ``pruned``,
    failed: ``failed``), the tag ``optuna-study=<study name>`` and
    ``links.optuna`` = ``{"study", "trial"}`` in ``run.json``. The code version
    is captured once, at the first trial.

    ``track_in_run()`` decorates the objective so that the run starts with
    the trial: what the objective logs through ``gitexp.log_metric`` (and
    the other module-level functions) goes into the trial's run, and its
    duration is the trial's.
    """

    def __init__(
        self,
        metric: str = "value",
        experiment: str | None = None,
        repo: str | os.PathLike[str] = ".",
        tags: Iterable[str] = (),
    ) -> None:
        from gitexp.metrics import check_metric_key

        self.metric = check_metric_key(metric)
        self.experiment = experiment or fmt.DEFAULT_EXPERIMENT
        fmt.validate_experiment(self.experiment)
        self.repo = os.fspath(repo)
        self.tags = sorted({fmt.validate_tag(t) for t in tags})
        self._lock = threading.Lock()
        self._store: Any = None
        self._code: Any = None
        self._open: dict[tuple[str, int], Any] = {}  # (study, trial number) -> Run
        self.runs: dict[tuple[str, int], str] = {}  # (study, trial number) -> the run's ref

    def _prepared(self) -> tuple[Any, Any]:
        from gitexp.capture import code_state
        from gitexp.store import ExpStore

        with self._lock:
            if self._store is None:
                self._store = ExpStore(self.repo)
                self._store.repo.require_head()
                self._code = code_state(self._store.repo, self._store.cas)
            return self._store, self._code

    def _start(self, study_name: str, number: int, started: Any = None) -> Any:
        from gitexp.tracking import create_run

        store, code = self._prepared()
        extra: dict[str, Any] = {"links": {"optuna": {"study": study_name, "trial": number}}}
        if started is not None:
            extra["start_time"] = fmt.iso(started)
        return create_run(
            store,
            experiment=self.experiment,
            name=f"trial {number}",
            params={},
            tags=sorted({*self.tags, fmt.validate_tag(f"optuna-study={study_name}")}),
            command=[os.path.basename(sys.executable), *sys.argv],
            environ=os.environ,
            extra=extra,
            code=code,
        )

    def track_in_run(self) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        """A decorator for the objective: its trial's run is open while it runs."""

        def decorator(objective: Callable[..., Any]) -> Callable[..., Any]:
            @functools.wraps(objective)
            def wrapped(trial: Any, *args: Any, **kwargs: Any) -> Any:
                key = (str(trial.study.study_name), int(trial.number))
                run = self._start(*key)
                with self._lock:
                    self._open[key] = run
                try:
                    return objective(trial, *args, **kwargs)
                except BaseException as exc:
                    optuna = load_optuna()
                    if not isinstance(exc, optuna.TrialPruned):
                        # study.optimize may not call its callbacks for this one
                        with self._lock:
                            self._open.pop(key, None)
                        self._record(run, dict(trial.params), {}, None, "failed", exc)
                        self.runs[key] = run.ref
                    raise

            return wrapped

        return decorator

    def __call__(self, study: Any, trial: Any) -> None:
        """Called by ``study.optimize`` after each trial: record it."""
        states = load_optuna().trial.TrialState
        key = (str(study.study_name), int(trial.number))
        if key in self.runs:
            return  # recorded when its objective raised
        with self._lock:
            run = self._open.pop(key, None)
        if run is None:
            run = self._start(*key, started=trial.datetime_start)
        status = {states.COMPLETE: "finished", states.PRUNED: "pruned"}.get(trial.state, "failed")
        values = trial.values if trial.state == states.COMPLETE else None
        params = dict(trial.params)
        attrs = {}
        for name, value in (trial.user_attrs or {}).items():
            try:
                attrs[str(name)] = fmt.to_jsonable(value, str(name))
            except GitExpError:
                continue  # no faithful JSON form: left out
        if attrs:
            params["user_attrs"] = attrs
        self._record(run, params, dict(trial.intermediate_values), values, status)
        self.runs[key] = run.ref

    def _record(
        self,
        run: Any,
        params: Mapping[str, Any],
        intermediate: Mapping[int, float],
        values: list[float] | None,
        status: str,
        exc: BaseException | None = None,
    ) -> None:
        try:
            if params:
                run.log_params(params)
            if intermediate:
                steps = sorted(intermediate)
                clean = [(s, intermediate[s]) for s in steps if math.isfinite(intermediate[s])]
                for step, value in clean:
                    run.log_metric(self.metric, float(value), step=int(step))
            if values:
                final = {
                    self.metric if i == 0 else f"{self.metric}_{i}": float(v)
                    for i, v in enumerate(values)
                    if v is not None and math.isfinite(v)
                }
                if final:
                    run.log_summary(final)
        except GitExpError:
            status = "failed"
        error = None if exc is None else f"{type(exc).__name__}: {_one_line(exc)}"
        run._finish(status, error=error)
