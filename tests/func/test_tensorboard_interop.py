"""git exp import tensorboard (event files a real writer, tensorboardX, wrote here) and
git exp export --tensorboard (read back with TensorBoard's own event reader)."""

from __future__ import annotations

import importlib.util
import time

import numpy as np
import pytest

from conftest import exp_state, finished_run, fsck, show_json
from servers import require


@pytest.fixture
def tensorboard():
    require(
        importlib.util.find_spec("tensorboard") is not None, "tensorboard (pip install tensorboard)"
    )
    require(
        importlib.util.find_spec("tensorboardX") is not None,
        "tensorboardX (pip install tensorboardX)",
    )


@pytest.fixture
def logdir(tensorboard, tmp_path):
    """Runs as a training script writes them; tensorboardX writes hparams (and their
    metrics) into a run directory of their own, as TensorBoard's HParams view reads them."""
    from tensorboardX import SummaryWriter

    root = tmp_path / "runs"
    began = time.time()
    with SummaryWriter(str(root / "lr0.1")) as w:
        for step in range(5):
            w.add_scalar("loss", 1.0 / (step + 1), step)
            w.add_scalar("acc/train", 0.1 * step, step)
        w.add_histogram("weights", np.arange(10), 0)  # not a scalar: not imported
    with SummaryWriter(str(root / "lr0.01")) as w:
        w.add_scalar("loss", 2.5, 10)
        w.add_hparams({"lr": 0.01, "opt": "adam", "bn": True}, {"hparam/acc": 0.75}, name="hp")
    return root, began, time.time()


def _points(repo, run_id):
    import gitexp

    table = gitexp.metric_history(run_id, repo=repo)
    return table.to_pylist()


@pytest.mark.slow
def test_scalars_and_hparams_of_each_run_directory_become_a_run(gx, repo, logdir):
    root, began, ended = logdir
    out = gx.ok("import", "tensorboard", str(root), "-e", "tb")
    assert "imported 3 run(s)" in out
    import gitexp

    runs = {r["name"]: r for r in gitexp.runs(repo=repo).to_pylist()}
    assert sorted(runs) == ["lr0.01", "lr0.01/hp", "lr0.1"]
    first = _points(repo, runs["lr0.1"]["id"])
    loss = [(p["step"], p["value"]) for p in first if p["key"] == "loss"]
    # tensorboardX writes float32 values
    assert loss == [(s, float(np.float32(1.0 / (s + 1)))) for s in range(5)]
    acc = [(p["step"], p["value"]) for p in first if p["key"] == "acc/train"]
    assert acc == [(s, float(np.float32(0.1 * s))) for s in range(5)]
    times = [p["time"].timestamp() for p in first]
    assert all(began - 1 <= t <= ended + 1 for t in times)
    ref = f"refs/experiments/tb/{runs['lr0.01/hp']['id']}"
    assert show_json(repo, ref, "params.json") == {"lr": 0.01, "opt": "adam", "bn": True}
    info = show_json(repo, ref, "run.json")
    assert info["origin"]["tool"] == "tensorboard" and info["origin"]["run"] == "lr0.01/hp"
    assert info["status"] == "finished"
    hp = _points(repo, runs["lr0.01/hp"]["id"])
    assert [(p["key"], p["step"], p["value"]) for p in hp] == [("hparam/acc", 0, 0.75)]
    second = _points(repo, runs["lr0.01"]["id"])
    assert [(p["key"], p["step"], p["value"]) for p in second] == [("loss", 10, 2.5)]
    # again, and from the parent directory: the same event files, nothing new
    before = exp_state(repo)
    from gitexp.interop.tensorboard import import_tensorboard
    from gitexp.store import ExpStore

    with ExpStore(repo) as store:
        again = import_tensorboard(store, str(root.parent), experiment="tb")
    assert (again.imported, len(again.already)) == ([], 3)
    assert exp_state(repo) == before
    fsck(repo)


@pytest.mark.slow
def test_export_writes_every_point_and_the_params_tensorboard_reads(
    gx, repo, tensorboard, tmp_path
):
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import plugin_data_pb2
    from tensorboard.util import tensor_util

    ref = finished_run(experiment="exp/a", params={"lr": 0.1, "opt": {"name": "sgd"}})
    run_id = ref.rsplit("/", 1)[1]
    import gitexp

    with gitexp.start_run(experiment="exp/a", params={"lr": 0.2}) as run:
        for step in range(3):
            run.log_metric("loss", 1 / 3 + step, step=step)  # float64 values, kept exactly
        other = run.id
    out_dir = tmp_path / "tb"
    gx.ok("export", "--tensorboard", str(out_dir), "-e", "exp")
    files = sorted(out_dir.rglob("*tfevents*"))
    assert [f.parent.name for f in files] == sorted([run_id, other])
    (events,) = [f for f in files if f.parent.name == other]
    assert events.parent.parent == out_dir / "exp" / "a"
    scalars, hparams = [], {}
    for event in EventFileLoader(str(events)).Load():
        for value in event.summary.value:
            if value.metadata.plugin_data.plugin_name == "hparams":
                data = plugin_data_pb2.HParamsPluginData.FromString(
                    value.metadata.plugin_data.content
                )
                if data.HasField("session_start_info"):
                    hparams = {
                        k: v.number_value for k, v in data.session_start_info.hparams.items()
                    }
            else:
                scalars.append(
                    (value.tag, event.step, tensor_util.make_ndarray(value.tensor).item())
                )
    assert scalars == [("loss", s, 1 / 3 + s) for s in range(3)]
    assert hparams == {"lr": 0.2}
    # and back: an export imports as the same points
    gx.ok("import", "tensorboard", str(out_dir / "exp"), "-e", "back")
    back = {r["name"]: r for r in gitexp.runs(experiment="back", repo=repo).to_pylist()}
    assert sorted(back) == sorted([f"a/{run_id}", f"a/{other}"])
    points = _points(repo, back[f"a/{other}"]["id"])
    assert [(p["key"], p["step"], p["value"]) for p in points] == scalars
    assert back[f"a/{run_id}"]["params.opt.name"] == "sgd"


def test_export_takes_one_destination(gx, repo, tmp_path):
    out = gx("export")
    assert (
        out.returncode == 2 and "give one of -o/--output FILE and --tensorboard DIR" in out.stderr
    )
    out = gx("export", "-o", str(tmp_path / "r.parquet"), "--tensorboard", str(tmp_path / "tb"))
    assert out.returncode == 2


def test_a_directory_without_event_files_is_one_line(gx, repo, tensorboard, tmp_path):
    (tmp_path / "empty").mkdir()
    out = gx("import", "tensorboard", str(tmp_path / "empty"))
    assert out.returncode == 6
    assert out.stderr.strip() == (
        f"git exp: error: {tmp_path / 'empty'}: no TensorBoard event files (*tfevents*) in it"
    )
