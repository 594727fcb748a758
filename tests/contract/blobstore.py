"""The contract every blob store backend keeps, written once (STYLE.md §8).

A backend's test class subclasses :class:`BlobStoreContract` and provides two
fixtures: ``store`` (an empty store) and ``corrupt`` (a function that replaces
the bytes stored under a key, to play a damaged disk or a lying server).
"""

from __future__ import annotations

import os

import pytest

from gitexp.cas import LocalStore, hash_bytes
from gitexp.errors import IntegrityError, InvalidName, ObjectMissing


class BlobStoreContract:
    def test_put_then_get_round_trips(self, store):
        key = store.put_bytes(b"weights")
        assert key == hash_bytes(b"weights")
        assert store.has(key)
        assert store.get_bytes(key) == b"weights"

    def test_put_is_idempotent(self, store):
        a = store.put_bytes(b"same bytes")
        b = store.put_bytes(b"same bytes")
        assert a == b
        assert list(store.iter_keys()).count(a) == 1

    def test_empty_object(self, store):
        key = store.put_bytes(b"")
        assert store.get_bytes(key) == b""

    def test_iter_keys_lists_every_object(self, store):
        keys = {store.put_bytes(f"object {i}".encode()) for i in range(5)}
        assert set(store.iter_keys()) == keys

    def test_missing_object(self, store):
        key = hash_bytes(b"never stored")
        assert not store.has(key)
        with pytest.raises(ObjectMissing):
            store.get_bytes(key)

    def test_damaged_object_is_never_returned(self, store, corrupt):
        key = store.put_bytes(b"the real thing")
        corrupt(store, key, b"something else")
        with pytest.raises(IntegrityError):
            store.get_bytes(key)

    @pytest.mark.parametrize("key", ["../../etc/passwd", "ab", "Z" * 64, "a" * 63])
    def test_keys_that_are_not_blake3_are_refused(self, store, key):
        with pytest.raises(InvalidName):
            store.has(key)


class RemoteStoreContract(BlobStoreContract):
    """What a remote store adds: transfers to and from a local CAS."""

    def test_transfer_to_and_from_a_local_store(self, store, corrupt, tmp_path):
        """Objects move between a local CAS and this store, verified on the way in."""
        local = LocalStore(tmp_path / "local")
        key = local.put_bytes(b"model" * 1000)
        assert store.upload(local, key) == 5000
        assert store.has(key)
        other = LocalStore(tmp_path / "other")
        assert store.download(other, key) == 5000
        assert other.get_bytes(key) == b"model" * 1000
        bad = store.put_bytes(b"honest")
        corrupt(store, bad, b"dishonest")
        with pytest.raises(IntegrityError):
            store.download(other, bad)
        assert not other.has(bad)
        assert not list((tmp_path / "other" / "tmp").iterdir())  # no partial leftovers

    def test_a_damaged_local_object_is_not_uploaded(self, store, tmp_path):
        local = LocalStore(tmp_path / "local")
        key = local.put_bytes(b"checkpoint")
        os.chmod(local.path_for(key), 0o644)
        with open(local.path_for(key), "wb") as f:
            f.write(b"bit rot")
        with pytest.raises(IntegrityError):
            store.upload(local, key)
        assert not store.has(key)
