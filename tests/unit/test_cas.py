"""cas: the BLAKE3 content-addressed store."""

from __future__ import annotations

import os
import stat

import blake3
import pytest

from gitexp.capture import record_path
from gitexp.cas import LocalStore, dir_listing, hash_bytes, hash_file, parse_dir_listing
from gitexp.errors import IntegrityError, InvalidName, ObjectMissing


@pytest.fixture
def cas(tmp_path) -> LocalStore:
    return LocalStore(tmp_path / "exp")


def _objects(cas: LocalStore) -> list[str]:
    return sorted(os.path.join(d, f) for d, _, files in os.walk(cas.objects) for f in files)


def test_put_get_restore_round_trip(cas, tmp_path):
    src = tmp_path / "model.bin"
    data = os.urandom(300_000)
    src.write_bytes(data)
    key, size = cas.put_file(src)
    assert key == blake3.blake3(data).hexdigest() == hash_file(src)[0]
    assert size == len(data)
    # layout: objects/<2 hex>/<62 hex>, read-only, no temp files left behind
    assert _objects(cas) == [os.path.join(cas.objects, key[:2], key[2:])]
    assert not stat.S_IMODE(os.stat(cas.path_for(key)).st_mode) & 0o222
    assert os.listdir(cas.tmp) == []
    assert cas.get_bytes(key) == data
    dest = tmp_path / "restored" / "deep" / "model.bin"
    cas.restore(key, dest, mode=0o100755)
    assert dest.read_bytes() == data
    assert os.access(dest, os.X_OK)
    cas.verify(key)
    assert list(cas.iter_keys()) == [key]


def test_put_bytes_and_put_file_agree_and_are_idempotent(cas, tmp_path):
    data = b"same bytes\n" * 1000
    (tmp_path / "a").write_bytes(data)
    (tmp_path / "b").write_bytes(data)
    k1 = cas.put_bytes(data)
    path = cas.path_for(k1)
    os.utime(path, (1_000_000_000, 1_000_000_000))  # an old object, as gc sees it
    inode = os.stat(path).st_ino
    k2, _ = cas.put_file(tmp_path / "a")
    k3, _ = cas.put_file(tmp_path / "b")
    assert k1 == k2 == k3 == hash_bytes(data)
    assert len(_objects(cas)) == 1
    assert os.stat(path).st_ino == inode  # never written again...
    # ...but freshened, so a gc running now keeps it for the run that logs it again
    assert os.stat(path).st_mtime > 1_000_000_000 + 3600
    assert cas.size_on_disk() == len(data)


def test_empty_file_round_trips(cas, tmp_path):
    (tmp_path / "empty").write_bytes(b"")
    key, size = cas.put_file(tmp_path / "empty")
    assert size == 0 and key == hash_bytes(b"")
    cas.restore(key, tmp_path / "out")
    assert (tmp_path / "out").read_bytes() == b""


def test_corrupted_object_is_refused_and_nothing_is_written(cas, tmp_path):
    data = b"precious weights" * 1000
    key = cas.put_bytes(data)
    path = cas.path_for(key)
    os.chmod(path, 0o644)
    with open(path, "r+b") as f:
        f.seek(100)
        f.write(b"X")
    dest_dir = tmp_path / "dest"
    dest_dir.mkdir()
    with pytest.raises(IntegrityError) as info:
        cas.restore(key, dest_dir / "weights.bin")
    assert info.value.expected == key and info.value.got != key
    assert info.value.exit_code == 6
    assert os.listdir(dest_dir) == []  # no partial file, no temp file
    with pytest.raises(IntegrityError):
        cas.get_bytes(key)
    with pytest.raises(IntegrityError):
        cas.verify(key)


def test_corrupted_object_leaves_an_existing_destination_alone(cas, tmp_path):
    key = cas.put_bytes(b"v2 bytes")
    os.chmod(cas.path_for(key), 0o644)
    with open(cas.path_for(key), "wb") as f:
        f.write(b"garbage")
    dest = tmp_path / "model.bin"
    dest.write_bytes(b"v1 the user's file")
    with pytest.raises(IntegrityError):
        cas.restore(key, dest)
    assert dest.read_bytes() == b"v1 the user's file"
    assert sorted(os.listdir(tmp_path)) == ["exp", "model.bin"]


