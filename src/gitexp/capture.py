"""Facts about a run: environment, code version, and data inputs.

Reading the environment is this module's job, but it takes ``environ`` from its
caller rather than reading ``os.environ`` itself where a caller may differ.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import platform
import shutil
import socket
import stat
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gitexp.cas import LocalStore, dir_listing, hash_bytes
from gitexp.errors import UsageError
from gitexp.git import GitRepo, StatusProbe
from gitexp.records import ArtifactEntry, has_surrogates, normalize_artifact_path

# Environment variables worth recording: they change results or their speed.
ENV_VARS = (
    "CUDA_VISIBLE_DEVICES",
    "CUBLAS_WORKSPACE_CONFIG",
    "PYTHONHASHSEED",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "TF_DETERMINISTIC_OPS",
    "XLA_FLAGS",
    "JAX_PLATFORMS",
    "VIRTUAL_ENV",
    "CONDA_DEFAULT_ENV",
    "SLURM_JOB_ID",
)

_ENV_CACHE: dict[str, Any] | None = None


def _packages() -> list[str]:
    from importlib import metadata

    seen: dict[str, str] = {}
    for dist in metadata.distributions():
        # an email.message.Message: .get() is None for a broken dist without a Name
        name = dist.metadata.get("Name") if dist.metadata else None  # type: ignore[attr-defined]
        if name and name.lower() not in seen:
            seen[name.lower()] = f"{name}=={dist.version}"
    return sorted(seen.values(), key=str.lower)


def _packages_key() -> str:
    """What the installed distributions depend on: the interpreter, and each
    ``sys.path`` directory with its mtime (installing, removing or upgrading a
    package adds or removes a ``*.dist-info`` directory there, which changes it)."""
    parts = [sys.executable, sys.version]
    for entry in sys.path:
        try:
            st = os.stat(entry or ".")
        except OSError:
            parts.append(f"{entry}\0-")
            continue
        parts.append(f"{entry}\0{st.st_ino}\0{st.st_mtime_ns}")
    return hash_bytes("\n".join(parts).encode("utf-8", "surrogateescape"))


def _packages_cached(cache_dir: str) -> list[str]:
    """:func:`_packages`, kept in ``cache_dir`` across processes under the key of
    :func:`_packages_key`: reading every distribution's metadata costs 0.3 s in a
    venv of 180 packages, paid twice by each ``git exp run`` (git-exp and the
    script it runs). Anything wrong with the cache: computed again."""
    import json
    import tempfile

    key = _packages_key()
    path = os.path.join(cache_dir, f"packages-{key[:24]}.json")
    try:
        with open(path, encoding="utf-8") as f:
            cached = json.load(f)
        if isinstance(cached, dict) and cached.get("key") == key:
            packages = cached.get("packages")
            if isinstance(packages, list) and all(isinstance(x, str) for x in packages):
                return packages
    except (OSError, ValueError):
        pass
    packages = _packages()
    try:
        os.makedirs(cache_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix=".packages-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"key": key, "packages": packages}, f)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except OSError:
        pass  # a read-only repository: computed each time, as before
    return packages


def _cpu() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {"model": model, "count": os.cpu_count(), "arch": platform.machine()}


def _memory_bytes() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def _gpus() -> list[dict[str, str]]:
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run(
            [exe, "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    gpus = []
    for line in out.strip().splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 3:
            gpus.append({"name": parts[0], "driver": parts[1], "memory": parts[2]})
    return gpus


def environment(environ: Mapping[str, str], cache_dir: str | None = None) -> dict[str, Any]:
    """``env.json`` for this interpreter and machine (computed once per process;
    the package list kept in ``cache_dir`` across processes when given)."""
    global _ENV_CACHE
    if _ENV_CACHE is None:
        _ENV_CACHE = {
            "python": {
                "version": platform.python_version(),
                "implementation": platform.python_implementation(),
                "executable": sys.executable,
            },
            "platform": {
                "system": platform.system(),
                "release": platform.release(),
                "machine": platform.machine(),
                "libc": "-".join(platform.libc_ver()).strip("-"),
            },
            "packages": _packages_cached(cache_dir) if cache_dir else _packages(),
            "cpu": _cpu(),
            "memory_bytes": _memory_bytes(),
            "gpus": _gpus(),
        }
    env = dict(_ENV_CACHE)
    env["variables"] = {k: environ[k] for k in ENV_VARS if k in environ}
    return env


def host_facts() -> dict[str, Any]:
    """Host and user for ``run.json``."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = str(os.getuid()) if hasattr(os, "getuid") else "unknown"
    return {"host": socket.gethostname(), "user": user}


# ------------------------------------------------------------------- code


@dataclass
class CodeState:
    """``code.json`` plus the large dirty files that went to the CAS."""

    data: dict[str, Any]
    code_commit: str
    code_tree: str
    large_files: list[ArtifactEntry] = field(default_factory=list)


def code_state(
    repo: GitRepo,
    cas: LocalStore,
    large_threshold: int = 10 << 20,
    probe: StatusProbe | None = None,
) -> CodeState:
    """Record the code version; snapshot a dirty work tree (large files to the CAS).

    ``probe``: the ``git status`` started earlier by :meth:`GitRepo.status_probe`.
    """
    state = repo.worktree_state(large_threshold, os.path.join(repo.exp_dir, "tmp"), probe)
    large: list[ArtifactEntry] = []
    for rel in state.large_files:
        full = os.path.join(repo.work_tree or "", rel)
        key, size = cas.put_file(full)
        mode = 0o100755 if os.stat(full).st_mode & 0o111 else 0o100644
        large.append(ArtifactEntry(path=rel, blake3=key, size=size, mode=mode, role="code"))
    data: dict[str, Any] = {
        "head": state.head,
        "branch": state.branch,
        "remotes": state.remotes,
        "dirty": state.dirty,
        "snapshot": state.snapshot,
        "commit": state.code_commit,
        "tree": state.code_tree,
        "changed": state.changed,
        "large_files": [e.path for e in large],
        "unreadable": state.unreadable,
        "diff_stat": repo.diff_stat(state.head, state.snapshot) if state.snapshot else "",
    }
    return CodeState(data, state.code_commit, state.code_tree, large)


