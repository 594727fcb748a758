"""Keras 3: a callback for ``model.fit``, on any backend (TensorFlow, JAX, PyTorch).

    from gitexp.integrations.keras import GitExpCallback

    model.fit(x, y, epochs=10, batch_size=32, validation_split=0.2,
              callbacks=[GitExpCallback(batch_size=32)])

Records ``params.keras.*`` (epochs, steps per epoch, batch size when given, the
optimizer's config, the model's name and parameter count), the epoch logs
(``loss``, ``val_loss``, ...) at step = epoch, batch logs as ``batch/<name>``
every ``log_every_n_batches`` batches when asked, ``throughput/batches_per_sec``
(and ``throughput/samples_per_sec`` with ``batch_size``) per epoch, training
time only, and the trained model as the artifact ``model.keras``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from gitexp.integrations._common import RunBinding, log_params, log_saved, require, scalars
from gitexp.tracking import Run

keras = require("keras", "gitexp.integrations.keras", "keras")

__all__ = ["GitExpCallback"]


_Callback: Any = keras.callbacks.Callback


class GitExpCallback(_Callback):  # type: ignore[misc]
    """Records a Keras ``fit`` into a git-exp run.

    Args:
        run: the run to log into; default: the active run (the one ``git exp
            run`` started), else a new run, left open after training (finish it
            with :meth:`finish`, or let the script's exit do it).
        experiment, name, tags, repo: for a run this callback starts.
        batch_size: the ``batch_size`` given to ``fit`` (a Keras 3 callback is
            not told it): adds ``throughput/samples_per_sec``, counting every
            batch as full.
        log_every_n_batches: also log the batch logs (running means over the
            epoch so far) as ``batch/<name>`` at step = batches seen so far,
            every this many batches.
        log_model: store the trained model as the artifact ``model.keras``.
    """

    def __init__(
        self,
        run: Run | None = None,
        *,
        experiment: str | None = None,
        name: str | None = None,
        tags: Iterable[str] | None = None,
        batch_size: int | None = None,
        log_every_n_batches: int | None = None,
        log_model: bool = True,
        repo: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        self._binding = RunBinding(run, experiment, name, tags, repo)
        self.batch_size = batch_size
        self.log_every_n_batches = log_every_n_batches
        self.log_model = log_model
        self._epoch: int | None = None  # the epoch in progress
        self._batches = 0  # batches of that epoch
        self._seen = 0  # batches of the whole fit
        self._timed = True  # the epoch's throughput is logged

    @property
    def run(self) -> Run:
        """The run this callback logs into (found or started when first needed)."""
        return self._binding.run

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        run = self._binding.get()
        params = dict(self.params or {})
        keras_params: dict[str, Any] = {
            "epochs": params.get("epochs"),
            "steps_per_epoch": params.get("steps"),
        }
        if self.batch_size is not None:
            keras_params["batch_size"] = self.batch_size
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None:
            keras_params["optimizer"] = _optimizer_config(optimizer)
        if self.model is not None:
            keras_params["model"] = {"name": self.model.name, "params": self.model.count_params()}
        log_params(run, {"keras": keras_params})
        self._seen = 0

    def on_epoch_begin(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        run = self._binding.get()
        self._epoch = epoch
        self._batches = 0
        self._timed = False
        run.reset_throughput("batches")
        if self.batch_size is not None:
            run.reset_throughput("samples")

    def on_train_batch_end(self, batch: int, logs: dict[str, Any] | None = None) -> None:
        self._batches += 1
        self._seen += 1
        every = self.log_every_n_batches
        if every and logs and self._seen % every == 0:
            self._binding.get().log_metrics(scalars(logs, "batch/"), step=self._seen)

    def on_test_begin(self, logs: dict[str, Any] | None = None) -> None:
        # validation inside fit: the epoch's training part ends here
        if self._epoch is not None and not self._timed:
            self._log_rate()

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if not self._timed:
            self._log_rate()
        if logs:
            self._binding.get().log_metrics(scalars(logs), step=epoch)
        self._epoch = None

    def on_train_end(self, logs: dict[str, Any] | None = None) -> None:
        run = self._binding.get()
        if self.log_model and self.model is not None:
            log_saved(run, "model.keras", self.model.save)
        self._binding.commit()

    def _log_rate(self) -> None:
        self._timed = True
        if not self._batches or self._epoch is None:
            return
        run = self._binding.get()
        run.log_throughput(self._batches, step=self._epoch, name="batches")
        if self.batch_size is not None:
            run.log_throughput(self._batches * self.batch_size, step=self._epoch, name="samples")

    def finish(self, status: str = "finished") -> None:
        """Finish the run if this callback started it (a run it was given, or found
        active, is left to its owner)."""
        self._binding.finish(status)


def _optimizer_config(optimizer: Any) -> dict[str, Any]:
    """An optimizer's name and config (its learning rate as a number, or its
    schedule's config)."""
    try:
        config = dict(optimizer.get_config())
    except (AttributeError, NotImplementedError, TypeError):
        return {"name": type(optimizer).__name__}
    config.setdefault("name", type(optimizer).__name__)
    return config