def test_truncated_object_is_refused(cas, tmp_path):
    key = cas.put_bytes(os.urandom(5000))
    os.chmod(cas.path_for(key), 0o644)
    os.truncate(cas.path_for(key), 100)
    with pytest.raises(IntegrityError):
        cas.restore(key, tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_missing_object_is_objectmissing_and_writes_nothing(cas, tmp_path):
    key = hash_bytes(b"never stored")
    with pytest.raises(ObjectMissing):
        cas.get_bytes(key)
    with pytest.raises(ObjectMissing):
        cas.restore(key, tmp_path / "out" / "x")
    assert not (tmp_path / "out" / "x").exists()
    assert list((tmp_path / "out").iterdir()) == []


@pytest.mark.parametrize("key", ["../../etc/passwd", "ab", "A" * 64, "g" * 64, "a" * 65])
def test_keys_that_are_not_blake3_hex_are_refused(cas, key):
    with pytest.raises(InvalidName):
        cas.path_for(key)
    with pytest.raises(InvalidName):
        cas.has(key)


def test_dir_listing_is_stable_under_input_order_and_parses_back():
    rows = [
        ("b/two.txt", hash_bytes(b"2"), 1, 0o100644),
        ("a.txt", hash_bytes(b"1"), 1, 0o100755),
        ("b/one.txt", hash_bytes(b"3"), 1, 0o100644),
    ]
    listing = dir_listing(rows)
    assert listing == dir_listing(list(reversed(rows)))
    assert parse_dir_listing(listing) == sorted(rows)
    assert listing.decode().splitlines()[0].endswith(" a.txt")


def _make_tree(root, files):
    for rel, data in files:
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(data)


def test_directory_merkle_root_depends_on_content_not_creation_order(cas, tmp_path):
    files = [("x.csv", b"1,2\n"), ("sub/y.csv", b"3,4\n"), ("sub/z/w.bin", b"\0\1")]
    _make_tree(tmp_path / "d1", files)
    _make_tree(tmp_path / "d2", list(reversed(files)))
    e1 = record_path(str(tmp_path / "d1"), "data", "input", cas, store=False).entry
    e2 = record_path(str(tmp_path / "d2"), "data", "input", cas, store=False).entry
    assert e1.blake3 == e2.blake3
    assert e1.kind == "dir" and e1.files == 3 and e1.size == 10
    # the listing is in the CAS, the file bytes are not (hash only)
    listed = parse_dir_listing(cas.get_bytes(e1.blake3))
    assert [p for p, *_ in listed] == ["sub/y.csv", "sub/z/w.bin", "x.csv"]
    assert not cas.has(listed[0][1])
    # one changed byte changes the root
    (tmp_path / "d2" / "sub" / "y.csv").write_bytes(b"3,5\n")
    e3 = record_path(str(tmp_path / "d2"), "data", "input", cas, store=False).entry
    assert e3.blake3 != e1.blake3
    # a renamed file changes the root too
    os.rename(tmp_path / "d1" / "x.csv", tmp_path / "d1" / "x2.csv")
    e4 = record_path(str(tmp_path / "d1"), "data", "input", cas, store=False).entry
    assert e4.blake3 != e1.blake3


def test_stored_directory_can_be_restored_file_by_file(cas, tmp_path):
    files = [("a.txt", b"alpha"), ("b/c.txt", b"gamma")]
    _make_tree(tmp_path / "d", files)
    entry = record_path(str(tmp_path / "d"), "d", "output", cas, store=True).entry
    for rel, key, _size, mode in parse_dir_listing(cas.get_bytes(entry.blake3)):
        cas.restore(key, tmp_path / "back" / rel, mode)
    assert (tmp_path / "back" / "a.txt").read_bytes() == b"alpha"
    assert (tmp_path / "back" / "b" / "c.txt").read_bytes() == b"gamma"


def test_symlink_leaving_the_directory_is_skipped_and_reported(cas, tmp_path):
    _make_tree(tmp_path / "d", [("a.txt", b"a")])
    (tmp_path / "secret").write_bytes(b"outside")
    os.symlink(tmp_path / "secret", tmp_path / "d" / "link")
    hashed = record_path(str(tmp_path / "d"), "d", "output", cas, store=True)
    assert hashed.entry.files == 1
    assert any("link" in w for w in hashed.warnings)


def test_a_big_file_is_copied_in_the_kernel_and_keyed_by_its_bytes(cas, tmp_path):
    """Files from 64 MiB on are copied with sendfile and hashed from the copy:
    the key is the BLAKE3 of the source, the object holds exactly its bytes."""
    from gitexp.cas import BIG

    src = tmp_path / "big.bin"
    block = os.urandom(1 << 20)
    with open(src, "wb") as f:
        for i in range(BIG >> 20):
            f.write(block[i:] + block[:i])
        f.write(b"tail")
    want = blake3.blake3(src.read_bytes()).hexdigest()
    key, size = cas.put_file(src)
    assert (key, size) == (want, BIG + 4)
    stored = cas.path_for(key)
    assert os.path.getsize(stored) == size and not os.stat(stored).st_mode & stat.S_IWUSR
    out = tmp_path / "out.bin"
    cas.restore(key, out)
    assert out.read_bytes() == src.read_bytes()