# ------------------------------------------------------------------- files


@dataclass
class WalkResult:
    """Regular files found under a directory, and what was skipped and why."""

    files: list[tuple[str, str]]  # (relative posix path, absolute path)
    skipped: list[str]


def walk_files(root: str) -> WalkResult:
    """Regular files under ``root``, sorted; symlinks that leave ``root`` and
    special files (fifos, sockets, devices) are skipped and reported. Git
    metadata (an entry named ``.git``: a repository, or a worktree's pointer
    file) is left out without a word, as git leaves it out of its own trees."""
    files: list[tuple[str, str]] = []
    skipped: list[str] = []
    real_root = os.path.realpath(root)

    def visit(dirpath: str) -> None:
        try:
            entries = sorted(os.scandir(dirpath), key=lambda e: e.name)
        except OSError as exc:
            skipped.append(f"{dirpath}: {exc.strerror}")
            return
        for entry in entries:
            if entry.name == ".git":
                continue
            full = entry.path
            rel = os.path.relpath(full, root).replace(os.sep, "/")
            if has_surrogates(rel):
                shown = rel.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                skipped.append(f"{shown}: name is not valid UTF-8 (skipped)")
                continue
            if entry.is_symlink():
                target = os.path.realpath(full)
                if not (target == real_root or target.startswith(real_root + os.sep)):
                    skipped.append(f"{rel}: symlink pointing outside the directory (not followed)")
                    continue
                if os.path.isdir(target):
                    skipped.append(f"{rel}: symlink to a directory (not followed)")
                    continue
            try:
                st = os.stat(full)
            except OSError as exc:
                skipped.append(f"{rel}: {exc.strerror}")
                continue
            if stat.S_ISDIR(st.st_mode):
                visit(full)
            elif stat.S_ISREG(st.st_mode):
                files.append((rel, full))
            else:
                skipped.append(f"{rel}: not a regular file (skipped)")

    visit(root)
    return WalkResult(files, skipped)


@dataclass
class HashedPath:
    """A file or directory as the manifest records it, with any warnings."""

    entry: ArtifactEntry
    warnings: list[str]


def _mode_of(path: str) -> int:
    return 0o100755 if os.stat(path).st_mode & 0o111 else 0o100644


def record_path(
    path: str,
    name: str,
    role: str,
    cas: LocalStore,
    store: bool,
    source: str | None = None,
) -> HashedPath:
    """Hash (and, when ``store``, copy into the CAS) a file or a directory.

    A directory becomes one entry whose hash is the Merkle root: the BLAKE3 of
    its canonical listing, which is always stored in the CAS so that it can be
    compared or restored file by file.
    """
    name = normalize_artifact_path(name)
    if not os.path.exists(path):
        raise UsageError(f"{path}: no such file or directory")
    if os.path.isdir(path):
        walk = walk_files(path)
        rows = []
        total = 0
        for rel, full in walk.files:
            key, size = cas.put_file(full) if store else cas.hash_file(full)
            rows.append((rel, key, size, _mode_of(full)))
            total += size
        listing = dir_listing(rows)
        root = cas.put_bytes(listing)
        entry = ArtifactEntry(
            path=name,
            blake3=root,
            size=total,
            mode=0o040000,
            role=role,
            source=source,
            kind="dir",
            files=len(rows),
            stored=store,
        )
        return HashedPath(entry, walk.skipped)
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise UsageError(f"{path} is not a regular file or directory")
    key, size = cas.put_file(path) if store else cas.hash_file(path)
    entry = ArtifactEntry(
        path=name,
        blake3=key,
        size=size,
        mode=_mode_of(path),
        role=role,
        source=source,
        stored=store,
    )
    return HashedPath(entry, [])


def input_source(
    path: str, work_tree: str | None, path_map: Mapping[str, str] | None = None
) -> tuple[str, str]:
    """(manifest name, recorded source) of an input: repo-relative when inside the
    work tree, else the absolute path.

    ``path_map``: restored copy -> original absolute path (a replay reads inputs
    from outside the repository from copies restored in its own directory; they
    are named and recorded as the originals).
    """
    full = os.path.abspath(path)
    for copy, original in (path_map or {}).items():
        if full == copy or full.startswith(copy.rstrip(os.sep) + os.sep):
            full = original + full[len(copy) :]
            break
    if work_tree:
        # the path as given first (an input linked into a replay's directory is named
        # by where it sits there), then with symlinks resolved
        for root, where in (
            (os.path.abspath(work_tree), full),
            (os.path.realpath(work_tree), os.path.realpath(full)),
        ):
            if where == root or where.startswith(root + os.sep):
                rel = os.path.relpath(where, root).replace(os.sep, "/")
                return rel if rel != "." else "worktree", rel
    name = "external/" + full.strip("/").replace(os.sep, "/")
    return name, full


def fingerprint(code_tree: str, params: Any, inputs: Mapping[str, str], command: Any) -> str:
    """BLAKE3 over what determines a result: code tree, params, input hashes, command."""
    from gitexp.records import compact_json

    return hash_bytes(
        compact_json(
            {"code_tree": code_tree, "params": params, "inputs": dict(inputs), "command": command}
        )
    )
