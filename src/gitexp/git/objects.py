"""Git objects: blobs, trees and commits, written as loose objects (never one
pack per run), read through dulwich or a batch of ``git cat-file``."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import tempfile
import time
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gitexp.errors import (
    FormatError,
    ObjectMissing,
    StoreError,
)
from gitexp.git.base import (
    BIG_BLOB,
    CAT_PROCESSES,
    CAT_SPLIT,
    MODE_FILE,
    MODE_TREE,
    _unlink_quiet,
)
from gitexp.git.signing import GitSigning

# A tree change (``update_tree``): bytes to store as a new blob, ``(mode, sha)``
# of an existing object, or None to delete the path.
TreeValue = bytes | bytearray | memoryview | tuple[int, str] | None
_TYPE_NUMS = {"commit": 1, "tree": 2, "blob": 3, "tag": 4}
_HEX = frozenset(b"0123456789abcdef")
_TREE_ENTRY = re.compile(rb"([0-7]+) ([^\0]*)\0(.{20})", re.S)  # mode, name, sha


def _too_big(sha: str, size: int, limit: int) -> FormatError:
    return FormatError(f"git object {sha[:12]} is {size:,} bytes, more than {limit:,} allowed")


def _parse_commit(sha: str, raw: bytes) -> CommitInfo | None:
    """A commit's raw bytes as :meth:`GitObjects.commit_info` reads them, or None
    when they are anything but the plain form (dulwich reads those)."""
    head, sep, message = raw.partition(b"\n\n")
    if not sep:
        head, message = raw.rstrip(b"\n"), b""
    tree = ""
    parents: list[str] = []
    author = b""
    commit_time = -1
    for line in head.split(b"\n"):
        if line.startswith(b" "):
            continue  # a continuation (gpgsig, mergetag)
        key, _, value = line.partition(b" ")
        if key == b"tree":
            tree = value.decode("ascii", "replace")
        elif key == b"parent":
            parents.append(value.decode("ascii", "replace"))
        elif key == b"author":
            author = value.rsplit(b" ", 2)[0]
        elif key == b"committer":
            try:
                commit_time = int(value.rsplit(b" ", 2)[1])
            except (IndexError, ValueError):
                return None
    shas = [tree, *parents]
    if commit_time < 0 or any(len(x) != 40 or not _HEX.issuperset(x.encode()) for x in shas):
        return None
    return CommitInfo(
        sha=sha,
        tree=tree,
        parents=parents,
        message=message.decode("utf-8", "replace"),
        author=author.decode("utf-8", "replace"),
        commit_time=commit_time,
    )


@dataclass
class CommitInfo:
    """What the layers above need of a commit."""

    sha: str
    tree: str
    parents: list[str]
    message: str
    author: str
    commit_time: int


class GitObjects(GitSigning):
    """Reading and writing git objects."""

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
            except (FileNotFoundError, FileExistsError):
                # a concurrent `git gc` (prune-packed) removed the empty fan-out
                # directory between a mkdir that found it and our file (makedirs then
                # reports it as existing but not a directory): try again
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

    def present(self, shas: Sequence[str]) -> set[str]:
        """The objects of ``shas`` this repository holds: one ``git cat-file
        --batch-check`` for many (dulwich looks each one up in every pack)."""
        if len(shas) < 64:
            return {s for s in shas if self.has_object(s)}
        import threading

        try:
            proc = subprocess.Popen(
                ["git", "--git-dir", self.common_dir, "cat-file", "--batch-check"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        except OSError:
            return {s for s in shas if self.has_object(s)}
        assert proc.stdin is not None and proc.stdout is not None
        stdin = proc.stdin

        def feed() -> None:
            try:
                stdin.write("".join(f"{s}\n" for s in shas).encode("ascii"))
                stdin.close()
            except OSError:
                pass

        writer = threading.Thread(target=feed, daemon=True)
        writer.start()
        out = proc.stdout.read().decode("ascii", "replace").splitlines()
        writer.join()
        proc.stdout.close()
        if proc.wait() != 0 or len(out) != len(shas):
            return {s for s in shas if self.has_object(s)}
        return {s for s, line in zip(shas, out) if not line.endswith(" missing")}

    @contextlib.contextmanager
    def preloaded(
        self,
        names: Sequence[str],
        read: Sequence[tuple[str, str, bytes | int] | None] = (),
        max_size: int | None = None,
    ) -> Iterator[int]:
        """Read the objects ``names`` (``git cat-file`` names: ``<sha>``,
        ``<sha>^{tree}``, ``<sha>:<path>``) in one ``git cat-file --batch`` and
        serve :meth:`commit_info`, :meth:`read_tree` and :meth:`read_blob` of
        them from memory inside the block: checking 10,000 fetched runs reads
        their objects ten times faster than dulwich does one by one. Names
        that do not exist are skipped (reading them fails as usual). Yields how
        many objects were read; the caller bounds the memory by the batch size.
        ``read``: objects read already (as :meth:`cat_batch` gives them), served too.
        ``max_size``: objects larger than that are not kept (bounded memory).
        """
        got = [*read, *(self.cat_batch(list(names), max_size) if names else [])]
        cache: dict[bytes, tuple[int, bytes]] = {}
        for item in got:
            # an object over max_size comes as its size: read it one by one, bounded
            if item is not None and item[1] in _TYPE_NUMS and isinstance(item[2], bytes):
                cache[item[0].encode("ascii")] = (_TYPE_NUMS[item[1]], item[2])
        previous = self._preload
        self._preload = {**previous, **cache} if previous else cache
        try:
            yield len(cache)
        finally:
            self._preload = previous
            self._tree_memo = {}

    def _get(self, sha: str) -> Any:
        key = sha.encode("ascii")
        if self._preload:
            raw = self._preload.get(key)
            if raw is not None:
                from dulwich.objects import ShaFile

                return ShaFile.from_raw_string(raw[0], raw[1], sha=key)  # type: ignore[arg-type]
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

    def read_blob(self, sha: str, limit: int | None = None) -> bytes:
        """The bytes of a blob; with ``limit``, FormatError for a blob larger than
        that, known from the object's header before its bytes are read."""
        if self._preload:
            raw = self._preload.get(sha.encode("ascii"))
            if raw is not None:
                if limit is not None and len(raw[1]) > limit:
                    raise _too_big(sha, len(raw[1]), limit)
                return raw[1]
        if limit is not None:
            size = self.blob_size(sha)
            if size > limit:
                raise _too_big(sha, size, limit)
        return bytes(self._get(sha).as_raw_string())

    def blob_size(self, sha: str) -> int:
        """The size of an object's content, from its header: the first inflated
        bytes of a loose object, the entry header of a packed one (and the
        target size at the start of a delta). Its bytes are not read."""
        loose = os.path.join(self.common_dir, "objects", sha[:2], sha[2:])
        try:
            return _loose_size(loose)
        except FileNotFoundError:
            pass
        from dulwich.pack import PackFileDisappeared

        try:
            for pack in self._store.packs:
                try:
                    offset = pack.index.object_offset(sha.encode("ascii"))
                except KeyError:
                    continue
                if offset is None:
                    continue
                return _packed_size(pack.data.path, offset)
        except (FileNotFoundError, PackFileDisappeared):
            pass  # repacked meanwhile (a background `git gc`): read it as below
        return len(self._get(sha).as_raw_string())  # an alternate, or a race with git gc

    def read_tree(self, sha: str) -> dict[str, tuple[int, str]]:
        """A tree's entries: name -> (mode, sha)."""
        if self._preload:
            key = sha.encode("ascii")
            raw = self._preload.get(key)
            if raw is not None and raw[0] == _TYPE_NUMS["tree"]:
                parsed = self._tree_memo.get(key)
                if parsed is None:
                    parsed = self._tree_memo[key] = self.parse_tree(raw[1])
                return dict(parsed)
        tree = self._get(sha)
        return {
            e.path.decode("utf-8", "surrogateescape"): (e.mode, e.sha.decode("ascii"))
            for e in tree.iteritems()
        }

    def cat_batch(
        self, names: list[str], max_size: int | None = None
    ) -> list[tuple[str, str, bytes | int] | None]:
        """(sha, type, content) of each object named (a sha, ``<sha>^{tree}``,
        ``<sha>:<path>``), None for those that do not exist, read by ``git
        cat-file --batch``. An object larger than ``max_size`` is not kept: its
        size stands for its content. C git reads loose objects ten times faster than
        dulwich, which matters when a listing reads 10,000 new runs. Many names
        are split among CAT_PROCESSES processes at once: loose objects not in the
        page cache are read with that many requests in flight, and both cores
        inflate.

        Raises:
            StoreError: git could not be run, or its output broke off.
        """
        if self._cat_session is not None and not self._cat_session.broken:
            return self._cat_session.read(names, max_size)  # (broken: as without one)
        if len(names) < 2 * CAT_SPLIT:
            return self._cat_batch(names, max_size)
        from concurrent.futures import ThreadPoolExecutor

        size = -(-len(names) // CAT_PROCESSES)
        parts = [names[i : i + size] for i in range(0, len(names), size)]
        with ThreadPoolExecutor(len(parts)) as pool:
            results = list(pool.map(lambda part: self._cat_batch(part, max_size), parts))
        return [got for part in results for got in part]

    def cat_commits_and_trees(
        self, shas: Sequence[str], max_size: int | None = None
    ) -> tuple[
        list[tuple[str, str, bytes | int] | None],
        dict[str, tuple[str, dict[str, tuple[int, str]]]],
    ]:
        """Each commit of ``shas`` and its root tree, read in one :meth:`cat_batch`
        (two results a sha, in order: the commit, then ``<sha>^{tree}``); and the
        root trees that parse, commit sha -> (tree sha, entries). What is not a
        commit with a readable tree is left for the caller to read one by one."""
        read = self.cat_batch([n for s in shas for n in (s, f"{s}^{{tree}}")], max_size)
        roots: dict[str, tuple[str, dict[str, tuple[int, str]]]] = {}
        for sha, commit, tree in zip(shas, read[0::2], read[1::2]):
            if commit is None or commit[1] != "commit" or tree is None or tree[1] != "tree":
                continue
            if not isinstance(tree[2], bytes):
                continue
            try:
                roots[sha] = (tree[0], self.parse_tree(tree[2]))
            except StoreError:
                continue
        return read, roots

    def _cat_batch(
        self, names: list[str], max_size: int | None
    ) -> list[tuple[str, str, bytes | int] | None]:
        try:
            proc = subprocess.Popen(
                ["git", "--git-dir", self.common_dir, "cat-file", "--batch", "--buffer"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        except OSError as exc:
            raise StoreError(f"cannot run git cat-file: {exc.strerror or exc}") from exc
        assert proc.stdin is not None and proc.stdout is not None
        request = b"".join(n.encode("utf-8", "surrogateescape") + b"\n" for n in names)
        try:
            return _exchange(proc.stdin, proc.stdout, request, len(names), max_size, end=True)
        finally:
            proc.stdout.close()
            proc.wait()

    @contextlib.contextmanager
    def cat_session(self) -> Iterator[None]:
        """Inside the block, :meth:`cat_batch` asks one ``git cat-file`` process
        kept running (``--batch-command``) instead of starting processes for
        each batch: checking 100,000 fetched runs reads them in 100 batches,
        and a start costs ~9 ms of CPU. Without ``--batch-command`` (git before
        2.36), batches start their own processes as before."""
        if self._cat_session is not None:
            yield
            return
        session = _CatSession.start(self.common_dir)
        self._cat_session = session
        try:
            yield
        finally:
            self._cat_session = None
            if session is not None:
                session.close()

    @staticmethod
    def parse_tree(raw: bytes) -> dict[str, tuple[int, str]]:
        """A tree object's raw bytes (as :meth:`cat_batch` gives them) as
        :meth:`read_tree` returns it: name -> (mode, sha)."""
        # entries: b"<octal mode> <name>\0" then the 20-byte sha, back to back; the
        # matches cover the whole object exactly when their lengths add up to it
        found = _TREE_ENTRY.findall(raw)
        if sum(len(mode) + len(name) for mode, name, _ in found) + 22 * len(found) != len(raw):
            raise StoreError("a tree object from git cat-file is truncated or malformed")
        return {
            name.decode("utf-8", "surrogateescape"): (int(mode, 8), sha.hex())
            for mode, name, sha in found
        }

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

        tree: Any = Tree()
        for name, (mode, sha) in entries.items():
            tree.add(name.encode("utf-8"), mode, sha.encode("ascii"))
        self._add(tree)
        return str(tree.id.decode("ascii"))

    def update_tree(self, base: str | None, changes: Mapping[str, TreeValue]) -> str:
        """A new tree: ``base`` with ``changes`` applied (nested paths allowed).

        A change is ``bytes`` (stored as a new blob), ``(mode, sha)`` for an
        existing object, or ``None`` to delete.
        """
        return self._update_tree(base, changes)[0]

    def _update_tree(self, base: str | None, changes: Mapping[str, TreeValue]) -> tuple[str, bool]:
        """(the new tree, whether it is empty): an emptied subtree is dropped
        from its parent without reading the new tree back."""
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
            sub_sha, empty = self._update_tree(sub_base, sub)
            if not empty:
                entries[head] = (MODE_TREE, sub_sha)
            else:
                entries.pop(head, None)
        return self.write_tree(entries), not entries

    def write_commit(self, tree: str, parents: list[str], message: str) -> str:
        """Write a commit by the user's identity; return its sha. Signed when the
        user's git signs commits (``commit.gpgSign``), as git signs them."""
        from dulwich.objects import Commit

        ident = self.identity()
        now = int(time.time())
        tz = -time.timezone if not time.localtime(now).tm_isdst else -time.altzone
        commit: Any = Commit()
        commit.tree = tree.encode("ascii")
        commit.parents = [p.encode("ascii") for p in parents]
        commit.author = commit.committer = ident
        commit.author_time = commit.commit_time = now
        commit.author_timezone = commit.commit_timezone = tz
        commit.encoding = b"UTF-8"
        # a command line may hold bytes that are not UTF-8: the message is a summary
        commit.message = message.encode("utf-8", "replace")
        if self.signer() is not None:  # commit.gpgSign: signed as git signs, or not written
            sig = self.sign_payload(commit.as_raw_string())
            assert sig is not None
            # the header holds the signature's lines, the last one without its newline
            commit.gpgsig = sig[:-1] if sig.endswith(b"\n") else sig
        self._add(commit)
        return str(commit.id.decode("ascii"))

    def tags(self) -> dict[str, str]:
        """Every tag (name without ``refs/tags/``) -> the commit it points at,
        annotated tags peeled; tags of something other than a commit are left out."""
        from dulwich.objects import Commit, Tag

        out: dict[str, str] = {}
        for name, sha in self._repo.refs.as_dict(b"refs/tags").items():
            try:
                obj = self._store[sha]
                for _ in range(10):
                    if not isinstance(obj, Tag):
                        break
                    obj = self._store[obj.object[1]]
            except KeyError:
                continue
            if isinstance(obj, Commit):
                out[name.decode("utf-8", "replace")] = obj.id.decode("ascii")
        return out

    def create_tag(
        self,
        name: str,
        target: str,
        message: str,
        tagger: str | None = None,
        when: int | None = None,
    ) -> None:
        """Create the annotated tag ``name`` on commit ``target`` with ``git tag -a``
        (so git's own checks of the name apply, and ``tag.gpgSign``). ``tagger``
        (``Name <email>``) and ``when`` (epoch seconds) set the tagger line."""
        env: dict[str, str] = {}
        if tagger:
            who, _, email = tagger.partition(" <")
            env["GIT_COMMITTER_NAME"] = who
            env["GIT_COMMITTER_EMAIL"] = email.rstrip(">")
        if when is not None:
            env["GIT_COMMITTER_DATE"] = f"{int(when)} +0000"
        self._run_git(["tag", "-a", "-m", message, "--", name, target], env=env)

    def commit_info(self, sha: str) -> CommitInfo:
        """Read a commit."""
        from dulwich.objects import Commit

        if self._preload:
            raw = self._preload.get(sha.encode("ascii"))
            if raw is not None and raw[0] == _TYPE_NUMS["commit"]:
                quick = _parse_commit(sha, raw[1])
                if quick is not None:
                    return quick
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


def _loose_size(path: str) -> int:
    """The size in the header of a loose object (``<type> <size>\\0``), inflating
    only its first bytes."""
    inflate = zlib.decompressobj()
    head = b""
    with open(path, "rb") as f:
        while b"\0" not in head and len(head) < 64:
            chunk = f.read(256)
            if not chunk:
                break
            head += inflate.decompress(chunk, 64 - len(head))
    _, _, rest = head.partition(b" ")
    size, nul, _ = rest.partition(b"\0")
    if not nul or not size.isdigit():
        raise StoreError(f"loose object {path} has a damaged header")
    return int(size)


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    """A delta header's size: 7 bits a byte, least significant first."""
    value = shift = 0
    while True:
        if pos >= len(data):
            raise StoreError("a pack delta header is truncated")
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        shift += 7
        pos += 1
        if not byte & 0x80:
            return value, pos


def _packed_size(pack_path: str, offset: int) -> int:
    """The size of the object at ``offset`` of a pack: from the entry header, or
    for a delta, the target size the delta's first inflated bytes give."""
    with open(pack_path, "rb") as f:
        f.seek(offset)
        head = f.read(64)
        if not head:
            raise StoreError(f"pack {pack_path} is truncated")
        byte = head[0]
        kind = (byte >> 4) & 7
        size = byte & 0x0F
        shift, pos = 4, 1
        while byte & 0x80:
            if pos >= len(head):
                raise StoreError(f"pack {pack_path} has a damaged entry header")
            byte = head[pos]
            size |= (byte & 0x7F) << shift
            shift += 7
            pos += 1
        if kind not in (6, 7):  # not a delta: the header holds the size
            return size
        if kind == 6:  # OFS_DELTA: a negative offset, 7 bits a byte, most significant first
            while head[pos] & 0x80:
                pos += 1
            pos += 1
        else:  # REF_DELTA: the base's 20-byte name
            pos += 20
        f.seek(offset + pos)
        inflate = zlib.decompressobj()
        delta = b""
        while len(delta) < 20:
            chunk = f.read(256)
            if not chunk:
                break
            delta += inflate.decompress(chunk, 20 - len(delta))
            if inflate.eof:
                break
        _, pos = _varint(delta, 0)  # the base's size
        target, _ = _varint(delta, pos)
        return target


def _read_answers(
    out: Any, count: int, max_size: int | None
) -> list[tuple[str, str, bytes | int] | None]:
    """``count`` answers of ``git cat-file --batch`` from the stream ``out``:
    (sha, type, content), None for a name that does not exist, the size for
    content larger than ``max_size`` (read past, never kept)."""
    result: list[tuple[str, str, bytes | int] | None] = []
    for _ in range(count):
        header = out.readline()
        if not header:
            raise StoreError("git cat-file stopped before answering every request")
        parts = header.split()
        if len(parts) != 3 or parts[-1] in (b"missing", b"ambiguous"):
            result.append(None)
            continue
        size = int(parts[2])
        sha, kind = parts[0].decode("ascii"), parts[1].decode("ascii")
        if max_size is not None and size > max_size:
            left = size + 1  # too large to keep: read past it, a MiB at a time
            while left:
                skipped = out.read(min(left, 1 << 20))
                if not skipped:
                    raise StoreError("git cat-file output broke off")
                left -= len(skipped)
            result.append((sha, kind, size))
            continue
        data = out.read(size + 1)
        if len(data) != size + 1:
            raise StoreError("git cat-file output broke off")
        result.append((sha, kind, data[:-1]))
    return result


def _exchange(
    stdin: Any, out: Any, request: bytes, count: int, max_size: int | None, end: bool
) -> list[tuple[str, str, bytes | int] | None]:
    """Send ``request`` to a ``git cat-file`` from a thread (git answers while it
    reads, so neither pipe fills up) and read its ``count`` answers; ``end``:
    close its input after the request (one batch a process), else flush it."""
    import threading

    def feed() -> None:
        try:
            stdin.write(request)
            if end:
                stdin.close()
            else:
                stdin.flush()
        except OSError:  # git died: the reader sees the output end
            pass

    writer = threading.Thread(target=feed, daemon=True)
    writer.start()
    try:
        return _read_answers(out, count, max_size)
    finally:
        writer.join()


class _CatSession:
    """One ``git cat-file --batch-command --buffer`` answering batch after batch."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        import threading

        self.proc = proc
        self.broken = False
        self.lock = threading.Lock()  # one batch at a time: answers come in order

    @classmethod
    def start(cls, git_dir: str) -> _CatSession | None:
        """A session, or None when this git has no ``--batch-command``."""
        try:
            proc = subprocess.Popen(
                ["git", "--git-dir", git_dir, "cat-file", "--batch-command", "--buffer"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL,
            )
        except OSError:
            return None
        session = cls(proc)
        assert proc.stdin is not None and proc.stdout is not None
        try:  # a git without --batch-command says so on stderr and exits: no answer
            proc.stdin.write(b"info HEAD\nflush\n")
            proc.stdin.flush()
            if proc.stdout.readline():
                return session
        except OSError:
            pass
        session.close()
        return None

    def read(
        self, names: list[str], max_size: int | None
    ) -> list[tuple[str, str, bytes | int] | None]:
        proc = self.proc
        assert proc.stdin is not None and proc.stdout is not None
        request = b"".join(
            b"contents " + n.encode("utf-8", "surrogateescape") + b"\n" for n in names
        )
        with self.lock:
            try:
                return _exchange(
                    proc.stdin, proc.stdout, request + b"flush\n", len(names), max_size, end=False
                )
            except BaseException:
                self.broken = True  # answers out of step: no later batch may use it
                raise

    def close(self) -> None:
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.kill()
        self.proc.wait()
