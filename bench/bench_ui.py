"""The dashboard in a real browser: `git exp ui` and `git exp report`, and `mlflow ui`
on the same runs, in the same Chromium, in one run.

Debian's /usr/bin/chromium is driven by Playwright with the flags of the browser
tests (offline, loopback only). Every navigation gets a fresh browser context (a
cold browser cache); a figure is the time from the start of the navigation
(``performance.now()`` of the page) to the moment the thing is on screen: a
``requestAnimationFrame`` poll that finds it drawn (for git-exp the page's
``#runs[data-state=ready]``; for MLflow the first row of its runs grid).

  T1  the runs table at 10,000 and 100,000 runs (targets: 1 s, 2 s), the API's
      answer alone, and a click on a column header to the re-sorted table;
      MLflow: ``mlflow ui`` (sqlite backend, its default) on the same 10,000 runs
      (same names, params, last metrics, statuses), navigation to its runs table
  T2  20 runs x 10,000 points: a click on "select matching" to the 20 curves
      drawn (target 1 s)
  T3  a run of 10,000,000 points: navigation to its run page to its curve drawn
      (target 1 s), and the metrics API's answer (first and cached)
  T4  ``git exp report`` of 1,000 runs (3 metrics x 100 steps each): the whole
      process (target 3 s) and the file's size (target 5 MB); the file opened
      from file:// to its table and curves drawn

Runs are made once and kept in bench/.cache/ (git-exp: ``git fast-import`` for
the tables, the Python API for runs with curves; MLflow: its client API, capped
by --mlflow-create-cap seconds). MLflow runs in bench/.mlflow-venv, made by
bench_vs_mlflow.py (or here) with ``pip install mlflow``.

Usage:
    python bench/bench_ui.py                 # everything (first time: ~15 min to build the caches)
    python bench/bench_ui.py --quick         # 1,000 runs, small curves, no MLflow
    python bench/bench_ui.py --skip-mlflow --only T1,T3
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import textwrap
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench_vs_mlflow import MLFLOW_ENV, VENV, MLflow, machine  # noqa: E402
from benchlib import IDENTITY, generate, make_repo, run_values  # noqa: E402

CACHE = HERE / ".cache"
RESULTS = HERE / "results"
CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
    "--disable-dev-shm-usage",
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
]
VIEWPORT = {"width": 1400, "height": 1000}
TIMEOUT_MS = 300_000
ML_TIMEOUT_MS = 600_000
# a rAF poll: the page's own clock (ms since its navigation started) once `test` holds
READY = "() => ({test}) ? performance.now() : false"
GX_TABLE = READY.format(test="document.querySelector('#runs[data-state=ready] tbody tr')")
ML_TABLE = READY.format(test="document.querySelector('.ag-center-cols-container .ag-row')")


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def whole(cmd: list[str], cwd: Path) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


# ------------------------------------------------------------------ the runs

GX_CURVES = textwrap.dedent(
    """
    import sys, numpy as np, gitexp
    runs, points, big = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
    rng = np.random.default_rng(0)
    for i in range(runs):
        steps = np.arange(points)
        loss = np.exp(-steps / (points / (3 + i / 4))) + 0.05 * rng.random(points)
        with gitexp.start_run(experiment="curves", name=f"curve {i}",
                              params={"lr": 10 ** -(1 + i % 4), "seed": i}) as run:
            run.log_metric("loss", loss, step=0)
    with gitexp.start_run(experiment="big", name="ten million") as run:
        chunk = 100_000
        for j in range(big // chunk):
            x = np.arange(j * chunk, (j + 1) * chunk) / big
            run.log_metric("loss", np.exp(-5 * x) + 0.1 * rng.random(chunk), step=j * chunk)
        print(run.ref)
    """
)

GX_REPORT = textwrap.dedent(
    """
    import json, sys, gitexp
    runs = [json.loads(line) for line in open(sys.argv[1])]
    for i, r in enumerate(runs):
        with gitexp.start_run(experiment="report", name=r["name"], params=r["params"]) as run:
            for step in range(100):
                f = (step + 1) / 100
                run.log_metrics({k: v * f for k, v in r["metrics"].items()}, step=step)
    """
)


def runs_file(path: Path, n: int, flat: bool) -> Path:
    """JSON lines of the generated runs (benchlib.run_values): what both tools record."""
    with open(path, "w") as f:
        for i in range(n):
            params, metrics = run_values(i)
            if flat:  # MLflow params are flat strings
                model = params.pop("model")
                params.update({f"model.{k}": v for k, v in model.items()})
            status = "FINISHED" if i % 10 else "FAILED"
            f.write(
                json.dumps(
                    {"name": f"run {i}", "params": params, "metrics": metrics, "status": status}
                )
                + "\n"
            )
    return path


def table_repo(n: int) -> Path:
    repo = CACHE / f"ui-runs-{n}"
    if not (repo / ".bench-done").exists():
        shutil.rmtree(repo, ignore_errors=True)
        log(f"git-exp: generating {n:,} runs (git fast-import)")
        generate(str(repo), n)
        subprocess.run(
            ["git", "exp", "log", "--limit", "1"], cwd=repo, check=True, stdout=subprocess.DEVNULL
        )  # builds the catalog
        (repo / ".bench-done").write_text(str(n))
    return repo


def curves_repo(runs: int, points: int, big: int) -> tuple[Path, str]:
    repo = CACHE / f"ui-curves-{runs}x{points}-{big}"
    done = repo / ".bench-done"
    if not done.exists():
        shutil.rmtree(repo, ignore_errors=True)
        make_repo(str(repo))
        log(f"git-exp: {runs} runs x {points:,} points and one run of {big:,} points")
        out = subprocess.run(
            [sys.executable, "-c", GX_CURVES, str(runs), str(points), str(big)],
            cwd=repo,
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, **IDENTITY},
        )
        done.write_text(out.stdout.strip().splitlines()[-1])
    return repo, done.read_text().strip().removeprefix("refs/experiments/")


def report_repo(n: int) -> Path:
    repo = CACHE / f"ui-report-{n}"
    if not (repo / ".bench-done").exists():
        shutil.rmtree(repo, ignore_errors=True)
        make_repo(str(repo))
        log(f"git-exp: {n:,} runs of 3 metrics x 100 steps (Python API)")
        rf = runs_file(repo.parent / f"ui-report-{n}.jsonl", n, flat=False)
        subprocess.run(
            [sys.executable, "-c", GX_REPORT, str(rf)],
            cwd=repo,
            check=True,
            env={**os.environ, **IDENTITY},
        )
        (repo / ".bench-done").write_text(str(n))
    return repo


def mlflow_store(ml: MLflow, n: int, cap_s: float) -> tuple[str, int, str]:
    """bench/.cache/mlflow-ui-<n>: the same runs in MLflow's sqlite store: (uri, runs, exp id)."""
    root = CACHE / f"mlflow-ui-{n}"
    root.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    state = root / "state.json"
    info = json.loads(state.read_text()) if state.exists() else {"created": 0, "seconds": 0.0}
    if info["created"] < n and info["seconds"] < cap_s:
        rf = runs_file(root / "runs.jsonl", n, flat=True)
        log(
            f"MLflow: creating up to {n - info['created']:,} runs "
            f"(cap {cap_s - info['seconds']:.0f} s)"
        )
        got = ml.call(
            "ui_create",
            cwd=root,
            uri=uri,
            runs_file=str(rf),
            start=info["created"],
            cap_s=cap_s - info["seconds"],
        )
        info = {
            "created": got["created"],
            "seconds": info["seconds"] + got["seconds"],
            "experiment_id": got["experiment_id"],
        }
        state.write_text(json.dumps(info))
        log(f"MLflow: {info['created']:,} runs in {info['seconds']:.0f} s")
    return uri, int(info["created"]), str(info.get("experiment_id", "1"))


# --------------------------------------------------------------- the servers


@contextmanager
def gx_ui(repo: Path):
    """`git exp ui` on a free port, as a user starts it; its address."""
    proc = subprocess.Popen(["git", "exp", "ui"], cwd=repo, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http://127.0.0.1:"):
            raise RuntimeError(f"git exp ui printed {url!r}")
        yield url
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


@contextmanager
def mlflow_ui(uri: str):
    """`mlflow ui` on the store (its own session: it forks uvicorn workers); its address."""
    port = free_port()
    cmd = [
        str(VENV / "bin" / "mlflow"),
        "ui",
        "--backend-store-uri",
        uri,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, **MLFLOW_ENV},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/"
    try:
        t0 = time.perf_counter()
        while True:
            try:
                with urllib.request.urlopen(url, timeout=5) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.perf_counter() - t0 > 180:
                raise RuntimeError("mlflow ui did not start")
            time.sleep(0.5)
        # ready when its API answers too (uvicorn's workers start after the page does)
        api = url + "ajax-api/2.0/mlflow/experiments/search?max_results=1"
        while True:
            try:
                with urllib.request.urlopen(api, timeout=60) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.perf_counter() - t0 > 300:
                raise RuntimeError("mlflow ui's API did not answer")
            time.sleep(0.5)
        log(f"mlflow ui answered after {time.perf_counter() - t0:.1f} s")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


# ---------------------------------------------------------------- the browser


class Browser:
    def __init__(self) -> None:
        from playwright.sync_api import sync_playwright

        self.pw = sync_playwright().start()
        self.b = self.pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        self.errors: list[str] = []

    def close(self) -> None:
        self.b.close()
        self.pw.stop()

    @contextmanager
    def page(self):
        ctx = self.b.new_context(viewport=VIEWPORT)
        pg = ctx.new_page()
        pg.on("pageerror", lambda e: self.errors.append(str(e)))
        try:
            yield pg
        finally:
            ctx.close()

    def navigate(self, url: str, ready: str, timeout_ms: int = TIMEOUT_MS) -> float:
        """Seconds from navigation to ``ready`` holding, in a fresh context
        (infinity when it never does within ``timeout_ms``)."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        with self.page() as pg:
            pg.goto(url, wait_until="commit", timeout=timeout_ms)
            try:
                got = pg.wait_for_function(ready, polling="raf", timeout=timeout_ms)
            except PlaywrightTimeout:
                log(f"{url}: not drawn after {timeout_ms / 1000:.0f} s")
                return float("inf")
            return float(got.json_value()) / 1000


def mark_after(pg: Any, click: str, mark: str, extra: str = "true") -> float:
    """Seconds from a click (in the page) to the page's User Timing ``mark``."""
    t0 = pg.evaluate(
        f"""() => {{ performance.clearMarks({mark!r}); const t = performance.now();
            document.querySelector({click!r}).click(); return t; }}"""
    )
    t1 = pg.wait_for_function(
        f"""() => {{ const m = performance.getEntriesByName({mark!r});
            return m.length && ({extra}) ? m[m.length - 1].startTime : false; }}""",
        polling="raf",
        timeout=TIMEOUT_MS,
    ).json_value()
    return (float(t1) - float(t0)) / 1000


def api_time(url: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=600) as r:
        body = r.read()
    return time.perf_counter() - t0, len(body)


def med(xs: list[float]) -> float:
    return statistics.median(xs)


# ------------------------------------------------------------------ workloads


def t1(br: Browser, sizes: list[int], repeat: int, ml: MLflow | None, cap: float) -> list[dict]:
    rows = []
    ml_repeat = max(1, min(repeat, 2))  # each takes tens of seconds
    for n in sizes:
        repo = table_repo(n)
        target = 1.0 if n <= 10_000 else 2.0
        with gx_ui(repo) as url:
            first = br.navigate(url, GX_TABLE)
            navs = [br.navigate(url, GX_TABLE) for _ in range(repeat)]
            api = [api_time(url + "api/runs?limit=100")[0] for _ in range(repeat)]
            with br.page() as pg:
                pg.goto(url)
                pg.wait_for_function(GX_TABLE, polling="raf", timeout=TIMEOUT_MS)
                sorts = []
                for _ in range(repeat):
                    sorts.append(mark_after(pg, "#runs th[data-col='metrics.acc']", "gitexp:table"))
        row = {
            "name": f"T1 table, {n:,} runs: navigation to rendered",
            "gitexp": med(navs),
            "first": first,
            "target": target,
            "all": navs,
        }
        rows.append(row)
        rows.append({"name": f"T1   /api/runs?limit=100 alone, {n:,} runs", "gitexp": med(api)})
        rows.append(
            {
                "name": f"T1   click a header to re-sorted table, {n:,} runs",
                "gitexp": med(sorts),
                "all": sorts,
            }
        )
        log(f"T1 {n}: first {first:.2f} s, median {med(navs):.2f} s, sort {med(sorts):.2f} s")
        if ml is not None and n <= 10_000:
            uri, got, exp_id = mlflow_store(ml, n, cap)
            with mlflow_ui(uri) as murl:
                page = f"{murl}#/experiments/{exp_id}/runs"
                mfirst = br.navigate(page, ML_TABLE, ML_TIMEOUT_MS)
                mnavs = [br.navigate(page, ML_TABLE, ML_TIMEOUT_MS) for _ in range(ml_repeat)]
            row["mlflow"] = med(mnavs)
            row["mlflow_first"] = mfirst
            row["mlflow_runs"] = got
            log(f"T1 MLflow {got}: first {mfirst:.2f} s, median {med(mnavs):.2f} s")
    return rows


def t2_t3(br: Browser, runs: int, points: int, big: int, repeat: int) -> list[dict]:
    repo, big_addr = curves_repo(runs, points, big)
    rows = []
    with gx_ui(repo) as url:
        drawn = f"document.querySelector('.chart[data-series=\"{runs}\"]')"
        times = []
        for _ in range(repeat + 1):
            with br.page() as pg:
                pg.goto(url + "?experiment=curves")
                pg.wait_for_function(GX_TABLE, polling="raf", timeout=TIMEOUT_MS)
                times.append(mark_after(pg, "#select-all", "gitexp:curves", drawn))
        rows.append(
            {
                "name": f"T2 {runs} runs x {points:,} points: select to curves drawn",
                "gitexp": med(times[1:]),
                "first": times[0],
                "target": 1.0,
                "all": times,
            }
        )
        log(f"T2: first {times[0]:.2f} s, then {med(times[1:]):.2f} s")
    # a new server: the first look at the big run reads its points (then kept in memory)
    with gx_ui(repo) as url:
        page = url + "#run/" + big_addr.replace("/", "%2F")
        ready = READY.format(test="performance.getEntriesByName('gitexp:run-curves').length")
        first = br.navigate(page, ready)
        navs = [br.navigate(page, ready) for _ in range(repeat)]
        query = "api/metrics?runs=" + big_addr.replace("/", "%2F") + "&max_points=1000"
        warm = med([api_time(url + query)[0] for _ in range(repeat)])
    with gx_ui(repo) as url:  # and the API alone, in a new server again
        cold, size = api_time(url + query)
    rows.append(
        {
            "name": f"T3 a run of {big:,} points: run page to its curve drawn",
            "gitexp": med(navs),
            "first": first,
            "target": 1.0,
            "all": navs,
        }
    )
    rows.append({"name": f"T3   /api/metrics of it, first read ({size:,} bytes)", "gitexp": cold})
    rows.append({"name": "T3   /api/metrics of it, cached", "gitexp": warm})
    log(
        f"T3: page first {first:.2f} s, then {med(navs):.2f} s; "
        f"API first {cold:.2f} s, cached {warm:.3f} s"
    )
    return rows


def t4(br: Browser, n: int, repeat: int, tmp: Path) -> list[dict]:
    repo = report_repo(n)
    out = tmp / "report.html"
    cmd = ["git", "exp", "report", "-e", "report", "-o", str(out)]
    times = [whole(cmd, repo) for _ in range(repeat)]
    size = out.stat().st_size
    url = out.as_uri()
    table = [br.navigate(url, GX_TABLE) for _ in range(repeat)]
    curves = READY.format(test="performance.getEntriesByName('gitexp:curves').length")
    drawn = [br.navigate(url, curves) for _ in range(repeat)]
    log(f"T4: {med(times):.2f} s, {size / 1e6:.2f} MB; opened {med(table):.2f} s")
    return [
        {
            "name": f"T4 git exp report of {n:,} runs, whole process",
            "gitexp": med(times),
            "target": 3.0,
            "all": times,
        },
        {
            "name": f"T4   its size (MB; {n:,} runs x 3 series)",
            "gitexp": size / 1e6,
            "target": 5.0,
            "unit": "MB",
        },
        {"name": "T4   opened from file:// to its table", "gitexp": med(table)},
        {"name": "T4   opened from file:// to its curves drawn", "gitexp": med(drawn)},
    ]


# ---------------------------------------------------------------------- main


def show(rows: list[dict]) -> str:
    head = ["measure", "git-exp", "target", "met?", "mlflow ui", "git-exp/MLflow"]
    lines = [head]
    for r in rows:
        unit = r.get("unit", "s")
        g = r["gitexp"]
        t = r.get("target")
        m = r.get("mlflow")
        lines.append(
            [
                r["name"],
                f"{g:.3g} {unit}" + (f" (first {r['first']:.3g})" if "first" in r else ""),
                f"{t:g} {unit}" if t else "",
                ("yes" if g <= t else "NO") if t else "",
                (
                    f"{m:.3g} s (first {r['mlflow_first']:.3g}; {r['mlflow_runs']:,} runs)"
                    if m is not None
                    else ""
                ),
                f"{g / m:.3g}" if m else "",
            ]
        )
    widths = [max(len(x[i]) for x in lines) for i in range(len(head))]
    for x in lines:
        print("  ".join(c.ljust(widths[i]) for i, c in enumerate(x)).rstrip())
    md = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    md += ["| " + " | ".join(x) + " |" for x in lines[1:]]
    return "\n".join(md)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=None)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--quick", action="store_true", help="small sizes, no MLflow")
    ap.add_argument("--skip-mlflow", action="store_true")
    ap.add_argument("--only", default=None, metavar="T1,T2,...")
    ap.add_argument("--mlflow-create-cap", type=float, default=900.0, metavar="S")
    args = ap.parse_args()
    if shutil.which("git-exp") is None:
        print("git-exp is not on PATH: pip install -e . first", file=sys.stderr)
        return 2
    quick = args.quick
    sizes = args.sizes or ([1_000] if quick else [10_000, 100_000])
    curve_runs, curve_points, big = (20, 1_000, 1_000_000) if quick else (20, 10_000, 10_000_000)
    report_runs = 100 if quick else 1_000
    only = {w.strip().upper() for w in args.only.split(",")} if args.only else None

    def want(w: str) -> bool:
        return only is None or w in only

    ml = None
    version = "skipped"
    if not (args.skip_mlflow or quick) and want("T1"):
        version = MLflow.ensure()
        ml = MLflow()
    CACHE.mkdir(exist_ok=True)
    br = Browser()
    rows: list[dict] = []
    import tempfile

    failed = []
    try:
        with tempfile.TemporaryDirectory(prefix="gitexp-bench-ui-") as tmp:
            steps = [
                ("T1", lambda: t1(br, sizes, args.repeat, ml, args.mlflow_create_cap)),
                ("T2", lambda: t2_t3(br, curve_runs, curve_points, big, args.repeat)),
                ("T4", lambda: t4(br, report_runs, args.repeat, Path(tmp))),
            ]
            for name, step in steps:
                if want(name) or (name == "T2" and want("T3")):
                    try:
                        rows += step()
                    except Exception as exc:  # the other workloads still run
                        log(f"{name} failed: {exc!r}")
                        failed.append(name)
    finally:
        br.close()
    print()
    md = show(rows)
    info = machine()
    info["mlflow"] = version
    info["chromium"] = subprocess.run(
        [CHROMIUM, "--version"], capture_output=True, text=True
    ).stdout.strip()
    info["load"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    info["command"] = "python bench/bench_ui.py " + " ".join(sys.argv[1:])
    print()
    for k, v in info.items():
        print(f"{k}: {v}")
    if br.errors:
        print(f"page errors: {br.errors[:5]}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"ui-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"machine": info, "rows": rows, "markdown": md}, indent=2))
    print(f"\nfigures: {out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
