"""git exp compare (significance), git exp check (the CI gate) and the interval
of git exp log --group-by, on runs recorded in a real repository; p-values
checked against scipy on the values the runs hold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from scipy import stats as st

from conftest import in_process
from modelruns import isolated_repo

pytestmark = pytest.mark.slow  # fifteen runs recorded once for the module: seconds

ADAM = [0.9012, 0.9034, 0.8991, 0.9050, 0.9003]
SGD = [0.9101, 0.9122, 0.9087, 0.9140, 0.9095]
ADAM2 = [0.9010, 0.8995, 0.9040, 0.8990, 0.9025]  # adam again: the same, within noise


def record(repo: Path) -> None:
    import gitexp

    (repo / "model.bin").write_bytes(b"weights")
    for opt, aucs in (("adam", ADAM), ("sgd", SGD), ("adam2", ADAM2)):
        for seed, auc in enumerate(aucs):
            with gitexp.start_run(
                experiment="cmp", params={"opt": opt, "seed": seed}, command=["t"], repo=repo
            ) as run:
                run.log_metrics({"auc": auc, "loss": 1 - auc})
                if opt == "adam" and seed == 0:
                    run.log_artifact(str(repo / "model.bin"))
                    run.set_tags("deployed")
    ok(repo, "model", "register", "fraud", _first(repo, "tags.deployed"))
    ok(repo, "model", "promote", "fraud", "1", "production")


def _first(repo: Path, where: str) -> str:
    rows = json.loads(ok(repo, "log", "-w", where, "--json"))
    return rows[0]["ref"]


def ok(repo: Path, *args: str) -> str:
    proc = in_process(args, repo)
    assert proc.returncode == 0, f"git exp {' '.join(args)} -> {proc.returncode}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    return isolated_repo(tmp_path_factory, "compare", record)


def test_compare_gives_means_intervals_and_welchs_p_value_as_scipy_does(runs):
    out = ok(runs, "compare", "-a", 'params.opt == "adam"', "-b", 'params.opt == "sgd"', "--json")
    (auc, loss) = json.loads(out)
    assert auc["metric"] == "auc" and loss["metric"] == "loss"
    want = st.ttest_ind(SGD, ADAM, equal_var=False).pvalue
    assert auc["p_value"] == pytest.approx(want, rel=1e-9)
    assert (auc["n_a"], auc["n_b"]) == (5, 5) and auc["significant"] is True
    assert auc["mean_a"] == pytest.approx(sum(ADAM) / 5)
    assert auc["diff"] == pytest.approx(sum(SGD) / 5 - sum(ADAM) / 5)
    assert auc["ci_low"] < auc["diff"] < auc["ci_high"]
    assert auc["effect_size"] > 2  # Hedges' g: a large effect
    low, high = st.t.interval(0.95, 4, loc=sum(ADAM) / 5, scale=st.sem(ADAM))
    assert auc["ci_a"] == pytest.approx([low, high])
    text = ok(
        runs, "compare", "-a", 'params.opt == "adam"', "-b", 'params.opt == "sgd"', "-m", "auc"
    )
    assert "significant at 0.05: B is higher" in text and "Welch's t-test" in text
    assert "loss" not in text


def test_a_difference_within_noise_is_not_significant(runs):
    out = ok(
        runs,
        "compare",
        "-a",
        'params.opt == "adam"',
        "-b",
        'params.opt == "adam2"',
        "-m",
        "auc",
        "--json",
    )
    (auc,) = json.loads(out)
    assert auc["p_value"] == pytest.approx(st.ttest_ind(ADAM2, ADAM, equal_var=False).pvalue)
    assert auc["significant"] is False
    assert auc["verdict"].startswith("not significant at 0.05: n too small or difference within")


def test_one_run_against_seeds_and_bad_arguments(runs):
    out = ok(
        runs, "compare", "-a", "tags.deployed", "-b", 'params.opt == "sgd"', "-m", "auc", "--json"
    )
    (auc,) = json.loads(out)
    assert auc["n_a"] == 1 and auc["test"] == "one-sample"
    assert auc["p_value"] == pytest.approx(st.ttest_1samp(SGD, ADAM[0]).pvalue)
    for args, code, words in (
        (["-a", "params.opt == 1", "-b", "tags.deployed"], 4, "side A"),
        (["-a", "tags.deployed", "-b", "tags.deployed", "--alpha", "2"], 2, "alpha"),
        (["-a", "tags.deployed", "-b", "tags.deployed", "-m", "params.opt"], 2, "not a metric"),
        (["-a", "params.opt ==", "-b", "tags.deployed"], 2, "where"),
    ):
        proc = in_process(("compare", *args), runs)
        assert proc.returncode == code and words in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_check_passes_a_better_run_and_fails_a_worse_one_with_exit_1(runs):
    best = _first(runs, 'params.opt == "sgd" and params.seed == 3')
    out = ok(runs, "check", best, "-m", "auc", "--against", "fraud@production", "--min", "auc=0.9")
    assert "check passed" in out and "fraud v1" in out
    worst = _first(runs, 'params.opt == "adam" and params.seed == 2')  # 0.8991 < 0.9012
    proc = in_process(("check", worst, "-m", "auc", "--against", "fraud@production"), runs)
    assert proc.returncode == 1 and "FAIL: worse" in proc.stdout and "check FAILED" in proc.stdout
    # within a tolerance it passes; lower-is-better metrics go the other way
    ok(runs, "check", worst, "-m", "auc", "--against", "fraud@production", "--tolerance", "0.3%")
    ok(
        runs,
        "check",
        worst,
        "-m",
        "loss:min",
        "--against",
        "fraud@production",
        "--tolerance",
        "0.003",
    )
    proc = in_process(("check", worst, "--max", "loss=0.05", "--json"), runs)
    data = json.loads(proc.stdout)
    assert proc.returncode == 1 and data["passed"] is False
    assert data["rows"][0]["kind"] == "max" and data["rows"][0]["candidate"] == pytest.approx(
        0.1009
    )


def test_with_groups_of_seeds_the_significance_test_decides(runs):
    against = ["--against-where", 'params.opt == "sgd"']
    proc = in_process(
        ("check", "-w", 'params.opt == "adam"', "-m", "auc", *against, "--json"), runs
    )
    data = json.loads(proc.stdout)
    assert proc.returncode == 1 and data["rows"][0]["test"] == "welch"
    one_sided = st.ttest_ind(ADAM, SGD, equal_var=False, alternative="less").pvalue
    assert data["rows"][0]["p_value"] == pytest.approx(one_sided)
    # adam2 is a little below adam on average, but within noise: it passes
    assert sum(ADAM2) < sum(ADAM)
    out = ok(
        runs,
        "check",
        "-w",
        'params.opt == "adam2"',
        "-m",
        "auc",
        "--against-where",
        'params.opt == "adam"',
    )
    assert "pass: not worse" in out
    # a group against the model in production (one run): the one-sample test
    data = json.loads(
        ok(
            runs,
            "check",
            "-w",
            'params.opt == "sgd"',
            "-m",
            "auc",
            "--against",
            "fraud@production",
            "--json",
        )
    )
    assert data["passed"] and data["rows"][0]["test"] == "one-sample"


def test_log_group_by_shows_the_interval_of_each_mean(runs):
    text = ok(runs, "log", "-e", "cmp", "--group-by", "opt", "-c", "auc,ci95(auc)")
    assert "ci95(metrics.auc)" in text
    low, high = st.t.interval(0.95, 4, loc=sum(SGD) / 5, scale=st.sem(SGD))
    assert f"[{low:.6g}, {high:.6g}]" in text
    rows = json.loads(ok(runs, "log", "-e", "cmp", "--group-by", "opt", "--json"))
    sgd = next(r for r in rows if r["params.opt"] == "sgd")
    assert sgd["ci95(metrics.auc)"] == pytest.approx([low, high])
