"""What differs between two runs: params, metrics, data, code, environment, artifacts."""

from __future__ import annotations

import json
import math
from typing import Any

from gitexp import records as fmt
from gitexp.store import ExpStore, RunRecord


def _pkg_map(env: dict[str, Any]) -> dict[str, str]:
    out = {}
    for spec in env.get("packages") or []:
        name, _, version = str(spec).partition("==")
        out[name.lower()] = version
    return out


def _delta(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or math.isnan(a) or math.isnan(b):
        return None
    if math.isinf(a) or math.isinf(b):
        return None
    return b - a


def diff_records(store: ExpStore, a: RunRecord, b: RunRecord) -> dict[str, Any]:
    """A structured comparison of run ``a`` (the base) with run ``b``."""
    pa_, pb = fmt.flatten(a.params), fmt.flatten(b.params)
    params = [
        {"key": k, "a": pa_.get(k), "b": pb.get(k)}
        for k in sorted(set(pa_) | set(pb))
        if json.dumps(pa_.get(k), sort_keys=True) != json.dumps(pb.get(k), sort_keys=True)
    ]
    ma, mb = a.summary.final_values(), b.summary.final_values()
    metrics = [
        {"key": k, "a": ma.get(k), "b": mb.get(k), "delta": _delta(ma.get(k), mb.get(k))}
        for k in sorted(set(ma) | set(mb))
    ]

    def by_path(rec: RunRecord, inputs: bool) -> dict[str, Any]:
        return {
            (e.source or e.path) if inputs else f"{e.role}:{e.path}": e
            for e in rec.artifacts
            if (e.role == "input") == inputs
        }

    def compare(ea: dict[str, Any], eb: dict[str, Any]) -> list[dict[str, Any]]:
        out = []
        for key in sorted(set(ea) | set(eb)):
            x, y = ea.get(key), eb.get(key)
            if x is not None and y is not None and x.blake3 == y.blake3:
                continue
            status = "changed" if x and y else ("removed" if x else "added")
            ref = x if x is not None else y
            assert ref is not None
            out.append(
                {
                    "path": ref.path,
                    "role": ref.role,
                    "status": status,
                    "a": x.blake3 if x else None,
                    "b": y.blake3 if y else None,
                    "a_size": x.size if x else None,
                    "b_size": y.size if y else None,
                }
            )
        return out

    inputs = compare(by_path(a, True), by_path(b, True))
    artifacts = compare(by_path(a, False), by_path(b, False))
    code = {
        "a": a.code_commit,
        "b": b.code_commit,
        "a_head": a.code.get("head"),
        "b_head": b.code.get("head"),
        "a_dirty": bool(a.code.get("dirty")),
        "b_dirty": bool(b.code.get("dirty")),
        "same_tree": a.code.get("tree") == b.code.get("tree"),
        "diff_stat": "",
    }
    if not code["same_tree"] and a.code_commit and b.code_commit:
        try:
            code["diff_stat"] = store.repo.diff_stat(a.code_commit, b.code_commit)
        except Exception:  # a missing commit: show the shas, not a stat
            code["diff_stat"] = ""
    ka, kb = _pkg_map(a.env), _pkg_map(b.env)
    packages = [
        {"name": n, "a": ka.get(n), "b": kb.get(n)}
        for n in sorted(set(ka) | set(kb))
        if ka.get(n) != kb.get(n)
    ]
    env: dict[str, Any] = {"packages": packages}
    for part in ("python", "platform", "cpu", "gpus", "variables"):
        if a.env.get(part) != b.env.get(part):
            env[part] = {"a": a.env.get(part), "b": b.env.get(part)}
    return {
        "a": {"run": a.ref.short, "sha": a.sha, "name": a.name, "status": a.status},
        "b": {"run": b.ref.short, "sha": b.sha, "name": b.name, "status": b.status},
        "same_fingerprint": a.info.get("fingerprint") == b.info.get("fingerprint"),
        "params": params,
        "metrics": metrics,
        "inputs": inputs,
        "data_changed": bool(inputs),
        "code": code,
        "env": env,
        "artifacts": artifacts,
        "command": {"a": a.info.get("command"), "b": b.info.get("command")}
        if a.info.get("command") != b.info.get("command")
        else None,
    }
