"""The registry's rules as functions on a model's state: stages, aliases,
rollback, addresses, and the replay of local events on another history."""

from __future__ import annotations

import pytest

from gitexp.errors import FormatError, InvalidName, ModelNotFound, RunStateError, UsageError
from gitexp.records.models import validate_alias, validate_model_name
from gitexp.registry.state import ModelState, ReplayConflict, replay


def model(versions: int = 3) -> ModelState:
    state = ModelState("fraud")
    for v in range(1, versions + 1):
        state.apply({"op": "register", "version": v})
    return state


def promote(state: ModelState, v: int, stage: str) -> dict:
    return state.apply({"op": "promote", "version": v, "stage": stage})


def test_a_new_version_starts_in_development_and_numbers_count_up():
    s = model(2)
    assert s.stage_of == {1: "development", 2: "development"} and s.latest == 2
    with pytest.raises(RunStateError, match="not the next one"):
        s.apply({"op": "register", "version": 5})


def test_promoting_to_production_archives_the_version_that_held_it():
    s = model()
    assert promote(s, 1, "production")["archived"] == []
    assert promote(s, 2, "production")["archived"] == [1]
    assert s.stage_of == {1: "archived", 2: "production", 3: "development"}
    assert s.resolve("production") == 2
    promote(s, 3, "staging")
    assert s.holder("staging") == 3 and s.holder("production") == 2


def test_an_archived_version_cannot_be_promoted_and_nothing_changes():
    s = model()
    promote(s, 1, "production")
    promote(s, 2, "production")
    before = s.to_json()
    with pytest.raises(RunStateError, match="archived"):
        promote(s, 1, "staging")
    with pytest.raises(UsageError, match="in production already"):
        promote(s, 2, "production")
    with pytest.raises(UsageError, match="unknown stage"):
        promote(s, 3, "prod")
    with pytest.raises(ModelNotFound, match="no version 9"):
        promote(s, 9, "staging")
    assert s.to_json() == before


def test_rollback_brings_back_the_previous_holders_one_after_another():
    s = model()
    for v in (1, 2, 3):
        promote(s, v, "production")
    ev = s.apply({"op": "rollback", "stage": "production"})
    assert (ev["from"], ev["to"]) == (3, 2)
    assert s.stage_of[3] == "archived" and s.resolve("production") == 2
    ev = s.apply({"op": "rollback", "stage": "production"})
    assert (ev["from"], ev["to"]) == (2, 1) and s.holder("production") == 1
    with pytest.raises(RunStateError, match="nothing to roll back to"):
        s.apply({"op": "rollback", "stage": "production"})
    with pytest.raises(UsageError, match="can be rolled back"):
        s.apply({"op": "rollback", "stage": "development"})


def test_aliases_move_and_roll_back_like_a_stage_of_their_own():
    s = model()
    assert s.apply({"op": "promote", "version": 1, "alias": "champion"})["from"] is None
    assert s.apply({"op": "promote", "version": 3, "alias": "champion"})["from"] == 1
    assert s.resolve("champion") == 3 and s.aliases_of(3) == ["champion"]
    assert s.stage_of[1] == "development"  # an alias archives nothing
    assert s.apply({"op": "rollback", "alias": "champion"})["to"] == 1
    assert s.apply({"op": "rollback", "alias": "champion"})["to"] is None
    with pytest.raises(ModelNotFound, match="no stage or alias 'champion'"):
        s.resolve("champion")


def test_addresses_name_stages_versions_aliases_and_latest():
    s = model()
    promote(s, 2, "production")
    s.apply({"op": "promote", "version": 1, "alias": "old"})
    assert [s.resolve(x) for x in (None, "latest", "v1", "2", "production", "old")] == [
        3,
        3,
        1,
        2,
        2,
        1,
    ]
    assert s.resolve("development") == 3  # the newest version in it
    with pytest.raises(ModelNotFound, match="no version of model fraud is in staging"):
        s.resolve("staging")
    with pytest.raises(ModelNotFound, match="has no versions"):
        ModelState("empty").resolve(None)


def test_names_and_aliases_are_checked():
    for bad in ("", "a/b", "-x", "x.lock", "a..b", "x@y", "a b", "é", "x" * 101):
        with pytest.raises(InvalidName):
            validate_model_name(bad)
    for reserved in ("production", "latest", "v3", "12"):
        with pytest.raises(InvalidName, match="reserved"):
            validate_alias(reserved)
    assert validate_model_name("fraud_v2.1-beta") == "fraud_v2.1-beta"


def test_model_json_round_trips_and_hostile_files_are_refused():
    s = model()
    promote(s, 2, "production")
    s.apply({"op": "promote", "version": 3, "alias": "champion"})
    again = ModelState.from_json(s.to_json())
    assert again.to_json() == s.to_json()
    for broken in (
        {**s.to_json(), "format": 2},
        {**s.to_json(), "name": "../x"},
        {**s.to_json(), "holders": {"production": [9]}},
        {**s.to_json(), "holders": {"archived": [1]}},
        {**s.to_json(), "versions": {"gone": [1, 2, 3]}},
        {**s.to_json(), "versions": {"development": [1, 1, 2, 3]}},
        {**s.to_json(), "versions": {"development": [1, 3]}},
        {**s.to_json(), "event": {"op": "rm -rf"}},
        [],
    ):
        with pytest.raises(FormatError):
            ModelState.from_json(broken)


def test_a_replay_renumbers_local_registrations_and_the_promotions_that_name_them():
    base = model(2)
    theirs = base.copy()
    theirs.apply({"op": "register", "version": 3})  # the other clone registered v3 first
    promote(theirs, 3, "staging")
    local = [
        {"op": "register", "version": 3},
        {"op": "promote", "version": 3, "stage": "production"},
        {"op": "promote", "version": 1, "alias": "old"},
    ]
    state, applied = replay(theirs, local)
    assert [(e["op"], e.get("version"), n) for e, _, n in applied] == [
        ("register", 4, 4),
        ("promote", 4, None),
        ("promote", 1, None),
    ]
    assert state.holder("production") == 4 and state.holder("staging") == 3
    assert state.resolve("old") == 1 and state.latest == 4


def test_a_replay_skips_what_already_holds_and_stops_at_what_no_longer_applies():
    base = model(2)
    theirs = base.copy()
    promote(theirs, 1, "production")
    state, applied = replay(theirs, [{"op": "promote", "version": 1, "stage": "production"}])
    assert applied == [] and state.holder("production") == 1
    promote(theirs, 2, "production")  # archives v1 on their side
    with pytest.raises(ReplayConflict, match="archived"):
        replay(theirs, [{"op": "promote", "version": 1, "stage": "staging"}])
    rollback = {"op": "rollback", "stage": "production", "from": 1, "to": None}
    with pytest.raises(ReplayConflict, match="held by v2"):
        replay(theirs, [rollback])
