"""The blob store contract run against every backend: the local CAS, a
pyarrow local-filesystem remote store, and an S3 remote store (moto)."""

from __future__ import annotations

import os

import pytest

from contract.blobstore import BlobStoreContract, RemoteStoreContract
from gitexp.cas import LocalStore
from gitexp.cas.remote import RemoteStore


def _corrupt_local(store: LocalStore, key: str, data: bytes) -> None:
    path = store.path_for(key)
    os.chmod(path, 0o644)
    with open(path, "wb") as f:
        f.write(data)


def _corrupt_remote(store: RemoteStore, key: str, data: bytes) -> None:
    if store.local is not None:  # objects on a file system are read-only, as locally
        os.chmod(store.path_for(key), 0o644)
    with store.fs.open_output_stream(store.path_for(key)) as f:
        f.write(data)


class TestLocalStore(BlobStoreContract):
    @pytest.fixture
    def store(self, tmp_path):
        return LocalStore(tmp_path / "cas")

    @pytest.fixture
    def corrupt(self):
        return _corrupt_local


class TestRemoteStoreLocalFS(RemoteStoreContract):
    @pytest.fixture(params=["path", "file-url"])
    def store(self, request, tmp_path):
        root = tmp_path / "remote-store"
        url = str(root) if request.param == "path" else f"file://{root}"
        return RemoteStore(url)

    @pytest.fixture
    def corrupt(self):
        return _corrupt_remote


def test_a_file_system_store_writes_like_the_local_cas(tmp_path):
    """Objects uploaded to a directory are read-only and leave no temporary file,
    exactly as in the local CAS (the default store of a non-bare remote *is* its CAS)."""
    local = LocalStore(tmp_path / "local")
    key = local.put_bytes(b"weights" * 100)
    remote = RemoteStore(str(tmp_path / "remote" / ".git" / "exp"))
    remote.upload(local, key)
    theirs = LocalStore(tmp_path / "remote" / ".git" / "exp")
    assert theirs.get_bytes(key) == b"weights" * 100
    assert os.stat(theirs.path_for(key)).st_mode & 0o777 == 0o444
    assert not list((tmp_path / "remote" / ".git" / "exp" / "tmp").iterdir())


class TestRemoteStoreS3(RemoteStoreContract):
    @pytest.fixture
    def store(self, s3, request):
        bucket = "contract-" + os.urandom(4).hex()
        s3.make_bucket(bucket)
        return RemoteStore(s3.url(bucket, "cas"))

    @pytest.fixture
    def corrupt(self):
        return _corrupt_remote
