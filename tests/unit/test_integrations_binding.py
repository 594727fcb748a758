"""The run a framework integration logs into (gitexp.integrations._common.RunBinding)."""

from __future__ import annotations

import copy

import gitexp
from gitexp.integrations._common import RunBinding


def test_a_binding_takes_the_active_run_and_leaves_it_to_its_owner(repo):
    with gitexp.start_run(experiment="mine") as run:
        binding = RunBinding(None, "other", None, None, None)
        assert binding.get() is run and not binding.owned
        binding.finish()
        assert gitexp.active_run() is run


def test_a_run_one_binding_started_is_not_adopted_by_another(repo):
    first = RunBinding(None, "a", "one", ["t"], None)
    run = first.get()
    assert first.owned and run.experiment == "a" and gitexp.active_run() is run
    second = RunBinding(None, "a", None, None, None)
    assert second.get() is not run
    second.finish()
    first.finish()
    assert run._finished and gitexp.active_run() is None


def test_a_binding_whose_run_was_finished_starts_a_new_one_but_remembers_the_last(repo):
    binding = RunBinding(None, "a", None, None, None)
    run = binding.get()
    binding.finish()
    assert binding.run is run  # the run logged into last, finished
    again = binding.get()
    assert again is not run and not again._finished
    binding.finish()


def test_a_copy_finds_its_run_anew_and_shares_a_run_given_explicitly(repo):
    with gitexp.start_run(experiment="given") as given:
        explicit = RunBinding(given, None, None, None, None)
        assert copy.deepcopy(explicit).get() is given
    bound = RunBinding(None, "a", None, None, None)
    started = bound.get()
    clone = copy.deepcopy(bound)  # scikit-learn clones estimators holding callbacks
    assert not clone.bound and not clone.owned
    clone_run = clone.get()
    assert clone_run is not started
    clone.finish()
    bound.finish()
