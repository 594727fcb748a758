"""The content-addressed store (CAS): large files stored once, keyed by BLAKE3.

Layout: ``<root>/objects/<first 2 hex>/<remaining 62 hex>`` holds the exact
bytes whose BLAKE3 is the hex key. Objects are written to ``<root>/tmp/`` and
renamed into place, so a reader never sees a partial object, and an object
that exists is never written again. Every read that restores a file verifies
the digest. This module is the only one that imports ``blake3``.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import os
import re
import stat
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from typing import IO, Any

from gitexp.errors import (
    FormatError,
    IntegrityError,
    InvalidName,
    ObjectMissing,
    StoreError,
    UsageError,
)

CHUNK = 1 << 20
BIG = 64 << 20  # from this size on, hash with all cores
SMALL = 4 << 20  # up to this size a file is hashed before it is copied (read into memory)
_KEY_RE = re.compile(r"[0-9a-f]{64}")  # always fullmatch: "$" would let a "\n" through


def _hasher(size_hint: int = 0) -> Any:
    import blake3

    if size_hint >= BIG:
        return blake3.blake3(max_threads=blake3.blake3.AUTO)
    return blake3.blake3()


def hash_bytes(data: bytes) -> str:
    """BLAKE3 hex digest of ``data``."""
    h = _hasher(len(data))
    h.update(data)
    return str(h.hexdigest())


def check_key(key: str) -> str:
    """Refuse anything that is not a 64-digit lowercase hex BLAKE3 key."""
    if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
        raise InvalidName(f"{key!r} is not a BLAKE3 hex digest", str(key))
    return key


def _copy_hashing(src: IO[bytes], dst: IO[bytes] | None, size_hint: int) -> tuple[str, int]:
    h = _hasher(size_hint)
    total = 0
    chunk = CHUNK if size_hint < BIG else 8 * CHUNK
    buf = bytearray(chunk)
    view = memoryview(buf)
    while True:
        n = src.readinto(buf)  # type: ignore[attr-defined]
        if not n:
            break
        part = view[:n]
        h.update(part)
        if dst is not None:
            dst.write(part)
        total += n
    return str(h.hexdigest()), total


def _kernel_copy_hashing(
    src: IO[bytes], dst: IO[bytes], dst_path: str, size: int
) -> tuple[str, int]:
    """Copy a big file in the kernel (``sendfile``: no pass through Python's
    buffers), then hash the copy itself from the page cache with every core.

    The key is computed from the bytes stored, so it always names them; the
    caller's stat check before and after says whether they are the source's.
    About twice as fast as copying and hashing in 8 MB reads for a 1 GB file.
    Falls back to :func:`_copy_hashing` where ``sendfile`` cannot copy files.
    """
    dst.flush()
    copied = 0
    try:
        while True:
            n = os.sendfile(dst.fileno(), src.fileno(), copied, max(size - copied, 1 << 26))
            if n == 0:
                break
            copied += n
    except OSError:
        if copied:
            raise
        return _copy_hashing(src, dst, size)
    h = _hasher(copied)
    if copied:
        h.update_mmap(dst_path)
    return str(h.hexdigest()), copied


def copy_hashing(src: IO[bytes], dst: IO[bytes] | None, size_hint: int = 0) -> tuple[str, int]:
    """Copy ``src`` to ``dst`` (or just read it when None), hashing on the way.

    Returns (BLAKE3 hex, bytes copied). For stores outside this module that
    must verify what they move without importing blake3.
    """
    return _copy_hashing(src, dst, size_hint)


def hash_file(path: str | os.PathLike[str]) -> tuple[str, int]:
    """(BLAKE3 hex, size) of a file, refusing one that changes while it is read."""
    path = os.fspath(path)
    before = os.stat(path)
    with open(path, "rb") as f:
        digest, size = _copy_hashing(f, None, before.st_size)
    _check_unchanged(path, before, size)
    return digest, size


def _check_unchanged(path: str, before: os.stat_result, size: int) -> None:
    after = os.stat(path)
    if (
        after.st_size != before.st_size
        or after.st_mtime_ns != before.st_mtime_ns
        or size != before.st_size
    ):
        raise StoreError(f"{path} changed while it was being read; log it again once it is stable")


class StatCache:
    """Hash once: remembers the BLAKE3 of files by (path, size, mtime, inode).

    Like git's index: a file whose size, mtime and inode are unchanged is not
    read again. An entry is only trusted when the file's mtime was at least
    RACY_NS older than the moment it was hashed (a change within the same
    timestamp tick would otherwise go unseen). A cache that cannot be opened
    or written (read-only repository) is simply not used.

    The database is a cache, so it is written without waiting for the disk
    (SQLite's WAL with ``synchronous=NORMAL``: a power loss may forget the last
    entries, never corrupts the others), and one connection per database serves
    the whole process: closing the last connection checkpoints the WAL with two
    fsyncs, which cost more than the rest of a small run's artifact logging.
    """

    RACY_NS = 2_000_000_000

    def __init__(self, path: str) -> None:
        self.path = path
        self._db: Any = None
        self._failed = False

    def _conn(self) -> Any:
        if self._db is None and not self._failed:
            self._db = _shared_db(self.path)
            self._failed = self._db is None
        return self._db

    def get(self, path: str, st: os.stat_result) -> str | None:
        """The cached key of ``path`` when it is unchanged, else None."""
        import sqlite3

        db = self._conn()
        if db is None:
            return None
        try:
            with _DB_LOCK:
                row = db.execute(
                    "SELECT size, mtime_ns, ino, hashed_ns, key FROM files WHERE path = ?",
                    (os.path.abspath(path),),
                ).fetchone()
        except sqlite3.Error:
            return None
        if row is None:
            return None
        size, mtime_ns, ino, hashed_ns, key = row
        # a row is a cache, not a record: one that is not what put() writes (a
        # damaged or edited database) is ignored, never trusted as a key
        if not isinstance(key, str) or not _KEY_RE.fullmatch(key):
            return None
        if not all(type(v) is int for v in (size, mtime_ns, ino, hashed_ns)):
            return None
        if (size, mtime_ns, ino) != (st.st_size, st.st_mtime_ns, st.st_ino):
            return None
        if mtime_ns >= hashed_ns - self.RACY_NS:
            return None
        return key

    def put(self, path: str, st: os.stat_result, key: str) -> None:
        """Remember the key of a file just hashed."""
        import sqlite3

        db = self._conn()
        if db is None:
            return
        try:
            with _DB_LOCK:
                db.execute(
                    "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        os.path.abspath(path),
                        st.st_size,
                        st.st_mtime_ns,
                        st.st_ino,
                        time.time_ns(),
                        key,
                    ),
                )
        except sqlite3.Error:
            pass

    def close(self) -> None:
        """Let go of the database (the process's shared connection stays open)."""
        self._db = None


_DB_LOCK = threading.Lock()
_DBS: collections.OrderedDict[tuple[int, str], Any] = collections.OrderedDict()
_DB_LIMIT = 8  # databases kept open per process (one per repository in use)


def _shared_db(path: str) -> Any:
    """This process's connection to the stat cache at ``path`` (None when it
    cannot be opened). A forked child opens its own: SQLite connections must
    not cross a fork."""
    import sqlite3

    key = (os.getpid(), os.path.abspath(path))
    with _DB_LOCK:
        db = _DBS.get(key)
        if db is not None:
            _DBS.move_to_end(key)
            return db
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            db = sqlite3.connect(path, timeout=5, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(
                "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER,"
                " mtime_ns INTEGER, ino INTEGER, hashed_ns INTEGER, key TEXT)"
            )
        except (OSError, sqlite3.Error):
            return None
        _DBS[key] = db
        while len(_DBS) > _DB_LIMIT:
            (owner, _), old = _DBS.popitem(last=False)
            if owner == os.getpid():
                old.close()
        return db


def close_stat_caches() -> None:
    """Close this process's stat-cache connections (at exit; tests)."""
    with _DB_LOCK:
        while _DBS:
            (owner, _), db = _DBS.popitem()
            if owner == os.getpid():
                db.close()


def _after_fork_in_child() -> None:
    # the parent's connections must neither be used nor closed here (closing one
    # could checkpoint the parent's WAL under it): keep them, unused, for good
    global _DB_LOCK
    _DB_LOCK = threading.Lock()
    _INHERITED.extend(_DBS.values())
    _DBS.clear()


_INHERITED: list[Any] = []
atexit.register(close_stat_caches)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _load_syncfs() -> Any:
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).syncfs
    except (OSError, AttributeError):  # not Linux
        return None


_SYNCFS = _load_syncfs() if os.name == "posix" else None


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _flush_files(paths: list[str], directory: str) -> None:
    """Make the bytes of the files ``paths`` (all in ``directory``'s file
    system) durable: one ``syncfs`` where there is one, else an fsync each."""
    if _SYNCFS is not None:
        try:
            fd = os.open(directory, os.O_RDONLY)
        except OSError:
            fd = -1
        if fd >= 0:
            try:
                if _SYNCFS(fd) == 0:
                    return
            finally:
                os.close(fd)
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            _fsync_path(path)


class LocalStore:
    """A CAS in a local directory (normally ``.git/exp``)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = os.fspath(root)
        self.objects = os.path.join(self.root, "objects")
        self.tmp = os.path.join(self.root, "tmp")
        self.stat_cache = StatCache(os.path.join(self.root, "statcache.db"))
        self._pending: list[tuple[str, str]] | None = None  # in a batch: (temp, key)
        self._pending_lock = threading.Lock()

    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        """Verified objects written inside the block (:meth:`put_verified`) are
        made durable together: no fsync each, one flush of the file system
        (``syncfs``) at the end, then each is moved into place. 10,000 small
        downloads then cost one flush instead of 10,000. An object becomes
        visible only once its bytes are on disk, as outside a batch; until the
        block ends, objects put in it are not visible yet."""
        if self._pending is not None:  # nested: the outer block commits
            yield
            return
        self._pending = []
        try:
            yield
        finally:
            pending, self._pending = self._pending, None
            if pending:
                _flush_files([name for name, _ in pending], self.tmp)
                for name, key in pending:
                    try:
                        self._commit_temp(name, key)
                    except OSError:
                        _unlink_quiet(name)

    def hash_file(self, path: str | os.PathLike[str]) -> tuple[str, int]:
        """(BLAKE3, size) of a file, read only when the stat cache cannot answer."""
        path = os.fspath(path)
        st = os.stat(path)
        key = self.stat_cache.get(path, st)
        if key is not None:
            return key, st.st_size
        key, size = hash_file(path)
        self.stat_cache.put(path, st, key)
        return key, size

    def path_for(self, key: str) -> str:
        """Where the object for ``key`` lives (whether or not it exists)."""
        check_key(key)
        return os.path.join(self.objects, key[:2], key[2:])

    def has(self, key: str) -> bool:
        """True when the store holds ``key``."""
        return os.path.exists(self.path_for(key))

    def _freshen(self, path: str) -> bool:
        """True when the object at ``path`` exists; its mtime is renewed, so that a
        ``gc`` running now counts it as young (the run logging it again has not
        listed it anywhere yet)."""
        try:
            os.utime(path)
            return True
        except FileNotFoundError:
            return False
        except OSError:  # a read-only or shared store: it exists, we cannot touch it
            return os.path.exists(path)

    def _tempfile(self) -> tuple[IO[bytes], str]:
        os.makedirs(self.tmp, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="obj-", dir=self.tmp)
        return os.fdopen(fd, "wb"), name

    def _commit_temp(self, name: str, key: str) -> None:
        final = self.path_for(key)
        if self._freshen(final):
            os.unlink(name)
            return
        os.makedirs(os.path.dirname(final), exist_ok=True)
        os.chmod(name, 0o444)
        os.replace(name, final)

    def put_bytes(self, data: bytes) -> str:
        """Store ``data``; return its key. Idempotent."""
        key = hash_bytes(data)
        if self._freshen(self.path_for(key)):
            return key
        try:
            f, name = self._tempfile()
        except OSError as exc:
            raise StoreError(f"cannot store object {key[:12]}: {exc.strerror or exc}") from exc
        try:
            with f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            self._commit_temp(name, key)
        except OSError as exc:
            _unlink_quiet(name)
            raise StoreError(f"cannot store object {key[:12]}: {exc.strerror or exc}") from exc
        except BaseException:
            _unlink_quiet(name)
            raise
        return key

    def put_file(self, path: str | os.PathLike[str]) -> tuple[str, int]:
        """Store a file's bytes, hashing them on the way (big files: the copy made
        in the kernel, then hashed from the page cache).

        Returns (key, size). Refuses a file that changes while it is copied.
        """
        path = os.fspath(path)
        before = os.stat(path)
        if not stat.S_ISREG(before.st_mode):
            raise UsageError(f"{path} is not a regular file")
        cached = self.stat_cache.get(path, before)
        if cached is not None and self._freshen(self.path_for(cached)):
            return cached, before.st_size  # unchanged and already stored: nothing to read
        if before.st_size <= SMALL:
            return self._put_small(path, before)
        try:
            f, name = self._tempfile()
        except OSError as exc:
            raise StoreError(f"cannot store {path}: {exc.strerror or exc}") from exc
        try:
            with f, open(path, "rb") as src:
                if before.st_size >= BIG:
                    key, size = _kernel_copy_hashing(src, f, name, before.st_size)
                else:
                    key, size = _copy_hashing(src, f, before.st_size)
                f.flush()
                os.fsync(f.fileno())
            _check_unchanged(path, before, size)
            self._commit_temp(name, key)
            self.stat_cache.put(path, before, key)
        except OSError as exc:
            _unlink_quiet(name)
            raise StoreError(f"cannot store {path}: {exc.strerror or exc}") from exc
        except BaseException:
            _unlink_quiet(name)
            raise
        return key, size

    def _put_small(self, path: str, before: os.stat_result) -> tuple[str, int]:
        """A small file is read and hashed first: when the store has its bytes
        already (the same config or model logged again, too young for the stat
        cache), nothing is written, and no fsync is paid for a copy thrown away."""
        try:
            with open(path, "rb") as src:
                data = src.read()
        except OSError as exc:
            raise StoreError(f"cannot store {path}: {exc.strerror or exc}") from exc
        _check_unchanged(path, before, len(data))
        key = self.put_bytes(data)
        self.stat_cache.put(path, before, key)
        return key, len(data)

    def put_verified(self, src: IO[bytes], key: str, size_hint: int = 0) -> int:
        """Store the bytes read from ``src`` under ``key`` only if they hash to ``key``.

        For downloads: bytes from outside enter the store only once verified;
        a mismatch raises IntegrityError and leaves nothing behind. Returns
        the number of bytes read.
        """
        check_key(key)
        f, name = self._tempfile()
        batched = self._pending is not None
        try:
            with f:
                got, size = _copy_hashing(src, f, size_hint)
                f.flush()
                if not batched:
                    os.fsync(f.fileno())
            if got != key:
                raise IntegrityError(
                    f"object {key[:12]} was refused: its bytes hash to {got[:12]}", key, got
                )
            with self._pending_lock:
                pending = self._pending
                if pending is not None:
                    pending.append((name, key))
            if pending is None:
                if batched:  # the batch ended meanwhile (another thread): on our own
                    _fsync_path(name)
                self._commit_temp(name, key)
        except BaseException:
            _unlink_quiet(name)
            raise
        return size

    def get_bytes(self, key: str) -> bytes:
        """The verified bytes of an object."""
        try:
            with open(self.path_for(key), "rb") as f:
                data = f.read()
        except FileNotFoundError as exc:
            raise ObjectMissing(f"object {key[:12]} is not in the local store", key) from exc
        got = hash_bytes(data)
        if got != key:
            raise IntegrityError(
                f"object {key[:12]} is damaged: its bytes hash to {got[:12]}", key, got
            )
        return data

    def restore(self, key: str, dest: str | os.PathLike[str], mode: int | None = None) -> None:
        """Write the object to ``dest`` atomically, verifying its BLAKE3 first.

        Nothing is left at ``dest`` when the object is damaged.
        """
        tmp = self.restore_beside(key, dest, mode)
        try:
            os.replace(tmp, dest)
        except BaseException:
            _unlink_quiet(tmp)
            raise

    def restore_beside(
        self, key: str, dest: str | os.PathLike[str], mode: int | None = None
    ) -> str:
        """The verified bytes of an object in a new temporary file next to
        ``dest`` (its directory created), with ``mode``'s permissions; the caller
        renames it into place, or removes it. Nothing is left when the object is
        damaged or missing."""
        dest = os.fspath(dest)
        src_path = self.path_for(key)
        parent = os.path.dirname(os.path.abspath(dest)) or "."
        os.makedirs(parent, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".gitexp-", dir=parent)
        try:
            with os.fdopen(fd, "wb") as out:
                try:
                    src = open(src_path, "rb")
                except FileNotFoundError as exc:
                    raise ObjectMissing(
                        f"object {key[:12]} is not in the local store", key
                    ) from exc
                with src:
                    got, _ = _copy_hashing(src, out, os.fstat(src.fileno()).st_size)
            if got != key:
                raise IntegrityError(
                    f"object {key[:12]} is damaged: its bytes hash to {got[:12]}", key, got
                )
            if mode is not None:
                os.chmod(tmp, file_mode(mode))
        except BaseException:
            _unlink_quiet(tmp)
            raise
        return tmp

    def verify(self, key: str) -> None:
        """Raise IntegrityError or ObjectMissing unless the object is intact."""
        try:
            with open(self.path_for(key), "rb") as f:
                got, _ = _copy_hashing(f, None, os.fstat(f.fileno()).st_size)
        except FileNotFoundError as exc:
            raise ObjectMissing(f"object {key[:12]} is not in the local store", key) from exc
        if got != key:
            raise IntegrityError(
                f"object {key[:12]} is damaged: its bytes hash to {got[:12]}", key, got
            )

    def iter_verified(self, key: str, chunk: int = CHUNK) -> Iterator[bytes]:
        """The bytes of an object in chunks, hashed as they are read.

        The last chunk is held back until the whole object has hashed to its
        key, so a damaged object never comes out whole: IntegrityError is
        raised in place of its last chunk (a server streaming it aborts the
        response). Memory stays at two chunks whatever the object's size.
        """
        try:
            f = open(self.path_for(key), "rb")
        except FileNotFoundError as exc:
            raise ObjectMissing(f"object {key[:12]} is not in the local store", key) from exc
        with f:
            h = _hasher(os.fstat(f.fileno()).st_size)
            held = b""
            while True:
                data = f.read(chunk)
                if not data:
                    break
                h.update(data)
                if held:
                    yield held
                held = data
        got = str(h.hexdigest())
        if got != key:
            raise IntegrityError(
                f"object {key[:12]} is damaged: its bytes hash to {got[:12]}", key, got
            )
        if held:
            yield held

    def iter_keys(self) -> Iterator[str]:
        """Every key in the store."""
        if not os.path.isdir(self.objects):
            return
        for d in sorted(os.listdir(self.objects)):
            sub = os.path.join(self.objects, d)
            if len(d) != 2 or not os.path.isdir(sub):
                continue
            for rest in sorted(os.listdir(sub)):
                key = d + rest
                if _KEY_RE.fullmatch(key):
                    yield key

    def size_on_disk(self) -> int:
        """Total bytes of all objects."""
        return sum(os.path.getsize(self.path_for(k)) for k in self.iter_keys())


def contained_path(root: str, rel: str) -> str:
    """``root/rel`` for a file to restore, refusing a place a symlink leads out of
    ``root`` (StoreError naming ``rel``).

    A run's snapshot or a work tree may hold symlinks that point anywhere; every
    directory on the way to the file that exists, at any depth, must resolve
    inside ``root`` (a link to another place inside it is fine). The file itself
    may be a symlink: a restore renames over it, never writes through it.
    Directories that do not exist yet are created by the restore, inside.
    """
    parts = rel.split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise StoreError(f"{rel!r} is not a normalised relative path")
    real_root = os.path.realpath(root)
    path = root
    for part in parts[:-1]:
        path = os.path.join(path, part)
        if not os.path.lexists(path):
            break
        real = os.path.realpath(path)
        if real != real_root and not real.startswith(real_root + os.sep):
            raise StoreError(
                f"{rel}: a symlink leads this path out of {root} ({path} -> {real}); refused"
            )
    return os.path.join(root, *parts)


def replace_tree(tmp: str, target: str) -> None:
    """Put the finished directory ``tmp`` at ``target``, replacing whatever is
    there (a file, a link, a directory) without leaving ``target`` half
    written: the old one is moved aside in the same directory, then removed."""
    if os.path.lexists(target):
        import shutil

        trash = tempfile.mkdtemp(prefix=".gitexp-old-", dir=os.path.dirname(target))
        os.replace(target, os.path.join(trash, "old"))
        os.replace(tmp, target)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, target)


def file_mode(mode: int) -> int:
    """The permissions a restored file gets for a recorded mode: ``0o755`` when
    any execute bit is set, else ``0o644`` (as git checks files out). Never
    writable by others, never setuid, whatever a manifest from elsewhere says."""
    return 0o755 if mode & 0o111 else 0o644


def _unlink_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def dir_listing(entries: Iterable[tuple[str, str, int, int]]) -> bytes:
    """The canonical listing of a directory: one ``<mode> <blake3> <size> <path>`` line per file.

    Sorted by path. The BLAKE3 of this text is the directory's Merkle root, and
    the text itself is stored in the CAS so a directory can be restored and
    compared file by file.
    """
    lines = [f"{mode:o} {key} {size} {path}\n" for path, key, size, mode in sorted(entries)]
    return "".join(lines).encode("utf-8")


def parse_dir_listing(data: bytes) -> list[tuple[str, str, int, int]]:
    """Inverse of :func:`dir_listing`: (path, key, size, mode) per file.

    FormatError for anything :func:`dir_listing` would not write (a listing
    from elsewhere is only as good as its writer).
    """
    out = []
    try:
        for line in data.decode("utf-8").splitlines():
            mode, key, size, path = line.split(" ", 3)
            if mode not in ("100644", "100755"):
                raise ValueError(f"mode {mode!r} of {path!r} is not 100644 or 100755")
            if not size.isdigit():
                raise ValueError(f"size {size!r} of {path!r} is not a number")
            out.append((path, check_key(key), int(size), int(mode, 8)))
    except (ValueError, InvalidName) as exc:  # UnicodeDecodeError is a ValueError
        raise FormatError(f"a directory listing does not parse: {exc}") from exc
    return out
