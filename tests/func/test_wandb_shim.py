"""gitexp.wandb: the W&B loop from the docs records a git-exp run, offline."""

from __future__ import annotations

import json
import sys

import pytest

from conftest import cas_bytes, fsck, git, run_refs, show_json
from frameworks import need


@pytest.fixture
def wandb(repo):
    import gitexp.wandb as shim

    yield shim
    shim.finish()


def _points(repo, ref):
    import gitexp

    table = gitexp.metric_history(ref.rsplit("/", 1)[1], repo=repo)
    return sorted(
        zip(
            table.column("key").to_pylist(),
            table.column("step").to_pylist(),
            table.column("value").to_pylist(),
        )
    )


def test_the_loop_from_the_wandb_docs_records_a_git_exp_run(wandb, repo):
    run = wandb.init(
        project="mnist",
        name="baseline",
        config={"lr": 0.01, "epochs": 2},
        tags=["cnn"],
        group="ablation",
        job_type="train",
        notes="first try",
    )
    assert wandb.run is run
    wandb.config.update({"batch": 32})
    wandb.config.dropout = 0.1
    assert (wandb.config.lr, wandb.config["batch"], run.config.dropout) == (0.01, 32, 0.1)
    for epoch in range(2):
        wandb.log({"loss": 1.0 / (epoch + 1), "val": {"acc": 0.5 + 0.1 * epoch}})
    run.summary["best_acc"] = 0.7
    assert run.summary["loss"] == 0.5 and run.summary["best_acc"] == 0.7
    wandb.finish()
    assert wandb.run is None
    (ref,) = run_refs(repo)
    assert ref == f"refs/experiments/mnist/{run.id}"
    info = show_json(repo, ref, "run.json")
    assert info["name"] == "baseline" and info["status"] == "finished"
    assert info["tags"] == ["cnn", "group=ablation", "job_type=train"]
    assert [n["text"] for n in info["notes"]] == ["first try"]
    assert show_json(repo, ref, "params.json") == {
        "lr": 0.01,
        "epochs": 2,
        "batch": 32,
        "dropout": 0.1,
    }
    assert show_json(repo, ref, "summary.json")["final"] == {"best_acc": 0.7}
    assert _points(repo, ref) == [
        ("loss", 0, 1.0),
        ("loss", 1, 0.5),
        ("val/acc", 0, 0.5),
        ("val/acc", 1, 0.6),
    ]
    fsck(repo)


def test_steps_follow_wandb_commit_and_step_rules(wandb, repo):
    run = wandb.init(project="steps")
    wandb.log({"a": 1})  # step 0, then 1
    wandb.log({"b": 2}, commit=False)  # step 1, stays
    wandb.log({"c": 3})  # step 1, then 2
    wandb.log({"d": 4}, step=10)  # step 10; the row stays open
    wandb.log({"e": 5})  # step 10, then 11
    wandb.log({"f": 6})  # step 11
    assert run.step == 12
    wandb.finish()
    ref = f"refs/experiments/steps/{run.id}"
    assert [(k, s) for k, s, _ in _points(repo, ref)] == [
        ("a", 0),
        ("b", 1),
        ("c", 1),
        ("d", 10),
        ("e", 10),
        ("f", 11),
    ]


def test_images_tables_and_artifacts_become_run_artifacts(wandb, repo, tmp_path):
    import numpy as np

    need("PIL", "mlflow")  # MLflow brings Pillow
    weights = tmp_path / "weights.bin"
    weights.write_bytes(b"\x00" * 64)
    run = wandb.init(project="media")
    wandb.log(
        {
            "sample": wandb.Image(np.zeros((4, 5, 3))),
            "preds": wandb.Table(columns=["x", "y"], data=[[1, 2]]),
        }
    )
    table = wandb.Table(columns=["a"])
    table.add_data(3)
    wandb.log({"more": table}, step=4)
    art = wandb.Artifact("model", type="model")
    art.add_file(str(weights))
    run.log_artifact(art)
    wandb.finish()
    manifest = show_json(repo, f"refs/experiments/media/{run.id}", "artifacts.json")
    paths = sorted(a["path"] for a in manifest)
    assert paths[0] == "media/images/sample_0_" + paths[0].split("_")[-1]
    assert paths[0].endswith(".png")
    assert paths[1].startswith("media/tables/more_4_") and paths[2].startswith(
        "media/tables/preds_0_"
    )
    assert paths[3] == "model/weights.bin"
    from gitexp.store import ExpStore

    with ExpStore(repo) as store:
        artifacts = store.read_settled(run.id).artifacts
        entry = next(a for a in artifacts if a.path.startswith("media/tables/preds"))
        assert json.loads(store.cas.get_bytes(entry.blake3)) == {
            "columns": ["x", "y"],
            "data": [[1, 2]],
        }
    assert cas_bytes(repo) > 0


