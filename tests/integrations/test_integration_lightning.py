"""gitexp.integrations.lightning against real PyTorch Lightning (CPU)."""

from __future__ import annotations

import time

import pytest

import gitexp
from conftest import fsck, run_refs
from frameworks import artifact_names, need, recorded, restore, under_git_exp_run

pytestmark = [
    pytest.mark.slow,
    # Lightning's own notices (a DataLoader without workers, torch pytree deprecations)
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:.*does not have many workers:UserWarning"),
    pytest.mark.filterwarnings("ignore:.*isinstance.treespec, LeafSpec.*"),
]

MODULE = """
import torch
from torch.utils.data import DataLoader, TensorDataset


def make_module(L):
    class Regressor(L.LightningModule):
        def __init__(self, lr=0.05, hidden=8):
            super().__init__()
            self.save_hyperparameters()
            self.net = torch.nn.Sequential(
                torch.nn.Linear(4, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1)
            )

        def _loss(self, batch):
            x, y = batch
            return torch.nn.functional.mse_loss(self.net(x).squeeze(-1), y)

        def training_step(self, batch, i):
            loss = self._loss(batch)
            self.log("train_loss", loss)
            return loss

        def validation_step(self, batch, i):
            self.log("val_loss", self._loss(batch))

        def test_step(self, batch, i):
            self.log("test_loss", self._loss(batch))

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)

    return Regressor


def loaders(n=128, batch=16):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 4, generator=g)
    y = x.sum(dim=1)
    return (DataLoader(TensorDataset(x, y), batch_size=batch),
            DataLoader(TensorDataset(x[:32], y[:32]), batch_size=32))
"""


@pytest.fixture(scope="module")
def L():
    return need("lightning", "lightning")


@pytest.fixture(scope="module")
def parts(L):
    namespace: dict = {}
    exec(MODULE, namespace)
    return namespace["make_module"](L), namespace["loaders"]


def _trainer(L, logger, tmp_path, **kw):
    kw.setdefault("max_epochs", 3)
    return L.Trainer(
        logger=logger,
        log_every_n_steps=2,
        enable_progress_bar=False,
        enable_model_summary=False,
        accelerator="cpu",
        default_root_dir=str(tmp_path),
        **kw,
    )


def test_fit_and_test_are_recorded_in_the_run_the_logger_starts(repo, L, parts, tmp_path):
    import torch

    from gitexp.integrations.lightning import GitExpLogger, GitExpThroughput

    Regressor, loaders = parts

    class SlowValidation(Regressor):
        def validation_step(self, batch, i):
            time.sleep(0.3)  # must not count in the training throughput
            return super().validation_step(batch, i)

    train, valid = loaders()
    torch.manual_seed(0)
    logger = GitExpLogger(experiment="pl", name="mlp", save_dir=tmp_path / "logs")
    trainer = _trainer(L, logger, tmp_path, callbacks=[GitExpThroughput()])
    trainer.fit(SlowValidation(lr=0.05), train, valid)
    last_val_loss = float(trainer.callback_metrics["val_loss"])
    trainer.test(ckpt_path="best", dataloaders=valid, verbose=False)
    run = logger.run
    assert logger.experiment is run and gitexp.active_run() is run
    assert (logger.name, logger.version) == ("pl", run.id)
    logger.finish()
    rec, series = recorded(repo, run.ref)
    assert rec.status == "finished" and rec.name == "mlp"
    assert rec.params == {"lr": 0.05, "hidden": 8}  # save_hyperparameters()
    # 8 batches an epoch, 3 epochs: train_loss at Lightning's logging steps (every 2nd)
    assert series["train_loss"][0] == list(range(1, 24, 2))
    assert series["val_loss"][0] == [7, 15, 23]
    assert series["val_loss"][1][-1] == pytest.approx(last_val_loss)
    assert "test_loss" in series  # trainer.test after fit: the same run
    steps, rates = series["throughput/samples_per_sec"]
    assert steps == list(range(1, 24, 2))  # as train_loss
    # two batches of 16 each: a rate that took a validation (0.3 s) in would be < 107/s
    assert all(r > 32 / 0.3 for r in rates), rates
    # the checkpoint ModelCheckpoint wrote under the logger's directory, stored
    ckpt = trainer.checkpoint_callback.best_model_path
    assert ckpt.startswith(str(tmp_path / "logs" / "pl" / run.id / "checkpoints"))
    assert artifact_names(rec) == ["checkpoints/epoch=2-step=24.ckpt"]
    back = restore(repo, run.ref, "checkpoints/epoch=2-step=24.ckpt", tmp_path / "restored.ckpt")
    state = torch.load(back, weights_only=False)["state_dict"]
    model = Regressor.load_from_checkpoint(ckpt)
    for key, value in model.state_dict().items():
        assert torch.equal(state[key], value)
    fsck(repo)


