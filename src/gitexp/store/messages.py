"""Commit messages of run commits: ``git log refs/experiments/...`` is useful alone."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from gitexp import records as fmt
from gitexp.records import (
    ExpRef,
    Summary,
)


def _fmt_value(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    text = json.dumps(v, ensure_ascii=False) if not isinstance(v, str) else v
    return text if len(text) <= 40 else text[:37] + "..."


def commit_message(
    verb: str, ref: ExpRef, run: Mapping[str, Any], params: Mapping[str, Any], summary: Summary
) -> str:
    """A readable commit message: ``git log refs/experiments/...`` is useful alone."""
    title = run.get("name") or " ".join(run.get("command") or []) or ""
    subject = f"{verb} {ref.short}"
    if title:
        subject += f": {title}"
    if len(subject) > 100:
        subject = subject[:97] + "..."
    lines = [subject, "", f"status: {run.get('status')}"]
    if run.get("exit_code") is not None:
        lines[-1] += f" (exit {run['exit_code']})"
    if run.get("duration") is not None:
        lines[-1] += f" after {run['duration']:.1f}s"
    if run.get("command"):
        lines.append("command: " + " ".join(run["command"]))
    flat = fmt.flatten(params)
    if flat:
        shown = ", ".join(f"{k}={_fmt_value(v)}" for k, v in sorted(flat.items())[:12])
        more = f" (+{len(flat) - 12} more)" if len(flat) > 12 else ""
        lines.append(f"params: {shown}{more}")
    finals = {k: v for k, v in summary.final_values().items() if not fmt.is_system_metric(k)}
    if finals:
        shown = ", ".join(f"{k}={v:.6g}" for k, v in sorted(finals.items())[:12])
        more = f" (+{len(finals) - 12} more)" if len(finals) > 12 else ""
        lines.append(f"metrics: {shown}{more}")
    if run.get("tags"):
        lines.append("tags: " + ", ".join(run["tags"]))
    return "\n".join(lines) + "\n"
