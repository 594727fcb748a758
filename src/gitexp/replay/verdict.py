"""The verdict on a replay: the replayed run compared with the original.

:func:`compare_replay` looks at the fingerprint component by component, the
final metrics (with tolerances), the output artifacts, the run status and the
environment, and says ``reproduced``, ``reproduced_within_tolerance`` or
``differs`` with the reasons. :func:`combine_replays` makes one verdict of
several replays of one run.
"""

from __future__ import annotations

import fnmatch
import json
import math
from collections.abc import Sequence
from typing import Any

from gitexp import records as fmt
from gitexp.errors import GitExpError
from gitexp.records import ArtifactEntry
from gitexp.replay.paths import remap_value
from gitexp.store import ExpStore, RunRecord

# verdicts, best first; and the start of the explanation that blames the program itself
_RANK = {"reproduced": 0, "reproduced_within_tolerance": 1, "differs": 2}
NOT_DETERMINISTIC = "same code, params, inputs, command and environment gave different results"


def _same_value(a: Any, b: Any) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _close(a: float, b: float, rtol: float, atol: float) -> bool:
    if math.isnan(a) or math.isnan(b) or math.isinf(a) or math.isinf(b):
        return False
    return abs(a - b) <= atol + rtol * abs(a)


def _first_divergence(
    store: ExpStore, a: RunRecord, b: RunRecord, keys: list[str], rtol: float, atol: float
) -> dict[str, int | None]:
    if not keys or not a.segments or not b.segments:
        return {}
    from gitexp.metrics import series

    try:
        ta, tb = store.read_metrics(a), store.read_metrics(b)
    except GitExpError:
        return {}
    out: dict[str, int | None] = {}
    for key in keys:
        sa = dict(zip(*series(ta, key)))
        sb = dict(zip(*series(tb, key)))
        first = None
        for step in sorted(set(sa) | set(sb)):
            x, y = sa.get(step), sb.get(step)
            if x is None or y is None or not (x == y or _close(x, y, rtol, atol)):
                first = step
                break
        out[key] = first
    return out


def _log_tail(store: ExpStore, rec: RunRecord, path: str, lines: int = 10) -> list[str]:
    """The last ``lines`` lines of a run's stored log (why a replay failed)."""
    entry = next((a for a in rec.artifacts if a.path == path), None)
    if entry is None or entry.size == 0:
        return []
    try:
        data = store.cas.get_bytes(entry.blake3)
    except GitExpError:
        return []
    return data[-16384:].decode("utf-8", "replace").splitlines()[-lines:]