def test_every_checkpoint_when_asked_and_an_active_run_is_used(repo, L, parts, tmp_path):
    from gitexp.integrations.lightning import GitExpLogger

    Regressor, loaders = parts
    train, valid = loaders(n=32)
    with gitexp.start_run(experiment="mine") as run:
        logger = GitExpLogger(log_checkpoints="all")
        checkpoint = L.pytorch.callbacks.ModelCheckpoint(monitor="val_loss", save_top_k=-1)
        trainer = _trainer(L, logger, tmp_path, callbacks=[checkpoint], max_epochs=2)
        trainer.fit(Regressor(), train, valid)
        assert logger.run is run
        logger.finish()  # not its run
        assert gitexp.active_run() is run
    rec, series = recorded(repo, run.ref)
    assert artifact_names(rec) == [
        "checkpoints/epoch=0-step=2.ckpt",
        "checkpoints/epoch=1-step=4.ckpt",
    ]
    assert "throughput/samples_per_sec" not in series  # no GitExpThroughput callback
    assert run_refs(repo) == [run.ref]


def test_under_git_exp_run_the_logger_logs_into_that_run(repo, L):
    (repo / "model.py").write_text(MODULE)
    ref = under_git_exp_run(
        repo,
        """
        import lightning as L
        from model import make_module, loaders
        from gitexp.integrations.lightning import GitExpLogger, GitExpThroughput

        train, valid = loaders(n=64)
        trainer = L.Trainer(max_epochs=2, logger=GitExpLogger(log_checkpoints=False),
                            callbacks=[GitExpThroughput()], log_every_n_steps=1,
                            enable_progress_bar=False, enable_model_summary=False,
                            enable_checkpointing=False, accelerator="cpu")
        trainer.fit(make_module(L)(lr=0.01), train, valid)
        """,
    )
    assert run_refs(repo) == [ref]
    rec, series = recorded(repo, ref)
    assert rec.status == "finished" and rec.params == {"lr": 0.01, "hidden": 8}
    assert series["train_loss"][0] == list(range(8))
    assert series["throughput/samples_per_sec"][0] == list(range(8))
    assert artifact_names(rec) == []


def test_with_only_pytorch_lightning_the_logger_is_one_of_its_loggers(repo, L, monkeypatch):
    import importlib
    import sys

    need("pytorch_lightning", "lightning")  # what the lightning package itself depends on
    for name in [m for m in sys.modules if m == "lightning" or m.startswith("lightning.")]:
        monkeypatch.setitem(sys.modules, name, None)  # as if only pytorch_lightning were there
    monkeypatch.delitem(sys.modules, "gitexp.integrations.lightning")
    module = importlib.import_module("gitexp.integrations.lightning")
    monkeypatch.delitem(sys.modules, "gitexp.integrations.lightning")  # restored after the test
    import pytorch_lightning as pl

    assert issubclass(module.GitExpLogger, pl.loggers.Logger)
    assert issubclass(module.GitExpThroughput, pl.Callback)
    logger = module.GitExpLogger(experiment="old")
    trainer = pl.Trainer(logger=logger, callbacks=[module.GitExpThroughput()], max_epochs=1)
    assert trainer.logger is logger and logger.name == "old"
    logger.finish()
