"""The remote artifact store: a CAS behind any ``pyarrow.fs`` URL.

Laid out like the local store (:class:`gitexp.cas.LocalStore`,
``objects/<2 hex>/<62 hex>``): a local path, ``file://``, ``s3://``, ``gs://``,
``hdfs://``. Writes are atomic per object; reads are verified by BLAKE3 before
they enter a local store. Which store goes with which git remote is decided in
:mod:`gitexp.remotes.config`.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Callable, Iterable
from typing import IO, Any, cast

from gitexp.cas import CHUNK, LocalStore, check_key, copy_hashing, hash_bytes
from gitexp.errors import (
    GitExpError,
    IntegrityError,
    InvalidName,
    ObjectMissing,
    RemoteError,
)

_OBJECT_STORES = ("s3", "gcs", "abfs")  # atomic per object: a single put is enough
_LIST_THRESHOLD = 64  # from this many keys on, list the remote store once instead of probing

BytesFn = Callable[[int], None]


class _Counting:
    """A binary reader that tells ``on_bytes`` how much was read through it."""

    def __init__(self, raw: Any, on_bytes: BytesFn) -> None:
        self.raw = raw
        self.on_bytes = on_bytes

    def readinto(self, buf: Any) -> int:
        n = int(self.raw.readinto(buf) or 0)
        if n:
            self.on_bytes(n)
        return n

    def read(self, size: int = -1) -> bytes:
        data = bytes(self.raw.read(size))
        if data:
            self.on_bytes(len(data))
        return data


class RemoteStore:
    """A CAS behind any ``pyarrow.fs`` URL, with the layout of :class:`LocalStore`.

    Writes are atomic per object: to a temporary name then moved into place
    on file systems, a single put on object stores (S3, GCS, Azure), where a
    partial upload never becomes visible. What is read back is verified by
    BLAKE3 before it enters a local store.
    """

    def __init__(self, url: str, base_dir: str | None = None) -> None:
        import pyarrow.fs as pafs

        self.url = url
        try:
            if "://" not in url:
                path = os.path.abspath(os.path.join(base_dir or ".", os.path.expanduser(url)))
                self.fs: Any = pafs.LocalFileSystem()
                self.root = path
            else:
                self.fs, self.root = pafs.FileSystem.from_uri(url)
        except (ValueError, OSError, TypeError) as exc:
            raise RemoteError(f"cannot open artifact store {url}: {_msg(exc)}", url) from exc
        self.root = self.root.rstrip("/")
        # a directory (a path, file://, a mount): written exactly like the local
        # CAS (temporary file, fsync, read-only, rename), which it may well be
        # (the default store of a non-bare remote is that repository's CAS)
        self.local = LocalStore(self.root) if self.fs.type_name == "local" else None
        self.atomic_put = self.fs.type_name in _OBJECT_STORES
        # object stores are latency-bound: move several objects at once
        self.workers = 8 if self.fs.type_name != "local" else 1

    def __repr__(self) -> str:
        return f"RemoteStore({self.url!r})"

    # -------------------------------------------------------------- paths
    def path_for(self, key: str) -> str:
        """Where the object for ``key`` lives in the store."""
        check_key(key)
        return f"{self.root}/objects/{key[:2]}/{key[2:]}"

    def _wrap(self, exc: BaseException, what: str) -> GitExpError:
        return RemoteError(f"artifact store {self.url}: {what}: {_msg(exc)}", self.url)

    # ------------------------------------------------------------ queries
    def has(self, key: str) -> bool:
        """True when the store holds ``key``."""
        import pyarrow.fs as pafs

        try:
            info = self.fs.get_file_info(self.path_for(key))
        except OSError as exc:
            raise self._wrap(exc, "cannot look up an object") from exc
        return bool(info.type == pafs.FileType.File)

    def iter_keys(self) -> Iterable[str]:
        """Every key in the store (one listing, not one request per key)."""
        import pyarrow.fs as pafs

        sel = pafs.FileSelector(f"{self.root}/objects", recursive=True, allow_not_found=True)
        try:
            infos = self.fs.get_file_info(sel)
        except OSError as exc:
            raise self._wrap(exc, "cannot list objects") from exc
        keys = []
        for info in infos:
            if info.type != pafs.FileType.File:
                continue
            parts = info.path.rstrip("/").split("/")
            if len(parts) >= 2:
                key = parts[-2] + parts[-1]
                try:
                    keys.append(check_key(key))
                except InvalidName:
                    continue
        return sorted(keys)

    def missing(self, keys: Iterable[str]) -> list[str]:
        """The keys the store lacks, in the order given, without duplicates."""
        wanted = list(dict.fromkeys(keys))
        if len(wanted) >= _LIST_THRESHOLD:
            present = set(self.iter_keys())
            return [k for k in wanted if k not in present]
        return [k for k in wanted if not self.has(k)]

    # ------------------------------------------------------------- writes
    def _write(
        self, key: str, src: IO[bytes], size_hint: int, on_bytes: BytesFn | None = None
    ) -> int:
        """Copy ``src`` to the object for ``key``, refusing bytes that do not match.

        ``on_bytes`` is told of the bytes as they go out.
        """
        final = self.path_for(key)
        if self.atomic_put:
            # Object stores: verify first, then stream one put to the final key.
            # An upload that dies half-way is never completed, so never visible.
            got, size = copy_hashing(src, None, size_hint)
            if got != key:
                raise IntegrityError(
                    f"object {key[:12]} is damaged: its bytes hash to {got[:12]}", key, got
                )
            src.seek(0)
            try:
                with self.fs.open_output_stream(final) as out:
                    while chunk := src.read(CHUNK):
                        out.write(chunk)
                        if on_bytes is not None:
                            on_bytes(len(chunk))
            except OSError as exc:
                raise self._wrap(exc, f"cannot upload {key[:12]}") from exc
            return size
        if on_bytes is not None:
            src = _Counting(src, on_bytes)  # type: ignore[assignment]
        if self.local is not None:
            try:
                return self.local.put_verified(src, key, size_hint)
            except OSError as exc:
                raise self._wrap(exc, f"cannot upload {key[:12]}") from exc
        tmp = f"{self.root}/tmp/{key[:16]}-{os.urandom(6).hex()}"
        try:
            self.fs.create_dir(f"{self.root}/tmp", recursive=True)
            self.fs.create_dir(final.rsplit("/", 1)[0], recursive=True)
            with self.fs.open_output_stream(tmp) as out:
                got, size = copy_hashing(src, out, size_hint)
            if got != key:
                raise IntegrityError(
                    f"object {key[:12]} is damaged: its bytes hash to {got[:12]}", key, got
                )
            self.fs.move(tmp, final)
        except BaseException as exc:
            try:
                self.fs.delete_file(tmp)
            except OSError:
                pass
            if isinstance(exc, OSError):
                raise self._wrap(exc, f"cannot upload {key[:12]}") from exc
            raise
        return size

    def put_bytes(self, data: bytes) -> str:
        """Store ``data``; return its key. Idempotent."""
        import io

        key = hash_bytes(data)
        if not self.has(key):
            self._write(key, io.BytesIO(data), len(data))
        return key

    def upload(self, local: LocalStore, key: str, on_bytes: BytesFn | None = None) -> int:
        """Copy one object from a local store; return the bytes sent."""
        try:
            src = open(local.path_for(key), "rb")
        except FileNotFoundError as exc:
            raise ObjectMissing(f"object {key[:12]} is not in the local store", key) from exc
        with src:
            return self._write(key, src, os.fstat(src.fileno()).st_size, on_bytes)

    # -------------------------------------------------------------- reads
    def _open(self, key: str, size: int | None = None) -> Any:
        """A reader of the object's bytes that stops past ``size`` (IntegrityError):
        a store shared with others may hold anything at an object's name. In a
        directory, only a regular file is opened, never through a symlink, and
        never blocking (a fifo would hang the reader forever)."""
        if self.local is not None:
            return _Bounded(open_regular(self.path_for(key), key, self.url), key, size)
        try:
            return _Bounded(self.fs.open_input_stream(self.path_for(key)), key, size)
        except FileNotFoundError as exc:
            raise ObjectMissing(f"object {key[:12]} is not in {self.url}", key) from exc
        except OSError as exc:
            if "not exist" in str(exc) or "NoSuchKey" in str(exc) or "Not Found" in str(exc):
                raise ObjectMissing(f"object {key[:12]} is not in {self.url}", key) from exc
            raise self._wrap(exc, f"cannot read {key[:12]}") from exc

    def get_bytes(self, key: str, size: int | None = None) -> bytes:
        """The verified bytes of an object (of at most ``size`` bytes, when given)."""
        with self._open(key, size) as f:
            data = f.read()
        got = hash_bytes(bytes(data))
        if got != key:
            raise IntegrityError(
                f"object {key[:12]} in {self.url} is damaged: its bytes hash to {got[:12]}",
                key,
                got,
            )
        return bytes(data)

    def download(
        self,
        local: LocalStore,
        key: str,
        on_bytes: BytesFn | None = None,
        size: int | None = None,
    ) -> int:
        """Copy one object into a local store, verified; return the bytes read.

        ``size``: what the manifest says the object holds; reading stops past it
        (IntegrityError), so an object that never ends costs no more than that.
        """
        if local.has(key):
            return 0
        with self._open(key, size) as f:
            try:
                src = f if on_bytes is None else cast(IO[bytes], _Counting(f, on_bytes))
                return local.put_verified(src, key)
            except OSError as exc:
                raise self._wrap(exc, f"cannot download {key[:12]}") from exc


class _Bounded:
    """A binary reader that refuses (IntegrityError) to read past ``size`` bytes."""

    def __init__(self, raw: Any, key: str, size: int | None) -> None:
        self.raw = raw
        self.key = key
        self.size = size
        self.left = size

    def __enter__(self) -> _Bounded:
        return self

    def __exit__(self, *exc: object) -> None:
        self.raw.close()

    def close(self) -> None:
        self.raw.close()

    def _take(self, n: int) -> None:
        if self.left is None:
            return
        self.left -= n
        if self.left < 0:
            raise IntegrityError(
                f"object {self.key[:12]} is larger than the {self.size:,} bytes its manifest "
                "records; refused",
                self.key,
                "",
            )

    def readinto(self, buf: Any) -> int:
        view = memoryview(buf)
        if self.left is not None:
            view = view[: self.left + 1]  # one byte past the size is enough to know
        n = int(self.raw.readinto(view) or 0)
        self._take(n)
        return n

    def read(self, size: int = -1) -> bytes:
        if self.left is not None and (size < 0 or size > self.left + 1):
            size = self.left + 1
        data = bytes(self.raw.read(size) if size >= 0 else self.raw.read())
        self._take(len(data))
        return data


def open_regular(path: str, key: str, where: str) -> IO[bytes]:
    """Open the object file ``path`` for reading: a regular file only, the last
    component never followed as a symlink, the open never blocking (O_NONBLOCK:
    a fifo would wait for a writer), checked with fstat on what was opened.
    ObjectMissing when it is not there, IntegrityError when it is not a file."""
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as exc:
        raise ObjectMissing(f"object {key[:12]} is not in {where}", key) from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # O_NOFOLLOW on a symlink
            raise IntegrityError(
                f"object {key[:12]} in {where} is a symlink, not a regular file; refused", key, ""
            ) from exc
        raise RemoteError(
            f"artifact store {where}: cannot read {key[:12]}: {_msg(exc)}", where
        ) from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise IntegrityError(
                f"object {key[:12]} in {where} is not a regular file; refused", key, ""
            )
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _msg(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
