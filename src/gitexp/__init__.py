"""git-exp: git-native experiment tracking.

Every run is a git commit on ``refs/experiments/<experiment>/<run-id>``; large
files live once in a BLAKE3 content-addressed store under ``.git/exp/``.

Quick use::

    import gitexp

    with gitexp.start_run(experiment="mnist", params={"lr": 0.01}) as run:
        for epoch in range(10):
            run.log_metrics({"loss": 0.1, "acc": 0.9}, step=epoch)
        run.log_artifact("model.npz")

Names are imported lazily so that ``import gitexp`` (and ``git exp --help``)
stays fast.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = [
    "GitExpError",
    "GitExpWarning",
    "OptunaCallback",
    "Run",
    "__version__",
    "active_run",
    "diff",
    "errors",
    "get_run",
    "log_artifact",
    "log_input",
    "log_metric",
    "log_metrics",
    "log_param",
    "log_params",
    "log_summary",
    "metric_history",
    "note",
    "params",
    "reproduce",
    "runs",
    "seed_everything",
    "set_tags",
    "start_run",
    "sweep",
]

_LAZY = {
    "Run": ("gitexp.tracking", "Run"),
    "GitExpWarning": ("gitexp.tracking", "GitExpWarning"),
    "start_run": ("gitexp.tracking", "start_run"),
    "active_run": ("gitexp.tracking", "active_run"),
    "GitExpError": ("gitexp.errors", "GitExpError"),
    "runs": ("gitexp.api", "runs"),
    "get_run": ("gitexp.api", "get_run"),
    "diff": ("gitexp.api", "diff"),
    "metric_history": ("gitexp.api", "metric_history"),
    "log_metric": ("gitexp.api", "log_metric"),
    "log_metrics": ("gitexp.api", "log_metrics"),
    "log_param": ("gitexp.api", "log_param"),
    "log_params": ("gitexp.api", "log_params"),
    "log_summary": ("gitexp.api", "log_summary"),
    "log_artifact": ("gitexp.api", "log_artifact"),
    "log_input": ("gitexp.api", "log_input"),
    "set_tags": ("gitexp.api", "set_tags"),
    "note": ("gitexp.api", "note"),
    "params": ("gitexp.api", "params"),
    "sweep": ("gitexp.sweeps.notebook", "sweep"),
    "OptunaCallback": ("gitexp.sweeps.studies", "OptunaCallback"),
    "reproduce": ("gitexp.replay", "reproduce"),
    "seed_everything": ("gitexp.seeding", "seed_everything"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        value = getattr(importlib.import_module(module), attr)
        globals()[name] = value
        return value
    if name == "errors":
        import importlib

        return importlib.import_module("gitexp.errors")
    raise AttributeError(f"module 'gitexp' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
