"""Refs: read, listed, moved by compare-and-swap, locks left by killed writers."""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import time
from collections.abc import Mapping
from typing import Any

from gitexp.errors import (
    StoreError,
)
from gitexp.git.base import STALE_LOCK_SECONDS, RepoBase, _unlink_quiet

RACY_SECONDS = 2.0  # a file changed within this of a look at it may look unchanged
_REF_CACHE_VERSION = 1
_CACHE_LINE = re.compile(r"^([0-9a-f]{40}) (-?[0-9]+) ([^\n]+)$", re.MULTILINE)


def refs_digest(refs: Mapping[str, str]) -> str:
    """The digest of a set of refs as a ref listing shows them, one
    ``<sha>\t<name>\n`` line each in name order (git's ``ls-remote`` lines):
    equal digests, equal sets. :meth:`RefListing.digest` computes the same
    from a remote's listing without parsing it."""
    text = "".join(f"{refs[name]}\t{name}\n" for name in sorted(refs))
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


def _cache_state(line: str, prefix: str) -> dict[str, Any]:
    """A ref cache's first line, parsed, or {} when it is not one for ``prefix``."""
    try:
        state = json.loads(line)
    except ValueError:
        return {}
    if (
        not isinstance(state, dict)
        or state.get("version") != _REF_CACHE_VERSION
        or state.get("prefix") != prefix
        or not isinstance(state.get("dirs"), dict)
    ):
        return {}
    return state


def _read_cache_head(path: str, prefix: str) -> dict[str, Any]:
    """A ref cache's state (its first line alone), or {}."""
    try:
        with open(path, encoding="utf-8") as f:
            return _cache_state(f.readline(), prefix)
    except (OSError, UnicodeDecodeError):
        return {}


def _load_ref_cache(path: str, prefix: str) -> tuple[dict[str, Any], dict[str, tuple[str, int]]]:
    """A ref cache's state and entries (ref -> (sha, mtime_ns; -1 when packed)),
    or nothing when it is missing, unreadable or about another prefix."""
    try:
        with open(path, encoding="utf-8") as f:
            state = _cache_state(f.readline(), prefix)
            body = f.read() if state else ""
    except (OSError, UnicodeDecodeError):
        return {}, {}
    if not state:
        return {}, {}
    lines = _CACHE_LINE.findall(body)
    if len(lines) != body.count("\n"):
        return {}, {}  # a line that is not ours: the cache is not trusted
    return state, {ref: (sha, int(mtime)) for sha, mtime, ref in lines}


def _save_ref_cache(
    path: str, state: dict[str, Any], entries: Mapping[str, tuple[str, int]]
) -> None:
    """Write a ref cache atomically; a cache that cannot be written is not written."""
    body = json.dumps({**state, "version": _REF_CACHE_VERSION}) + "\n"
    body += "".join(f"{sha} {mtime} {ref}\n" for ref, (sha, mtime) in sorted(entries.items()))
    tmp = None
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".refs-", dir=os.path.dirname(path))
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(body)
        os.replace(tmp, path)
    except OSError:
        _unlink_quiet(tmp)


