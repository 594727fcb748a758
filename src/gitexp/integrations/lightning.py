"""PyTorch Lightning: a ``Logger`` and a throughput ``Callback``.

    import lightning as L
    from gitexp.integrations.lightning import GitExpLogger, GitExpThroughput

    trainer = L.Trainer(max_epochs=10, logger=GitExpLogger(experiment="mnist"),
                        callbacks=[GitExpThroughput()])
    trainer.fit(model, datamodule=dm)
    trainer.test(model, datamodule=dm)      # the same run

``GitExpLogger`` records the hyperparameters Lightning hands to loggers
(``save_hyperparameters()``), every metric ``self.log`` sends at Lightning's
logging steps, and the checkpoints ``ModelCheckpoint`` saved (artifacts under
``checkpoints/``). ``GitExpThroughput`` adds ``throughput/samples_per_sec`` at
the same logging steps (training batches only). Both import ``lightning.pytorch``
(the ``lightning`` package), or ``pytorch_lightning`` when only that is installed.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Literal

from gitexp.integrations._common import (
    FileLog,
    RunBinding,
    log_params,
    require,
    scalars,
    warn_once,
)
from gitexp.tracking import Run

pl = require(
    ("lightning.pytorch", "pytorch_lightning"), "gitexp.integrations.lightning", "lightning"
)

_rank_zero_only: Callable[..., Any] = pl.utilities.rank_zero.rank_zero_only
_rank_zero_experiment: Callable[..., Any] = pl.loggers.logger.rank_zero_experiment
_extract_batch_size: Callable[[Any], int] = pl.utilities.data.extract_batch_size
_Logger: Any = pl.loggers.Logger
_Callback: Any = pl.Callback

__all__ = ["GitExpLogger", "GitExpThroughput"]


class GitExpLogger(_Logger):  # type: ignore[misc]
    """A Lightning logger that records into a git-exp run.

    Args:
        run: the run to log into; default: the active run (the one ``git exp
            run`` started), else a new run, started when Lightning first asks
            for it and left open after ``fit`` (so ``trainer.test`` logs there
            too): finish it with :meth:`finish`, or let the script's exit do it.
        experiment, name, tags, repo: for a run this logger starts.
        save_dir: where ``ModelCheckpoint`` writes by default:
            ``<save_dir>/<experiment>/<run-id>/checkpoints``.
        log_checkpoints: ``True``: when a stage ends, the best and the last
            checkpoint of each ``ModelCheckpoint``; ``"all"``: every checkpoint
            when it is saved; ``False``: none.
    """

    def __init__(
        self,
        run: Run | None = None,
        *,
        experiment: str | None = None,
        name: str | None = None,
        tags: Iterable[str] | None = None,
        save_dir: str | os.PathLike[str] = "lightning_logs",
        log_checkpoints: bool | Literal["all"] = True,
        repo: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        self._binding = RunBinding(run, experiment, name, tags, repo)
        self._save_dir = os.fspath(save_dir)
        self.log_checkpoints = log_checkpoints
        self._checkpointers: list[Any] = []
        self._files = FileLog("checkpoints")

    # ------------------------------------------------------------- identity
    @property
    def run(self) -> Run:
        """The run this logger records into (found or started when first needed)."""
        return self._binding.run

    @property
    @_rank_zero_experiment
    def experiment(self) -> Run:
        """The git-exp ``Run`` (what ``self.logger.experiment`` is in a LightningModule)."""
        return self._binding.get()

    @property
    def name(self) -> str:
        """The run's experiment."""
        return self._binding.run.experiment

    @property
    def version(self) -> str:
        """The run id."""
        return self._binding.run.id

    @property
    def save_dir(self) -> str:
        return self._save_dir

    @property
    def root_dir(self) -> str:
        return os.path.join(self._save_dir, self.name)

    @property
    def log_dir(self) -> str:
        return os.path.join(self._save_dir, self.name, self.version)

    # -------------------------------------------------------------- logging
    @_rank_zero_only
    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        if not isinstance(params, Mapping):
            params = vars(params)  # argparse.Namespace
        log_params(self._binding.get(), params)

    @_rank_zero_only
    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        points = scalars(metrics)
        if points:
            self._binding.get().log_metrics(points, step=step)

    @_rank_zero_only
    def after_save_checkpoint(self, checkpoint_callback: Any) -> None:
        if checkpoint_callback not in self._checkpointers:
            self._checkpointers.append(checkpoint_callback)
        if self.log_checkpoints == "all":
            self._files.log(self._binding.get(), _checkpoint_files(checkpoint_callback, every=True))

    @_rank_zero_only
    def finalize(self, status: str) -> None:
        if not self._binding.bound:
            return
        run = self._binding.get()
        if self.log_checkpoints is True:
            for cb in self._checkpointers:
                self._files.log(run, _checkpoint_files(cb, every=False))
        self._binding.commit()

    def finish(self, status: str = "finished") -> None:
        """Finish the run if this logger started it (a run it was given, or found
        active, is left to its owner)."""
        self._binding.finish(status)


