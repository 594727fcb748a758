"""HuggingFace ``transformers``: a ``TrainerCallback`` for ``Trainer``.

    from gitexp.integrations.transformers import GitExpCallback

    trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=test,
                      callbacks=[GitExpCallback()])
    trainer.train()

Records the ``TrainingArguments`` as ``params.transformers.args.*`` and the
model's config as ``params.transformers.model.*``, everything the Trainer logs
(``loss``, ``learning_rate``, ``grad_norm``, ``eval_*``, ``train_runtime``, ...)
at step = global step, ``throughput/samples_per_sec`` at each logging,
evaluation and saving step (optimizer steps times the effective batch size,
per second of training, evaluation and saving left out), and the checkpoints
the Trainer saved as artifacts under ``checkpoints/``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any, Literal

from gitexp.integrations._common import FileLog, RunBinding, log_params, require, scalars
from gitexp.tracking import Run

transformers = require("transformers", "gitexp.integrations.transformers", "transformers")

__all__ = ["GitExpCallback"]


_TrainerCallback: Any = transformers.TrainerCallback


class GitExpCallback(_TrainerCallback):  # type: ignore[misc]
    """Records a HuggingFace ``Trainer`` run into a git-exp run (on the main process).

    Args:
        run: the run to log into; default: the active run (the one ``git exp
            run`` started), else a new run, left open after training so that
            ``trainer.evaluate()`` logs there too (finish it with :meth:`finish`,
            or let the script's exit do it).
        experiment, name, tags, repo: for a run this callback starts.
        log_checkpoints: ``True``: when training ends, the last checkpoint and
            the best one (``load_best_model_at_end``) that the Trainer saved;
            ``"all"``: each checkpoint when it is saved; ``False``: none.
    """

    def __init__(
        self,
        run: Run | None = None,
        *,
        experiment: str | None = None,
        name: str | None = None,
        tags: Iterable[str] | None = None,
        log_checkpoints: bool | Literal["all"] = True,
        repo: str | os.PathLike[str] | None = None,
    ) -> None:
        super().__init__()
        self._binding = RunBinding(run, experiment, name, tags, repo)
        self.log_checkpoints = log_checkpoints
        self._files = FileLog("checkpoints")
        self._steps = 0  # optimizer steps since the last throughput point
        self._last_checkpoint: str | None = None

    @property
    def run(self) -> Run:
        """The run this callback logs into (found or started when first needed)."""
        return self._binding.run

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        run = self._binding.get()
        params: dict[str, Any] = {"args": args.to_sanitized_dict()}
        config = getattr(kwargs.get("model"), "config", None)
        if config is not None and callable(getattr(config, "to_dict", None)):
            params["model"] = config.to_dict()
        log_params(run, {"transformers": params})
        self._steps = 0
        run.reset_throughput("samples")

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._steps += 1
        self._maybe_rate(args, state, control)

    def on_epoch_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._maybe_rate(args, state, control)

    def _maybe_rate(self, args: Any, state: Any, control: Any) -> None:
        """Before the Trainer logs, evaluates or saves (the default flow callback,
        first in the list, has just decided it), the rate of the steps so far."""
        if not state.is_world_process_zero or not self._steps:
            return
        if control.should_log or control.should_evaluate or control.should_save:
            batch = args.train_batch_size * args.gradient_accumulation_steps * args.world_size
            self._binding.get().log_throughput(
                self._steps * batch, step=state.global_step, name="samples"
            )
            self._steps = 0

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero and self._binding.bound:
            self._binding.get().reset_throughput("samples")  # evaluation time is not training

    def on_log(
        self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        if not state.is_world_process_zero or not logs:
            return
        points = scalars(logs)
        if points:
            self._binding.get().log_metrics(points, step=state.global_step)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        path = os.path.join(args.output_dir, f"checkpoint-{state.global_step}")
        if os.path.isdir(path):
            self._last_checkpoint = path
            if self.log_checkpoints == "all":
                self._files.log(self._binding.get(), [path])
        if self._binding.bound:
            self._binding.get().reset_throughput("samples")  # saving time is not training

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        run = self._binding.get()
        if self.log_checkpoints:
            best = state.best_model_checkpoint
            found = [p for p in (best, self._last_checkpoint) if p and os.path.isdir(p)]
            self._files.log(run, found)
        self._binding.commit()

    def finish(self, status: str = "finished") -> None:
        """Finish the run if this callback started it (a run it was given, or found
        active, is left to its owner)."""
        self._binding.finish(status)
