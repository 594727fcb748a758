"""Background packing: ``git gc --auto`` once loose objects pile up.

Runs are written as loose objects (never one pack per run); 10,000 small runs
are 80,000 loose files, about six times the disk of the same objects packed.
Like git itself after a commit or a fetch, git-exp looks, after it recorded a
run or fetched some, whether the repository holds more loose objects than a
threshold, or more packs than another, and if so starts ``git gc --auto`` in
the background: in its own session, its output discarded, never waited for.

Why this is safe beside live writers and readers: ``git gc --auto`` packs
only loose objects reachable from refs (a run's objects not yet on its ref
stay loose), deletes a loose object only once it is in a pack, prunes
unreachable objects only when older than two weeks (``gc.pruneExpire``), and
moves refs into ``packed-refs`` under git's own lock. Readers look an object
up once more when it moved from loose to a pack meanwhile
(:meth:`GitObjects._get`), ref writers retry when ``git pack-refs`` removed a
directory under them (:meth:`GitRefs.set_ref`), and at most one gc runs at a
time (git's ``gc.pid``).

The threshold is git's ``gc.auto`` when the user set it (0 turns background
packing off, as it does for git), else :data:`AUTO_PACK_LOOSE`; the number of
packs is ``gc.autoPackLimit`` (else 50), above which gc merges them.
"""

from __future__ import annotations

import os
import subprocess
import time

from gitexp.git.base import RepoBase, _located_git_env

AUTO_PACK_LOOSE = 1600  # loose objects (about 200 small runs) before a background gc
AUTO_PACK_PACKS = 50  # packs before gc merges them into one (git's gc.autoPackLimit)
GC_PID_FRESH = 12 * 3600  # seconds git considers a gc.pid of another gc current


class GitPacking(RepoBase):
    """Keeping the object store compact without anyone running gc by hand."""

    def _config_int(self, section: str, name: str, default: int) -> int:
        value = self.config_get(section, name)
        if value is None:
            return default
        text = value.strip().lower()
        scale = {"k": 1024, "m": 1024**2, "g": 1024**3}.get(text[-1:], 1)
        try:
            return int(text[:-1] if scale > 1 else text) * scale
        except ValueError:
            return default

    def loose_objects_estimate(self) -> int:
        """About how many loose objects there are, from one of the 256 fan-out
        directories, as ``git gc --auto`` estimates it (one directory listing)."""
        try:
            names = os.listdir(os.path.join(self.common_dir, "objects", "17"))
        except (FileNotFoundError, NotADirectoryError):
            return 0
        return 256 * sum(1 for n in names if len(n) == 38)

    def pack_count(self) -> int:
        """How many packs the object store holds (``.keep`` packs included)."""
        try:
            names = os.listdir(os.path.join(self.common_dir, "objects", "pack"))
        except (FileNotFoundError, NotADirectoryError):
            return 0
        return sum(1 for n in names if n.endswith(".pack"))

    def _limits(self) -> tuple[int, int]:
        """(loose objects, packs) past which to pack; read once per open repository."""
        limits: tuple[int, int] | None = getattr(self, "_pack_limits", None)
        if limits is None:
            limits = (
                self._config_int("gc", "auto", AUTO_PACK_LOOSE),
                self._config_int("gc", "autoPackLimit", AUTO_PACK_PACKS),
            )
            self._pack_limits = limits
        return limits

    def needs_packing(self) -> bool:
        """True when loose objects or packs are past the thresholds (module docstring)."""
        loose, packs = self._limits()
        if loose <= 0:
            return False
        if self.loose_objects_estimate() > loose:
            return True
        return packs > 0 and self.pack_count() > packs

    def auto_pack(self) -> bool:
        """Start ``git gc --auto`` in the background when :meth:`needs_packing`;
        True when one was started. Never waits for it, never fails: packing is
        an optimisation, and git's own gc does it at the latest."""
        try:
            if not self.needs_packing():
                return False
            pid_file = os.path.join(self.common_dir, "gc.pid")
            try:
                if time.time() - os.stat(pid_file).st_mtime < GC_PID_FRESH:
                    return False  # one is running (or died recently: git decides then)
            except FileNotFoundError:
                pass
            limit = self._limits()[0]
            # through a shell that puts git in the background and exits at once: git
            # is nobody's child to wait for (no zombie, no warning at our exit)
            starter = subprocess.Popen(
                [
                    "sh",
                    "-c",
                    '"$@" </dev/null >/dev/null 2>&1 &',
                    "sh",
                    "git",
                    "--git-dir",
                    self.common_dir,
                    "-c",
                    f"gc.auto={limit}",
                    "-c",
                    "gc.autoDetach=false",  # detached already: its own session, not waited for
                    "gc",
                    "--auto",
                    "--quiet",
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                env=_located_git_env(),
                start_new_session=True,
                close_fds=True,
            )
            starter.wait()
            return True
        except OSError:
            return False