def _checkpoint_files(callback: Any, every: bool) -> list[str]:
    """The checkpoints of a ModelCheckpoint: the best and the last, or (``every``)
    all it keeps."""
    paths = [getattr(callback, "best_model_path", ""), getattr(callback, "last_model_path", "")]
    if every:
        paths += list(getattr(callback, "best_k_models", {}) or {})
    return [p for p in dict.fromkeys(paths) if p]


class GitExpThroughput(_Callback):  # type: ignore[misc]
    """Logs ``throughput/samples_per_sec`` (per process) at Lightning's logging steps
    (``log_every_n_steps``), counting training batches only: validation inside
    ``fit`` is not in the time.

    It logs into the run of the trainer's ``GitExpLogger``, else the run given,
    else the active run (or one it starts, as the logger does).

    Args:
        batch_size_fn: the number of samples in a batch; default: the first
            dimension of the batch's tensors (Lightning's ``extract_batch_size``).
        name: the throughput's name: ``throughput/<name>_per_sec``.
    """

    def __init__(
        self,
        batch_size_fn: Callable[[Any], int] | None = None,
        *,
        name: str = "samples",
        run: Run | None = None,
    ) -> None:
        super().__init__()
        self.batch_size_fn = batch_size_fn or _extract_batch_size
        self.name = name
        self._given = run
        self._run: Run | None = None
        self._items = 0

    def _resolve(self, trainer: Any) -> Run:
        for logger in getattr(trainer, "loggers", []):
            if isinstance(logger, GitExpLogger):
                return logger._binding.get()
        if self._run is None:
            self._run = RunBinding(self._given, None, None, None, None).get()
        return self._run

    def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        # what happened between epochs (validation, checkpoints) is not in the time
        if trainer.is_global_zero:
            self._resolve(trainer).reset_throughput(self.name)
            self._items = 0

    def on_train_batch_end(
        self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if not trainer.is_global_zero:
            return
        try:
            self._items += int(self.batch_size_fn(batch))
        except Exception as exc:
            warn_once(self, "_warned", f"no throughput: the batch size is unknown ({exc})")
            return
        if _logs_now(trainer):
            self._log(trainer)

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.is_global_zero and self._items:
            self._log(trainer)

    def on_validation_start(self, trainer: Any, pl_module: Any) -> None:
        if trainer.is_global_zero and not trainer.sanity_checking and self._items:
            self._log(trainer)  # the training time so far, before validation starts

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        # validation inside fit is over: training time counts again from here
        if trainer.is_global_zero and not trainer.sanity_checking and trainer.state.fn == "fit":
            self._resolve(trainer).reset_throughput(self.name)

    def _log(self, trainer: Any) -> None:
        run = self._resolve(trainer)
        run.log_throughput(self._items, step=_log_step(trainer), name=self.name)
        self._items = 0


def _logs_now(trainer: Any) -> bool:
    """Whether Lightning logs at this training batch (``log_every_n_steps``), read
    as Lightning's own DeviceStatsMonitor reads it."""
    try:
        return bool(trainer._logger_connector.should_update_logs)
    except AttributeError:  # another Lightning release: count optimizer steps
        return bool(trainer.global_step % max(1, trainer.log_every_n_steps) == 0)


def _log_step(trainer: Any) -> int:
    """The step Lightning gives loggers for this training batch."""
    try:
        return int(trainer.fit_loop.epoch_loop._batches_that_stepped)
    except AttributeError:
        return int(trainer.global_step)
