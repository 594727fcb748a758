"""Sweep specs and search methods: what they promise, without running trials."""

from __future__ import annotations

import pytest

from gitexp.errors import SpecError
from gitexp.sweeps import importance, methods, parse_spec

BASE = {
    "experiment": "s",
    "command": "python train.py --lr {lr} --epochs {epochs}",
    "method": "hyperband",
    "metric": {"name": "acc", "goal": "maximize"},
    "budget": {"param": "epochs", "min": 1, "max": 81, "eta": 3},
    "trials": 27,
    "seed": 0,
    "parameters": {
        "lr": {"distribution": "log_uniform", "min": 1e-5, "max": 1e-1},
        "batch_size": {"values": [16, 32, 64, 128]},
        "dropout": {"distribution": "uniform", "min": 0.0, "max": 0.5},
        "layers": 3,
    },
}


def spec(**changes):
    data = {**BASE, **changes}
    return parse_spec({k: v for k, v in data.items() if v is not None})


def test_hyperband_brackets_are_the_papers_table():
    # Li et al. 2017, Table 1: R = 81, eta = 3
    brackets = methods.hyperband_brackets(1, 81, 3)
    table = [[(r.n, r.budget) for r in b.rungs] for b in brackets]
    assert table == [
        [(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)],
        [(34, 3), (11, 9), (3, 27), (1, 81)],
        [(15, 9), (5, 27), (1, 81)],
        [(8, 27), (2, 81)],
        [(5, 81)],
    ]
    assert [b.total_budget for b in brackets] == [405, 363, 351, 378, 405]
    p = methods.plan(spec())
    assert p.trials == 81 + 34 + 15 + 8 + 5
    assert [j.budget for j in p.configurations[:82]] == [1] * 81 + [3]


def test_successive_halving_ends_at_the_largest_budget():
    b = methods.halving_bracket(27, 1, 81, 3)
    assert [(r.n, r.budget) for r in b.rungs] == [(27, 3), (9, 9), (3, 27), (1, 81)]
    b = methods.halving_bracket(81, 1, 81, 3)
    assert [(r.n, r.budget) for r in b.rungs] == [(81, 1), (27, 3), (9, 9), (3, 27), (1, 81)]


def _fake_evaluate(value_of):
    calls = []

    def evaluate(jobs):
        calls.append([(j.trial, j.budget) for j in jobs])
        return {j.key: methods.Outcome("finished", value_of(j)) for j in jobs}

    return evaluate, calls


def test_successive_halving_promotes_the_best_third_and_prunes_the_rest():
    s = spec(method="successive_halving", trials=9, budget={"param": "epochs", "min": 1, "max": 9})
    evaluate, calls = _fake_evaluate(lambda j: j.trial * 1.0 + j.budget)  # higher trial: better
    out = methods.run_plan(s, methods.plan(s), evaluate)
    assert calls == [[(t, 1) for t in range(9)], [(6, 3), (7, 3), (8, 3)], [(8, 9)]]
    assert {k for k, o in out.items() if o.state == "pruned"} == {
        *((t, 0) for t in range(6)),
        (6, 1),
        (7, 1),
    }
    assert out[(8, 2)].state == "finished"
    # minimize: the lowest values go on
    s = spec(
        method="successive_halving",
        trials=9,
        budget={"param": "epochs", "min": 1, "max": 9},
        metric={"name": "loss", "goal": "minimize"},
    )
    evaluate, calls = _fake_evaluate(lambda j: j.trial * 1.0)
    methods.run_plan(s, methods.plan(s), evaluate)
    assert calls[1] == [(0, 3), (1, 3), (2, 3)]


def test_a_failed_trial_is_never_promoted():
    s = spec(method="successive_halving", trials=3, budget={"param": "epochs", "min": 1, "max": 3})

    def evaluate(jobs):
        return {
            j.key: methods.Outcome("failed" if j.trial == 2 else "finished", float(j.trial))
            for j in jobs
        }

    out = methods.run_plan(s, methods.plan(s), evaluate)
    assert (1, 1) in out and (2, 1) not in out and out[(2, 0)].state == "failed"


