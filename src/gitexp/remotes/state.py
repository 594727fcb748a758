"""Per-remote state: which runs are known to be in sync with a remote, so that
push and pull look only at what is new.

``.git/exp/remotes/<remote>.synced`` (docs/format.md, "Per-remote state"): a
JSON header (the remote's URL and artifact store), then one ``<sha> <ref>``
line per ref that was, at that sha, on the remote *with its artifacts in the
remote's store and in the local one* (push uploaded them, or pull downloaded
them, or both sides were checked). It is trusted only while the remote still
advertises the ref at that sha: a run whose ref is at another sha here or
there, that the remote lost, or that is not listed, is looked at again: its
manifest read, its objects checked.

Like git's remote-tracking refs it is derived: deleting it costs one full
comparison on the next push or pull, nothing else. It is thrown away when the
remote's URL or its artifact store change. Local refs with the same cost
problem (10,000 loose ref files) are read through a ref cache in the same
directory (:meth:`gitexp.git.GitRefs.ref_snapshot`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping, Sequence
from urllib.parse import quote

from gitexp.git import GitRepo, RefListing, refs_digest
from gitexp.remotes.config import Remote

STATE_VERSION = 1
_LINE = re.compile(r"^([0-9a-f]{40}) ([^\n]+)$", re.MULTILINE)


def state_dir(repo: GitRepo) -> str:
    """``.git/exp/remotes``: per-remote state and the local ref cache."""
    return os.path.join(repo.exp_dir, "remotes")


def ref_cache(repo: GitRepo, prefix: str) -> str:
    """The cache file of the local refs under ``prefix`` (shared by every remote)."""
    name = quote(prefix.strip("/"), safe="")
    return os.path.join(state_dir(repo), f"local-{name}.refs")


def _key(remote: Remote) -> str:
    if remote.name:
        return quote(remote.name, safe="")
    return "url-" + hashlib.sha1(remote.url.encode("utf-8")).hexdigest()[:16]


class SyncState:
    """The runs known in sync with one remote (module docstring)."""

    def __init__(self, repo: GitRepo, remote: Remote) -> None:
        self.path = os.path.join(state_dir(repo), f"{_key(remote)}.synced")
        self.header = {"version": STATE_VERSION, "url": remote.url, "store": remote.store_url}
        self.synced: dict[str, str] = {}
        self._loaded: dict[str, str] = {}
        self._load()

    def _load(self) -> None:
        try:
            with open(self.path, encoding="utf-8") as f:
                head = json.loads(f.readline())
                body = f.read()
        except (OSError, ValueError, UnicodeDecodeError):
            return
        if head != self.header:  # another URL, another store, another version
            return
        self.synced = {ref: sha for sha, ref in _LINE.findall(body)}
        self._loaded = dict(self.synced)

    def is_synced(self, ref: str, sha: str) -> bool:
        """True when ``ref`` at ``sha`` is known in sync, artifacts included."""
        return self.synced.get(ref) == sha

    def mark(self, ref: str, sha: str) -> None:
        """``ref`` at ``sha`` is in sync now."""
        self.synced[ref] = sha

    def save(self, keep: Mapping[str, str] | None = None) -> None:
        """Write the state atomically (nothing when unchanged). ``keep``: the
        local refs as they are now; entries of refs no longer here are dropped."""
        if keep is not None:
            self.synced = {r: s for r, s in self.synced.items() if r in keep}
        if self.synced == self._loaded:
            return
        body = json.dumps(self.header) + "\n"
        body += "".join(f"{sha} {ref}\n" for ref, sha in sorted(self.synced.items()))
        if _write(self.path, body):
            self._loaded = dict(self.synced)


class SyncTip:
    """The shared refs last seen wholly in sync with one remote, as one digest
    per namespace (:func:`gitexp.git.refs_digest`): every ref here was on the
    remote at the same sha, artifacts included, and the remote had no other.

    ``.git/exp/remotes/<remote>.tip``. While the local refs and the remote's
    listing both still have these digests, a whole push or pull has nothing to
    do and reads nothing more (neither the refs, nor :class:`SyncState`): a
    no-op on 100,000 runs costs the remote's ref listing. Derived and
    deletable, like the state, and it stands on it: it names the state file it
    was written beside (inode, size, mtime), so a state deleted or written
    again since makes it void, as does another URL or store.
    """

    def __init__(self, repo: GitRepo, remote: Remote) -> None:
        self.path = os.path.join(state_dir(repo), f"{_key(remote)}.tip")
        self.state_path = os.path.join(state_dir(repo), f"{_key(remote)}.synced")
        self.header = {"version": STATE_VERSION, "url": remote.url, "store": remote.store_url}

    def _expected(self, digests: Mapping[str, str]) -> dict[str, object]:
        try:
            st = os.stat(self.state_path)
            state: list[int] | None = [st.st_ino, st.st_size, st.st_mtime_ns]
        except OSError:
            state = None
        return {**self.header, "state": state, "digests": dict(digests)}

    def _saved(self) -> dict[str, object] | None:
        try:
            with open(self.path, encoding="utf-8") as f:
                saved = json.load(f)
        except (OSError, ValueError, UnicodeDecodeError):
            return None
        return saved if isinstance(saved, dict) else None

    def here(self, repo: GitRepo, prefixes: Sequence[str]) -> dict[str, str] | None:
        """The digests of the local refs under ``prefixes`` when they are still
        the refs last seen wholly in sync (cheap while no ref moved), else None."""
        saved = self._saved()
        tip = saved.get("digests") if saved is not None else None
        if not isinstance(tip, dict) or not tip or saved != self._expected(tip):
            return None  # no tip, or one of another remote, store or state
        digests = {p: repo.ref_snapshot_digest(p, ref_cache(repo, p)) for p in prefixes}
        return digests if tip == digests else None

    @staticmethod
    def listed(listing: RefListing, digests: Mapping[str, str]) -> bool:
        """True when the remote's ``listing`` has these digests too."""
        return all(listing.digest(p) == d for p, d in digests.items())

    def save(self, refs: Mapping[str, str], prefixes: Sequence[str]) -> None:
        """``refs`` (every local ref under ``prefixes``) are wholly in sync now."""
        digests = {
            p: refs_digest({r: s for r, s in refs.items() if r.startswith(p)}) for p in prefixes
        }
        _write(self.path, json.dumps(self._expected(digests)) + "\n")


def _write(path: str, body: str) -> bool:
    """Write a state file atomically; one that cannot be written is not written."""
    tmp = None
    with contextlib.suppress(OSError):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".state-", dir=os.path.dirname(path))
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(body)
        os.replace(tmp, path)
        return True
    if tmp is not None:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    return False
