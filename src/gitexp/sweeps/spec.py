"""A sweep's description: parsed from YAML, TOML or JSON and checked before any trial starts.

Every problem is one :class:`gitexp.errors.SpecError` naming the field, raised by
:func:`parse_spec` (the CLI prints it as one line and exits non-zero).
"""

from __future__ import annotations

import json
import math
import random
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gitexp import records as fmt
from gitexp.errors import SpecError

METHODS = ("grid", "random", "successive_halving", "hyperband", "optuna")
DISTRIBUTIONS = ("uniform", "log_uniform", "int_uniform")
GOALS = ("maximize", "minimize")
BUDGETED = ("successive_halving", "hyperband")
SAMPLED = ("random", "successive_halving", "optuna")  # methods that need ``trials``
MAX_TRIALS = 1_000_000
_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]*")  # always fullmatch
_PLACEHOLDER_RE = re.compile(r"\{\{|\}\}|\{([^{}]*)\}")
_TOP_KEYS = {
    "experiment",
    "command",
    "method",
    "metric",
    "budget",
    "trials",
    "seed",
    "parameters",
    "sampler",
    "pruner",
    "max_failures",
}


@dataclass(frozen=True)
class Param:
    """One parameter of the search space.

    ``kind`` is ``fixed`` (``value``), ``values`` (``values``: a grid axis, or a
    choice when sampling) or one of :data:`DISTRIBUTIONS` (``low``/``high``,
    ``q`` a step or None).
    """

    name: str
    kind: str
    value: Any = None
    values: tuple[Any, ...] = ()
    low: float = 0.0
    high: float = 0.0
    q: float | None = None

    def sample(self, rng: random.Random) -> Any:
        """A value drawn from this parameter's distribution."""
        if self.kind == "fixed":
            return self.value
        if self.kind == "values":
            return self.values[rng.randrange(len(self.values))]
        if self.kind == "int_uniform":
            step = int(self.q or 1)
            count = (int(self.high) - int(self.low)) // step
            return int(self.low) + step * rng.randint(0, count)
        if self.kind == "log_uniform":
            x = math.exp(rng.uniform(math.log(self.low), math.log(self.high)))
        else:
            x = rng.uniform(self.low, self.high)
        return self.quantize(x)

    def quantize(self, x: float) -> float:
        """``x`` rounded to the step ``q`` (when there is one), kept within bounds."""
        if self.q:
            x = round(x / self.q) * self.q
            x = min(max(x, self.low), self.high)
            x = float(f"{x:.12g}")  # 0.30000000000000004 -> 0.3
        return x


@dataclass(frozen=True)
class Budget:
    """The resource successive halving and Hyperband hand out: a param of the command."""

    param: str
    low: float
    high: float
    eta: int = 3

    @property
    def integral(self) -> bool:
        """Whether budgets are whole numbers (epochs, steps)."""
        return float(self.low).is_integer() and float(self.high).is_integer()

    def value(self, amount: float) -> int | float:
        """A budget as the command gets it: rounded when budgets are whole numbers."""
        if self.integral:
            return max(1, round(amount))
        return float(f"{amount:.12g}")


@dataclass(frozen=True)
class Spec:
    """A checked sweep description."""

    experiment: str
    command: tuple[str, ...]
    method: str
    parameters: tuple[Param, ...]
    metric: str | None = None
    goal: str = "maximize"
    budget: Budget | None = None
    trials: int | None = None
    seed: int = 0
    sampler: str | None = None
    pruner: str | None = None
    max_failures: int | None = None
    sampler_args: dict[str, Any] = field(default_factory=dict)
    pruner_args: dict[str, Any] = field(default_factory=dict)
    raw: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def maximize(self) -> bool:
        """Whether a bigger metric is better."""
        return self.goal == "maximize"

    def better(self, a: float, b: float | None) -> bool:
        """Whether ``a`` beats ``b`` (None: nothing yet)."""
        if b is None or math.isnan(b):
            return not math.isnan(a)
        return a > b if self.maximize else a < b

    def argv(self, params: Mapping[str, Any]) -> list[str]:
        """The command of a trial with these params (and budget) filled in."""
        return [fill(token, params) for token in self.command]

    def to_json(self) -> dict[str, Any]:
        """The spec as canonical data (what the sweep record keeps)."""
        return fmt.to_jsonable(self.raw)  # type: ignore[no-any-return]


