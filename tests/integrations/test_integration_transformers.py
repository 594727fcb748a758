"""gitexp.integrations.transformers against a real HuggingFace Trainer (CPU), on a
tiny BERT built from a config in the test: nothing is downloaded from a hub."""

from __future__ import annotations

import json
import os

import pytest

import gitexp
from conftest import fsck, run_refs
from frameworks import artifact_names, need, recorded, restore, under_git_exp_run

pytestmark = [
    pytest.mark.slow,
    # the frameworks' own deprecation notices: not git-exp's to fix
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
]

SETUP = """
import torch
from transformers import BertConfig, BertForSequenceClassification, TrainingArguments


def tiny_model():
    torch.manual_seed(0)
    config = BertConfig(vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                        intermediate_size=32, max_position_embeddings=16, num_labels=2)
    return BertForSequenceClassification(config)


def dataset(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, 64, (n, 12), generator=g)
    labels = (ids[:, 0] > 32).long()
    mask = torch.ones(12, dtype=torch.long)
    return [{"input_ids": ids[i], "attention_mask": mask, "labels": labels[i]} for i in range(n)]


def arguments(out, **kw):
    base = dict(output_dir=out, per_device_train_batch_size=8, per_device_eval_batch_size=16,
                num_train_epochs=2, logging_steps=2, eval_strategy="epoch", save_strategy="epoch",
                report_to="none", use_cpu=True, disable_tqdm=True, learning_rate=1e-3, seed=0)
    return TrainingArguments(**{**base, **kw})
"""


OFFLINE = {"HF_HUB_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}  # no hub, ever


@pytest.fixture(scope="module")
def hf():
    before = {k: os.environ.get(k) for k in OFFLINE}
    os.environ.update(OFFLINE)  # read when huggingface_hub is first imported
    try:
        need("torch", "transformers")
        need("accelerate", "transformers")  # the Trainer needs it
        transformers = need("transformers", "transformers")
    finally:
        for k, v in before.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    namespace: dict = {}
    exec(SETUP, namespace)
    return transformers, namespace


def test_a_trainer_run_is_recorded_in_a_run_the_callback_starts(repo, hf, tmp_path):
    transformers, setup = hf
    from gitexp.integrations.transformers import GitExpCallback

    cb = GitExpCallback(experiment="hf", name="tiny-bert")
    trainer = transformers.Trainer(
        model=setup["tiny_model"](),
        args=setup["arguments"](str(tmp_path / "out")),
        train_dataset=setup["dataset"](48),
        eval_dataset=setup["dataset"](16, seed=1),
        callbacks=[cb],
    )
    trainer.train()
    final = trainer.evaluate()  # after training: the same run
    assert gitexp.active_run() is cb.run
    cb.finish()
    rec, series = recorded(repo, cb.run.ref)
    assert rec.status == "finished" and rec.name == "tiny-bert"
    args, model = rec.params["transformers"]["args"], rec.params["transformers"]["model"]
    assert args["learning_rate"] == 0.001 and args["per_device_train_batch_size"] == 8
    assert model["hidden_size"] == 16 and model["model_type"] == "bert"
    # what the Trainer logged, at its global steps (6 steps an epoch)
    history = trainer.state.log_history
    train_logs = [h for h in history if "loss" in h]
    assert series["loss"] == (
        [h["step"] for h in train_logs],
        pytest.approx([h["loss"] for h in train_logs]),
    )
    assert series["eval_loss"][0] == [6, 12, 12]
    assert series["eval_loss"][1][-1] == pytest.approx(final["eval_loss"])
    assert "train_runtime" in series and "learning_rate" in series
    # samples/s at each logging step: 2 steps of 8 between points
    steps, rates = series["throughput/samples_per_sec"]
    assert steps == [2, 4, 6, 8, 10, 12] and all(r > 0 for r in rates)
    # the last checkpoint the Trainer saved, a directory
    assert artifact_names(rec) == ["checkpoints/checkpoint-12"]
    config = restore(
        repo, cb.run.ref, "checkpoints/checkpoint-12/config.json", tmp_path / "config.json"
    )
    assert json.loads(config.read_text())["hidden_size"] == 16
    fsck(repo)


def test_under_git_exp_run_the_callback_logs_into_that_run(repo, hf):
    (repo / "setup_hf.py").write_text(SETUP)
    ref = under_git_exp_run(
        repo,
        """
        from transformers import Trainer
        from setup_hf import tiny_model, dataset, arguments
        from gitexp.integrations.transformers import GitExpCallback

        trainer = Trainer(model=tiny_model(), train_dataset=dataset(32),
                          args=arguments("out", num_train_epochs=1, eval_strategy="no",
                                         save_strategy="no"),
                          callbacks=[GitExpCallback()])
        trainer.train()
        """,
        env=OFFLINE,
    )
    assert run_refs(repo) == [ref]
    rec, series = recorded(repo, ref)
    assert rec.status == "finished" and rec.params["transformers"]["args"]["num_train_epochs"] == 1
    assert series["loss"][0] == [2, 4]
    assert series["throughput/samples_per_sec"][0] == [2, 4]
    assert artifact_names(rec) == []  # save_strategy="no": no checkpoint to store
