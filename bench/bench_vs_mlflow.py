"""git-exp and MLflow side by side, on the workloads of issue 6, in one run.

Usage:
    python bench/bench_vs_mlflow.py             # full sizes (about 15 minutes, caches reused)
    python bench/bench_vs_mlflow.py --quick     # small sizes, a smoke run (about 1 minute)
    python bench/bench_vs_mlflow.py --skip-mlflow
    python bench/bench_vs_mlflow.py --prepare   # only build the W3 run caches

git-exp runs in this interpreter (and ``git exp``/``git-exp`` from PATH for the
whole-process figures). MLflow runs in its own virtualenv, ``bench/.mlflow-venv``,
which the script creates and fills with ``pip install mlflow`` on first use
(reused afterwards), through ``bench/mlflow_worker.py``; both of MLflow's local
backends are measured: SQLite (``sqlite:///``, its default) and the file store
(``file:``).

Workloads:
  W1  log throughput: 3 metrics x N steps, one call per point, and batched
      (git-exp: a numpy array per metric; MLflow: log_batch)
  W2  a run with 10 params, 3 metrics x 100 steps, one 1 KB artifact: median per run
  W3  a fresh process lists 1,000 / 10,000 runs with params and last metrics,
      sorted (git-exp: ``git exp log --sort=-acc``; MLflow: ``search_runs``).
      Runs are created once and cached in bench/.cache/<tool>-<size>/; MLflow's
      creation is capped (--mlflow-create-cap), and the table says how many it got.
  W4  the same 200 MB file logged in 5 runs: seconds per run and bytes on disk
  W5  ``git-exp --help`` vs ``mlflow --help``, whole process
  W6  a process logging a point every 1 ms is SIGKILLed at 2 s: points kept of
      points logged, and the run's status afterwards

Prints a table with git-exp/MLflow ratios; writes the figures as JSON to
bench/results/.
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
VENV = HERE / ".mlflow-venv"
CACHE = HERE / ".cache"
RESULTS = HERE / "results"
WORKER = HERE / "mlflow_worker.py"
BACKENDS = ("sqlite", "file")

GIT_ENV = {
    "GIT_AUTHOR_NAME": "bench",
    "GIT_AUTHOR_EMAIL": "bench@example.com",
    "GIT_COMMITTER_NAME": "bench",
    "GIT_COMMITTER_EMAIL": "bench@example.com",
}
MLFLOW_ENV = {
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
    "MLFLOW_ALLOW_FILE_STORE": "true",  # MLflow 3 refuses the file store without it
    "GIT_PYTHON_REFRESH": "quiet",
}


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------- machinery


def make_repo(path: Path) -> None:
    """A git repository with one commit (what a training project looks like)."""
    path.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **GIT_ENV}
    subprocess.run(["git", "init", "-q", str(path)], check=True, env=env)
    (path / "train.py").write_text("print('hi')\n")
    (path / ".gitignore").write_text("*.bin\nmlruns/\n*.db\n")
    subprocess.run(["git", "add", "."], cwd=path, check=True, env=env)
    subprocess.run(["git", "commit", "-qm", "init"], cwd=path, check=True, env=env)


def disk_usage(path: Path) -> int:
    """Bytes allocated on disk under path (st_blocks, as du counts)."""
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_blocks * 512
            except OSError:
                pass
    return total


def timed(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None) -> float:
    """Wall time of a whole process (its output discarded); raises if it fails."""
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} failed: {proc.stderr.decode()[-2000:]}")
    return dt


class MLflow:
    """Drives bench/mlflow_worker.py in the MLflow virtualenv."""

    def __init__(self) -> None:
        self.python = str(VENV / "bin" / "python")
        self.env = {**os.environ, **MLFLOW_ENV}

    @staticmethod
    def ensure() -> str:
        """Create bench/.mlflow-venv with mlflow in it, unless it is there; its version."""
        py = VENV / "bin" / "python"
        probe = [str(py), "-c", "import mlflow; print(mlflow.__version__)"]
        if py.exists():
            proc = subprocess.run(probe, capture_output=True, text=True)
            if proc.returncode == 0:
                return proc.stdout.strip()
        log(f"creating {VENV} and installing mlflow from PyPI (once; it is big)")
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run([str(py), "-m", "pip", "install", "--quiet", "mlflow"], check=True)
        return subprocess.run(probe, capture_output=True, text=True, check=True).stdout.strip()

    def call(self, mode: str, cwd: Path | None = None, **args: Any) -> dict[str, Any]:
        """Run one worker mode; ``cwd`` is where a sqlite store puts its artifacts."""
        proc = subprocess.run(
            [self.python, str(WORKER), mode, json.dumps(args)],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=cwd,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"mlflow worker {mode} failed: {proc.stderr[-3000:]}")
        return json.loads(proc.stdout.strip().splitlines()[-1])

    def cmd(self, mode: str, **args: Any) -> list[str]:
        return [self.python, str(WORKER), mode, json.dumps(args)]


def uri_for(backend: str, root: Path) -> str:
    root.mkdir(parents=True, exist_ok=True)
    if backend == "sqlite":
        return f"sqlite:///{root / 'mlflow.db'}"
    return (root / "mlruns").as_uri()


# ---------------------------------------------------------------- git-exp


def gx_w1(gitexp: Any, repo: Path, steps: int) -> dict[str, float]:
    import numpy as np

    keys = ("loss", "acc", "lr")
    run = gitexp.start_run(experiment="w1", repo=repo)
    t0 = time.perf_counter()
    for step in range(steps):
        v = 1.0 / (step + 1)
        for k in keys:
            run.log_metric(k, v, step=step)
    per_call = time.perf_counter() - t0
    t0 = time.perf_counter()
    run.finish()
    finish_per_call = time.perf_counter() - t0
    run = gitexp.start_run(experiment="w1", repo=repo)
    arr = 1.0 / (np.arange(steps, dtype=np.float64) + 1)
    t0 = time.perf_counter()
    for k in keys:
        run.log_metric(k, arr, step=0)
    batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    run.finish()
    finish_batched = time.perf_counter() - t0
    # a bigger batch shows the ceiling of the batched path
    big = np.random.default_rng(0).random(10_000_000 if steps >= 10_000 else 1_000_000)
    run = gitexp.start_run(experiment="w1", repo=repo)
    t0 = time.perf_counter()
    run.log_metric("big", big)
    big_s = time.perf_counter() - t0
    run.finish()
    big_total_s = time.perf_counter() - t0
    # the median of single calls, in microseconds
    run = gitexp.start_run(experiment="w1", repo=repo)
    samples = []
    for _ in range(5):
        n = 100_000
        t0 = time.perf_counter_ns()
        for i in range(n):
            run.log_metric("loss", 0.5, step=i)
        samples.append((time.perf_counter_ns() - t0) / n / 1000)
    run.finish()
    points = 3 * steps
    return {
        "per_call_pps": points / per_call,
        "per_call_points": points,
        "per_call_finish_s": finish_per_call,
        "batched_pps": points / batched,
        "batched_finish_s": finish_batched,
        "batched_pps_incl_finish": points / (batched + finish_batched),
        "big_batch_pps": len(big) / big_s,
        "big_batch_pps_incl_finish": len(big) / big_total_s,
        "big_batch_points": len(big),
        "call_us": statistics.median(samples),
    }


def gx_w2(gitexp: Any, repo: Path, artifact: Path, n: int) -> dict[str, float]:
    times = []
    for i in range(n):
        t0 = time.perf_counter()
        with gitexp.start_run(
            experiment="w2", repo=repo, params={f"p{j}": j * i for j in range(10)}
        ) as run:
            for step in range(100):
                run.log_metrics({"loss": 1 / (step + 1), "acc": step / 100, "lr": 0.1}, step=step)
            run.log_artifact(str(artifact))
        times.append(time.perf_counter() - t0)
    return {"median_ms": statistics.median(times) * 1000, "runs": n}


def gx_w3_repo(gitexp: Any, size: int) -> Path:
    """bench/.cache/gitexp-<size>: a repository with ``size`` runs (made once)."""
    repo = CACHE / f"gitexp-{size}"
    done = repo / ".bench-done"
    if done.exists():
        return repo
    if not (repo / ".git").exists():
        make_repo(repo)
    existing = len(
        subprocess.run(
            ["git", "for-each-ref", "refs/experiments/"],
            cwd=repo,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
    )
    log(f"git-exp: creating {size - existing} runs in {repo}")
    t0 = time.perf_counter()
    for i in range(existing, size):
        with gitexp.start_run(
            experiment="w3", repo=repo, params={"lr": i / size, "seed": i}
        ) as run:
            run.log_metrics({"loss": 1 / (i + 1), "acc": i / size}, step=0)
    took = time.perf_counter() - t0
    log(f"git-exp: created in {took:.0f} s")
    done.write_text(json.dumps({"runs": size, "seconds": took}))
    return repo


def gx_w3(gitexp: Any, size: int) -> dict[str, float]:
    repo = gx_w3_repo(gitexp, size)
    cmd = ["git", "exp", "log", "--sort=-acc"]
    # "first call": no catalog yet, as in a fresh clone that fetched the runs
    shutil.rmtree(repo / ".git" / "exp" / "catalog", ignore_errors=True)
    first = timed(cmd, cwd=repo)
    warm = min(timed(cmd, cwd=repo) for _ in range(3))
    try:
        built = json.loads((repo / ".bench-done").read_text())
        per_run = built["seconds"] / built["runs"]
    except (ValueError, KeyError, TypeError):
        per_run = None
    return {"first_s": first, "warm_s": warm, "runs": size, "create_s_per_run": per_run}


def gx_w4(gitexp: Any, repo: Path, big: Path, n: int) -> dict[str, Any]:
    before = disk_usage(repo / ".git")
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        with gitexp.start_run(experiment="w4", repo=repo) as run:
            run.log_artifact(str(big))
        times.append(time.perf_counter() - t0)
    return {"times": times, "bytes": disk_usage(repo / ".git") - before}


W6_CHILD = textwrap.dedent(
    """
    import mmap, sys, time
    import gitexp
    repo, counter, run_file = sys.argv[1:4]
    with open(counter, "r+b") as f:
        shared = mmap.mmap(f.fileno(), 8)
    run = gitexp.start_run(experiment="w6", repo=repo)
    with open(run_file, "w") as f:
        f.write(run.id)
    i = 0
    while True:
        run.log_metric("x", float(i), step=i)
        i += 1
        shared[:8] = i.to_bytes(8, "little")
        time.sleep(0.001)
    """
)


def kill_at(
    cmd: list[str], counter: Path, run_file: Path, seconds: float, env: dict[str, str] | None = None
) -> int:
    """Start cmd, SIGKILL it ``seconds`` after its run exists; points it logged."""
    counter.write_bytes(b"\0" * 8)
    run_file.unlink(missing_ok=True)
    proc = subprocess.Popen(
        cmd, env=env, cwd=counter.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    deadline = time.monotonic() + 120
    while not (run_file.exists() and run_file.read_text()):
        if proc.poll() is not None:
            raise RuntimeError(f"W6 child died: {proc.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("W6 child never started its run")
        time.sleep(0.005)
    time.sleep(seconds)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with open(counter, "r+b") as f:
        shared = mmap.mmap(f.fileno(), 8)
        return int.from_bytes(shared[:8], "little")


def gx_w6(repo: Path, tmp: Path) -> dict[str, Any]:
    counter, run_file = tmp / "gx-counter", tmp / "gx-run"
    logged = kill_at(
        [sys.executable, "-c", W6_CHILD, str(repo), str(counter), str(run_file)],
        counter,
        run_file,
        2.0,
    )
    run_id = run_file.read_text()
    # a fresh process reads it back, the way a user would
    out = subprocess.run(
        ["git", "exp", "show", "--json", run_id], cwd=repo, capture_output=True, text=True
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr)
    data = json.loads(out.stdout)
    kept = _gx_count(repo, run_id)
    return {"logged": logged, "kept": kept, "status": data["info"]["status"]}


def _gx_count(repo: Path, run_id: str) -> int:
    from gitexp.store import ExpStore

    with ExpStore(repo) as store:
        rec = store.read_settled(run_id)
        return int(store.read_metrics(rec).num_rows)


# ------------------------------------------------------------------ MLflow


def ml_w3(ml: MLflow, backend: str, size: int, cap_s: float) -> dict[str, Any]:
    root = CACHE / f"mlflow-{backend}-{size}"
    state = root / "state.json"
    uri = uri_for(backend, root)
    info = json.loads(state.read_text()) if state.exists() else {"created": 0, "seconds": 0.0}
    if info["created"] < size and info["seconds"] < cap_s:
        log(
            f"MLflow {backend}: creating up to {size - info['created']} runs "
            f"(cap {cap_s - info['seconds']:.0f} s)"
        )
        got = ml.call(
            "w3_create",
            cwd=root,
            uri=uri,
            start=info["created"],
            n=size,
            total=size,
            cap_s=cap_s - info["seconds"],
        )
        info = {"created": got["created"], "seconds": info["seconds"] + got["seconds"]}
        state.write_text(json.dumps(info))
        log(f"MLflow {backend}: {info['created']} runs in {info['seconds']:.0f} s")
    cmd = ml.cmd("w3_query", uri=uri)
    first = timed(cmd, env=ml.env)
    # slow listings are repeated once, not twice: the figure is the same
    warm = min(timed(cmd, env=ml.env) for _ in range(1 if first > 10 else 2))
    return {
        "first_s": first,
        "warm_s": warm,
        "runs": info["created"],
        "create_s_per_run": info["seconds"] / max(1, info["created"]),
    }


def ml_w6(ml: MLflow, uri: str, tmp: Path) -> dict[str, Any]:
    counter, run_file = tmp / "ml-counter", tmp / "ml-run"
    logged = kill_at(
        ml.cmd("w6_child", uri=uri, counter=str(counter), run_file=str(run_file)),
        counter,
        run_file,
        2.0,
        env=ml.env,
    )
    got = ml.call("w6_count", cwd=tmp, uri=uri, run_id=run_file.read_text())
    return {"logged": logged, "kept": got["kept"], "status": got["status"]}


# ------------------------------------------------------------------- table


def fmt_num(v: float | None, unit: str) -> str:
    if v is None:
        return "-"
    if unit == "points/s":
        return f"{v:,.0f}"
    if unit in ("ms", "s"):
        return f"{v:,.3g}" if v < 100 else f"{v:,.0f}"
    if unit == "MB":
        return f"{v:,.0f}"
    return f"{v:,.3g}"


def ratio(g: float | None, m: float | None) -> str:
    if g is None or m is None or m == 0:
        return "-"
    r = g / m
    return f"{r:,.3g}" if r < 1000 else f"{r:,.0f}"


def print_table(rows: list[dict[str, Any]]) -> str:
    head = [
        "workload",
        "unit",
        "git-exp",
        "MLflow sqlite",
        "MLflow file",
        "git-exp/sqlite",
        "git-exp/file",
        "better",
    ]
    lines = [head]
    for r in rows:
        g, s, f = r.get("gitexp"), r.get("sqlite"), r.get("file")
        cell = r.get("text") or {}
        lines.append(
            [
                r["name"],
                r["unit"],
                cell.get("gitexp") or fmt_num(g, r["unit"]),
                cell.get("sqlite") or fmt_num(s, r["unit"]),
                cell.get("file") or fmt_num(f, r["unit"]),
                ratio(g, s) if not cell else "-",
                ratio(g, f) if not cell else "-",
                r.get("better", ""),
            ]
        )
    widths = [max(len(str(x[i])) for x in lines) for i in range(len(head))]
    md = ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"]
    md += ["| " + " | ".join(str(c) for c in x) + " |" for x in lines[1:]]
    for x in lines:
        print("  ".join(str(c).ljust(widths[i]) for i, c in enumerate(x)).rstrip())
    return "\n".join(md)


def machine() -> dict[str, str]:
    cpu = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    git = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "nproc": str(os.cpu_count()),
        "memory": mem,
        "cpu": cpu,
        "python": platform.python_version(),
        "git": git,
        "os": platform.platform(),
    }


# -------------------------------------------------------------------- main


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    ap.add_argument("--skip-mlflow", action="store_true", help="measure git-exp only")
    ap.add_argument("--prepare", action="store_true", help="only build the W3 caches")
    ap.add_argument(
        "--mlflow-create-cap",
        type=float,
        default=None,
        metavar="S",
        help="seconds MLflow may spend creating the runs of one W3 store "
        "[default: 600; --quick: 30]",
    )
    ap.add_argument("--only", default=None, metavar="W1,W3,...", help="run only these workloads")
    args = ap.parse_args()

    steps = 1_000 if args.quick else 10_000
    w2_runs = (10, 3) if args.quick else (30, 10)  # git-exp, MLflow
    sizes = [100, 300] if args.quick else [1_000, 10_000]
    big_mb = 20 if args.quick else 200
    cap = args.mlflow_create_cap or (30.0 if args.quick else 600.0)
    only = {w.strip().upper() for w in args.only.split(",")} if args.only else None

    def want(w: str) -> bool:
        return only is None or w in only

    if shutil.which("git-exp") is None:
        print("git-exp is not on PATH: pip install -e . first", file=sys.stderr)
        return 2
    import gitexp

    ml: MLflow | None = None
    mlflow_version = None
    if not args.skip_mlflow:
        mlflow_version = MLflow.ensure()
        ml = MLflow()
    CACHE.mkdir(exist_ok=True)
    if args.prepare:
        for size in sizes:
            gx_w3_repo(gitexp, size)
            if ml:
                for b in BACKENDS:
                    ml_w3(ml, b, size, cap)
        return 0

    rows: list[dict[str, Any]] = []
    raw: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="gitexp-bench-") as tmpdir:
        tmp = Path(tmpdir)
        repo = tmp / "repo"
        make_repo(repo)

        if want("W1"):
            log("W1: log throughput")
            g = gx_w1(gitexp, repo, steps)
            m = {}
            if ml:
                for b in BACKENDS:
                    root = tmp / f"ml-w1-{b}"
                    m[b] = ml.call(
                        "w1",
                        cwd=root,
                        uri=uri_for(b, root),
                        steps=steps,
                        cap_s=10.0 if args.quick else 30.0,
                    )
            raw["W1"] = {"gitexp": g, **m}
            rows.append(
                {
                    "name": f"W1 log_metric, one call per point (3 x {steps:,})",
                    "unit": "points/s",
                    "gitexp": g["per_call_pps"],
                    **{b: m[b]["per_call_pps"] for b in m},
                    "better": "higher",
                }
            )
            rows.append(
                {
                    "name": f"W1 batched (3 x {steps:,}; numpy / log_batch)",
                    "unit": "points/s",
                    "gitexp": g["batched_pps"],
                    **{b: m[b]["batched_pps"] for b in m},
                    "better": "higher",
                }
            )
            rows.append(
                {
                    "name": "W1 batched, including finish()/end of run",
                    "unit": "points/s",
                    "gitexp": g["batched_pps_incl_finish"],
                    "better": "higher",
                }
            )
            rows.append(
                {
                    "name": f"W1 one numpy call of {g['big_batch_points']:,} points",
                    "unit": "points/s",
                    "gitexp": g["big_batch_pps"],
                    "better": "higher",
                }
            )
            rows.append(
                {
                    "name": "W1 ... the same, including finish()",
                    "unit": "points/s",
                    "gitexp": g["big_batch_pps_incl_finish"],
                    "better": "higher",
                }
            )
            rows.append(
                {
                    "name": "W1 log_metric median per call",
                    "unit": "us",
                    "gitexp": g["call_us"],
                    **{b: 1e6 / m[b]["per_call_pps"] for b in m},
                    "better": "lower",
                }
            )

        if want("W2"):
            log("W2: run create/finish")
            art = tmp / "artifact.bin"
            art.write_bytes(os.urandom(1024))
            g = gx_w2(gitexp, repo, art, w2_runs[0])
            m = {}
            if ml:
                for b in BACKENDS:
                    root = tmp / f"ml-w2-{b}"
                    m[b] = ml.call(
                        "w2", cwd=root, uri=uri_for(b, root), n=w2_runs[1], artifact=str(art)
                    )
            raw["W2"] = {"gitexp": g, **m}
            rows.append(
                {
                    "name": "W2 run: 10 params, 3x100 metrics, 1 KB artifact",
                    "unit": "ms",
                    "gitexp": g["median_ms"],
                    **{b: m[b]["median_ms"] for b in m},
                    "better": "lower",
                }
            )

        if want("W3"):
            for size in sizes:
                log(f"W3: listing {size} runs")
                g = gx_w3(gitexp, size)
                m = {b: ml_w3(ml, b, size, cap) for b in BACKENDS} if ml else {}
                raw[f"W3-{size}"] = {"gitexp": g, **m}
                text = {}
                for b in m:
                    if m[b]["runs"] < size:
                        text[b] = f"{m[b]['warm_s']:.3g} ({m[b]['runs']:,} runs, capped)"
                rows.append(
                    {
                        "name": f"W3 list {size:,} runs, sorted, fresh process (warm)",
                        "unit": "s",
                        "gitexp": g["warm_s"],
                        **{b: m[b]["warm_s"] for b in m},
                        "better": "lower",
                        **({"text": {**text, "gitexp": f"{g['warm_s']:.3g}"}} if text else {}),
                    }
                )
                rows.append(
                    {
                        "name": f"W3 list {size:,} runs, first call (no catalog yet)",
                        "unit": "s",
                        "gitexp": g["first_s"],
                        **{b: m[b]["first_s"] for b in m},
                        "better": "lower",
                        **(
                            {
                                "text": {
                                    b: f"{m[b]['first_s']:.3g} ({m[b]['runs']:,} runs)"
                                    for b in text
                                }
                                | {"gitexp": f"{g['first_s']:.3g}"}
                            }
                            if text
                            else {}
                        ),
                    }
                )
                per_run = g["create_s_per_run"]
                rows.append(
                    {
                        "name": f"W3 creating those {size:,} runs, per run (cache build)",
                        "unit": "ms",
                        "gitexp": per_run * 1000 if per_run else None,
                        **{b: m[b]["create_s_per_run"] * 1000 for b in m},
                        "better": "lower",
                    }
                )

        if want("W4"):
            log(f"W4: the same {big_mb} MB file in 5 runs")
            big = tmp / "big.bin"
            with open(big, "wb") as f:
                for _ in range(big_mb):
                    f.write(os.urandom(1 << 20))
            g = gx_w4(gitexp, repo, big, 5)
            m = {}
            if ml:
                for b in BACKENDS:
                    root = tmp / f"ml-w4-{b}"
                    # cwd=root: a sqlite store puts its artifacts in ./mlruns of its cwd
                    got = ml.call("w4", cwd=root, uri=uri_for(b, root), path=str(big), n=5)
                    m[b] = {"times": got["times"], "bytes": disk_usage(root)}
            raw["W4"] = {"gitexp": g, **m}
            rows.append(
                {
                    "name": f"W4 {big_mb} MB artifact, first run",
                    "unit": "s",
                    "gitexp": g["times"][0],
                    **{b: m[b]["times"][0] for b in m},
                    "better": "lower",
                }
            )
            rows.append(
                {
                    "name": f"W4 {big_mb} MB artifact, runs 2-5 (median)",
                    "unit": "s",
                    "gitexp": statistics.median(g["times"][1:]),
                    **{b: statistics.median(m[b]["times"][1:]) for b in m},
                    "better": "lower",
                }
            )
            rows.append(
                {
                    "name": "W4 bytes on disk after 5 runs",
                    "unit": "MB",
                    "gitexp": g["bytes"] / 1e6,
                    **{b: m[b]["bytes"] / 1e6 for b in m},
                    "better": "lower",
                }
            )

        if want("W5"):
            log("W5: CLI start-up")
            g = statistics.median(timed(["git-exp", "--help"]) for _ in range(7))
            g2 = statistics.median(timed(["git", "exp", "-h"]) for _ in range(5))
            m = {}
            if ml:
                mlbin = str(VENV / "bin" / "mlflow")
                t = statistics.median(timed([mlbin, "--help"], env=ml.env) for _ in range(3))
                m = {"sqlite": t, "file": t}
            raw["W5"] = {"gitexp": g, "git_exp_h": g2, **m}
            rows.append(
                {
                    "name": "W5 TOOL --help, whole process",
                    "unit": "ms",
                    "gitexp": g * 1000,
                    **{b: m[b] * 1000 for b in m},
                    "better": "lower",
                }
            )
            rows.append(
                {
                    "name": "W5 git exp -h (through git)",
                    "unit": "ms",
                    "gitexp": g2 * 1000,
                    "better": "lower",
                }
            )

        if want("W6"):
            log("W6: SIGKILL at 2 s")
            g = gx_w6(repo, tmp)
            m = {b: ml_w6(ml, uri_for(b, tmp / f"ml-w6-{b}"), tmp) for b in BACKENDS} if ml else {}
            raw["W6"] = {"gitexp": g, **m}

            def kept(x: dict[str, Any]) -> str:
                return f"{x['kept']:,}/{x['logged']:,} kept, {x['status']}"

            rows.append(
                {
                    "name": "W6 SIGKILL 2 s into a run logging every 1 ms",
                    "unit": "points",
                    "gitexp": g["kept"] / max(1, g["logged"]),
                    **{b: m[b]["kept"] / max(1, m[b]["logged"]) for b in m},
                    "text": {"gitexp": kept(g), **{b: kept(m[b]) for b in m}},
                    "better": "",
                }
            )

    print()
    md = print_table(rows)
    info = machine()
    info["mlflow"] = mlflow_version or "skipped"
    info["command"] = "python bench/bench_vs_mlflow.py " + " ".join(sys.argv[1:])
    print()
    for k, v in info.items():
        print(f"{k}: {v}")
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"vs_mlflow-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps({"machine": info, "raw": raw, "markdown": md}, indent=2))
    print(f"\nfigures: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
