"""``reproduce``: replay a recorded run in a temporary copy of its code, and compare.

The service layer behind ``git exp reproduce``, ``git exp checkout-code`` and
``gitexp.reproduce()``. It never prints; it returns data and raises
:mod:`gitexp.errors`. (The package is ``replay``, not ``reproduce``: a submodule
named ``reproduce`` would replace the ``gitexp.reproduce`` function on import.)

A replay, step by step, one module each:

1. :mod:`gitexp.replay.plan`: :func:`plan_replay` reads the run and checks,
   without writing anything, that everything needed is here: what will run,
   where, with which seed, environment variables and inputs.
2. :mod:`gitexp.replay.run`: :func:`replay` exports the code commit into a
   temporary directory, puts config and inputs in place and runs the recorded
   command there as a new run linked to the original.
3. :mod:`gitexp.replay.verdict`: :func:`compare_replay` gives the verdict and
   its reasons (fingerprint components, final metrics, output artifacts,
   environment); :func:`combine_replays` one verdict for several replays.

:mod:`gitexp.replay.reproduction` strings them together (:func:`reproduce_run`,
:func:`reproduce`); :mod:`gitexp.replay.paths` maps the original's paths to
the replay's; :mod:`gitexp.replay.checkout` is ``checkout-code``.
"""

from __future__ import annotations

from gitexp.replay.checkout import checkout_code
from gitexp.replay.paths import external_path, external_root
from gitexp.replay.plan import (
    COPY_LIMIT,
    REPLAYED_VARS,
    SEED_VIA,
    InputPlan,
    ReplayPlan,
    check,
    hash_current,
    plan_replay,
)
from gitexp.replay.reproduction import reproduce, reproduce_run
from gitexp.replay.run import REPLAY_TAG, replay
from gitexp.replay.verdict import NOT_DETERMINISTIC, combine_replays, compare_replay

__all__ = [
    "COPY_LIMIT",
    "NOT_DETERMINISTIC",
    "REPLAYED_VARS",
    "REPLAY_TAG",
    "SEED_VIA",
    "InputPlan",
    "ReplayPlan",
    "check",
    "checkout_code",
    "combine_replays",
    "compare_replay",
    "external_path",
    "external_root",
    "hash_current",
    "plan_replay",
    "replay",
    "reproduce",
    "reproduce_run",
]