def test_the_seed_makes_a_sweep_repeatable():
    a = [j.params for j in methods.plan(spec(method="random", trials=20)).configurations]
    b = [j.params for j in methods.plan(spec(method="random", trials=20)).configurations]
    c = [j.params for j in methods.plan(spec(method="random", trials=20, seed=1)).configurations]
    assert a == b and a != c
    # trial t's configuration does not depend on how many trials there are
    d = [j.params for j in methods.plan(spec(method="random", trials=5)).configurations]
    assert d == a[:5]
    for p in a:
        assert 1e-5 <= p["lr"] <= 1e-1 and 0 <= p["dropout"] <= 0.5
        assert p["batch_size"] in (16, 32, 64, 128) and p["layers"] == 3


def test_grid_is_every_combination_and_q_and_int_uniform_keep_their_steps():
    s = spec(
        method="grid",
        budget=None,
        trials=None,
        command="train {lr} {bs}",
        parameters={"lr": {"values": [0.1, 0.01]}, "bs": {"values": [1, 2, 3]}, "k": "x"},
    )
    configs = [j.params for j in methods.plan(s).configurations]
    assert len(configs) == 6 and len({tuple(sorted(c.items())) for c in configs}) == 6
    assert configs[0] == {"lr": 0.1, "bs": 1, "k": "x"}
    s = spec(
        method="random",
        trials=50,
        budget=None,
        command="t {a} {b}",
        parameters={
            "a": {"distribution": "uniform", "min": 0, "max": 1, "q": 0.25},
            "b": {"distribution": "int_uniform", "min": 2, "max": 10, "q": 2},
        },
    )
    for j in methods.plan(s).configurations:
        assert j.params["a"] in (0.0, 0.25, 0.5, 0.75, 1.0)
        assert j.params["b"] in (2, 4, 6, 8, 10)
    assert s.argv({"a": 0.5, "b": 4}) == ["t", "0.5", "4"]


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"method": "bayes"}, "unknown method 'bayes'"),
        (
            {"parameters": {"lr": {"distribution": "normal", "min": 0, "max": 1}}},
            "unknown distribution",
        ),
        (
            {"parameters": {"lr": {"distribution": "uniform", "min": 2, "max": 1}}},
            "min (2) is greater than max (1)",
        ),
        (
            {"parameters": {"lr": {"distribution": "log_uniform", "min": 0, "max": 1}}},
            "log_uniform needs min > 0",
        ),
        ({"parameters": {"lr": {"values": []}}}, "is empty"),
        (
            {"command": "train --lr {lr} --wd {wd} --epochs {epochs}"},
            "placeholder {wd} names no parameter",
        ),
        ({"command": "train --lr {lr}"}, "budget param 'epochs' is not in the command"),
        ({"budget": None}, "needs a budget"),
        ({"metric": None}, "needs a metric"),
        ({"method": "random", "trials": None}, "needs 'trials'"),
        ({"method": "grid"}, "grid search needs 'values'"),
        ({"budget": {"param": "epochs", "min": 9, "max": 1}}, "min (9) is greater than max (1)"),
        ({"budget": {"param": "epochs", "min": 1, "max": 9, "eta": 1}}, "eta must be"),
        ({"metric": {"name": "acc", "goal": "up"}}, "maximize or minimize"),
        ({"colour": "red"}, "unknown field 'colour'"),
        ({"command": ""}, "command is empty"),
    ],
)
def test_bad_specs_are_refused_with_one_line(changes, message):
    data = {**BASE, **changes}
    data = {k: v for k, v in data.items() if v is not None}
    with pytest.raises(SpecError) as exc:
        parse_spec(data)
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


def test_importance_ranks_the_parameter_that_decides():
    entries = [
        {"state": "finished", "value": float(i), "params": {"lr": i * 0.1, "seed": (i * 7) % 5}}
        for i in range(10)
    ]
    imp = importance(entries, ["seed", "lr"])
    assert imp[0]["param"] == "lr" and imp[0]["importance"] == pytest.approx(1.0)
    assert imp[1]["importance"] < 0.9
