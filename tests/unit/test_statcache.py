"""Hash once: an unchanged file is not read again; a changed one always is."""

from __future__ import annotations

import os
import time

from gitexp.cas import LocalStore, hash_bytes


def _age(path, seconds=10):
    t = time.time() - seconds
    os.utime(path, (t, t))


def test_an_unchanged_file_is_not_read_again(tmp_path):
    store = LocalStore(tmp_path / "exp")
    f = tmp_path / "model.bin"
    f.write_bytes(b"weights v1")
    _age(f)
    key, _ = store.put_file(f)
    assert key == hash_bytes(b"weights v1")
    # rewrite the bytes in place keeping size, inode and mtime: only a cache hit
    # (no read) can still answer with the old key, as git's index would
    st = os.stat(f)
    with open(f, "r+b") as fh:
        fh.write(b"weights v9")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert store.put_file(f) == (key, 10)
    assert store.hash_file(f) == (key, 10)


def test_a_changed_file_is_hashed_again_even_with_the_same_size(tmp_path):
    store = LocalStore(tmp_path / "exp")
    f = tmp_path / "model.bin"
    f.write_bytes(b"weights v1")
    _age(f, 20)
    first, _ = store.put_file(f)
    f.write_bytes(b"weights v2")  # same size, new mtime
    _age(f, 10)
    second, _ = store.put_file(f)
    assert second == hash_bytes(b"weights v2") != first
    assert store.get_bytes(second) == b"weights v2"


def test_a_recently_modified_file_is_not_trusted(tmp_path):
    """A file hashed within the same timestamp tick as its last change may
    change again without its mtime moving: such entries are never trusted."""
    store = LocalStore(tmp_path / "exp")
    f = tmp_path / "fresh.bin"
    f.write_bytes(b"aaaa")
    st = os.stat(f)
    store.hash_file(f)
    f.write_bytes(b"bbbb")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))  # same size and mtime: racy
    assert store.hash_file(f)[0] == hash_bytes(b"bbbb")


def test_a_missing_object_is_stored_again_despite_the_cache(tmp_path):
    store = LocalStore(tmp_path / "exp")
    f = tmp_path / "model.bin"
    f.write_bytes(b"weights")
    _age(f)
    key, _ = store.put_file(f)
    path = store.path_for(key)
    os.chmod(path, 0o644)
    os.unlink(path)
    assert store.put_file(f)[0] == key
    assert store.get_bytes(key) == b"weights"
