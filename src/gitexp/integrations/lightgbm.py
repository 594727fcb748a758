"""LightGBM: a callback for ``lgb.train``, ``lgb.cv`` and the scikit-learn API.

    import lightgbm as lgb
    from gitexp.integrations.lightgbm import GitExpCallback

    booster = lgb.train(params, dtrain, num_boost_round=100, valid_sets=[dvalid],
                        callbacks=[GitExpCallback()])

Records the params LightGBM trains with as ``params.lightgbm.*``, every
evaluation result of every round as ``<data>-<metric>`` at step = round,
``throughput/rounds_per_sec`` and ``throughput/samples_per_sec`` (training
rows per second) from the second round on, and the model as the artifact
``model.txt`` when the last round is reached.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from gitexp.integrations._common import RunBinding, log_params, log_saved, require
from gitexp.tracking import Run

lgb = require("lightgbm", "gitexp.integrations.lightgbm", "lightgbm")

__all__ = ["GitExpCallback"]


class GitExpCallback:
    """Records a LightGBM training into a git-exp run.

    LightGBM calls it after each boosting round (``order`` 25: before early
    stopping, so the round that stops training is recorded too). LightGBM has no
    end-of-training hook: the model is stored when the last round is reached;
    when early stopping ends training sooner, store it yourself (``booster.save_model``
    and ``gitexp.log_artifact``).

    Args:
        run: the run to log into; default: the active run (the one ``git exp
            run`` started), else a new run, left open after training (finish it
            with :meth:`finish`, or let the script's exit do it).
        experiment, name, tags, repo: for a run this callback starts.
        log_model: store the model as the artifact ``model.txt`` after the last round.
    """

    order = 25
    before_iteration = False

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
        self._binding = RunBinding(run, experiment, name, tags, repo)
        self.log_model = log_model
        self._started: int | None = None  # the first round seen

    @property
    def run(self) -> Run:
        """The run this callback logs into (found or started when first needed)."""
        return self._binding.run

    def __call__(self, env: Any) -> None:
        run = self._binding.get()
        if self._started is None or env.iteration <= self._started:  # a new training
            self._started = env.iteration
            log_params(run, {"lightgbm": env.params})
            # the first call comes after the first round: rates count from here
            run.reset_throughput("rounds")
            run.reset_throughput("samples")
        else:
            run.log_throughput(1, step=env.iteration, name="rounds")
            rows = _rows(env.model)
            if rows is not None:
                run.log_throughput(rows, step=env.iteration, name="samples")
        points: dict[str, float] = {}
        for result in env.evaluation_result_list or ():
            key = f"{result[0]}-{result[1]}"
            points[key] = float(result[2])
            if len(result) > 4:  # lgb.cv: the standard deviation over the folds
                points[f"{key}-stdv"] = float(result[4])
        if points:
            run.log_metrics(points, step=env.iteration)
        if env.iteration == env.end_iteration - 1:
            if self.log_model and isinstance(env.model, lgb.Booster):
                log_saved(run, "model.txt", env.model.save_model)
            self._binding.commit()

    def finish(self, status: str = "finished") -> None:
        """Finish the run if this callback started it (a run it was given, or found
        active, is left to its owner)."""
        self._binding.finish(status)


def _rows(model: Any) -> int | None:
    """Training rows of a Booster (None for lgb.cv's CVBooster, or a freed set)."""
    train_set = getattr(model, "train_set", None)
    try:
        return int(train_set.num_data()) if train_set is not None else None
    except Exception:  # a Dataset whose handle is gone
        return None