def test_a_run_exits_failed_from_a_with_block_that_raises(wandb, repo):
    with pytest.raises(RuntimeError), wandb.init(project="ctx") as run:
        wandb.log({"x": 1})
        raise RuntimeError("boom")
    assert show_json(repo, f"refs/experiments/ctx/{run.id}", "run.json")["status"] == "failed"


def test_init_again_returns_the_active_run_unless_asked_for_a_new_one(wandb):
    first = wandb.init(project="re")
    assert wandb.init(project="re") is first
    second = wandb.init(project="re", reinit=True)
    assert second is not first and first._finished


def test_resume_goes_on_with_a_recorded_run(wandb, repo):
    run = wandb.init(project="long")
    wandb.log({"loss": 1.0})
    wandb.finish()
    again = wandb.init(id=run.id, resume="allow")
    again.log({"loss": 0.5}, step=1)
    wandb.finish()
    assert [v for _, _, v in _points(repo, f"refs/experiments/long/{run.id}")] == [1.0, 0.5]


def test_calls_the_shim_does_not_map_raise_an_error_naming_them(wandb):
    from gitexp.errors import RunStateError, UnsupportedCall

    with pytest.raises(RunStateError, match=r"wandb\.init"):
        wandb.log({"x": 1})
    run = wandb.init(project="calls")
    with pytest.raises(UnsupportedCall, match=r"wandb\.watch"):
        wandb.watch(object())
    with pytest.raises(UnsupportedCall, match=r"wandb\.Run\.define_metric"):
        run.define_metric("acc", summary="max")
    with pytest.raises(UnsupportedCall, match=r"wandb\.log of a list"):
        wandb.log({"hist": [1, 2, 3]})
    with pytest.raises(UnsupportedCall, match=r"mode='disabled'"):
        wandb.init(mode="disabled", reinit=True)
    assert wandb.login() is True  # no account to log in to


@pytest.mark.slow
def test_under_git_exp_run_init_attaches_to_the_run_git_exp_started(gx, repo):
    (repo / "train_wandb.py").write_text(
        "import gitexp.wandb as wandb\n"
        "wandb.init(project='ignored', config={'lr': 0.1})\n"
        "for i in range(3):\n"
        "    wandb.log({'loss': 1.0 / (i + 1)})\n"
        "wandb.finish()\n"
    )
    git("add", ".", cwd=repo)
    git("commit", "-q", "-m", "script", cwd=repo)
    gx.ok("run", "-e", "cli", "--", sys.executable, "train_wandb.py")
    (ref,) = run_refs(repo)
    assert ref.startswith("refs/experiments/cli/")
    assert show_json(repo, ref, "params.json") == {"lr": 0.1}
    assert show_json(repo, ref, "summary.json")["metrics"]["loss"]["count"] == 3


def test_wandb_alert_is_git_exps_alert_recorded_in_the_run(wandb, repo):
    from conftest import show_json

    run = wandb.init(project="alerts")
    wandb.alert(title="loss is NaN", text="stop", level=wandb.AlertLevel.ERROR)
    run.alert(title="slow", text="epoch took 2 h", level="WARN", wait_duration=300)
    run.alert(title="slow", text="again", level="WARN", wait_duration=300)  # within 300 s
    with pytest.raises(ValueError, match="INFO, WARN or ERROR"):
        run.alert(title="t", text="x", level="LOUD")
    ref = f"refs/experiments/{run._run.experiment}/{run.id}"
    wandb.finish()
    alerts = show_json(repo, ref, "alerts.json")
    assert [(a["title"], a["level"], a["event"]) for a in alerts] == [
        ("loss is NaN", "error", "user"),
        ("slow", "warning", "user"),
    ]
