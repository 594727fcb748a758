"""Paths the replay points elsewhere: the original work tree to the replay's
directory, inputs from outside the repository to their restored copies.

Used by the planner (what does the command name?), the replay (argv, params and
a config file rewritten for the copy) and the verdict (params a script logged
from those paths are compared as the original's).
"""

from __future__ import annotations

import os
from typing import Any


def external_root(work: str) -> str:
    """Where inputs from outside the repository are restored for the replay in
    ``work``: beside the code, in the replay's temporary directory."""
    root, base = os.path.split(work)
    return os.path.join(root, "external" if base != "external" else "external-inputs")


def external_path(work: str, rel: str) -> str:
    return os.path.join(external_root(work), *rel.split("/"))


def remap_all(arg: str, pairs: list[tuple[str, str]]) -> str:
    for old, new in pairs:
        mapped = remap(arg, old, new)
        if mapped != arg:
            return mapped
    return arg


def remap_value(value: Any, pairs: list[tuple[str, str]]) -> Any:
    """``value`` (params: nested dicts and lists) with every string remapped."""
    if not pairs:
        return value
    if isinstance(value, str):
        return remap_all(value, pairs)
    if isinstance(value, dict):
        return {k: remap_value(v, pairs) for k, v in value.items()}
    if isinstance(value, list):
        return [remap_value(v, pairs) for v in value]
    return value


def remap_text(text: str, root: str, work: str) -> str:
    """``text`` (a config file) with every absolute path ``root`` or under it
    pointed at ``work`` instead (``/a/proj/x`` but not ``/a/proj2/x``)."""
    import re

    if not root or root == os.sep:
        return text
    pattern = r"(?<![\w.~/-])" + re.escape(root) + r"(?=$|[/\\\s\"',:;\]}\)])"
    return re.sub(pattern, lambda m: work, text)


def names_path(command: list[str], params: Any, path: str) -> bool:
    """True when an argument or a param string is ``path``, or a path under it."""
    probe = [(path, "\0")]
    if any(remap(a, path, "\0") != a for a in command):
        return True
    return bool(remap_value(params, probe) != params)


def remap(arg: str, root: str | None, work: str) -> str:
    if not root or root == os.sep:
        return arg
    for lead in ("", *(arg[: i + 1] for i, c in enumerate(arg) if c == "=")):
        rest = arg[len(lead) :]
        if rest == root or rest.startswith(root + os.sep):
            return lead + work + rest[len(root) :]
    return arg


def rel_under(path: str, root: str) -> str | None:
    """``path`` relative to ``root`` (posix), or None when outside it (lexically)."""
    path, root = os.path.normpath(path), os.path.normpath(root)
    if path == root:
        return "."
    if path.startswith(root.rstrip(os.sep) + os.sep):
        return os.path.relpath(path, root).replace(os.sep, "/")
    return None