def render_value(value: Any) -> str:
    """A param value as a command-line word: text as is, anything else as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return repr(value)
    return json.dumps(value, separators=(",", ":"))


def fill(token: str, params: Mapping[str, Any]) -> str:
    """Replace ``{name}`` in ``token`` by the param's value; ``{{``/``}}`` are braces."""

    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "{{":
            return "{"
        if m.group(0) == "}}":
            return "}"
        return render_value(params[m.group(1).strip()])

    return _PLACEHOLDER_RE.sub(sub, token)


def placeholders(tokens: Sequence[str]) -> list[str]:
    """The parameter names the command's ``{name}`` placeholders refer to."""
    out: list[str] = []
    for token in tokens:
        for m in _PLACEHOLDER_RE.finditer(token):
            if m.group(1) is not None:
                out.append(m.group(1).strip())
    return out


def _number(where: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"{where} must be a number, not {value!r}")
    if not math.isfinite(value):
        raise SpecError(f"{where} must be finite, not {value!r}")
    return float(value)


def _param(name: str, body: Any) -> Param:
    if not _NAME_RE.fullmatch(name):
        raise SpecError(f"parameter name {name!r} is not a name (letters, digits, _ . -)")
    where = f"parameters.{name}"
    if not isinstance(body, dict) or not ({"distribution", "values", "value"} & set(body)):
        return Param(name, "fixed", value=fmt.to_jsonable(body, name))
    if "value" in body:
        if set(body) != {"value"}:
            raise SpecError(f"{where}: a fixed value takes no other field")
        return Param(name, "fixed", value=fmt.to_jsonable(body["value"], name))
    if "values" in body:
        extra = set(body) - {"values"}
        if extra:
            raise SpecError(f"{where}: 'values' takes no other field ({', '.join(sorted(extra))})")
        values = body["values"]
        if not isinstance(values, list):
            raise SpecError(f"{where}.values must be a list")
        if not values:
            raise SpecError(f"{where}.values is empty: nothing to search")
        return Param(name, "values", values=tuple(fmt.to_jsonable(values, name)))
    dist = body.get("distribution")
    if dist not in DISTRIBUTIONS:
        raise SpecError(
            f"{where}: unknown distribution {dist!r} (one of {', '.join(DISTRIBUTIONS)}, "
            "or 'values: [...]')"
        )
    extra = set(body) - {"distribution", "min", "max", "q"}
    if extra:
        raise SpecError(f"{where}: unknown field {sorted(extra)[0]!r}")
    for key in ("min", "max"):
        if key not in body:
            raise SpecError(f"{where}: {dist} needs '{key}'")
    low = _number(f"{where}.min", body["min"])
    high = _number(f"{where}.max", body["max"])
    if low > high:
        raise SpecError(f"{where}: min ({body['min']}) is greater than max ({body['max']})")
    if dist == "log_uniform" and low <= 0:
        raise SpecError(f"{where}: log_uniform needs min > 0, not {body['min']}")
    q = None
    if body.get("q") is not None:
        q = _number(f"{where}.q", body["q"])
        if q <= 0:
            raise SpecError(f"{where}.q must be a positive step, not {body['q']}")
    if dist == "int_uniform":
        if not (low.is_integer() and high.is_integer() and (q is None or q.is_integer())):
            raise SpecError(f"{where}: int_uniform needs whole-number min, max and q")
    return Param(name, dist, low=low, high=high, q=q)


