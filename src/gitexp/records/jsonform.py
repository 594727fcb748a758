"""Canonical JSON and the param values it can hold.

Pure: no I/O. Equal data gives equal bytes, so equal data gives equal git blobs.
"""

from __future__ import annotations

import datetime as _dt
import enum
import json
import math
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any

from gitexp.errors import FormatError, InvalidValue, UnsupportedFormat
from gitexp.records.names import _not_utf8, has_surrogates


def _encode_float(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def decode_float(value: Any) -> float | None:
    """Inverse of the float encoding used in summaries: strings for NaN/inf."""
    if value is None:
        return None
    if isinstance(value, str):
        return float(value.replace("Infinity", "inf"))
    return float(value)


def to_jsonable(value: Any, key: str = "") -> Any:
    """Convert a param value to plain JSON data, or raise InvalidValue naming ``key``.

    numpy scalars and arrays, dates, paths, enums, sets and tuples have a
    natural JSON form; NaN and infinities become the strings ``"NaN"``,
    ``"Infinity"`` and ``"-Infinity"``. Anything else is refused rather than
    stored as an unreadable repr, and so is a value nested deeper than
    MAX_DEPTH or one that contains itself (never a RecursionError).
    """
    return _jsonable(value, key, 0, set())


def _nested(key: str, depth: int, active: set[int], value: Any) -> int:
    """Enter a container: its depth, refusing one too deep or already open."""
    if id(value) in active:
        raise InvalidValue(f"param {_short_key(key)!r}: the value contains itself", key)
    if depth >= MAX_DEPTH:
        raise InvalidValue(
            f"param {_short_key(key)!r}: the value nests deeper than {MAX_DEPTH} levels", key
        )
    return depth + 1


def _short_key(key: str) -> str:
    return key if len(key) <= 80 else key[:40] + "..." + key[-37:]


def _jsonable(value: Any, key: str, depth: int, active: set[int]) -> Any:
    if isinstance(value, str):
        if has_surrogates(value):
            raise InvalidValue(f"param {key!r}: " + _not_utf8("text", value[:40]), key)
        return value
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return _encode_float(value)
    if isinstance(value, (Mapping, list, tuple, set, frozenset)):
        inner = _nested(key, depth, active, value)
        active.add(id(value))
        try:
            return _container(value, key, inner, active)
        finally:
            active.discard(id(value))
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, PurePath):  # text like any other: surrogates are refused
        return _jsonable(str(value), key, depth, active)
    if isinstance(value, enum.Enum):
        return _jsonable(value.value, key, depth, active)
    # numpy without importing it: scalars have .item(), arrays have .tolist()
    module = type(value).__module__
    if module == "numpy":
        dtype = getattr(value, "dtype", None)
        if dtype is not None and dtype.kind == "f" and dtype.itemsize < 8:
            # float16/float32: the shortest decimal that reads back as the same value,
            # as numpy prints it (np.float32(0.1) -> 0.1, not 0.10000000149011612)
            if value.ndim == 0:
                return _encode_float(float(str(value)))
            inner = _nested(key, depth, active, value)
            return [_jsonable(v, f"{key}[{i}]", inner, active) for i, v in enumerate(value)]
        if hasattr(value, "tolist"):
            return _jsonable(value.tolist(), key, depth, active)
    raise InvalidValue(
        f"param {key!r}: a {type(value).__name__} has no JSON form "
        "(convert it to a number, text, list or dict first)",
        key,
    )


def _container(value: Any, key: str, depth: int, active: set[int]) -> Any:
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                if isinstance(k, (int, float, bool)):
                    k = str(k)
                else:
                    raise InvalidValue(f"param {key!r}: mapping key {k!r} is not text", key)
            if has_surrogates(k):
                raise InvalidValue(f"param {key!r}: " + _not_utf8("key", k), key)
            sub = f"{key}.{k}" if key else k
            out[k] = _jsonable(v, sub, depth, active)
        return out
    if isinstance(value, (list, tuple)):
        return [_jsonable(v, f"{key}[{i}]", depth, active) for i, v in enumerate(value)]
    items = [_jsonable(v, key, depth, active) for v in value]  # a set
    return sorted(items, key=lambda x: json.dumps(x, sort_keys=True))


# bounds on a document read from git: runs arrive from other people's clones, and
# a small file must not cost unbounded memory, time or stack
MAX_DOC_BYTES = 64 << 20
MAX_DEPTH = 100
# run.json and env.json are small (a command line, times, tags, notes; versions and
# selected variables): a bound far below the others, since every listing reads run.json
DOC_LIMITS = {"run.json": 8 << 20, "env.json": 8 << 20}


def doc_limit(name: str) -> int:
    """The most bytes a run-tree document ``name`` may hold (writers and readers)."""
    return DOC_LIMITS.get(name, MAX_DOC_BYTES)


