"""Rendering for the CLI: pure ``format_*`` functions that return text."""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

SPARKS = "▁▂▃▄▅▆▇█"
MAX_CELL = 32


def jsonable(value: Any) -> Any:
    """Replace NaN and infinities by strings so the output is valid JSON."""
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value


def format_json(data: Any) -> str:
    """Indented, valid JSON."""
    return json.dumps(jsonable(data), indent=2, ensure_ascii=False, sort_keys=False)


def iter_json_array(items: Iterable[Any]) -> Iterator[str]:
    """The text of :func:`format_json` for a list, in pieces, one item at a time."""
    first = True
    for item in items:
        body = format_json(item).replace("\n", "\n  ")
        yield ("[\n  " if first else ",\n  ") + body
        first = False
    yield "[]" if first else "\n]"


def format_number(value: Any) -> str:
    """Numbers as a human reads them: 6 significant digits, nan/inf spelled out."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return f"{value:.6g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def format_duration(seconds: Any) -> str:
    """``3.2s``, ``4m05s``, ``2h01m``."""
    if seconds is None:
        return ""
    s = float(seconds)
    if s < 60:
        return f"{s:.1f}s"
    if s < 3600:
        return f"{int(s // 60)}m{int(s % 60):02d}s"
    return f"{int(s // 3600)}h{int(s % 3600 // 60):02d}m"


def format_time(iso: str | None) -> str:
    """``2026-11-22 14:30:22`` from ISO-8601 UTC."""
    if not iso:
        return ""
    return iso.replace("T", " ")[:19]


def sparkline(values: Sequence[float]) -> str:
    """A one-line chart of a series (NaN and inf shown as spaces)."""
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return ""
    lo, hi = min(finite), max(finite)
    span = hi - lo
    out = []
    for v in values:
        if v is None or not math.isfinite(v):
            out.append(" ")
        elif span == 0:
            out.append(SPARKS[3])
        else:
            out.append(SPARKS[min(len(SPARKS) - 1, int((v - lo) / span * (len(SPARKS) - 1) + 0.5))])
    return "".join(out)


_MISSING: Any = object()  # a cell whose run has no value for the column


def _cells(col: str, values: Sequence[Any]) -> list[str]:
    """The cells of one column: formatted, on one line, at most MAX_CELL characters.
    A value ``_MISSING`` (the run has none) is an empty cell."""
    absent = [v is _MISSING for v in values]
    values = [None if a else v for a, v in zip(absent, values)]
    if col == "duration":
        texts = [format_duration(v) for v in values]
    elif col == "start":
        texts = [format_time(v) for v in values]
    elif col == "tags":
        texts = [",".join(v or []) for v in values]
    elif col.startswith("ci95("):  # an interval: [low, high]
        texts = [
            f"[{format_number(v[0])}, {format_number(v[1])}]"
            if isinstance(v, (list, tuple)) and len(v) == 2
            else format_number(v)
            for v in values
        ]
    elif col.startswith("params."):  # a param recorded as None differs from one not recorded
        texts = [
            "" if a else "null" if v is None else format_number(v) for a, v in zip(absent, values)
        ]
    else:
        texts = [
            f"{v:.6g}" if type(v) is float and math.isfinite(v) else format_number(v)
            for v in values
        ]
    out = []
    for text in texts:
        if "\n" in text:
            text = text.replace("\n", " ")
        if len(text) > MAX_CELL:
            text = text[: MAX_CELL - 1] + "…"
        out.append(text)
    return out


def _header(col: str) -> str:
    for prefix in ("params.", "metrics."):
        if col.startswith(prefix):
            return col[len(prefix) :]
    return col


def format_table(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    """A plain-text table with a header row; numbers right-aligned.

    Built column by column (each row's value read once), so that listing
    100,000 runs stays quick.
    """
    headers = [_header(c) for c in columns]
    texts: list[list[str]] = []
    aligns = []
    for c, h in zip(columns, headers):
        values = [r.get(c, _MISSING) for r in rows]
        cells = _cells(c, values)
        values = [None if v is _MISSING else v for v in values]
        width = max([len(h)] + [len(t) for t in cells])
        numeric = c != "id" and all(v is None or (isinstance(v, (int, float))) for v in values)
        aligns.append(str.rjust if numeric else str.ljust)
        texts.append([h, *cells])
        texts[-1] = [aligns[-1](t, width) for t in texts[-1]]
    return "\n".join("  ".join(parts).rstrip() for parts in zip(*texts)) if texts else ""


def format_csv(columns: Sequence[str], rows: Sequence[Mapping[str, Any]]) -> str:
    """CSV with full column names and raw values."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(columns)
    for r in rows:
        writer.writerow([_raw(r.get(c)) for c in columns])
    return buf.getvalue()


def _raw(value: Any) -> str:
    """A CSV cell: full-precision numbers, JSON for booleans, lists and dicts."""
    if value is None:
        return ""
    if isinstance(value, (bool, list, dict)):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, float):
        return format_number(value) if not math.isfinite(value) else repr(value)
    return str(value)


def human_size(n: int | None) -> str:
    """The one size formatter (binary units, 1024): ``1.2 MiB``; ``-`` for unknown."""
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def format_show(d: dict[str, Any]) -> str:
    """``git exp show``: one run, section by section."""
    info = d["info"]
    lines = [f"run        {d['run']}", f"commit     {d['sha']}"]
    if info.get("name"):
        lines.append(f"name       {info['name']}")
    status = info.get("status", "")
    if info.get("exit_code") is not None:
        status += f" (exit {info['exit_code']})"
    lines.append(f"status     {status}")
    lines.append(f"started    {format_time(info.get('start_time'))}")
    if info.get("end_time"):
        lines.append(
            f"ended      {format_time(info.get('end_time'))} "
            f"({format_duration(info.get('duration'))})"
        )
    if info.get("command"):
        lines.append("command    " + " ".join(info["command"]))
    if info.get("host"):
        lines.append(f"host       {info.get('user', '')}@{info.get('host', '')}")
    elif info.get("user"):
        lines.append(f"user       {info['user']}")
    origin = info.get("origin")
    if isinstance(origin, dict):
        source = origin.get("uri") or origin.get("logdir") or ""
        within = origin.get("run_id") or origin.get("run") or ""
        lines.append(f"imported   from {origin.get('tool', '?')} {source} {within}".rstrip())
    if info.get("tags"):
        lines.append("tags       " + ", ".join(info["tags"]))
    links = {k: v for k, v in (info.get("links") or {}).items() if v}
    for k, v in links.items():
        lines.append(f"{k:<10} {v}")
    lines.append(f"fingerprint {str(info.get('fingerprint', ''))[:16]}")

    from gitexp.records import flatten

    params = flatten(d["params"])
    lines += ["", "params" if params else "params     (none)"]
    width = max((len(k) for k in params), default=0)
    for k, v in params.items():
        lines.append(f"  {k:<{width}}  {'null' if v is None else format_number(v)}")

    metrics = d["metrics"]
    lines += ["", "metrics" if metrics else "metrics    (none)"]
    width = max((len(k) for k in metrics), default=0)
    for k, m in metrics.items():
        spark = sparkline(m.get("sample") or [])
        extra = ""
        if "min" in m:
            extra = (
                f"min {format_number(m['min'])}  max {format_number(m['max'])}  "
                f"n={m['count']} (last step {m['last_step']})"
            )
        lines.append(f"  {k:<{width}}  {format_number(m['final']):>10}  {spark}  {extra}".rstrip())

    for title, key in (("artifacts", "artifacts"), ("inputs", "inputs")):
        items = d[key]
        lines += ["", title if items else f"{title:<10} (none)"]
        width = max((len(a["path"]) for a in items), default=0)
        for a in items:
            label = a.get("source") if key == "inputs" and a.get("source") else a["path"]
            extra = f" [{a['role']}]" if key == "artifacts" else ""
            kind = f" dir of {a.get('files')} files" if a.get("kind") == "dir" else ""
            stored = "" if a.get("stored", True) else " (hash only)"
            lines.append(
                f"  {label:<{width}}  {human_size(a['size']):>9}  {a['blake3'][:12]}"
                f"{kind}{stored}{extra}"
            )

    code = d["code"]
    lines += ["", "code"]
    lines.append(f"  commit    {code.get('commit', '')}")
    if code.get("dirty"):
        lines.append(
            f"  (dirty work tree: snapshot of {len(code.get('changed') or [])} path(s) on "
            f"HEAD {str(code.get('head', ''))[:12]})"
        )
    if code.get("branch"):
        lines.append(f"  branch    {code['branch']}")
    for name, url in (code.get("remotes") or {}).items():
        lines.append(f"  remote    {name} {url}")

    env = d["env"]
    lines += ["", "environment" if env else "environment (not recorded)"]
    py = env.get("python") or {}
    plat = env.get("platform") or {}
    cpu = env.get("cpu") or {}
    if py:
        lines.append(f"  python    {py.get('implementation', '')} {py.get('version', '')}")
    if plat:
        lines.append(
            f"  platform  {plat.get('system', '')} {plat.get('release', '')} "
            f"{plat.get('machine', '')}"
        )
    if cpu:
        lines.append(f"  cpu       {cpu.get('model', '')} x{cpu.get('count', '')}")
    if env.get("memory_bytes"):
        lines.append(f"  memory    {human_size(env['memory_bytes'])}")
    for gpu in env.get("gpus") or []:
        lines.append(
            f"  gpu       {gpu.get('name')} (driver {gpu.get('driver')}, {gpu.get('memory')})"
        )
    if env:
        lines.append(f"  packages  {len(env.get('packages') or [])}")
    for k, v in (env.get("variables") or {}).items():
        lines.append(f"  {k}={v}")

    if info.get("notes"):
        lines += ["", "notes"]
        for n in info["notes"]:
            lines.append(f"  {format_time(n.get('time'))}  {n.get('text')}")
    if d.get("alerts"):
        lines += ["", "alerts"]
        for a in d["alerts"]:
            lines.append(f"  {format_time(a.get('time'))}  [{a.get('level')}] {a.get('title')}")
            lines += ["      " + ln for ln in str(a.get("text") or "").splitlines()[:4]]
    if info.get("error"):
        lines += ["", "error"]
        lines += ["  " + ln for ln in str(info["error"]).rstrip().splitlines()[-8:]]
    return "\n".join(lines)


def _env_text(part: str, value: Any) -> str:
    """One part of env.json as ``git exp show`` words it (``CPython 3.11.7 (/usr/bin/python3)``)."""
    if not value:
        return "-" if part != "gpus" else "none"
    if part == "gpus" and isinstance(value, list):
        return ", ".join(f"{g.get('name')} (driver {g.get('driver')})" for g in value)
    if not isinstance(value, dict):
        return format_number(value)
    if part == "python":
        text = f"{value.get('implementation', '')} {value.get('version', '')}".strip()
        return f"{text} ({value['executable']})" if value.get("executable") else text
    if part == "platform":
        keys = ("system", "release", "machine", "libc")
        return " ".join(str(value[k]) for k in keys if value.get(k))
    if part == "cpu":
        return f"{value.get('model', '')} x{value.get('count', '')}"
    return format_number(value)


def format_diff(d: dict[str, Any]) -> str:
    """``git exp diff``: what differs between two runs."""
    a, b = d["a"], d["b"]
    lines = [
        f"a  {a['run']}  {a['sha'][:12]}  {a.get('name') or ''}".rstrip(),
        f"b  {b['run']}  {b['sha'][:12]}  {b.get('name') or ''}".rstrip(),
        "",
    ]
    lines.append("fingerprint: identical" if d["same_fingerprint"] else "fingerprint: different")
    if d["data_changed"]:
        lines += ["", "!!! DATA CHANGED: inputs differ between the two runs !!!"]
        for i in d["inputs"]:
            lines.append(
                f"  {i['status']:<8} {i['path']}  {str(i['a'] or '-')[:12]} "
                f"({human_size(i['a_size'])})"
                f" -> {str(i['b'] or '-')[:12]} ({human_size(i['b_size'])})"
            )
    lines += ["", "params" if d["params"] else "params: identical"]
    width = max((len(p["key"]) for p in d["params"]), default=0)
    for p in d["params"]:
        lines.append(
            f"  {p['key']:<{width}}  {format_number(p['a']) or '-'} -> "
            f"{format_number(p['b']) or '-'}"
        )
    lines += ["", "metrics" if d["metrics"] else "metrics: none"]
    width = max((len(m["key"]) for m in d["metrics"]), default=0)
    for m in d["metrics"]:
        delta = m["delta"]
        dtext = "" if delta is None else f"  ({'+' if delta >= 0 else ''}{format_number(delta)})"
        lines.append(
            f"  {m['key']:<{width}}  {format_number(m['a']) or '-':>12}  "
            f"{format_number(m['b']) or '-':>12}{dtext}"
        )
    code = d["code"]
    lines.append("")
    if code["same_tree"]:
        lines.append("code: identical tree")
    else:
        lines.append(
            f"code: {str(code['a'])[:12]} -> {str(code['b'])[:12]}"
            + ("  (a dirty)" if code["a_dirty"] else "")
            + ("  (b dirty)" if code["b_dirty"] else "")
        )
        if code.get("diff_stat"):
            lines += ["  " + ln for ln in code["diff_stat"].splitlines()]
    if d.get("command"):
        lines.append("")
        lines.append(
            "command: "
            + " ".join(d["command"]["a"] or [])
            + "  ->  "
            + " ".join(d["command"]["b"] or [])
        )
    env = d["env"]
    lines.append("")
    if not env["packages"] and len(env) == 1:
        lines.append("environment: identical")
    else:
        lines.append("environment")
        for part in ("python", "platform", "cpu", "gpus"):
            if part in env:
                lines.append(
                    f"  {part}: {_env_text(part, env[part]['a'])} -> "
                    f"{_env_text(part, env[part]['b'])}"
                )
        if "variables" in env:
            va, vb = env["variables"]["a"] or {}, env["variables"]["b"] or {}
            for k in sorted(set(va) | set(vb)):
                if va.get(k) != vb.get(k):
                    lines.append(f"  {k}: {va.get(k) or '-'} -> {vb.get(k) or '-'}")
        for p in env["packages"]:
            lines.append(f"  {p['name']}: {p['a'] or '-'} -> {p['b'] or '-'}")
    lines.append("")
    if not d["artifacts"]:
        lines.append("artifacts: identical")
    else:
        lines.append("artifacts")
        for x in d["artifacts"]:
            lines.append(
                f"  {x['status']:<8} {x['path']} [{x['role']}]  "
                f"{str(x['a'] or '-')[:12]} -> {str(x['b'] or '-')[:12]}"
            )
    return "\n".join(lines)


def unreadable_warning(problems: Sequence[str]) -> str | None:
    """One line for the runs a listing had to leave out (each problem is
    ``"<run>: <why>"``): the run and why when there is one, else how many and
    where to see them, so a thousand broken runs do not bury the listing."""
    if not problems:
        return None
    if len(problems) == 1:
        return (
            f"git exp: warning: 1 run could not be read and is not listed: {problems[0]} "
            "(git exp rm removes it)"
        )
    return (
        f"git exp: warning: {len(problems)} runs could not be read and are not listed "
        "(git exp fsck names them; git exp rm removes them)"
    )