def _budget(body: Any) -> Budget:
    if not isinstance(body, dict):
        raise SpecError("budget must be a mapping: {param: NAME, min: N, max: N, eta: 3}")
    extra = set(body) - {"param", "min", "max", "eta"}
    if extra:
        raise SpecError(f"budget: unknown field {sorted(extra)[0]!r}")
    param = body.get("param")
    if not isinstance(param, str) or not _NAME_RE.fullmatch(param):
        raise SpecError("budget.param must name the parameter that takes the budget")
    for key in ("min", "max"):
        if key not in body:
            raise SpecError(f"budget needs '{key}'")
    low = _number("budget.min", body["min"])
    high = _number("budget.max", body["max"])
    if low <= 0:
        raise SpecError(f"budget.min must be > 0, not {body['min']}")
    if low > high:
        raise SpecError(f"budget: min ({body['min']}) is greater than max ({body['max']})")
    eta = body.get("eta", 3)
    if isinstance(eta, bool) or not isinstance(eta, int) or eta < 2:
        raise SpecError(f"budget.eta must be a whole number >= 2, not {eta!r}")
    return Budget(param, low, high, eta)


def _command(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):
        try:
            tokens = shlex.split(value)
        except ValueError as exc:
            raise SpecError(f"command does not parse: {exc}") from exc
    elif isinstance(value, list) and all(isinstance(t, str) for t in value):
        tokens = list(value)
    else:
        raise SpecError("command must be text or a list of words")
    if not tokens:
        raise SpecError("command is empty")
    for token in tokens:
        for m in _PLACEHOLDER_RE.finditer(token):
            if m.group(1) is not None and not m.group(1).strip():
                raise SpecError(f"command: empty placeholder {{}} in {token!r}")
    return tuple(tokens)


def _plugin(key: str, body: Any) -> tuple[str | None, dict[str, Any]]:
    """``sampler``/``pruner``: a name (``tpe``, ``TPESampler``) or ``{name: NAME,
    ARG: VALUE...}``; the name is checked against Optuna when the sweep starts."""
    if body is None:
        return None, {}
    if isinstance(body, str):
        name, args = body, {}
    elif isinstance(body, dict) and isinstance(body.get("name"), str):
        name, args = body["name"], {k: v for k, v in body.items() if k != "name"}
    else:
        raise SpecError(
            f"{key} must be the name of an Optuna {key} or {{name: NAME, ...arguments}}"
        )
    if not _NAME_RE.match(name):
        raise SpecError(f"{key} {name!r} is not the name of an Optuna {key}")
    for arg in args:
        if not isinstance(arg, str) or not _NAME_RE.match(arg):
            raise SpecError(f"{key}: {arg!r} is not an argument name")
    return name, fmt.to_jsonable(args, key)