def _refuse_constant(token: str) -> Any:
    raise ValueError(f"{token} is not JSON (format 1 writes it as the string {token!r})")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)  # one, not one per document


def json_depth(value: Any) -> int:
    """How deeply lists and objects nest in ``value`` (0 for a scalar), iteratively."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict):
            children: Any = node.values()
        elif isinstance(node, list):
            children = node
        else:
            continue
        depth += 1
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            return deepest
        stack.extend((c, depth) for c in children)
    return deepest


def canonical_json(data: Any) -> bytes:
    """Canonical JSON bytes: sorted keys, 2-space indent, UTF-8, trailing newline.

    Readable in ``git show`` and stable, so equal data gives equal git blobs.
    Data nested deeper than readers accept (MAX_DEPTH) is refused, so nothing
    is written that :func:`parse_json` would not read back.
    """
    if json_depth(data) > MAX_DEPTH:
        raise InvalidValue(f"a value nests deeper than {MAX_DEPTH} levels", "")
    text = json.dumps(data, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False)
    try:
        return (text + "\n").encode("utf-8")
    except UnicodeEncodeError:
        # text from the system that is not UTF-8 (an argument or path in the command,
        # cwd or environment): JSON's \u escapes keep it exactly, in ASCII
        text = json.dumps(data, sort_keys=True, indent=2, ensure_ascii=True, allow_nan=False)
        return (text + "\n").encode("ascii")


def compact_json(data: Any) -> bytes:
    """Canonical JSON on one line, for hashing."""
    text = json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:  # as in canonical_json
        return json.dumps(
            data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
        ).encode("ascii")


def parse_json(data: bytes, what: str, limit: int | None = None) -> Any:
    """Parse a JSON file from a run tree or raise FormatError naming it.

    Bounded: at most ``limit`` bytes (see :func:`doc_limit`), nesting at most
    MAX_DEPTH deep, integers within Python's digit limit, and no bare ``NaN`` / ``Infinity`` tokens
    (canonical JSON never writes them), so that a hostile document is one
    FormatError, never a RecursionError, an OverflowError or a hang.
    """
    if limit is None:
        limit = MAX_DOC_BYTES
    if len(data) > limit:
        raise FormatError(f"{what} is {len(data)} bytes, more than {limit} allowed")
    try:
        value = _DECODER.decode(data.decode("utf-8"))
    except RecursionError:
        raise FormatError(f"{what} nests deeper than {MAX_DEPTH} levels") from None
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError, too many digits
        raise FormatError(f"{what} does not parse as JSON: {_first_line(exc)}") from exc
    # a document with no more brackets than MAX_DEPTH cannot nest deeper (brackets
    # inside strings only over-count): the walk is for the rare one with more
    if data.count(b"[") + data.count(b"{") > MAX_DEPTH and json_depth(value) > MAX_DEPTH:
        raise FormatError(f"{what} nests deeper than {MAX_DEPTH} levels")
    return value


def versioned(data: Any, what: str, kind: str, version: int) -> dict[str, Any]:
    """``data`` as a document of ``kind`` format ``version`` (the registry's, a
    sweep's): FormatError when it is not an object, UnsupportedFormat when its
    ``format`` is another one (a newer git-exp wrote it)."""
    if not isinstance(data, dict):
        raise FormatError(f"{what} is not an object")
    if data.get("format") != version:
        raise UnsupportedFormat(
            f"{what} is in {kind} format {data.get('format')!r}; this release reads "
            f"version {version} (upgrade git-exp to read it)",
            data.get("format"),
        )
    return data


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested dicts into dotted keys (``{"opt": {"lr": 1}}`` -> ``opt.lr``)."""
    out: dict[str, Any] = {}
    for k, v in data.items():
        name = f"{prefix}{k}"
        if isinstance(v, Mapping) and v:
            out.update(flatten(v, name + "."))
        else:
            out[name] = v
    return out


def set_dotted(target: dict[str, Any], key: str, value: Any) -> None:
    """Set ``a.b.c`` in a nested dict, creating the intermediate dicts."""
    if has_surrogates(key):
        raise InvalidValue(_not_utf8("param name", key), key)
    parts = key.split(".")
    # the document's own object, one per dotted part below it, then the value's
    if len(parts) + json_depth(value) > MAX_DEPTH:
        raise InvalidValue(
            f"param {_short_key(key)!r}: the value nests deeper than {MAX_DEPTH} levels", key
        )
    node = target
    for part in parts[:-1]:
        nxt = node.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            node[part] = nxt
        node = nxt
    node[parts[-1]] = value


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``update`` into a copy of ``base``; nested dicts merge, values replace."""
    out = dict(base)
    for k, v in update.items():
        if isinstance(v, Mapping) and isinstance(out.get(k), Mapping):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = v
    return out
