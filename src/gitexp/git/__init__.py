"""The git layer: the only module that imports dulwich or runs the ``git`` binary.

Objects and refs are written with dulwich as loose objects (never one pack per
run: reading thousands of single-object packs is slow). Ref updates are
compare-and-swap. The work-tree snapshot of a dirty checkout uses the ``git``
binary with a private, temporary index, so that git's own ignore rules, stat
cache and filters apply, and the user's index is never touched.

Everything above this module sees text: hex shas as ``str``, ref names as
``str``, paths in trees as ``str``.
"""

from __future__ import annotations

import enum
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from gitexp.errors import (
    AuthError,
    GitExpError,
    NoCommits,
    NotARepository,
    ObjectMissing,
    RemoteError,
    StoreError,
)

MODE_FILE = 0o100644
MODE_EXEC = 0o100755
MODE_TREE = 0o040000
STALE_LOCK_SECONDS = 30.0
BIG_BLOB = 1 << 20
CAT_PROCESSES = 4  # git cat-file processes reading one big batch at once
CAT_SPLIT = 500  # ... for batches of at least twice this many objects

# A tree change: bytes to store as a blob, an existing blob sha (as ("sha", hex)),
# or None to delete the path.
TreeValue = Any


@dataclass
class CommitInfo:
    """What the layers above need of a commit."""

    sha: str
    tree: str
    parents: list[str]
    message: str
    author: str
    commit_time: int


@dataclass
class WorkTreeState:
    """The code version of a checkout at one moment."""

    head: str
    branch: str | None
    remotes: dict[str, str]
    dirty: bool
    snapshot: str | None  # the snapshot commit when dirty, else None
    code_commit: str  # snapshot when dirty, else head
    code_tree: str
    changed: list[str] = field(default_factory=list)  # paths that differ from HEAD
    large_files: list[str] = field(default_factory=list)  # left out of the snapshot
    unreadable: list[str] = field(default_factory=list)  # changed while git read them