def compare_replay(
    store: ExpStore,
    original: RunRecord,
    new: RunRecord,
    rtol: float | None = None,
    atol: float | None = None,
    paths: Sequence[tuple[str, str]] = (),
    ignore_metrics: Sequence[str] = (),
) -> dict[str, Any]:
    """The verdict on a replay ``new`` of ``original``, as JSON-ready data.

    ``ignore_metrics``: glob patterns (``fnmatch``) of final metrics left out of
    the verdict, such as one that measures wall-clock time; the keys left out
    are listed in ``ignored_metrics``.

    ``paths``: (original, replay) absolute paths the replay was pointed at instead
    (:meth:`ReplayPlan.paths`): the work tree the original ran in and its own
    directory, inputs from outside the repository and their restored copies.
    Params the script logged from them (an output path, say) are compared as the
    original's paths.
    """
    from gitexp.rundiff import diff_records

    tolerant = rtol is not None or atol is not None
    r, t = float(rtol or 0.0), float(atol or 0.0)

    # fingerprint, component by component
    inputs_a = {e.path: e.blake3 for e in original.inputs()}
    inputs_b = {e.path: e.blake3 for e in new.inputs()}
    components: dict[str, tuple[Any, Any]] = {
        "code_tree": (original.code.get("tree"), new.code.get("tree")),
        "params": (
            original.params,
            remap_value(new.params, sorted(((b, a) for a, b in paths), key=lambda p: -len(p[0]))),
        ),
        "inputs": (inputs_a, inputs_b),
        "command": (original.info.get("command"), new.info.get("command")),
    }
    differs = [k for k, (x, y) in components.items() if not _same_value(x, y)]
    pa, pb = fmt.flatten(original.params), fmt.flatten(components["params"][1])
    fingerprint: dict[str, Any] = {
        "same": not differs,
        # the stored fingerprints differ only through paths into the replay directory
        "paths_mapped": not differs
        and original.info.get("fingerprint") != new.info.get("fingerprint"),
        "original": original.info.get("fingerprint"),
        "replay": new.info.get("fingerprint"),
        "differs": differs,
        "params": [
            {"key": k, "original": pa.get(k), "replay": pb.get(k)}
            for k in sorted(set(pa) | set(pb))
            if not _same_value(pa.get(k), pb.get(k))
        ],
        "inputs": [
            {"path": k, "original": inputs_a.get(k), "replay": inputs_b.get(k)}
            for k in sorted(set(inputs_a) | set(inputs_b))
            if inputs_a.get(k) != inputs_b.get(k)
        ],
    }

    # system/... metrics describe the machine, not the result: never part of the verdict
    ma, mb = (
        {k: v for k, v in r.summary.final_values().items() if not fmt.is_system_metric(k)}
        for r in (original, new)
    )
    ignored = sorted(k for k in set(ma) | set(mb) if ignored_metric(k, ignore_metrics))
    metrics: list[dict[str, Any]] = []
    for key in sorted((set(ma) | set(mb)) - set(ignored)):
        a, b = ma.get(key), mb.get(key)
        if a is None:
            status = "new"
        elif b is None:
            status = "missing"
        elif a == b or (math.isnan(a) and math.isnan(b)):
            status = "identical"
        elif tolerant and _close(a, b, r, t):
            status = "within_tolerance"
        else:
            status = "different"
        delta = b - a if a is not None and b is not None and status != "identical" else None
        if delta is not None and (math.isnan(delta) or math.isinf(delta)):
            delta = None
        metrics.append({"key": key, "status": status, "original": a, "replay": b, "delta": delta})
    diverging = [m["key"] for m in metrics if m["status"] in ("different", "within_tolerance")]
    for key, step in _first_divergence(store, original, new, diverging, r, t).items():
        for m in metrics:
            if m["key"] == key:
                m["first_divergent_step"] = step

    def outputs_of(rec: RunRecord) -> dict[str, ArtifactEntry]:
        return {e.path: e for e in rec.artifacts if e.role == "output"}

    oa, ob = outputs_of(original), outputs_of(new)
    outputs = []
    for path in sorted(set(oa) | set(ob)):
        x, y = oa.get(path), ob.get(path)
        if x and y:
            status = "identical" if x.blake3 == y.blake3 else "different"
        else:
            status = "missing" if x else "new"
        outputs.append(
            {
                "path": path,
                "status": status,
                "original": x.blake3 if x else None,
                "replay": y.blake3 if y else None,
                "original_size": x.size if x else None,
                "replay_size": y.size if y else None,
            }
        )

    env = diff_records(store, original, new)["env"]
    env_differs = bool(env.get("packages")) or any(k != "packages" for k in env)

    run_status = {
        "original": original.status,
        "replay": new.status,
        "original_exit_code": original.info.get("exit_code"),
        "replay_exit_code": new.info.get("exit_code"),
    }
    codes = (original.info.get("exit_code"), new.info.get("exit_code"))
    # a run made by start_run() in a plain script records no exit code
    status_same = original.status == new.status and (None in codes or codes[0] == codes[1])
    if not status_same and new.status != "finished":
        run_status["replay_stderr_tail"] = _log_tail(store, new, "logs/stderr.log")
    metrics_identical = all(m["status"] == "identical" for m in metrics)
    metrics_ok = all(m["status"] in ("identical", "within_tolerance") for m in metrics)
    outputs_identical = all(o["status"] == "identical" for o in outputs)
    if status_same and metrics_identical and outputs_identical:
        verdict = "reproduced"
    elif (
        status_same
        and tolerant
        and metrics_ok
        and all(o["status"] in ("identical", "different") for o in outputs)
    ):
        verdict = "reproduced_within_tolerance"
    else:
        verdict = "differs"

    explanations: list[str] = []
    if verdict != "reproduced":
        if not status_same:
            explanations.append(
                f"the replay {new.status} (exit {new.info.get('exit_code')}) where the "
                f"original {original.status} (exit {original.info.get('exit_code')})"
            )
        if "seed" in {p["key"] for p in fingerprint["params"]}:
            explanations.append(
                "the seed differs: the script draws its own; pass it as a param or use "
                "gitexp.seed_everything()"
            )
        if diverging and not differs and not env_differs:
            first = [m for m in metrics if m.get("first_divergent_step") is not None]
            earliest = min((m["first_divergent_step"] for m in first), default=None)
            at = f"; first divergence at step {earliest}" if earliest is not None else ""
            if verdict == "reproduced_within_tolerance":
                # the verdict stands: say why the values moved without contradicting it
                explanations.append(
                    f"{', '.join(diverging)} moved within the tolerance: the run is not "
                    "bit-for-bit deterministic (unseeded random numbers, time- or "
                    "order-dependent code, threads, non-deterministic GPU kernels)" + at
                )
            else:
                explanations.append(
                    f"{NOT_DETERMINISTIC}: the run is not deterministic (unseeded random "
                    "numbers, time- or order-dependent code, threads, non-deterministic "
                    "GPU kernels)" + at
                )
        if "inputs" in differs:
            explanations.append("the inputs differ from the recorded ones")
        if "code_tree" in differs:
            explanations.append("the code differs from the recorded code")
        if env_differs and diverging:
            explanations.append(
                "the environment differs (see env): package versions, Python, platform "
                "or hardware can change numerical results"
            )
        if verdict == "reproduced_within_tolerance" and not outputs_identical:
            explanations.append(
                "output files differ in their bytes (tolerances apply to metrics only)"
            )
    return {
        "verdict": verdict,
        "reproduced": verdict != "differs",
        "original": {"run": original.ref.short, "sha": original.sha},
        "replay": {"run": new.ref.short, "sha": new.sha, "ref": str(new.ref)},
        "tolerance": {"rtol": rtol, "atol": atol} if tolerant else None,
        "status": run_status,
        "fingerprint": fingerprint,
        "metrics": metrics,
        "ignored_metrics": ignored,
        "outputs": outputs,
        "env": env,
        "explanations": explanations,
    }


