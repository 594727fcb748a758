"""XGBoost: a ``TrainingCallback`` that records a boosting run.

    import xgboost as xgb
    from gitexp.integrations.xgboost import GitExpCallback

    booster = xgb.train(params, dtrain, num_boost_round=100,
                        evals=[(dtrain, "train"), (dvalid, "valid")],
                        callbacks=[GitExpCallback()])

Records the booster's training params (read from its config: what XGBoost
resolved, defaults included) as ``params.xgboost.*``, every evaluation metric
of every round as ``<data>-<metric>`` at step = round, the rounds per second as
``throughput/rounds_per_sec``, the best iteration and score when early stopping
kept them, and the trained model as the artifact ``model.ubj``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from typing import Any

from gitexp.integrations._common import RunBinding, log_params, log_saved, number, require
from gitexp.tracking import Run

xgb = require("xgboost", "gitexp.integrations.xgboost", "xgboost")

__all__ = ["GitExpCallback", "booster_params"]

# the booster config sections that hold model state or internals, not training params
_SKIPPED = ("updater", "gbtree_model_param", "learner_model_param", "metrics")


def booster_params(config: dict[str, Any]) -> dict[str, Any]:
    """The training params in a booster's ``save_config()`` (one flat mapping of
    the ``*_param`` sections, numbers as numbers), plus ``eval_metric`` and
    ``num_class``."""
    out: dict[str, Any] = {}

    def walk(node: dict[str, Any], collect: bool) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                if key in _SKIPPED:
                    continue
                walk(value, key.endswith("_param"))
            elif collect and isinstance(value, str):
                out[key] = number(value)

    learner = config.get("learner", {})
    walk(learner, False)
    metrics = [m.get("name") for m in learner.get("metrics", []) if isinstance(m, dict)]
    if metrics:
        out["eval_metric"] = metrics[0] if len(metrics) == 1 else metrics
    num_class = learner.get("learner_model_param", {}).get("num_class")
    if isinstance(num_class, str) and num_class != "0":
        out["num_class"] = number(num_class)
    return out


_TrainingCallback: Any = xgb.callback.TrainingCallback


class GitExpCallback(_TrainingCallback):  # type: ignore[misc]
    """Records an XGBoost training (``xgb.train``, ``xgb.cv`` or the scikit-learn
    API's ``callbacks=``) into a git-exp run.

    Args:
        run: the run to log into; default: the active run (the one ``git exp
            run`` started), else a new run, left open after training (finish it
            with :meth:`finish`, or let the script's exit do it).
        experiment, name, tags, repo: for a run this callback starts.
        log_model: store the trained model as the artifact ``model.ubj``.
    """

    def __init__(
        self,
        run: Run | None = None,
        *,
        experiment: str | None = None,
        name: str | None = None,
        tags: Iterable[str] | None = None,
        log_model: bool = True,
        repo: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        self._binding = RunBinding(run, experiment, name, tags, repo)
        self.log_model = log_model

    @property
    def run(self) -> Run:
        """The run this callback logs into (found or started when first needed)."""
        return self._binding.run

    def before_training(self, model: Any) -> Any:
        run = self._binding.get()
        save_config = getattr(model, "save_config", None)
        if callable(save_config):  # xgb.cv hands over a packed set of boosters
            log_params(run, {"xgboost": booster_params(json.loads(save_config()))})
        run.reset_throughput("rounds")
        return model

    def after_iteration(self, model: Any, epoch: int, evals_log: dict[str, Any]) -> bool:
        run = self._binding.get()
        points: dict[str, float] = {}
        for data, metrics in evals_log.items():
            for metric, history in metrics.items():
                if not history:
                    continue
                last = history[-1]
                if isinstance(last, tuple):  # xgb.cv: (mean, std)
                    points[f"{data}-{metric}"] = float(last[0])
                    points[f"{data}-{metric}-std"] = float(last[1])
                else:
                    points[f"{data}-{metric}"] = float(last)
        if points:
            run.log_metrics(points, step=epoch)
        run.log_throughput(1, step=epoch, name="rounds")
        return False

    def after_training(self, model: Any) -> Any:
        run = self._binding.get()
        attr = getattr(model, "attr", None)
        if callable(attr):
            best = {k: attr(k) for k in ("best_iteration", "best_score")}
            final = {k: float(v) for k, v in best.items() if v is not None}
            if final:
                run.log_summary(final)
        if self.log_model and callable(getattr(model, "save_model", None)) and callable(attr):
            log_saved(run, "model.ubj", model.save_model)
        self._binding.commit()
        return model

    def finish(self, status: str = "finished") -> None:
        """Finish the run if this callback started it (a run it was given, or found
        active, is left to its owner)."""
        self._binding.finish(status)