class StatusProbe:
    """``git status`` of a work tree, started at once and read later."""

    ARGS = ("status", "--porcelain=v1", "-z", "--untracked-files=all", "--no-renames")

    def __init__(self, work_tree: str) -> None:
        if shutil.which("git") is None:
            raise GitExpError("the git command is not installed or not on PATH")
        try:
            self._proc = subprocess.Popen(
                ["git", *self.ARGS],
                cwd=work_tree,
                env=_git_env(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
            )
        except OSError as exc:
            raise GitExpError(f"cannot run git status: {exc.strerror or exc}") from exc
        self._result: tuple[bytes, bytes] | None = None

    def output(self) -> str:
        """What git printed; GitExpError when it failed."""
        out, err = self._wait()
        if self._proc.returncode != 0:
            msg = err.decode("utf-8", "replace").strip().splitlines()
            raise GitExpError(f"git status failed: {msg[-1] if msg else self._proc.returncode}")
        return out.decode("utf-8", "surrogateescape")

    def close(self) -> None:
        """Wait for git (a caller that no longer needs its output); idempotent."""
        self._wait()

    def _wait(self) -> tuple[bytes, bytes]:
        if self._result is None:
            self._result = self._proc.communicate()
        return self._result


def _git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = dict(os.environ)
    env.setdefault("LC_ALL", "C")
    env["GIT_TERMINAL_PROMPT"] = "0"
    # `git status` refreshes stat data and rewrites the user's .git/index when it
    # can take the lock; git-exp must never write the user's index.
    env["GIT_OPTIONAL_LOCKS"] = "0"
    if extra:
        env.update(extra)
    return env


class GitRepo:
    """A git repository opened for git-exp: objects, refs, and code state."""

    def __init__(self, path: str | os.PathLike[str] = ".") -> None:
        from dulwich.errors import NotGitRepository
        from dulwich.repo import Repo

        try:
            self._repo = Repo.discover(os.fspath(path))
        except NotGitRepository as exc:
            raise NotARepository(
                f"not a git repository: {os.path.abspath(path)} (run 'git init' first, "
                "or cd into your project)"
            ) from exc
        self.git_dir: str = os.path.abspath(self._repo.controldir())
        self.common_dir: str = os.path.abspath(self._repo.commondir())
        self.bare: bool = self._repo.bare
        self.work_tree: str | None = None if self.bare else os.path.abspath(self._repo.path)
        self._store = self._repo.object_store
        self._identity: bytes | None = None

    # ------------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Release dulwich's open pack files."""
        self._repo.close()

    def __enter__(self) -> GitRepo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def exp_dir(self) -> str:
        """``.git/exp``: git-exp's own directory, shared by all worktrees."""
        return os.path.join(self.common_dir, "exp")

    # --------------------------------------------------------------- objects
    def write_blob(self, data: bytes) -> str:
        """Store ``data`` as a loose blob; return its sha."""
        from dulwich.objects import Blob

        blob = Blob.from_string(data)
        if len(data) >= BIG_BLOB:
            # metric segments are zstd-compressed already: zlib would spend a second
            # per 100 MB finding almost nothing; level 0 stores them deflate-framed,
            # as every loose object must be (git gc packs them as usual)
            self._add(blob, compression_level=0)
        else:
            self._add(blob)
        return blob.id.decode("ascii")

    def _add(self, obj: Any, compression_level: int = -1) -> None:
        """Write a loose object atomically: a private temporary name, then rename.

        Never through a shared lock file: a writer killed mid-write (or one that
        hits a full disk) would leave ``<sha>.lock`` behind, which blocks the object
        for every later writer and which ``git fsck`` reports as a bad object.
        Loose objects are content-addressed, so concurrent writers produce the
        same bytes and the last rename wins harmlessly. An object that exists is
        freshened instead (its mtime renewed, as git does) so that a concurrent
        ``git gc`` does not prune it before a ref points at it. A concurrent
        ``git gc`` may also remove the empty ``objects/xx`` directory between our
        mkdir and our create: we try again. Failures raise StoreError and leave
        no partial file.
        """
        sha = obj.id.decode("ascii")
        final = os.path.join(self.common_dir, "objects", sha[:2], sha[2:])
        try:
            os.utime(final)
            return
        except FileNotFoundError:
            pass
        except PermissionError:
            if os.path.exists(final):  # another user's object in a shared repository
                return
        except OSError as exc:
            raise StoreError(f"cannot write git object {sha[:12]}: {exc.strerror or exc}") from exc
        data = obj.as_legacy_object(compression_level=compression_level)
        for attempt in range(5):
            tmp = None
            try:
                os.makedirs(os.path.dirname(final), exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix="tmp_obj_", dir=os.path.dirname(final))
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.chmod(tmp, 0o444)
                os.replace(tmp, final)
                return
            except FileNotFoundError:
                _unlink_quiet(tmp)
                if attempt == 4:
                    raise StoreError(
                        f"cannot write git object {sha[:12]}: its directory keeps vanishing"
                    ) from None
            except OSError as exc:
                _unlink_quiet(tmp)
                raise StoreError(
                    f"cannot write git object {sha[:12]}: {exc.strerror or exc}"
                ) from exc
            except BaseException:
                _unlink_quiet(tmp)
                raise

    def has_object(self, sha: str) -> bool:
        """True when the object store holds ``sha``."""
        return sha.encode("ascii") in self._store

    def _get(self, sha: str) -> Any:
        key = sha.encode("ascii")
        try:
            return self._store[key]
        except KeyError:
            pass
        # a concurrent `git gc` may have moved the loose object into a new pack
        # between dulwich's pack lookup and its loose lookup: look once more
        try:
            return self._store[key]
        except KeyError as exc:
            raise ObjectMissing(f"git object {sha} is missing from the repository", sha) from exc

    def read_blob(self, sha: str) -> bytes:
        """The bytes of a blob."""
        return bytes(self._get(sha).as_raw_string())

    def read_tree(self, sha: str) -> dict[str, tuple[int, str]]:
        """A tree's entries: name -> (mode, sha)."""
        tree = self._get(sha)
        return {
            e.path.decode("utf-8", "surrogateescape"): (e.mode, e.sha.decode("ascii"))
            for e in tree.iteritems()
        }

    def cat_batch(self, names: list[str]) -> list[tuple[str, str, bytes] | None]:
        """(sha, type, content) of each object named (a sha, ``<sha>^{tree}``,
        ``<sha>:<path>``), None for those that do not exist, read by ``git
        cat-file --batch``: C git reads loose objects ten times faster than
        dulwich, which matters when a listing reads 10,000 new runs. Many names
        are split among CAT_PROCESSES processes at once: loose objects not in the
        page cache are read with that many requests in flight, and both cores
        inflate.

        Raises:
            StoreError: git could not be run, or its output broke off.
        """
        if len(names) < 2 * CAT_SPLIT:
            return self._cat_batch(names)
        from concurrent.futures import ThreadPoolExecutor

        size = -(-len(names) // CAT_PROCESSES)
        parts = [names[i : i + size] for i in range(0, len(names), size)]
        with ThreadPoolExecutor(len(parts)) as pool:
            results = list(pool.map(self._cat_batch, parts))
        return [got for part in results for got in part]

    def _cat_batch(self, names: list[str]) -> list[tuple[str, str, bytes] | None]:
        import threading

        try:
            proc = subprocess.Popen(
                ["git", "--git-dir", self.common_dir, "cat-file", "--batch"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        except OSError as exc:
            raise StoreError(f"cannot run git cat-file: {exc.strerror or exc}") from exc
        assert proc.stdin is not None and proc.stdout is not None
        stdin, out = proc.stdin, proc.stdout

        def feed() -> None:
            try:
                for n in names:
                    stdin.write(n.encode("utf-8", "surrogateescape") + b"\n")
                stdin.close()
            except OSError:  # git died: the reader sees the output end
                pass

        writer = threading.Thread(target=feed, daemon=True)
        writer.start()
        result: list[tuple[str, str, bytes] | None] = []
        try:
            for _ in names:
                header = out.readline()
                if not header:
                    raise StoreError("git cat-file stopped before answering every request")
                parts = header.split()
                if len(parts) != 3 or parts[-1] in (b"missing", b"ambiguous"):
                    result.append(None)
                    continue
                size = int(parts[2])
                data = out.read(size + 1)
                if len(data) != size + 1:
                    raise StoreError("git cat-file output broke off")
                result.append((parts[0].decode("ascii"), parts[1].decode("ascii"), data[:-1]))
        finally:
            writer.join()
            out.close()
            proc.wait()
        return result

    @staticmethod
    def parse_tree(raw: bytes) -> dict[str, tuple[int, str]]:
        """A tree object's raw bytes (as :meth:`cat_batch` gives them) as
        :meth:`read_tree` returns it: name -> (mode, sha)."""
        out: dict[str, tuple[int, str]] = {}
        pos, end = 0, len(raw)
        while pos < end:  # entries: b"<octal mode> <name>\0" then the 20-byte sha
            space = raw.index(b" ", pos)
            nul = raw.index(b"\0", space)
            name = raw[space + 1 : nul].decode("utf-8", "surrogateescape")
            sha = raw[nul + 1 : nul + 21]
            if len(sha) != 20:
                raise StoreError("a tree object from git cat-file is truncated")
            out[name] = (int(raw[pos:space], 8), sha.hex())
            pos = nul + 21
        return out

    def iter_tree_files(self, sha: str, prefix: str = "") -> Iterator[tuple[str, int, str]]:
        """Every blob below a tree, recursively: (path, mode, sha)."""
        for name, (mode, child) in sorted(self.read_tree(sha).items()):
            path = f"{prefix}{name}"
            if mode == MODE_TREE:
                yield from self.iter_tree_files(child, path + "/")
            elif mode != 0o160000:  # submodule links have no blob here
                yield path, mode, child

    def lookup_path(self, tree: str, path: str) -> tuple[int, str] | None:
        """(mode, sha) of ``path`` inside ``tree``, or None."""
        node = tree
        parts = path.split("/")
        for i, part in enumerate(parts):
            entries = self.read_tree(node)
            if part not in entries:
                return None
            mode, sha = entries[part]
            if i == len(parts) - 1:
                return mode, sha
            if mode != MODE_TREE:
                return None
            node = sha
        return None

    def write_tree(self, entries: Mapping[str, tuple[int, str]]) -> str:
        """Write one tree from name -> (mode, sha); return its sha."""
        from dulwich.objects import Tree

        tree = Tree()
        for name, (mode, sha) in entries.items():
            tree.add(name.encode("utf-8"), mode, sha.encode("ascii"))
        self._add(tree)
        return tree.id.decode("ascii")

    def update_tree(self, base: str | None, changes: Mapping[str, TreeValue]) -> str:
        """A new tree: ``base`` with ``changes`` applied (nested paths allowed).

        A change is ``bytes`` (stored as a new blob), ``(mode, sha)`` for an
        existing object, or ``None`` to delete.
        """
        entries: dict[str, tuple[int, str]] = dict(self.read_tree(base)) if base else {}
        nested: dict[str, dict[str, TreeValue]] = {}
        for path, value in changes.items():
            head, sep, rest = path.partition("/")
            if sep:
                nested.setdefault(head, {})[rest] = value
            elif value is None:
                entries.pop(head, None)
            elif isinstance(value, (bytes, bytearray, memoryview)):
                entries[head] = (MODE_FILE, self.write_blob(bytes(value)))
            else:
                entries[head] = (int(value[0]), str(value[1]))
        for head, sub in nested.items():
            current = entries.get(head)
            sub_base = current[1] if current and current[0] == MODE_TREE else None
            sub_sha = self.update_tree(sub_base, sub)
            if self.read_tree(sub_sha):
                entries[head] = (MODE_TREE, sub_sha)
            else:
                entries.pop(head, None)
        return self.write_tree(entries)

    def identity(self) -> bytes:
        """The user's git identity ``Name <email>``, as git would use it.

        Read once per open repository: parsing the config stack for every
        commit cost a tenth of a small run's time.
        """
        if self._identity is None:
            self._identity = self._read_identity()
        return self._identity

    def _read_identity(self) -> bytes:
        from dulwich.repo import get_user_identity

        name = os.environ.get("GIT_AUTHOR_NAME")
        email = os.environ.get("GIT_AUTHOR_EMAIL")
        if name and email:
            return f"{name} <{email}>".encode()
        try:
            return bytes(get_user_identity(self._repo.get_config_stack()))
        except Exception:  # no identity configured: do what git does with a fallback
            import getpass
            import socket

            return f"{getpass.getuser()} <{getpass.getuser()}@{socket.gethostname()}>".encode()

    def write_commit(self, tree: str, parents: list[str], message: str) -> str:
        """Write a commit by the user's identity; return its sha."""
        from dulwich.objects import Commit

        ident = self.identity()
        now = int(time.time())
        tz = -time.timezone if not time.localtime(now).tm_isdst else -time.altzone
        commit = Commit()
        commit.tree = tree.encode("ascii")
        commit.parents = [p.encode("ascii") for p in parents]
        commit.author = commit.committer = ident
        commit.author_time = commit.commit_time = now
        commit.author_timezone = commit.commit_timezone = tz
        commit.encoding = b"UTF-8"
        # a command line may hold bytes that are not UTF-8: the message is a summary
        commit.message = message.encode("utf-8", "replace")
        self._add(commit)
        return commit.id.decode("ascii")

    def commit_info(self, sha: str) -> CommitInfo:
        """Read a commit."""
        from dulwich.objects import Commit

        obj = self._get(sha)
        if not isinstance(obj, Commit):
            raise StoreError(f"{sha} is not a commit")
        return CommitInfo(
            sha=sha,
            tree=obj.tree.decode("ascii"),
            parents=[p.decode("ascii") for p in obj.parents],
            message=obj.message.decode("utf-8", "replace"),
            author=obj.author.decode("utf-8", "replace"),
            commit_time=obj.commit_time,
        )

    # ------------------------------------------------------------------ refs
    def get_ref(self, name: str) -> str | None:
        """The sha a ref points at, or None."""
        try:
            return self._repo.refs[name.encode("utf-8")].decode("ascii")
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
        needle = (top + "/").encode("utf-8")
        try:
            with open(os.path.join(self.common_dir, "packed-refs"), "rb") as f:
                for line in f:
                    parts = line.rstrip(b"\n").split(b" ", 1)
                    if len(parts) == 2 and parts[1].startswith(needle):
                        names.add(parts[1].decode("utf-8", "replace"))
        except FileNotFoundError:
            pass
        return sorted(names)

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
            except FileNotFoundError as exc:
                # `git pack-refs` (git gc) removes the empty directory of packed refs
                # between dulwich's mkdir and its lock file: try again, as for objects
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
        new = {name: sha for name, sha in refs.items() if self.get_ref(name) is None}
        if not new:
            return []
        try:
            self._repo.refs.add_packed_refs(
                {n.encode("utf-8"): s.encode("ascii") for n, s in new.items()}
            )
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

    def is_ancestor(self, ancestor: str, descendant: str) -> bool:
        """True when ``ancestor`` is reachable from ``descendant`` (or equal to it).

        False when either commit is missing locally.
        """
        from dulwich.objects import Commit

        if ancestor == descendant:
            return True
        if not (self.has_object(ancestor) and self.has_object(descendant)):
            return False
        target = ancestor.encode("ascii")
        seen: set[bytes] = set()
        todo = [descendant.encode("ascii")]
        while todo:
            sha = todo.pop()
            if sha == target:
                return True
            if sha in seen:
                continue
            seen.add(sha)
            try:
                obj = self._store[sha]
            except KeyError:
                continue
            if isinstance(obj, Commit):
                todo.extend(obj.parents)
        return False

    def push(
        self,
        url: str,
        refs: Mapping[str, str],
        ssh_command: str | None = None,
        progress: Any = None,
        force: bool = False,
        on_objects: Callable[[int, int, int], None] | None = None,
    ) -> list[RefPush]:
        """Push ``refs`` (full name -> local sha) to the same names on ``url``.

        Only fast-forwards, unless ``force``: a remote ref whose commit is not
        an ancestor of ours is left alone and reported as ``rejected``. Objects
        travel in one pack before the remote moves any ref; each ref moves by
        compare-and-swap against the value the remote advertised.
        ``progress`` gets the server's text; ``on_objects(done, total, bytes)``
        is called as the pack's objects are written.
        """
        from dulwich.objects import ZERO_SHA

        client, path = _transport(url, ssh_command)
        plan: dict[str, RefPush] = {}

        def update_refs(remote: dict[bytes, bytes]) -> dict[bytes, bytes]:
            new = dict(remote)
            current = {
                k.decode("utf-8", "replace"): v.decode("ascii")
                for k, v in remote.items()
                if v not in (None, ZERO_SHA)
            }
            plan.update(self.plan_push(current, refs, force))
            for name, step in plan.items():
                if step.status in (SyncStatus.NEW, SyncStatus.UPDATED, SyncStatus.FORCED):
                    new[name.encode("utf-8")] = step.new.encode("ascii")
            return new

        def generate(have: Any, want: Any, *, ofs_delta: bool = False, progress: Any = None) -> Any:
            count, records = self._repo.generate_pack_data(
                set(have), set(want), ofs_delta=ofs_delta, progress=progress
            )
            if on_objects is None:
                return count, records

            def counted() -> Any:
                nbytes = 0
                for i, record in enumerate(records, 1):
                    yield record
                    nbytes += getattr(record, "decomp_len", None) or 0
                    on_objects(i, count, nbytes)

            return count, counted()

        def on_progress(data: bytes) -> None:
            if progress is not None:
                progress(data.decode("utf-8", "replace"))

        try:
            result = client.send_pack(
                path.encode("utf-8") if isinstance(path, str) else path,
                update_refs,
                generate_pack_data=generate,
                progress=on_progress,
            )
        except _transport_errors() as exc:
            raise _remote_error(url, exc) from exc
        for name, err in (result.ref_status or {}).items():
            if err:
                text = name.decode("utf-8", "replace")
                if text in plan:
                    plan[text].status = SyncStatus.REJECTED
                    plan[text].reason = f"the remote refused: {err}"
        return [plan[name] for name in refs if name in plan]

    def plan_push(
        self, remote: Mapping[str, str], refs: Mapping[str, str], force: bool = False
    ) -> dict[str, RefPush]:
        """What pushing ``refs`` (name -> local sha) does against the remote
        refs ``remote`` (name -> sha): the same decision for a real push and a
        dry run."""
        plan: dict[str, RefPush] = {}
        for name, sha in refs.items():
            old = remote.get(name)
            if old == sha:
                plan[name] = RefPush(name, old, sha, SyncStatus.UP_TO_DATE)
            elif old is None:
                plan[name] = RefPush(name, None, sha, SyncStatus.NEW)
            elif self.is_ancestor(old, sha):
                plan[name] = RefPush(name, old, sha, SyncStatus.UPDATED)
            elif force:
                plan[name] = RefPush(name, old, sha, SyncStatus.FORCED)
            else:
                plan[name] = RefPush(
                    name,
                    old,
                    sha,
                    SyncStatus.REJECTED,
                    "the remote run has commits this repository lacks "
                    "(git exp fetch, then look at both)",
                )
        return plan

    def delete_remote_refs(
        self, url: str, names: list[str], ssh_command: str | None = None
    ) -> dict[str, str]:
        """Delete refs on a remote; return name -> "deleted", "absent" or the
        remote's refusal. Each deletion is conditional on the sha the remote
        advertised, as git push --delete does."""
        from dulwich.objects import ZERO_SHA

        client, path = _transport(url, ssh_command)
        outcome: dict[str, str] = {}

        def update_refs(remote: dict[bytes, bytes]) -> dict[bytes, bytes]:
            new = dict(remote)
            for name in names:
                key = name.encode("utf-8")
                if remote.get(key) in (None, ZERO_SHA):
                    outcome[name] = "absent"
                else:
                    new[key] = ZERO_SHA
                    outcome[name] = "deleted"
            return new

        def no_objects(
            have: Any, want: Any, *, ofs_delta: bool = False, progress: Any = None
        ) -> Any:
            return self._repo.generate_pack_data(set(have), set(), ofs_delta=ofs_delta)

        try:
            result = client.send_pack(
                path.encode("utf-8") if isinstance(path, str) else path,
                update_refs,
                generate_pack_data=no_objects,
            )
        except _transport_errors() as exc:
            raise _remote_error(url, exc) from exc
        for name, err in (result.ref_status or {}).items():
            if err:
                outcome[name.decode("utf-8", "replace")] = f"refused: {err}"
        return outcome

    def fetch(
        self,
        url: str,
        prefix: str,
        ssh_command: str | None = None,
        progress: Any = None,
    ) -> dict[str, str]:
        """Download the objects of the remote's refs under ``prefix``.

        Returns those refs (name -> sha); it does not create or move any local ref.
        """
        client, path = _transport(url, ssh_command)
        raw = prefix.encode("utf-8")
        store = self._store

        def determine_wants(refs: Mapping[bytes, bytes], depth: Any = None) -> list[bytes]:
            return sorted(
                {
                    sha
                    for name, sha in refs.items()
                    if name.startswith(raw)
                    and not name.endswith(b"^{}")
                    and sha is not None
                    and sha not in store
                }
            )

        def on_progress(data: bytes) -> None:
            if progress is not None:
                progress(data.decode("utf-8", "replace"))

        try:
            result = client.fetch(
                path, self._repo, determine_wants=determine_wants, progress=on_progress
            )
        except _transport_errors() as exc:
            raise _remote_error(url, exc) from exc
        return _text_refs(result.refs, prefix)

    def hooks_dir(self) -> str:
        """Where git looks for hooks (``core.hooksPath`` respected)."""
        out = self._run_git(["rev-parse", "--git-path", "hooks"]).strip()
        base = self.work_tree or self.git_dir
        return os.path.normpath(os.path.join(base, out))

    # ----------------------------------------------------------- code state
    def head(self) -> str | None:
        """The sha HEAD resolves to, or None on an unborn branch."""
        try:
            return self._repo.head().decode("ascii")
        except KeyError:
            return None

    def require_head(self) -> str:
        """The sha HEAD resolves to; NoCommits when there is no commit to record yet."""
        head = self.head()
        if head is None:
            raise NoCommits(
                "this repository has no commits yet: commit your code first "
                "(git add . && git commit), then run again"
            )
        return head

    def branch(self) -> str | None:
        """The current branch name, or None when HEAD is detached."""
        try:
            target = self._repo.refs.read_ref(b"HEAD")
        except KeyError:
            return None
        if target and target.startswith(b"ref: refs/heads/"):
            return target[len(b"ref: refs/heads/") :].decode("utf-8")
        return None

    def remotes(self) -> dict[str, str]:
        """Remote name -> URL from the repository config."""
        config = self._repo.get_config()
        out: dict[str, str] = {}
        for section in config.sections():
            if len(section) == 2 and section[0] == b"remote":
                try:
                    out[section[1].decode()] = config.get(section, b"url").decode()
                except KeyError:
                    continue
        return out

    def config_get(self, section: str, name: str, sub: str | None = None) -> str | None:
        """A value from the repository's config stack, or None."""
        stack = self._repo.get_config_stack()
        key: tuple[bytes, ...] = (
            (section.encode(), sub.encode()) if sub is not None else (section.encode(),)
        )
        try:
            return bytes(stack.get(key, name.encode())).decode()
        except KeyError:
            return None

    def _run_git(
        self, args: list[str], env: Mapping[str, str] | None = None, check: bool = True
    ) -> str:
        if shutil.which("git") is None:
            raise GitExpError("the git command is not installed or not on PATH")
        cwd = self.work_tree or self.git_dir
        proc = subprocess.run(
            ["git", *args],
            cwd=cwd,
            env=_git_env(env),
            capture_output=True,
        )
        if check and proc.returncode != 0:
            msg = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise GitExpError(f"git {args[0]} failed: {msg[-1] if msg else proc.returncode}")
        return proc.stdout.decode("utf-8", "surrogateescape")

    def status_probe(self) -> StatusProbe | None:
        """Start ``git status`` for :meth:`worktree_state` now and return at once,
        so that the caller's other work overlaps it (None in a bare repository)."""
        if self.bare or self.work_tree is None:
            return None
        return StatusProbe(self.work_tree)

    def worktree_state(
        self, large_threshold: int, tmp_dir: str, probe: StatusProbe | None = None
    ) -> WorkTreeState:
        """The code version of the checkout; a snapshot commit when it is dirty.

        The snapshot is made like ``git stash create`` with untracked,
        non-ignored files included, through a temporary copy of the index, so
        the user's index, work tree, HEAD and stash are untouched. Files larger
        than ``large_threshold`` bytes that are dirty are left out of the
        snapshot and listed in ``large_files``: the caller stores them in the CAS.
        """
        head = self.require_head()
        head_tree = self.commit_info(head).tree
        state = WorkTreeState(
            head=head,
            branch=self.branch(),
            remotes=self.remotes(),
            dirty=False,
            snapshot=None,
            code_commit=head,
            code_tree=head_tree,
        )
        if self.bare or self.work_tree is None:
            return state
        out = (probe or StatusProbe(self.work_tree)).output()
        changed: list[str] = []
        for item in out.split("\0"):
            if len(item) > 3:
                changed.append(item[3:])
        if not changed:
            return state
        large: list[str] = []
        for rel in changed:
            full = os.path.join(self.work_tree, rel)
            try:
                st = os.lstat(full)
            except FileNotFoundError:
                continue
            if st.st_size > large_threshold and not os.path.islink(full):
                large.append(rel)
        os.makedirs(tmp_dir, exist_ok=True)
        fd, tmp_index = tempfile.mkstemp(prefix="index-", dir=tmp_dir)
        os.close(fd)
        try:
            real_index = self._repo.index_path()
            if os.path.exists(real_index):
                shutil.copyfile(real_index, tmp_index)
            else:
                os.unlink(tmp_index)
            env = {"GIT_INDEX_FILE": tmp_index}
            args = ["add", "-A", "--ignore-errors", "--", "."]
            args += [f":(exclude,literal){p}" for p in large]
            # a file rewritten by another process while git reads it cannot be
            # added: snapshot everything else and say which paths were skipped
            unreadable = self._add_all(args, env)
            if large:  # a tracked large file keeps its HEAD version in the snapshot
                self._run_git(
                    ["reset", "-q", head, "--", *(f":(literal){p}" for p in large)], env=env
                )
            tree = self._run_git(["write-tree"], env=env).strip()
        finally:
            if os.path.exists(tmp_index):
                os.unlink(tmp_index)
            lock = tmp_index + ".lock"
            if os.path.exists(lock):
                os.unlink(lock)
        if tree == head_tree and not large:
            return state
        message = (
            f"git-exp snapshot of the work tree at {head[:12]}\n\n"
            f"{len(changed)} changed or untracked path(s) recorded for an experiment run.\n"
        )
        snap = self.write_commit(tree, [head], message)
        state.dirty = True
        state.snapshot = snap
        state.code_commit = snap
        state.code_tree = tree
        state.changed = sorted(changed)
        state.large_files = sorted(large)
        state.unreadable = unreadable
        return state

    def _add_all(self, args: list[str], env: Mapping[str, str]) -> list[str]:
        proc = subprocess.run(
            ["git", *args], cwd=self.work_tree, env=_git_env(env), capture_output=True
        )
        if proc.returncode == 0:
            return []
        errors = proc.stderr.decode("utf-8", "replace").splitlines()
        skipped = sorted(
            {ln.split("'")[1] for ln in errors if ln.startswith("error:") and ln.count("'") >= 2}
        )
        if not skipped:
            raise GitExpError(f"git add failed: {errors[-1] if errors else proc.returncode}")
        return skipped

    def diff_stat(self, base: str, other: str) -> str:
        """``git diff --stat`` between two commits."""
        # --no-color: a user's color.ui=always must not put escapes into code.json
        return self._run_git(["diff", "--stat", "--no-color", base, other]).rstrip("\n")

    def diff_text(self, base: str, other: str, color: bool = False) -> str:
        """The source diff between two commits, as ``git diff`` prints it."""
        args = ["diff", "--color=always" if color else "--no-color", base, other]
        return self._run_git(args)

    # ------------------------------------------------- materialising code
    def export_tree(self, commit: str, dest: str, tmp_dir: str) -> list[str]:
        """Write the files of ``commit`` into the empty directory ``dest``.

        Done through a private, temporary index (``read-tree`` then
        ``checkout-index --prefix``), so git's own attributes and filters apply
        while the user's index, work tree, HEAD, branches and stash are never
        touched, and no worktree is registered in ``.git/worktrees``: an
        interrupted export leaves at most files in ``dest``. Returns the paths of
        submodules, which are not materialised.
        """
        if not self.has_object(commit):
            raise ObjectMissing(f"git object {commit} is missing from the repository", commit)
        os.makedirs(tmp_dir, exist_ok=True)
        fd, tmp_index = tempfile.mkstemp(prefix="index-", dir=tmp_dir)
        os.close(fd)
        os.unlink(tmp_index)  # read-tree writes a fresh index here
        try:
            env = {"GIT_INDEX_FILE": tmp_index}
            self._run_git(["read-tree", commit], env=env)
            prefix = os.path.join(os.path.abspath(dest), "")
            self._run_git(["checkout-index", "--all", "--force", f"--prefix={prefix}"], env=env)
        finally:
            for name in (tmp_index, tmp_index + ".lock"):
                if os.path.exists(name):
                    os.unlink(name)
        return self.submodules(self.commit_info(commit).tree)

    def submodules(self, tree: str, prefix: str = "") -> list[str]:
        """Paths of submodule links (gitlinks) below a tree."""
        out: list[str] = []
        for name, (mode, child) in sorted(self.read_tree(tree).items()):
            if mode == MODE_TREE:
                out += self.submodules(child, f"{prefix}{name}/")
            elif mode == 0o160000:
                out.append(f"{prefix}{name}")
        return out

    # --------------------------------------------------- branch checkout
    def uncommitted_changes(self) -> list[str]:
        """Paths with staged or unstaged changes to tracked files (untracked ones
        are left out: git itself refuses to overwrite them)."""
        if self.bare or self.work_tree is None:
            return []
        out = self._run_git(["status", "--porcelain=v1", "-z", "--untracked-files=no"])
        return [item[3:] for item in out.split("\0") if len(item) > 3]

    def check_branch_name(self, name: str) -> bool:
        """True when ``name`` is a valid new branch name for git."""
        proc = subprocess.run(
            ["git", "check-ref-format", "--branch", name],
            cwd=self.work_tree or self.git_dir,
            env=_git_env(),
            capture_output=True,
        )
        return proc.returncode == 0 and not name.startswith("-")

    def switch_to_new_branch(self, name: str, commit: str) -> None:
        """Create branch ``name`` at ``commit`` and check it out (``git switch -c``).

        git refuses, and creates nothing, when the checkout would overwrite
        local changes or untracked files.
        """
        self._switch(["-c", name, commit])

    def switch_to_branch(self, name: str) -> None:
        """Check out an existing branch."""
        self._switch([name])

    def _switch(self, args: list[str]) -> None:
        if shutil.which("git") is None:
            raise GitExpError("the git command is not installed or not on PATH")
        proc = subprocess.run(
            ["git", "switch", "--no-guess", *args],
            cwd=self.work_tree or self.git_dir,
            env=_git_env(),
            capture_output=True,
        )
        if proc.returncode != 0:
            lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()
            first = next((ln for ln in lines if ln.startswith(("error:", "fatal:"))), "")
            paths = [ln.strip() for ln in lines if ln.startswith("\t")]
            detail = first.partition(":")[2].strip() or (lines[-1] if lines else "")
            if paths:
                detail += " " + ", ".join(paths[:10]) + (" ..." if len(paths) > 10 else "")
            raise GitExpError(f"git switch refused: {detail}")


# ------------------------------------------------------------------ transport


class SyncStatus(str, enum.Enum):
    """What a push or fetch did to one ref. Compares equal to its text."""

    NEW = "new"  # the ref did not exist on the receiving side; created
    UPDATED = "updated"  # fast-forwarded
    FORCED = "forced"  # overwritten on request although it had diverged
    UP_TO_DATE = "up to date"
    REJECTED = "rejected"  # push: the remote has commits we lack; left alone
    LOCAL_AHEAD = "local ahead"  # fetch: ours has commits the remote lacks; kept
    DIVERGED = "diverged"  # fetch: both sides have commits the other lacks; ours kept
    SKIPPED = "skipped"  # fetch: our ref moved while we fetched; fetch again
    REFUSED = "refused"  # fetch: the remote served something that is not a readable run

    def __str__(self) -> str:
        return self.value


@dataclass
class RefPush:
    """What a push did (or would not do) to one remote ref."""

    ref: str
    old: str | None  # the remote's sha before the push
    new: str  # the local sha
    status: SyncStatus
    reason: str = ""


def _transport(url: str, ssh_command: str | None) -> tuple[Any, str]:
    from dulwich.client import get_transport_and_path

    try:
        return get_transport_and_path(url, ssh_command=ssh_command)
    except (ValueError, KeyError) as exc:
        raise RemoteError(f"cannot use remote URL {url!r}: {exc}", url) from exc


def _remote_error(url: str, exc: BaseException) -> GitExpError:
    """One clear error for anything a dulwich client raises while talking to ``url``."""
    from dulwich.errors import HangupException, NotGitRepository

    name = type(exc).__name__
    if name in ("HTTPUnauthorized", "HTTPProxyUnauthorized"):
        return AuthError(f"{url}: authentication failed (check your credentials)", url)
    if isinstance(exc, NotGitRepository):
        return RemoteError(f"{url} is not a git repository", url)
    if isinstance(exc, HangupException):
        detail = "; ".join(
            line.decode("utf-8", "replace").strip()
            for line in (getattr(exc, "stderr_lines", None) or [])
            if line.strip()
        )
        return RemoteError(
            f"{url}: the remote hung up{': ' + detail if detail else ''} "
            "(is the URL right, and can you reach it?)",
            url,
        )
    import re

    text = str(exc).strip().splitlines()
    errno = re.search(r"\[Errno -?\d+\] ([^\"')]+)", str(exc))
    if errno:
        return RemoteError(f"{url}: cannot connect: {errno.group(1).strip()}", url)
    return RemoteError(f"{url}: {text[-1] if text else name}", url)


def _transport_errors() -> tuple[type[BaseException], ...]:
    from dulwich.errors import GitProtocolError, NotGitRepository

    try:
        import urllib3.exceptions

        extra: tuple[type[BaseException], ...] = (urllib3.exceptions.HTTPError,)
    except ImportError:  # pragma: no cover - urllib3 comes with dulwich
        extra = ()
    return (GitProtocolError, NotGitRepository, OSError, *extra)


def remote_refs(url: str, prefix: str, ssh_command: str | None = None) -> dict[str, str]:
    """The refs of a remote under ``prefix``, from the ref advertisement alone."""
    client, path = _transport(url, ssh_command)
    try:
        result = client.get_refs(path.encode("utf-8") if isinstance(path, str) else path)
    except _transport_errors() as exc:
        raise _remote_error(url, exc) from exc
    refs = getattr(result, "refs", result)
    return _text_refs(refs, prefix)


def _text_refs(refs: Mapping[bytes, bytes | None], prefix: str) -> dict[str, str]:
    raw = prefix.encode("utf-8")
    out: dict[str, str] = {}
    for name, sha in refs.items():
        if sha is None or not name.startswith(raw) or name.endswith(b"^{}"):
            continue
        try:
            out[name.decode("utf-8")] = sha.decode("ascii")
        except UnicodeDecodeError:
            continue
    return out


def open_repo(path: str | os.PathLike[str] = ".") -> GitRepo:
    """Open the git repository containing ``path``."""
    return GitRepo(path)


def _unlink_quiet(path: str | None) -> None:
    if path is not None:
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass
