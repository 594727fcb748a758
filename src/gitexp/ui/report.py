"""``git exp report``: the dashboard's page as one self-contained HTML file.

The same ``index.html``/``app.js`` as ``git exp ui``, with the chart library,
the styles and the data inline: the runs table (what ``/api/runs`` answers
for the query), the facets, and every metric series of those runs
downsampled so that the file stays small (about 250,000 numbers in all,
at most 500 buckets per series). The file's Content-Security-Policy allows
only its own two scripts (by hash) and no connection at all: opening it
makes no network request. Data sits in a ``<script type="application/json">``
element with ``<``, ``>`` and ``&`` escaped, so no string from a run can
close it.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import Any

from gitexp.ui.api import Dashboard, jsonable
from gitexp.ui.series import downsample
from gitexp.ui.server import static_text

NUMBER_BUDGET = 250_000
MAX_REPORT_POINTS = 500
MIN_REPORT_POINTS = 20
_ASSETS = ("<!--assets-->", "<!--/assets-->")


def _safe_json(data: Any) -> str:
    text = json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def _inline_script(code: str) -> str:
    return code.replace("</script", "<\\/script").replace("<!--", "<\\!--")


def _sha256(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _rounded(values: list[float | None]) -> list[float | None]:
    return [None if v is None else float(f"{v:.7g}") for v in values]


def report_data(
    dash: Dashboard, args: dict[str, str], runs: Sequence[str] = (), title: str | None = None
) -> dict[str, Any]:
    """What the report shows: the leaderboard answer, the facets, the series."""
    board = dash.runs(args, default_limit=None)
    if runs:
        with dash.lock:
            wanted = {str(dash.store.resolve(a)) for a in runs}
        board["runs"] = [r for r in board["runs"] if r.get("ref") in wanted]
        board["total"] = len(board["runs"])
    from gitexp.metrics import key_arrays

    shown = [r for r in board["runs"] if r.get("ref") and r.get("sha")]
    with dash.lock:  # every run's segments in two git cat-file batches, not a record per run
        tables = dash.store.read_metrics_many([str(r["sha"]) for r in shown], dictionary_keys=True)
    arrays = []
    for row, table in zip(shown, tables):
        exp, _, run_id = str(row["ref"]).removeprefix("refs/experiments/").rpartition("/")
        for key, (steps, values, times) in sorted(key_arrays(table).items()):
            arrays.append((run_id, exp, row.get("name"), key, steps, values, times))
    points = MAX_REPORT_POINTS
    if arrays:
        points = max(MIN_REPORT_POINTS, min(MAX_REPORT_POINTS, NUMBER_BUDGET // (5 * len(arrays))))
    series = []  # JSON-ready as they are (downsample writes non-finite values as null)
    for run_id, exp, name, key, steps, values, times in arrays:
        s = downsample(steps, values, times, points)
        for part in ("value", "min", "max"):
            if part in s:
                s[part] = _rounded(s[part])
        s["time"] = [round(t, 3) for t in s["time"]]
        s.update(run=run_id, experiment=exp, name=name, key=key)
        series.append(s)
    facets = dash.facets()
    keys = sorted({str(s["key"]) for s in series})
    facets["metrics"] = [f"metrics.{k}" for k in keys]
    facets["params"] = sorted(
        {k for r in board["runs"] for k in r if isinstance(k, str) and k.startswith("params.")}
    )
    made = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sweep = dash.sweep(args["sweep"]) if args.get("sweep") else None
    what = f"sweep {sweep['id']} · " if sweep else ""
    data: dict[str, Any] = jsonable(
        {
            "title": title or f"git exp report · {what}{board['total']} runs · {made}",
            "runs": board,
            "facets": facets,
            "sweep": sweep,
        }
    )
    data["metrics"] = {"series": series, "max_points": points}
    return data


def render_report(data: dict[str, Any]) -> str:
    """The HTML of a report holding ``data``."""
    page = static_text("index.html")
    start, end = page.index(_ASSETS[0]), page.index(_ASSETS[1]) + len(_ASSETS[1])
    styles = static_text("vendor/uPlot.min.css") + "\n" + static_text("app.css")
    scripts = [
        _inline_script(static_text("vendor/uPlot.iife.min.js")),
        _inline_script(static_text("app.js")),
    ]
    csp = (
        "default-src 'none'; "
        f"script-src {' '.join(_sha256(s) for s in scripts)}; "
        "style-src 'unsafe-inline'; img-src data:; connect-src 'none'; "
        "base-uri 'none'; form-action 'none'"
    )
    head = (
        f'<meta http-equiv="Content-Security-Policy" content="{csp}">\n<style>\n{styles}\n</style>'
    )
    page = page[:start] + head + page[end:]
    page = page.replace('<meta name="gitexp-token" content="{{TOKEN}}">\n', "")
    body = (
        f'<script type="application/json" id="gitexp-data">{_safe_json(data)}</script>\n'
        + "".join(f"<script>{s}</script>\n" for s in scripts)
    )
    return page.replace("</body>", body + "</body>")


def build_report(
    repo: str = ".",
    args: dict[str, str] | None = None,
    runs: Sequence[str] = (),
    title: str | None = None,
) -> str:
    """The HTML of a report of the runs that ``args`` (the API's query
    parameters: experiment, where, sort, ...) selects, or of ``runs``."""
    dash = Dashboard(repo)
    try:
        return render_report(report_data(dash, dict(args or {}), runs, title))
    finally:
        dash.close()


def write_report(html: str, path: str) -> int:
    """Write ``html`` to ``path`` atomically (a temporary file beside it, fsync,
    rename); return the number of bytes written."""
    import contextlib
    import os
    import tempfile

    from gitexp.errors import UsageError

    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise UsageError(f"no directory {directory!r} to write {os.path.basename(path)!r} in")
    data = html.encode()
    fd, tmp = tempfile.mkstemp(prefix=".gitexp-report-", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        mask = os.umask(0o022)
        os.umask(mask)
        os.chmod(tmp, 0o666 & ~mask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return len(data)