def parse_spec(data: Any, where: str = "sweep file", in_process: bool = False) -> Spec:
    """Check a sweep description (already parsed from its file) and return it.

    ``in_process``: the trials are a Python function (:func:`gitexp.sweep`), not
    a command: there is no command to check."""
    if not isinstance(data, dict):
        raise SpecError(f"{where} must hold a mapping at the top")
    unknown = set(data) - _TOP_KEYS
    if unknown:
        raise SpecError(f"{where}: unknown field {sorted(unknown)[0]!r}")
    method = data.get("method", "random")
    if method not in METHODS:
        raise SpecError(f"unknown method {method!r} (one of {', '.join(METHODS)})")
    experiment = data.get("experiment")
    if experiment is None:  # absent: the default; empty text is refused below
        experiment = fmt.DEFAULT_EXPERIMENT
    if not isinstance(experiment, str):
        raise SpecError("experiment must be text")
    fmt.validate_experiment(experiment)
    if in_process:
        data = {**data, "command": data.get("command") or ["python"]}
    if "command" not in data:
        raise SpecError(f"{where}: no 'command' to run")
    command = _command(data["command"])
    raw_params = data.get("parameters") or {}
    if not isinstance(raw_params, dict):
        raise SpecError("parameters must be a mapping of name to value or distribution")
    params = tuple(_param(str(k), v) for k, v in raw_params.items())
    names = {p.name for p in params}

    metric, goal = None, "maximize"
    m = data.get("metric")
    if isinstance(m, str):
        metric = m
    elif isinstance(m, dict):
        extra = set(m) - {"name", "goal"}
        if extra:
            raise SpecError(f"metric: unknown field {sorted(extra)[0]!r}")
        metric = m.get("name")
        goal = m.get("goal", "maximize")
        if goal not in GOALS:
            raise SpecError(f"metric.goal must be maximize or minimize, not {goal!r}")
    elif m is not None:
        raise SpecError("metric must be a name or {name: NAME, goal: maximize|minimize}")
    if metric is not None and (not isinstance(metric, str) or not metric.strip()):
        raise SpecError("metric.name must be a metric name")
    if metric is None and method != "grid" and method != "random":
        raise SpecError(f"method {method} needs a metric to compare trials by")

    budget = None
    if "budget" in data and data["budget"] is not None:
        budget = _budget(data["budget"])
    if method in BUDGETED and budget is None:
        raise SpecError(f"method {method} needs a budget: {{param: epochs, min: 1, max: 81}}")
    if budget is not None:
        if budget.param in names:
            raise SpecError(f"budget.param {budget.param!r} is also a parameter: give it once")
        names.add(budget.param)

    used = placeholders(command)
    if in_process and budget is not None:
        used.append(budget.param)
    for name in used:
        if name not in names:
            raise SpecError(f"command: placeholder {{{name}}} names no parameter")
    if budget is not None and budget.param not in used:
        raise SpecError(
            f"budget param {budget.param!r} is not in the command (add {{{budget.param}}})"
        )

    trials = data.get("trials")
    if trials is not None and (isinstance(trials, bool) or not isinstance(trials, int)):
        raise SpecError(f"trials must be a whole number, not {trials!r}")
    if trials is not None and not 1 <= trials <= MAX_TRIALS:
        raise SpecError(f"trials must be between 1 and {MAX_TRIALS}, not {trials}")
    if method in SAMPLED and trials is None:
        raise SpecError(f"method {method} needs 'trials' (how many configurations to try)")
    seed = data.get("seed", 0)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise SpecError(f"seed must be a whole number, not {seed!r}")
    if method == "grid":
        for p in params:
            if p.kind in DISTRIBUTIONS:
                raise SpecError(
                    f"grid search needs 'values' for every searched parameter; {p.name} has "
                    f"a {p.kind} distribution (use method: random)"
                )
    plugins = {key: _plugin(key, data.get(key)) for key in ("sampler", "pruner")}
    for key, (plugin, _) in plugins.items():
        if plugin is not None and method != "optuna":
            raise SpecError(f"{key} is for method optuna, not {method}")
    max_failures = data.get("max_failures")
    if max_failures is not None and (
        isinstance(max_failures, bool) or not isinstance(max_failures, int) or max_failures < 1
    ):
        raise SpecError(f"max_failures must be a whole number >= 1, not {max_failures!r}")
    return Spec(
        experiment=experiment,
        command=command,
        method=method,
        parameters=params,
        metric=metric,
        goal=goal,
        budget=budget,
        trials=trials,
        seed=seed,
        sampler=plugins["sampler"][0],
        pruner=plugins["pruner"][0],
        sampler_args=plugins["sampler"][1],
        pruner_args=plugins["pruner"][1],
        max_failures=max_failures,
        raw=fmt.to_jsonable(data),
    )


def load_spec(path: str) -> tuple[Spec, bytes]:
    """Read and check a sweep file (``.yaml``, ``.yml``, ``.toml`` or ``.json``);
    return the spec and the file's bytes (kept in the sweep record)."""
    from gitexp.errors import ConfigError
    from gitexp.runner import load_config

    try:
        data = load_config(path)
    except SpecError:
        raise
    except ConfigError as exc:
        raise SpecError(str(exc).replace("config file", "sweep file", 1)) from exc
    with open(path, "rb") as f:
        raw = f.read()
    return parse_spec(data, f"sweep file {path}"), raw
