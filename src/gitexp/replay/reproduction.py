"""Reproducing a run, end to end: plan, replay (once or several times), verdict.

The entry points behind ``git exp reproduce`` (:func:`reproduce_run`, given an
open store) and ``gitexp.reproduce()`` (:func:`reproduce`, given a path).
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Mapping, Sequence
from typing import IO, Any

from gitexp import records as fmt
from gitexp.errors import InvalidValue
from gitexp.replay.plan import SEED_VIA, check, plan_replay
from gitexp.replay.run import replay
from gitexp.replay.verdict import combine_replays, compare_replay
from gitexp.store import ExpStore


def reproduce_run(
    store: ExpStore,
    address: str,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    ignore_metrics: Sequence[str] | None = None,
    allow_input_drift: bool = False,
    keep: bool = False,
    repeat: int = 1,
    stdout: IO[bytes] | None = None,
    stderr: IO[bytes] | None = None,
    environ: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Replay a run and return the verdict (see :func:`compare_replay`), plus the plan's
    notes and inputs and, with ``keep``, the replay directory kept.

    ``repeat``: replay that many times, one new run each; the verdict is that of
    the replay furthest from the original, with every replay listed and the
    spread of each metric across replays (see :func:`combine_replays`).

    ``ignore_metrics``: glob patterns of final metrics left out of the verdict;
    None takes the repository's ``exp.reproduce.ignoreMetric`` values (git
    config, multi-valued), so a metric that measures wall-clock time is named
    once per repository."""
    for name, value in (("rtol", rtol), ("atol", atol)):
        if value is not None and (not math.isfinite(value) or value < 0):
            raise InvalidValue(f"{name} must be a finite number >= 0, not {value}", name)
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise InvalidValue(f"repeat must be a whole number >= 1, not {repeat}", "repeat")
    if ignore_metrics is None:
        ignore_metrics = store.repo.config_get_all("exp", "reproduce", "ignoreMetric")
    plan = plan_replay(store, address, allow_input_drift)
    check(plan)
    original = store.read(fmt.ExpRef.from_ref(plan.ref), plan.sha)
    verdicts: list[dict[str, Any]] = []
    for _ in range(repeat):
        new, kept, work = replay(
            store, plan, keep=keep, stdout=stdout, stderr=stderr, environ=environ
        )
        verdicts.append(
            compare_replay(store, original, new, rtol, atol, plan.paths(work), ignore_metrics)
        )
        verdicts[-1]["kept_dir"] = kept
    verdict = combine_replays(verdicts, rtol, atol) if repeat > 1 else verdicts[0]
    verdict["notes"] = [
        n
        for n in plan.notes
        # a possible cause of differences is noise when there are none
        if verdict["verdict"] != "reproduced" or not n.startswith("PYTHONHASHSEED")
    ]
    if plan.seed is not None:
        verdict["notes"].insert(0, f"seed {plan.seed} {SEED_VIA[str(plan.seed_via)]}")
    if not verdict["metrics"] and not verdict["outputs"] and not verdict["ignored_metrics"]:
        verdict["notes"].insert(
            0,
            "neither run logged metrics or output files: only their status and exit "
            "code were compared",
        )
    verdict["inputs"] = [
        {"path": i.name, "action": i.action, "blake3": i.blake3} for i in plan.inputs
    ]
    verdict["drift"] = plan.drift
    return verdict


def reproduce(
    run: str,
    rtol: float | None = None,
    atol: float | None = None,
    allow_input_drift: bool = False,
    *,
    ignore_metrics: Sequence[str] | None = None,
    keep: bool = False,
    dry_run: bool = False,
    stream: bool = False,
    repeat: int = 1,
    repo: str | os.PathLike[str] = ".",
) -> dict[str, Any]:
    """Replay a recorded run and say whether the result is the same.

    The run's code is exported into a temporary directory (your work tree,
    index, HEAD, branches and stash are not touched), its config and stored
    inputs restored, and its command run again as a new run of the same
    experiment linked to the original (``links.reproduces``).

    Args:
        run: a run address: run id, ``experiment/run-id``, full ref or sha prefix.
        rtol, atol: tolerances for final metrics (``|a - b| <= atol + rtol * |a|``);
            without them only identical metrics and output files reproduce.
        allow_input_drift: replay even when inputs recorded by hash only changed.
        ignore_metrics: glob patterns of final metrics to leave out of the verdict
            (a metric that measures wall-clock time, say); default: the
            repository's ``exp.reproduce.ignoreMetric`` git config values.
        keep: keep the replay directory (its path is ``kept_dir`` in the result).
        dry_run: only plan: return what would be run, where, with which inputs.
        stream: copy the replay's stdout/stderr to this process's.
        repeat: replay this many times (one new run each): replays that differ from
            one another show a program that is not deterministic; replays that agree
            with one another but not with the original, a change outside it.
        repo: a path inside the git repository.

    Returns:
        The verdict as data: ``verdict`` (``reproduced``,
        ``reproduced_within_tolerance`` or ``differs``), ``reproduced`` (bool),
        ``fingerprint``, ``metrics``, ``outputs``, ``env``, ``explanations``,
        ``notes``, ``original`` and ``replay`` runs; with ``repeat`` > 1, also
        ``replays`` and ``spread`` (see :func:`combine_replays`). With ``dry_run``, the plan.

    Raises:
        InputDrift: inputs recorded by hash only changed (and not allowed).
        CannotReproduce: the code commit or a stored object is missing.
        ReplayInterrupted: the replay was interrupted.
        RunNotFound: no run matches ``run``.
    """

    from gitexp.catalog import indexed_store

    with indexed_store(repo) as store:
        if dry_run:
            plan = plan_replay(store, run, allow_input_drift)
            return plan.to_json()
        return reproduce_run(
            store,
            run,
            rtol=rtol,
            atol=atol,
            ignore_metrics=ignore_metrics,
            allow_input_drift=allow_input_drift,
            keep=keep,
            repeat=repeat,
            stdout=sys.stdout.buffer if stream and hasattr(sys.stdout, "buffer") else None,
            stderr=sys.stderr.buffer if stream and hasattr(sys.stderr, "buffer") else None,
        )
