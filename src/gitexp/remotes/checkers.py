"""Helper processes that check part of a large fetch's runs, on the other cores.

Every run a pull takes is read whole and checked first (:func:`namespaces.
check_runs`): for 10,000 runs that is about a second of Python, as long again
as git needs to fetch them. A fetch that brings many runs starts helpers
before it downloads anything (their start-up overlaps the download); once
the objects are here each helper checks a share of the runs while this
process checks its own, and hands back what :func:`namespaces.check_batch`
found: the same records, the same refusals.

A helper is this interpreter running :func:`serve` on GIT_DIR: run names on
stdin (``<sha> <ref>`` lines), one pickled :class:`namespaces.Checked` per
batch on stdout (an 8-byte length first),
which goes to an unnamed temporary file so that a helper never waits for
this process to read. Helpers are trusted as this process is (same user,
same interpreter); anything they do not answer for (one died, its output
broke off) is checked here after all, so a helper can only make a pull faster.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from typing import IO, Any

from gitexp.git import GitRepo

HELP_FROM = 3000  # runs to check before a helper pays (one costs ~0.2 s of a core to start)
MAX_HELPERS = 3
_LEN = 8
_SERVE = "import sys; from gitexp.remotes.checkers import serve; serve(sys.argv[1])"


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def helpers_for(runs: int) -> int:
    """How many helpers to start for checking ``runs`` runs (0: none).

    ``GITEXP_CHECK_HELPERS=N`` sets the number (0: none) for any fetch of more
    than N runs, whatever the cores (for tests and measurements)."""
    forced = os.environ.get("GITEXP_CHECK_HELPERS", "").strip()
    if forced.isdigit():
        return min(int(forced), MAX_HELPERS, max(runs - 1, 0))
    return max(0, min(_cpus() - 1, MAX_HELPERS, runs // HELP_FROM))


class CheckHelpers:
    """Helper processes, started early, waiting for their share of the runs."""

    def __init__(self, repo: GitRepo, count: int) -> None:
        from gitexp.git.transport import _die_with_parent

        self.procs: list[tuple[subprocess.Popen[bytes], IO[bytes]]] = []
        self.shares: list[list[tuple[str, str]]] = []
        path = repo.git_dir
        for _ in range(count):
            out = tempfile.TemporaryFile(prefix="gitexp-check-")
            try:
                proc = subprocess.Popen(
                    [sys.executable, "-c", _SERVE, path],
                    stdin=subprocess.PIPE,
                    stdout=out,
                    stderr=subprocess.DEVNULL,
                    preexec_fn=_die_with_parent,
                )
            except OSError:
                out.close()
                break  # fewer helpers, or none: this process checks the rest
            self.procs.append((proc, out))

    @classmethod
    def start(cls, repo: GitRepo, runs: int) -> CheckHelpers | None:
        """Helpers for checking ``runs`` runs, or None when one process does better."""
        count = helpers_for(runs)
        if not count:
            return None
        helpers = cls(repo, count)
        return helpers if helpers.procs else None

    def share(
        self, items: Sequence[tuple[str, str]]
    ) -> tuple[Sequence[tuple[str, str]], list[tuple[str, str]]]:
        """Give each helper its share of ``items`` (ref, sha); return (this
        process's share, the helpers' shares together)."""
        parts = len(self.procs) + 1
        size = -(-len(items) // parts)
        mine = items[:size]
        theirs: list[tuple[str, str]] = []
        for k, (proc, _) in enumerate(self.procs):
            part = list(items[size * (k + 1) : size * (k + 2)])
            self.shares.append(part)
            theirs += part
            assert proc.stdin is not None
            try:
                proc.stdin.write("".join(f"{sha} {ref}\n" for ref, sha in part).encode())
                proc.stdin.close()
            except OSError:
                pass  # it died: its share is checked here
        return mine, theirs

    def results(self) -> Iterator[Any]:
        """What each helper found (``Checked``, one per batch), once it is done."""
        for proc, out in self.procs:
            if proc.wait() != 0:
                continue
            out.seek(0)
            while True:
                head = out.read(_LEN)
                if len(head) != _LEN:
                    break
                body = out.read(int.from_bytes(head, "big"))
                try:
                    yield pickle.loads(body)
                except Exception:
                    break

    def close(self) -> None:
        """Stop every helper still running; drop their output."""
        for proc, out in self.procs:
            if proc.poll() is None:
                with contextlib.suppress(OSError):
                    proc.kill()
                proc.wait()
            if proc.stdin is not None:
                with contextlib.suppress(OSError):
                    proc.stdin.close()
            out.close()
        self.procs = []

    def __enter__(self) -> CheckHelpers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def serve(git_dir: str) -> None:
    """A helper's work: check the runs named on stdin, answer on stdout."""
    from gitexp.catalog import warm_imports
    from gitexp.remotes.namespaces import CHECK_BATCH, check_batch

    warm_imports()  # while the fetch downloads: the catalog rows are made here, as Arrow columns

    repo = GitRepo(git_dir)
    items = []
    for line in sys.stdin.buffer.read().decode().splitlines():
        sha, _, ref = line.partition(" ")
        items.append((ref, sha))
    out = sys.stdout.buffer
    parsed: dict[tuple[str, str], Any] = {}
    with repo.cat_session():
        for start in range(0, len(items), CHECK_BATCH):
            got = check_batch(repo, items[start : start + CHECK_BATCH], parsed)
            blob = pickle.dumps(got, pickle.HIGHEST_PROTOCOL)
            out.write(len(blob).to_bytes(_LEN, "big") + blob)
    out.flush()
