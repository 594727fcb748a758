"""``git exp show``: everything about one run."""

from __future__ import annotations

import json
import math

import gitexp
from conftest import git


def _rich_run(repo, tmp_path):
    (repo / "model.npz").write_bytes(b"w" * 2048)
    (tmp_path / "data.csv").write_text("1,2\n")
    with gitexp.start_run(
        experiment="show", name="the one", params={"opt": {"lr": 0.1}}, tags=["best"]
    ) as run:
        for i in range(10):
            run.log_metric("loss", 1.0 / (i + 1))
        run.log_metric("odd", float("nan"))
        run.log_artifact(repo / "model.npz")
        run.log_input(tmp_path / "data.csv")
        run.note("looks good")
    return run


def test_show_text(gx, repo, tmp_path):
    run = _rich_run(repo, tmp_path)
    out = gx.ok("show", run.id)
    assert f"run        show/{run.id}" in out
    assert "the one" in out and "finished" in out and "best" in out
    assert "opt.lr" in out and "0.1" in out
    loss = next(ln for ln in out.splitlines() if ln.strip().startswith("loss"))
    assert "0.1" in loss and "n=10" in loss and "min 0.1" in loss and "max 1" in loss
    assert any(c in loss for c in "▁▂▃▄▅▆▇█")  # sparkline
    assert "nan" in next(ln for ln in out.splitlines() if ln.strip().startswith("odd"))
    model = next(ln for ln in out.splitlines() if "model.npz" in ln)
    assert "2.0 KiB" in model and model.endswith("[output]")  # every artifact says its role
    assert str(tmp_path / "data.csv") in out
    assert "looks good" in out
    assert git("rev-parse", "HEAD", cwd=repo).strip() in out
    assert "python" in out and "Traceback" not in out


def test_show_json_and_every_address_form(gx, repo, tmp_path):
    run = _rich_run(repo, tmp_path)
    data = json.loads(gx.ok("show", "--json", run.id))
    assert data["run"] == f"show/{run.id}" and data["ref"] == run.ref
    assert data["params"] == {"opt": {"lr": 0.1}}
    assert data["info"]["status"] == "finished" and data["info"]["notes"][0]["text"] == "looks good"
    loss = data["metrics"]["loss"]
    assert loss["count"] == 10 and loss["last_step"] == 9 and len(loss["sample"]) == 10
    assert math.isclose(loss["final"], 0.1)
    assert data["metrics"]["odd"]["final"] == "NaN"  # valid JSON, NaN spelled out
    assert [a["path"] for a in data["artifacts"]] == ["model.npz"]
    assert data["inputs"][0]["source"] == str(tmp_path / "data.csv")
    assert data["code"]["commit"] == git("rev-parse", "HEAD", cwd=repo).strip()
    assert data["env"]["python"]["version"]
    for address in (f"show/{run.id}", run.ref, data["sha"][:8]):
        assert json.loads(gx.ok("show", "--json", address))["sha"] == data["sha"]


def test_show_a_failed_run_shows_the_error(gx, repo):
    try:
        with gitexp.start_run() as run:
            raise RuntimeError("exploded at step 3")
    except RuntimeError:
        pass
    out = gx.ok("show", run.id)
    assert "failed" in out and "exploded at step 3" in out


def test_show_a_long_series_samples_it(gx, repo):
    import numpy as np

    with gitexp.start_run() as run:
        run.log_metric("x", np.arange(1000.0))
    data = json.loads(gx.ok("show", "--json", run.id))
    sample = data["metrics"]["x"]["sample"]
    assert len(sample) == 40 and sample[0] == 0.0 and sample[-1] == 999.0
    assert sample == sorted(sample)