def ignored_metric(key: str, patterns: Sequence[str]) -> bool:
    """True when ``key`` matches one of the glob ``patterns`` (``time/*``, ``*_seconds``)."""
    return any(fnmatch.fnmatchcase(key, p) for p in patterns)


def combine_replays(
    verdicts: Sequence[dict[str, Any]], rtol: float | None = None, atol: float | None = None
) -> dict[str, Any]:
    """One verdict for several replays of one run (each a :func:`compare_replay` result).

    The report is that of the replay furthest from the original (the first
    such), so the whole is reproduced only when every replay is. Added:
    ``replays`` (run, sha and verdict of each, in order), ``spread`` (each
    final metric and output file across the replays: their values, and whether
    the replays agree with one another), ``kept_dirs``. The explanations say
    which of the two usual stories the replays support: they differ from one
    another (the program is not deterministic), or they agree with one another
    but not with the original (something outside the program changed).
    """
    worst = max(verdicts, key=lambda v: _RANK[v["verdict"]])
    out = dict(worst)
    n = len(verdicts)
    out["replays"] = [
        {"run": v["replay"]["run"], "sha": v["replay"]["sha"], "verdict": v["verdict"]}
        for v in verdicts
    ]
    r, t = float(rtol or 0.0), float(atol or 0.0)

    def agree(a: Any, b: Any) -> bool:
        if a is None or b is None:
            return a is b
        return _same_value(a, b) or _close(a, b, r, t)

    metrics = []
    keys = sorted({m["key"] for v in verdicts for m in v["metrics"]})
    for key in keys:
        found = [next((m for m in v["metrics"] if m["key"] == key), None) for v in verdicts]
        original = next((m["original"] for m in found if m is not None), None)
        values = [m["replay"] if m is not None else None for m in found]
        finite = [x for x in values if x is not None and math.isfinite(x)]
        metrics.append(
            {
                "key": key,
                "original": original,
                "replays": values,
                "agree": all(agree(values[0], x) for x in values[1:]),
                "min": min(finite) if finite else None,
                "max": max(finite) if finite else None,
            }
        )
    outputs = []
    paths = sorted({o["path"] for v in verdicts for o in v["outputs"]})
    for path in paths:
        found = [next((o for o in v["outputs"] if o["path"] == path), None) for v in verdicts]
        hashes = [o["replay"] if o is not None else None for o in found]
        outputs.append(
            {
                "path": path,
                "original": next((o["original"] for o in found if o is not None), None),
                "replays": hashes,
                "agree": len(set(hashes)) == 1,
            }
        )
    out["spread"] = {"metrics": metrics, "outputs": outputs}
    out["kept_dirs"] = [v["kept_dir"] for v in verdicts if v.get("kept_dir")]
    out["kept_dir"] = out["kept_dirs"][0] if out["kept_dirs"] else None

    varying = [m["key"] for m in metrics if not m["agree"]]
    varying += [o["path"] for o in outputs if not o["agree"]]
    explanations = [e for e in worst["explanations"] if not e.startswith(NOT_DETERMINISTIC)]
    if varying:
        explanations.insert(
            0,
            f"the {n} replays differ from one another ({', '.join(varying)}): the program "
            "is not deterministic here (unseeded random numbers, time- or order-dependent "
            "code, threads, non-deterministic GPU kernels)",
        )
    elif out["verdict"] != "reproduced":
        if worst["fingerprint"]["differs"]:
            where = "its " + ", ".join(worst["fingerprint"]["differs"]).replace("_", " ")
        elif worst["env"].get("packages") or any(k != "packages" for k in worst["env"]):
            where = "the environment (see env)"
        else:
            where = (
                "something the run does not record (hardware, drivers, an environment "
                "variable, a file or service read outside the recorded inputs, the date)"
            )
        explanations.insert(
            0,
            f"the {n} replays agree with one another but not with the original: the "
            f"program is deterministic here, so what changed since the original is "
            f"outside it: {where}",
        )
    out["explanations"] = explanations
    return out
