"""Team scale (issue 18): push, pull and storage of 10,000 to 1,000,000 runs,
git-exp against plain git moving the very same refs, in the same run.

Runs are written with git plumbing (bench/scalegen.py: the objects `git exp run`
writes for a small run, one 200-byte artifact each), as loose objects or packed.
Every command is a whole process; each figure is wall seconds (the median of
``--repeat`` for the quick ones and ``--full`` for full pushes and pulls,
plain git and git-exp taking turns at going first, each after a ``sync``),
with CPU seconds (user+system, the process and
the git processes it waited for) and peak RSS where they say more than wall
time on a shared machine.

Sections (each can be skipped):

- **share** (``--sizes``, ``--layouts``, ``--transports``): the issue's table.
  For each size, layout and transport (a local bare repository, smart HTTP
  through `git http-backend`, ssh through sshd; the servers of tests/servers.py):
  push to an empty remote, push with nothing new, pull into an empty clone,
  pull with nothing new, the first `git exp log` after that pull. git-exp is
  timed twice: its *git half* (no artifact store: the refs and git objects,
  what plain git moves) and whole (artifacts to a directory store too). Plain
  git: `git push R 'refs/experiments/*:refs/experiments/*'` and `git fetch`
  likewise.
- **s3**: the artifact half against the moto S3 server: push and pull with an
  ``s3://`` artifact store.
- **disk**: runs recorded one by one through the API (``ExpStore.create``, as
  `git exp run` records them) with background packing, against the same runs
  packed by `git gc`.
- **big** (``--big``): 100,000 or 1,000,000 runs, packed, built by plumbing:
  log, show, push, pull, no-op pull, clone + pull, gc, disk use, peak memory.

    python bench/bench_scale.py                              # 10,000 runs, everything
    python bench/bench_scale.py --sizes 100000 --transports local --skip s3 disk
    python bench/bench_scale.py --only big --big 1000000 --no-artifacts
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "src"))

import scalegen  # noqa: E402
from benchlib import IDENTITY  # noqa: E402

# bytecode as an installed package has it (this machine's shells set
# PYTHONDONTWRITEBYTECODE, which would make every git-exp process compile itself)
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
ENV.update(IDENTITY)
ENV["GIT_TERMINAL_PROMPT"] = "0"
REFSPEC = "refs/experiments/*:refs/experiments/*"


@dataclass
class Took:
    wall: float
    cpu: float
    rss_mb: int
    out: str = ""

    def __str__(self) -> str:
        return f"{self.wall:.2f} s"


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True) -> Took:
    """One whole process, its wall seconds and output (setup steps)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        cwd=cwd,
        env={**ENV, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed in {cwd}: {err.decode()[-2000:]}")
    return Took(wall, 0.0, 0, out.decode("utf-8", "replace"))


_WRAP = (
    "import resource, subprocess, sys, time\n"
    "p = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)\n"
    "r = resource.getrusage(resource.RUSAGE_CHILDREN)\n"
    "sys.stderr.buffer.write(p.stderr[-4000:])\n"
    "print(r.ru_utime + r.ru_stime, r.ru_maxrss, p.returncode)\n"
)


def measure(
    cmd: list[str], cwd: Path, env: dict[str, str] | None = None, check: bool = True
) -> Took:
    """:func:`run` with CPU seconds and peak RSS (through a small wrapper process)."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", _WRAP, *cmd],
        cwd=cwd,
        env={**ENV, **(env or {})},
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    cpu, rss, code = proc.stdout.split()
    if check and int(code) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed in {cwd}: {proc.stderr[-2000:]}")
    return Took(wall, float(cpu), int(rss) // 1024, proc.stderr)


def settled(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> Took:
    """:func:`measure` once the disk has written what came before (``sync``, then a
    moment): otherwise a command pays for the previous one's 10,000 ref files."""
    os.sync()
    time.sleep(1.0)
    return measure(cmd, cwd, env)


def median(takes: list[Took]) -> Took:
    walls = sorted(takes, key=lambda t: t.wall)
    mid = walls[len(walls) // 2]
    return Took(
        statistics.median(t.wall for t in takes),
        statistics.median(t.cpu for t in takes),
        max(t.rss_mb for t in takes),
        mid.out,
    )


def du(path: Path) -> int:
    """Bytes on disk under ``path`` (blocks, as `du` counts them)."""
    total = 0
    for dirpath, _, files in os.walk(path):
        for f in files:
            with contextlib.suppress(FileNotFoundError):
                total += os.lstat(os.path.join(dirpath, f)).st_blocks * 512
    return total


def mb(n: int) -> str:
    return f"{n / 1e6:.0f} MB"


def git(*args: str, cwd: Path) -> str:
    return run(["git", *args], cwd).out


# ------------------------------------------------------------------ transports


class Transport:
    """Bare repositories behind one transport."""

    name = "local"

    def __init__(self, work: Path) -> None:
        self.base = work / f"remotes-{self.name}"
        self.base.mkdir(parents=True, exist_ok=True)
        self.env: dict[str, str] = {}

    def new(self, name: str) -> tuple[str, Path]:
        path = self.base / f"{name}.git"
        subprocess.run(["git", "init", "-q", "--bare", str(path)], check=True)
        return self.url(path), path

    def url(self, path: Path) -> str:
        return str(path)

    def close(self) -> None:
        pass


class HTTPTransport(Transport):
    name = "http"

    def __init__(self, work: Path) -> None:
        super().__init__(work)
        from servers import start_http

        self.state, self.httpd = start_http(self.base)

    def url(self, path: Path) -> str:
        return self.state.url(path.name)

    def close(self) -> None:
        from servers import stop_http

        stop_http(self.state, self.httpd)


class SSHTransport(Transport):
    name = "ssh"

    def __init__(self, work: Path) -> None:
        from servers import sshd_available, start_sshd

        if not sshd_available():
            raise RuntimeError("sshd is not available here (root and /usr/sbin/sshd needed)")
        keys = Path(tempfile.mkdtemp(prefix="sshd-", dir=work))
        self.server, self.proc = start_sshd(keys)
        self.base = self.server.base
        self.env = {"GIT_SSH_COMMAND": self.server.command}

    def url(self, path: Path) -> str:
        return f"ssh://root@127.0.0.1:{self.server.port}{path}"

    def close(self) -> None:
        from servers import stop

        stop(self.proc)


TRANSPORTS = {"local": Transport, "http": HTTPTransport, "ssh": SSHTransport}


# ------------------------------------------------------------------ projects


def build(work: Path, n: int, layout: str, artifacts: bool = True) -> tuple[Path, float]:
    """A project of ``n`` runs in ``layout``; (path, seconds to build)."""
    path = work / f"project-{n}-{layout}"
    if path.exists():
        return path, 0.0
    t0 = time.perf_counter()
    scalegen.make_project(str(path), n, layout, artifacts)
    return path, time.perf_counter() - t0


def fresh_clone(work: Path, name: str, url: str, store: str | None = None) -> Path:
    path = work / name
    if path.exists():
        shutil.rmtree(path)
    subprocess.run(["git", "init", "-q", str(path)], check=True)
    git("remote", "add", "origin", url, cwd=path)
    if store is not None:
        git("config", "remote.origin.expstore", store, cwd=path)
    return path


def add_remote(project: Path, name: str, url: str, store: str | None) -> None:
    with contextlib.suppress(RuntimeError):
        git("remote", "remove", name, cwd=project)
    git("remote", "add", name, url, cwd=project)
    if store is not None:
        git("config", f"remote.{name}.expstore", store, cwd=project)


def wait_for_gc(repo: Path, timeout: float = 3600) -> None:
    """Wait until no `git gc` runs in ``repo`` (background packing)."""
    end = time.monotonic() + timeout
    while (repo / ".git" / "gc.pid").exists() and time.monotonic() < end:
        time.sleep(0.5)


# --------------------------------------------------------------------- share


def share(
    work: Path, n: int, layout: str, transport: Transport, repeat: int, full: int = 1
) -> dict[str, Took]:
    """The issue's table for one size, layout and transport."""
    project, _ = build(work, n, layout)
    tag = f"{transport.name}-{n}-{layout}"
    env = transport.env
    r: dict[str, Took] = {}
    url_exp, bare_exp = transport.new(f"exp-{tag}")  # git-exp, no artifact store: the git half
    url_all, bare_all = transport.new(f"all-{tag}")  # git-exp with an artifact store
    url_git, bare_git = transport.new(f"git-{tag}")  # plain git
    store = str(work / f"store-{tag}")
    add_remote(project, f"exp-{tag}", url_exp, "none")  # no artifact store, even local
    add_remote(project, f"all-{tag}", url_all, store)
    add_remote(project, f"git-{tag}", url_git, None)

    # the full push and pull, `full` times each, plain git and git-exp in turn
    # (a fresh remote or clone each time): the disk of a shared machine makes
    # single figures wander by a factor of two
    pushes_git, pushes_exp = [], []
    for i in range(full):
        if i:
            for bare in (bare_exp, bare_git):
                shutil.rmtree(bare)
                subprocess.run(["git", "init", "-q", "--bare", str(bare)], check=True)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(project / ".git" / "exp" / "remotes" / f"exp-{tag}.synced")
        turn = [
            (pushes_git, ["git", "push", "-q", url_git, REFSPEC]),
            (pushes_exp, ["git", "exp", "push", "-q", f"exp-{tag}"]),
        ]
        for into, cmd in turn if i % 2 == 0 else turn[::-1]:
            into.append(settled(cmd, project, env))
    r["push plain"], r["push git-exp (git half)"] = median(pushes_git), median(pushes_exp)
    r["push git-exp (with artifacts)"] = measure(
        ["git", "exp", "push", "-q", f"all-{tag}"], project, env
    )
    noop_exp, noop_git = [], []
    for _ in range(repeat):
        noop_exp.append(measure(["git", "exp", "push", "-q", f"all-{tag}"], project, env))
        noop_git.append(measure(["git", "push", "-q", url_git, REFSPEC], project, env))
    r["no-op push plain"], r["no-op push git-exp"] = median(noop_git), median(noop_exp)

    pulls_git, pulls_exp = [], []
    for i in range(full):
        plain = fresh_clone(work, f"clone-git-{tag}", url_git)
        half = fresh_clone(work, f"clone-exp-{tag}", url_exp)
        turns = [
            (pulls_git, ["git", "fetch", "-q", "origin", REFSPEC], plain),
            (pulls_exp, ["git", "exp", "pull", "-q", "--no-artifacts"], half),
        ]
        for into, cmd, where in turns if i % 2 == 0 else turns[::-1]:
            into.append(settled(cmd, where, env))
    r["pull plain"], r["pull git-exp (git half)"] = median(pulls_git), median(pulls_exp)
    whole = fresh_clone(work, f"clone-all-{tag}", url_all, store)
    r["first log after pull --no-artifacts"] = measure(
        ["git", "exp", "log", "--limit", "20"], half, env
    )
    r["pull git-exp (with artifacts)"] = measure(["git", "exp", "pull", "-q"], whole, env)
    r["first log after pull"] = measure(["git", "exp", "log", "--limit", "20"], whole, env)
    r["first log, all rows"] = measure(["git", "exp", "log"], whole, env)
    noop_exp, noop_git = [], []
    for _ in range(repeat):
        noop_exp.append(measure(["git", "exp", "pull", "-q"], whole, env))
        noop_git.append(measure(["git", "fetch", "-q", "origin", REFSPEC], plain, env))
    r["no-op pull plain"], r["no-op pull git-exp"] = median(noop_git), median(noop_exp)
    got = int(run(["git", "for-each-ref", "--format=x", "refs/experiments/"], whole).out.count("x"))
    assert got == n, f"{got} runs pulled of {n}"
    for path in (plain, half, whole):
        shutil.rmtree(path)
    for path in (bare_exp, bare_all, bare_git, Path(store)):
        shutil.rmtree(path, ignore_errors=True)
    return r


def print_share(n: int, layout: str, transport: str, r: dict[str, Took]) -> None:
    def row(op: str, exp: Took, whole: Took | None, plain: Took) -> None:
        w = f"{whole.wall:8.2f}" if whole is not None else "       -"
        ratio = exp.wall / plain.wall if plain.wall else float("inf")
        print(
            f"  {op:<26}{exp.wall:9.2f}{w}{plain.wall:9.2f}{ratio:7.2f}x"
            f"   cpu {exp.cpu:6.2f} / {plain.cpu:6.2f} s   rss {exp.rss_mb} MB"
        )

    print(f"\n{n:,} runs, {layout} objects, {transport}:")
    print(f"  {'operation':<26}{'git-exp':>9}{'+artif.':>8}{'git':>9}{'ratio':>8}")
    row("push", r["push git-exp (git half)"], r["push git-exp (with artifacts)"], r["push plain"])
    row("push, nothing new", r["no-op push git-exp"], None, r["no-op push plain"])
    row(
        "pull into an empty clone",
        r["pull git-exp (git half)"],
        r["pull git-exp (with artifacts)"],
        r["pull plain"],
    )
    row("pull, nothing new", r["no-op pull git-exp"], None, r["no-op pull plain"])
    print(
        f"  first `git exp log --limit 20` after the pull: {r['first log after pull'].wall:.2f} s"
        f" (after `pull --no-artifacts`: {r['first log after pull --no-artifacts'].wall:.2f} s)"
        f"; then `git exp log` (all rows printed): {r['first log, all rows'].wall:.2f} s"
    )
    sys.stdout.flush()


def disk_of_layouts(work: Path, n: int) -> None:
    """The .git of the loose project, then the same packed by `git gc`."""
    loose, _ = build(work, n, "loose")
    copy = work / f"gc-{n}"
    if copy.exists():
        shutil.rmtree(copy)
    shutil.copytree(loose, copy, symlinks=True)
    before = du(copy / ".git" / "objects")
    cas = du(copy / ".git" / "exp" / "objects")
    took = measure(["git", "gc", "-q"], copy)
    after = du(copy / ".git" / "objects")
    print(
        f"\n{n:,} runs: git objects {mb(before)} loose ({before / n / 1e3:.1f} KB a run), "
        f"{mb(after)} after `git gc` ({took.wall:.1f} s); artifacts (CAS) {mb(cas)}"
    )
    shutil.rmtree(copy)


# ------------------------------------------------------------------------ s3


def s3_half(work: Path, n: int) -> None:
    """Artifacts to and from the moto S3 server (push, then pull into a clone)."""
    import logging

    from moto.server import ThreadedMotoServer

    from servers import S3_ENV, S3Server

    for k, v in S3_ENV.items():
        os.environ.setdefault(k, v)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    srv = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    srv.start()
    try:
        _, port = srv.get_host_and_port()
        s3 = S3Server(f"127.0.0.1:{port}")
        s3.make_bucket("bench-artifacts")
        store = s3.url("bench-artifacts", f"scale-{n}")
        project, _ = build(work, n, "packed")
        url, bare = Transport(work).new(f"s3-{n}")
        add_remote(project, f"s3-{n}", url, store)
        env = dict(S3_ENV)
        push = measure(["git", "exp", "push", "-q", f"s3-{n}"], project, env)
        noop = measure(["git", "exp", "push", "-q", f"s3-{n}"], project, env)
        clone = fresh_clone(work, f"clone-s3-{n}", url, store)
        pull = measure(["git", "exp", "pull", "-q"], clone, env)
        noop_pull = measure(["git", "exp", "pull", "-q"], clone, env)
        objects = sum(len(f) for _, _, f in os.walk(clone / ".git" / "exp" / "objects"))
        print(
            f"\nS3 (moto) artifact store, {n:,} runs of one artifact each: push {push.wall:.1f} s"
            f" ({n / push.wall:.0f} objects/s with the git half), push with nothing new "
            f"{noop.wall:.2f} s; pull into an empty clone {pull.wall:.1f} s ({objects} objects"
            f" verified), pull with nothing new {noop_pull.wall:.2f} s"
        )
        shutil.rmtree(clone)
        shutil.rmtree(bare)
    finally:
        srv.stop()


# ---------------------------------------------------------------------- disk


RECORD = r"""
import os, sys
import gitexp
n = int(sys.argv[1])
for i in range(n):
    with open("model.bin", "wb") as f:
        f.write((f"weights of run {i}\n".encode() * 16)[:200])
    with gitexp.start_run(experiment="disk", params={"lr": 0.001 * i, "seed": i}) as run:
        for step in range(10):
            run.log_metrics({"loss": 1 / (1 + step + i), "acc": step / 10}, step=step)
        run.log_artifact("model.bin")
"""


def _objects_on_disk(repo: Path) -> int:
    """Bytes of git objects, loose and packed (`git count-objects`: no walk of 80,000 files)."""
    out = run(["git", "count-objects", "-v"], repo).out
    fields = dict(line.split(": ") for line in out.strip().splitlines())
    return (int(fields["size"]) + int(fields["size-pack"])) * 1024


def disk(work: Path, n: int) -> None:
    """Runs recorded one by one through ``gitexp.start_run`` (loose objects,
    background packing on) against `git gc`:
    the most the objects took on disk while they were recorded, and at the end."""
    from benchlib import make_repo

    path = work / f"record-{n}"
    make_repo(str(path), {"train.py": "print('hi')\n", ".gitignore": "model.bin\n"})
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-c", RECORD, str(n)], cwd=path, env=ENV, stderr=subprocess.PIPE
    )
    peak = 0
    while proc.poll() is None:
        peak = max(peak, _objects_on_disk(path))
        time.sleep(1.0)
    took = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(proc.stderr.read().decode() if proc.stderr else "recording failed")
    wait_for_gc(path)
    final = _objects_on_disk(path)
    peak = max(peak, final)
    loose = int(run(["git", "count-objects", "-v"], path).out.split("count: ")[1].split()[0])
    packs = len(list((path / ".git" / "objects" / "pack").glob("*.pack")))
    copy = work / f"record-{n}-gc"
    shutil.copytree(path, copy, symlinks=True)
    gc = measure(["git", "gc", "-q", "--aggressive"], copy)
    packed = _objects_on_disk(copy)
    print(
        f"\n{n:,} runs recorded one by one through the API in {took:.0f} s, background "
        f"packing on: git objects at most {mb(peak)} on disk while recording "
        f"({peak / packed:.2f}x), {mb(final)} at the end ({packs} packs, {loose} loose "
        f"objects); the same packed by `git gc --aggressive` ({gc.wall:.1f} s): {mb(packed)}"
    )
    shutil.rmtree(copy)
    shutil.rmtree(path)


# ----------------------------------------------------------------------- big


def big(work: Path, n: int, artifacts: bool, repeat: int, gc: bool = True) -> None:
    """100,000 or 1,000,000 runs, packed: every command a team runs."""
    path = work / f"big-{n}"
    t0 = time.perf_counter()
    scalegen.make_project(str(path), n, "packed", artifacts)
    built = time.perf_counter() - t0
    size = du(path / ".git")
    print(
        f"\n{n:,} runs (packed{', one artifact each' if artifacts else ''}), built in "
        f"{built:.0f} s, .git {mb(size)}:"
    )

    def show(what: str, t: Took, base: Took | None = None) -> None:
        extra = f"   plain git {base.wall:.2f} s ({t.wall / base.wall:.2f}x)" if base else ""
        print(f"  {what:<44}{t.wall:8.2f} s  cpu {t.cpu:7.2f} s  rss {t.rss_mb:5} MB{extra}")
        sys.stdout.flush()

    base = measure(["git", "for-each-ref", "--format=%(objectname) %(refname)"], path)
    show("git for-each-ref (baseline)", base)
    show(
        "git exp log --limit 20 (first: builds the catalog)",
        measure(["git", "exp", "log", "--limit", "20"], path),
    )
    time.sleep(2.1)
    run(["git", "exp", "log", "--limit", "1"], path)
    show(
        "git exp log --limit 20 (warm)",
        median([measure(["git", "exp", "log", "--limit", "20"], path) for _ in range(repeat)]),
    )
    show("git exp log (all rows printed, warm)", measure(["git", "exp", "log"], path))
    rid = scalegen.run_id(n // 2)
    show("git exp show RUN-ID", measure(["git", "exp", "show", rid], path))
    local = Transport(work)
    url_exp, bare_exp = local.new(f"big-exp-{n}")
    url_git, bare_git = local.new(f"big-git-{n}")
    add_remote(path, "origin", url_exp, None)
    plain_push = measure(["git", "push", "-q", url_git, REFSPEC], path)
    show(
        "git exp push (local bare, artifacts inside)",
        measure(["git", "exp", "push", "-q", "origin"], path),
        plain_push,
    )
    show(
        "git exp push, nothing new",
        measure(["git", "exp", "push", "-q", "origin"], path),
        measure(["git", "push", "-q", url_git, REFSPEC], path),
    )
    plain = fresh_clone(work, f"big-clone-git-{n}", url_git)
    pulled = fresh_clone(work, f"big-clone-exp-{n}", url_exp)
    plain_fetch = measure(["git", "fetch", "-q", "origin", REFSPEC], plain)
    show(
        "git exp pull into an empty clone",
        measure(["git", "exp", "pull", "-q"], pulled),
        plain_fetch,
    )
    show(
        "git exp log --limit 20 after the pull",
        measure(["git", "exp", "log", "--limit", "20"], pulled),
    )
    show(
        "git exp pull, nothing new",
        median([measure(["git", "exp", "pull", "-q"], pulled) for _ in range(repeat)]),
        measure(["git", "fetch", "-q", "origin", REFSPEC], plain),
    )
    last_week = scalegen.run_id(n - 100)  # the last 100 runs: a partial pull by date
    since = (
        f"{last_week[:4]}-{last_week[4:6]}-{last_week[6:8]}T{last_week[9:11]}:"
        f"{last_week[11:13]}:{last_week[13:15]}"
    )
    part = fresh_clone(work, f"big-clone-part-{n}", url_exp)
    show(
        f"git exp pull --since (the last 100 runs of {n:,})",
        measure(["git", "exp", "pull", "-q", "--since", since], part),
    )
    cloned = work / f"big-exp-clone-{n}"
    show(
        "git exp clone URL (+ pull of every run)",
        measure(["git", "exp", "clone", "-q", url_exp, str(cloned)], work),
        measure(
            ["git", "clone", "-q", "--mirror", "--no-local", url_git, str(work / f"mirror-{n}")],
            work,
        ),
    )
    if gc:
        show(
            "git exp gc (every run read, then git gc)",
            measure(["git", "exp", "gc"], pulled),
            measure(["git", "gc", "-q"], plain),
        )
    print(
        f"  disk: .git of the clone {mb(du(pulled / '.git'))}, "
        f"of plain git's {mb(du(plain / '.git'))}"
    )
    for p in (plain, pulled, part, cloned, work / f"mirror-{n}", bare_exp, bare_git, path):
        shutil.rmtree(p, ignore_errors=True)


# ---------------------------------------------------------------------- main


@contextlib.contextmanager
def workdir(given: str | None) -> Iterator[Path]:
    if given:
        Path(given).mkdir(parents=True, exist_ok=True)
        yield Path(given)
        return
    with tempfile.TemporaryDirectory(prefix="gitexp-scale-", dir=os.environ.get("TMPDIR")) as t:
        yield Path(t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000])
    ap.add_argument("--layouts", nargs="+", default=["loose", "packed"])
    ap.add_argument("--transports", nargs="+", default=["local", "http", "ssh"])
    ap.add_argument("--big", type=int, nargs="*", default=[100_000])
    ap.add_argument("--no-artifacts", action="store_true", help="big: runs without artifacts")
    ap.add_argument("--no-gc", action="store_true", help="big: do not time git exp gc")
    ap.add_argument("--repeat", type=int, default=3, help="runs of each quick measurement")
    ap.add_argument("--full", type=int, default=3, help="runs of each full push and pull (medians)")
    ap.add_argument("--skip", nargs="*", default=[], choices=["share", "s3", "disk", "big"])
    ap.add_argument("--only", nargs="*", default=None, choices=["share", "s3", "disk", "big"])
    ap.add_argument("--disk-runs", type=int, default=10_000)
    ap.add_argument("--workdir", default=None, help="keep the repositories here")
    args = ap.parse_args()
    todo = set(args.only or ["share", "s3", "disk", "big"]) - set(args.skip)
    subprocess.run(["git", "exp", "-h"], env=ENV, capture_output=True, check=True)  # bytecode
    print(f"git {run(['git', '--version'], ROOT).out.split()[-1]}, load {os.getloadavg()[0]:.1f}")
    with workdir(args.workdir) as work:
        if "share" in todo:
            for n in args.sizes:
                for layout in args.layouts:
                    for name in args.transports:
                        transport = TRANSPORTS[name](work)
                        try:
                            r = share(work, n, layout, transport, args.repeat, args.full)
                        finally:
                            transport.close()
                        print_share(n, layout, name, r)
                disk_of_layouts(work, n)
        if "s3" in todo:
            s3_half(work, min(args.sizes))
        if "disk" in todo:
            disk(work, args.disk_runs)
        if "big" in todo:
            for n in args.big:
                big(work, n, not args.no_artifacts, args.repeat, gc=not args.no_gc)
        print(f"\nload at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