class GitRefs(RepoBase):
    """Reading and moving refs."""

    def get_ref(self, name: str) -> str | None:
        """The sha a ref points at, or None."""
        try:
            return str(self._repo.refs[name.encode("utf-8")].decode("ascii"))
        except KeyError:
            return None

    def refs_under(self, prefix: str) -> dict[str, str]:
        """All refs whose name starts with ``prefix`` (loose and packed)."""
        raw = prefix.encode("utf-8")
        out: dict[str, str] = {}
        refs = self._repo.refs.as_dict(raw.rstrip(b"/"))
        for name, sha in refs.items():
            out[(raw.rstrip(b"/") + b"/" + name).decode("utf-8")] = sha.decode("ascii")
        return out

    def ref_names_under(self, prefix: str) -> list[str]:
        """The names of all refs under ``prefix`` (a directory such as
        ``refs/experiments/``), loose and packed, without reading any ref: one
        directory listing per directory, for address lookups over 100,000 refs."""
        top = prefix.rstrip("/")
        names: set[str] = set()
        stack = [(os.path.join(self.common_dir, *top.split("/")), top)]
        while stack:
            path, name = stack.pop()
            try:
                entries = list(os.scandir(path))
            except (FileNotFoundError, NotADirectoryError):
                continue
            for e in entries:
                if e.is_dir(follow_symlinks=False):
                    stack.append((e.path, f"{name}/{e.name}"))
                elif not e.name.endswith(".lock"):
                    names.add(f"{name}/{e.name}")
        names.update(self.packed_refs(top + "/"))
        return sorted(names)

    # ------------------------------------------------- the ref files themselves
    # For an index that follows refs incrementally (the catalog): which ref files
    # changed, without asking dulwich to read every ref.
    def read_loose_ref(self, name: str) -> str | None:
        """The sha in the loose ref file of ``name``, or None (absent, not a sha)."""
        try:
            with open(os.path.join(self.common_dir, *name.split("/")), "rb") as f:
                text = f.read().strip().decode("ascii", "replace")
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return None
        return text if len(text) == 40 else None

    def packed_refs(self, prefix: str) -> dict[str, str]:
        """name -> sha of the refs in ``packed-refs`` whose name starts with ``prefix``."""
        out: dict[str, str] = {}
        needle = prefix.encode("utf-8")
        try:
            with open(os.path.join(self.common_dir, "packed-refs"), "rb") as f:
                for line in f:
                    if line[:1] in (b"#", b"^"):
                        continue
                    parts = line.strip().split(b" ", 1)
                    if len(parts) == 2 and parts[1].startswith(needle):
                        out[parts[1].decode("utf-8", "replace")] = parts[0].decode("ascii")
        except FileNotFoundError:
            pass
        return out

    def packed_refs_signature(self) -> list[int] | None:
        """``packed-refs``' [mtime_ns, size], None when there is none: a changed
        signature means it may hold other refs."""
        try:
            pst = os.stat(os.path.join(self.common_dir, "packed-refs"))
        except FileNotFoundError:
            return None
        return [pst.st_mtime_ns, pst.st_size]

    def packed_refs_digest(self) -> str | None:
        """The SHA-1 of ``packed-refs``' bytes (None when there is none): whether
        it changed when its signature cannot tell (rewritten within one
        timestamp tick, to the same size). 100,000 refs: 7 MB, ~15 ms."""
        import hashlib

        try:
            with open(os.path.join(self.common_dir, "packed-refs"), "rb") as f:
                return hashlib.sha1(f.read(), usedforsecurity=False).hexdigest()
        except FileNotFoundError:
            return None

    def ref_snapshot(self, prefix: str, cache: str | None = None) -> dict[str, str]:
        """name -> sha of every ref under ``prefix`` (a directory such as
        ``refs/experiments/``), loose and packed (a loose ref wins), read
        without dulwich: ``packed-refs`` parsed once, each loose ref file read
        directly (10,000 refs: 0.1 s, where dulwich takes seconds).

        ``cache``: a file (derived, deletable) remembering what was read: then
        ``packed-refs`` is parsed again only when its size or mtime changed, and
        a directory whose mtime did not change is not even listed (the racy-git
        rule of :class:`RefScan`), so an unchanged set of 100,000 refs costs
        reading that one file. A cache that cannot be read is ignored; one that
        cannot be written is not written.
        """
        started = time.time_ns()
        state, cached = _load_ref_cache(cache, prefix) if cache else ({}, {})
        sig, packed_ok, scan = self._cache_check(prefix, state)
        if packed_ok:
            packed = {ref: sha for ref, (sha, mtime) in cached.items() if mtime < 0}
        else:
            packed = self.packed_refs(prefix)
        # nothing moved since: the cache is the answer (one written before caches
        # held a digest is written again, once)
        answers = packed_ok and scan.unchanged and "digest" in state
        if answers:
            return dict(zip(cached, (sha for sha, _ in cached.values())))
        racy_ns = scan.racy_ns
        loose: dict[str, tuple[str, int]] = {}
        if scan.kept:
            for ref, (sha, mtime) in cached.items():
                if mtime >= 0 and scan.dir_of(ref) in scan.kept:
                    loose[ref] = (sha, mtime)
        for ref, mtime in scan.loose.items():
            old = cached.get(ref)
            if old is not None and old[1] == mtime and mtime < racy_ns:
                loose[ref] = old
                continue
            found = self.read_loose_ref(ref)
            if found is not None:
                loose[ref] = (found, mtime)
        out = dict(packed)
        out.update({ref: sha for ref, (sha, _) in loose.items()})
        if cache and not answers:
            entries = {ref: (sha, -1) for ref, sha in packed.items()}
            entries.update(loose)
            head = {
                "prefix": prefix,
                "built_ns": started,
                "packed_sig": sig,
                "dirs": scan.dirs,
                "digest": refs_digest(out),
            }
            _save_ref_cache(cache, head, entries)
        return out

    def _cache_check(
        self, prefix: str, state: Mapping[str, Any]
    ) -> tuple[list[int] | None, bool, RefScan]:
        """What moved since a ref cache's ``state`` was written: ``packed-refs``'
        signature now, whether its refs are as cached, and the loose ref scan."""
        racy_ns = int(state.get("built_ns", 0)) - int(RACY_SECONDS * 1e9)
        sig = self.packed_refs_signature()
        packed_ok = (
            bool(state) and sig == state.get("packed_sig") and (sig is None or sig[0] < racy_ns)
        )
        return sig, packed_ok, RefScan(self.common_dir, prefix, state.get("dirs", {}), racy_ns)

    def ref_snapshot_digest(self, prefix: str, cache: str) -> str:
        """``refs_digest(self.ref_snapshot(prefix, cache))``, from the cache's
        first line alone when no ref under ``prefix`` moved since it was written
        (100,000 refs: a few stat calls instead of reading them)."""
        state = _read_cache_head(cache, prefix)
        digest = state.get("digest")
        if isinstance(digest, str):
            _, packed_ok, scan = self._cache_check(prefix, state)
            if packed_ok and scan.unchanged:
                return digest
        return refs_digest(self.ref_snapshot(prefix, cache))

    def scan_loose_refs(self, prefix: str, old_dirs: Mapping[str, int], racy_ns: int) -> RefScan:
        """The loose refs under ``prefix`` (a directory such as
        ``refs/experiments/``), skipping the directories unchanged since
        ``old_dirs`` was seen (see :class:`RefScan`)."""
        return RefScan(self.common_dir, prefix, old_dirs, racy_ns)

    def set_ref(self, name: str, old: str | None, new: str, message: str) -> bool:
        """Compare-and-swap: point ``name`` at ``new`` only if it is still ``old``.

        ``old=None`` means the ref must not exist yet. Returns False when the
        ref had moved (the caller re-reads and retries).
        """
        from dulwich.file import FileLocked

        ref = name.encode("utf-8")
        ident = self.identity()
        lock = os.path.join(self.common_dir, *name.split("/")) + ".lock"
        for attempt in range(5):
            lock_was_there = os.path.exists(lock)
            try:
                if old is None:
                    return bool(
                        self._repo.refs.add_if_new(
                            ref, new.encode("ascii"), committer=ident, message=message.encode()
                        )
                    )
                return bool(
                    self._repo.refs.set_if_equals(
                        ref,
                        old.encode("ascii"),
                        new.encode("ascii"),
                        committer=ident,
                        message=message.encode(),
                    )
                )
            except FileLocked:
                self._break_stale_lock(name)
                return False  # another writer holds the ref's lock: a lost race, retry
            except (FileNotFoundError, FileExistsError) as exc:
                # `git pack-refs` (git gc) removes the empty directory of packed refs
                # between dulwich's mkdir and its lock file; two writers creating the
                # first ref of a new directory race on its mkdir: try again
                if attempt < 4:
                    continue
                raise StoreError(f"cannot update {name}: {exc.strerror or exc}") from exc
            except OSError as exc:
                # dulwich leaves its lock file behind when closing it fails (a full
                # disk): a lock that was not there before is ours, and must not block
                # the ref for 30 s (nor git itself, for ever)
                if not lock_was_there:
                    _unlink_quiet(lock)
                raise StoreError(f"cannot update {name}: {exc.strerror or exc}") from exc
        raise AssertionError("unreachable")

    def _break_stale_lock(self, name: str) -> None:
        """Remove a ref's lock file left by a killed writer.

        A ref update holds its lock for milliseconds; one older than
        STALE_LOCK_SECONDS belongs to a process that died mid-update.
        """
        lock = os.path.join(self.common_dir, *name.split("/")) + ".lock"
        try:
            if time.time() - os.stat(lock).st_mtime > STALE_LOCK_SECONDS:
                os.unlink(lock)
        except FileNotFoundError:
            pass

    def break_ref_lock(self, name: str) -> bool:
        """Remove ``name``'s lock file whatever its age; True when there was one.

        Only for a caller that knows no live process can hold it: the one
        writer of the ref, which holds a lock of its own over the ref's whole
        life (the sweep driver).
        """
        lock = os.path.join(self.common_dir, *name.split("/")) + ".lock"
        try:
            os.unlink(lock)
        except FileNotFoundError:
            return False
        return True

    def stale_locks(self, min_age: float) -> list[str]:
        """Lock and temporary files older than ``min_age`` seconds under objects/ and
        refs/experiments/, left by writers killed mid-write (``*.lock``, and the
        ``tmp_obj_*`` and ``tmp_pack_*`` files objects are written through)."""
        now = time.time()
        out = []
        for top in ("objects", os.path.join("refs", "experiments")):
            for dirpath, _, files in os.walk(os.path.join(self.common_dir, top)):
                for f in files:
                    temp = top == "objects" and f.startswith(("tmp_obj_", "tmp_pack_"))
                    if f.endswith(".lock") or temp:
                        path = os.path.join(dirpath, f)
                        try:
                            if now - os.stat(path).st_mtime >= min_age:
                                out.append(path)
                        except FileNotFoundError:
                            continue
        return out

    def add_new_refs(self, refs: Mapping[str, str]) -> list[str]:
        """Create the refs that do not exist yet, in one write to ``packed-refs``.

        For fetches of many runs: one locked, atomic file write instead of a
        loose ref (and its fsync) per run. Returns the names created.
        """
        from dulwich.file import FileLocked

        if not refs:
            return []
        have = self.ref_snapshot(_common_prefix(list(refs)))
        new = {name: sha for name, sha in refs.items() if name not in have}
        if not new:
            return []
        # `git pack-refs` (a background gc) holds packed-refs.lock for a moment
        for attempt in range(100):
            try:
                self._repo.refs.add_packed_refs(
                    {n.encode("utf-8"): s.encode("ascii") for n, s in new.items()}
                )
                break
            except FileLocked as exc:
                if attempt == 99:
                    raise StoreError(f"cannot write packed refs: {exc}") from exc
                time.sleep(0.05)
            except OSError as exc:
                raise StoreError(f"cannot write packed refs: {exc}") from exc
        return sorted(new)

    def delete_ref(self, name: str, old: str | None) -> bool:
        """Delete a ref if it still points at ``old``."""
        from dulwich.file import FileLocked

        try:
            return bool(
                self._repo.refs.remove_if_equals(
                    name.encode("utf-8"), old.encode("ascii") if old else None
                )
            )
        except FileLocked:
            return False


