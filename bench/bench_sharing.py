"""Time ``git exp push`` and ``git exp pull`` of N runs (one small artifact each).

Two remotes: a local bare repository (artifact store inside it) and smart HTTP
(``git http-backend`` behind the test suite's ThreadingHTTPServer, artifact
store in a shared directory). Everything runs on 127.0.0.1 in a temp dir.

    python bench/bench_sharing.py            # 1,000 runs
    python bench/bench_sharing.py --runs 200
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from gitexp import records as fmt  # noqa: E402
from gitexp.records import ArtifactEntry  # noqa: E402
from gitexp.store import ExpStore  # noqa: E402
from servers import HTTPGit, _backend, _handler  # noqa: E402


def sh(*args: str, cwd: Path) -> str:
    return subprocess.run(args, cwd=cwd, check=True, capture_output=True, text=True).stdout


def timed(*args: str, cwd: Path) -> tuple[float, str]:
    start = time.perf_counter()
    out = sh(*args, cwd=cwd)
    return time.perf_counter() - start, out


def make_project(path: Path, runs: int) -> float:
    path.mkdir(parents=True)
    sh("git", "init", "-q", cwd=path)
    (path / "train.py").write_text("print('train')\n")
    sh("git", "add", ".", cwd=path)
    sh(
        "git",
        "-c",
        "user.name=Bench",
        "-c",
        "user.email=bench@example.com",
        "commit",
        "-q",
        "-m",
        "init",
        cwd=path,
    )
    start = time.perf_counter()
    with ExpStore(path) as store:
        head = store.repo.head()
        assert head is not None
        for i in range(runs):
            data = f"weights of run {i}\n".encode() * 8
            key = store.cas.put_bytes(data)
            entry = ArtifactEntry(path="model.bin", blake3=key, size=len(data))
            store.create(
                "bench",
                {"status": "finished", "start_time": fmt.iso(fmt.utc_now())},
                {"lr": 0.001 * i, "seed": i},
                {"commit": head, "head": head, "dirty": False},
                head,
                {},
                [entry],
            )
    return time.perf_counter() - start


def bench(name: str, url: str, project: Path, work: Path, store: str | None) -> dict[str, float]:
    sh("git", "remote", "add", name, url, cwd=project)
    if store:
        sh("git", "config", f"remote.{name}.expstore", store, cwd=project)
    t_push, _ = timed("git", "exp", "push", "-q", name, cwd=project)
    t_noop, _ = timed("git", "exp", "push", "-q", name, cwd=project)
    clone = work / f"clone-{name}"
    sh("git", "init", "-q", str(clone), cwd=work)
    sh("git", "remote", "add", "origin", url, cwd=clone)
    if store:
        sh("git", "config", "remote.origin.expstore", store, cwd=clone)
    t_pull, _ = timed("git", "exp", "pull", "-q", cwd=clone)
    runs = sh("git", "for-each-ref", "--format=x", "refs/experiments/", cwd=clone).count("x")
    objects = sum(len(files) for _, _, files in os.walk(clone / ".git" / "exp" / "objects"))
    t_noop_pull, _ = timed("git", "exp", "pull", "-q", cwd=clone)
    return {
        "push": t_push,
        "push (no-op)": t_noop,
        "pull": t_pull,
        "pull (no-op)": t_noop_pull,
        "runs pulled": runs,
        "objects pulled": objects,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=1000)
    args = parser.parse_args()
    os.environ.setdefault("GIT_AUTHOR_NAME", "Bench")
    os.environ.setdefault("GIT_AUTHOR_EMAIL", "bench@example.com")
    with tempfile.TemporaryDirectory(prefix="gitexp-bench-") as tmp:
        work = Path(tmp)
        project = work / "project"
        t_make = make_project(project, args.runs)
        print(f"created {args.runs} runs with one artifact each in {t_make:.2f} s")

        bare = work / "bare.git"
        sh("git", "init", "-q", "--bare", str(bare), cwd=work)
        results = {"local bare repo": bench("bare", str(bare), project, work, None)}

        base = work / "http"
        base.mkdir()
        sh("git", "init", "-q", "--bare", str(base / "runs.git"), cwd=work)
        state = HTTPGit(base, 0)
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state, _backend()))
        httpd.daemon_threads = True
        state.port = httpd.server_address[1]
        thread = threading.Thread(target=httpd.serve_forever, daemon=True)
        thread.start()
        try:
            results["smart HTTP"] = bench(
                "http", state.url("runs.git"), project, work, str(work / "http-store")
            )
        finally:
            httpd.shutdown()
            httpd.server_close()
        for remote, r in results.items():
            print(
                f"{remote:>16}: push {r['push']:.2f} s, no-op push {r['push (no-op)']:.2f} s, "
                f"pull {r['pull']:.2f} s, no-op pull {r['pull (no-op)']:.2f} s "
                f"({int(r['runs pulled'])} runs, {int(r['objects pulled'])} objects)"
            )


if __name__ == "__main__":
    main()