class RefScan:
    """The loose refs under a ref directory, skipping directories that did not change.

    Git and dulwich change a loose ref by writing ``<ref>.lock`` and renaming it
    over the ref, which changes the directory's mtime; so a directory whose
    mtime is unchanged, and older than ``racy_ns`` (the "racy git" rule: a
    change within the same timestamp tick keeps the mtime), holds the same refs
    with the same shas, and its files are not even stat'ed.

    ``dirs`` maps each directory (relative to the prefix, "" for the top) to the
    mtime seen now; ``kept`` holds the directories whose content is known
    unchanged since ``old_dirs``; ``loose`` maps each ref file of the other
    directories (its full ref name) to its mtime.
    """

    def __init__(
        self, common_dir: str, prefix: str, old_dirs: Mapping[str, int], racy_ns: int
    ) -> None:
        self.prefix = prefix.rstrip("/") + "/"
        self.root = os.path.join(common_dir, *self.prefix.strip("/").split("/"))
        self.old_dirs = old_dirs
        self.racy_ns = racy_ns
        self.children: dict[str, list[str]] = {}
        for d in old_dirs:
            if d:
                self.children.setdefault(d.rsplit("/", 1)[0] if "/" in d else "", []).append(d)
        self.dirs: dict[str, int] = {}
        self.kept: set[str] = set()
        self.loose: dict[str, int] = {}
        self._walk("")

    @property
    def unchanged(self) -> bool:
        """No directory changed, none appeared, none went away."""
        return not self.loose and self.kept == set(self.old_dirs) == set(self.dirs)

    def dir_of(self, ref: str) -> str:
        """The directory of a ref under the prefix, as ``dirs`` and ``kept`` name it."""
        rest = ref[len(self.prefix) :]
        return rest.rsplit("/", 1)[0] if "/" in rest else ""

    def _walk(self, rel: str) -> None:
        path = os.path.join(self.root, *rel.split("/")) if rel else self.root
        try:
            mtime = os.stat(path).st_mtime_ns
        except (FileNotFoundError, NotADirectoryError):
            return
        self.dirs[rel] = mtime
        if self.old_dirs.get(rel) == mtime and mtime < self.racy_ns:
            self.kept.add(rel)
            for sub in self.children.get(rel, []):
                self._walk(sub)
            return
        try:
            entries = list(os.scandir(path))
        except (FileNotFoundError, NotADirectoryError):
            return
        prefix = f"{self.prefix}{rel}/" if rel else self.prefix
        for e in entries:
            if e.is_dir(follow_symlinks=False):
                self._walk(f"{rel}/{e.name}" if rel else e.name)
            elif not e.name.endswith(".lock"):
                try:
                    self.loose[prefix + e.name] = e.stat(follow_symlinks=False).st_mtime_ns
                except FileNotFoundError:
                    continue


def _common_prefix(names: list[str]) -> str:
    """The deepest ref directory (``refs/.../``) holding every name of ``names``."""
    first, last = min(names), max(names)  # the common prefix of all is theirs
    n = 0
    while n < min(len(first), len(last)) and first[n] == last[n]:
        n += 1
    return first[: first.rfind("/", 0, n) + 1] or "refs/"
