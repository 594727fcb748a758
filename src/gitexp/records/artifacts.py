"""``artifacts.json``: the manifest entries and their normalised paths."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from gitexp.errors import FormatError, InvalidName
from gitexp.records.names import _HEX_RE, ROLES, _has_control, _not_utf8, has_surrogates

FILE_MODES = (0o100644, 0o100755)  # a file, an executable file
DIR_MODE = 0o040000


def normalize_artifact_path(path: str) -> str:
    """Normalise a manifest path; refuse absolute paths and ``..`` components."""
    if not isinstance(path, str) or not path:
        raise InvalidName("artifact path must not be empty", str(path))
    if _has_control(path):
        raise InvalidName(f"artifact path {path!r} contains control characters", path)
    if has_surrogates(path):
        raise InvalidName(_not_utf8("artifact path", path), path)
    text = path.replace("\\", "/")
    if text.startswith("/") or re.match(r"[A-Za-z]:/", text):
        raise InvalidName(f"artifact path {path!r} is absolute; give a relative name", path)
    # (what PurePosixPath(text).parts gives a relative path, without pathlib's cost)
    parts = [p for p in text.split("/") if p not in ("", ".")]
    if any(p == ".." for p in parts):
        raise InvalidName(f"artifact path {path!r} contains '..'", path)
    if not parts:
        raise InvalidName(f"artifact path {path!r} names nothing", path)
    return "/".join(parts)


@dataclass
class ArtifactEntry:
    """One line of ``artifacts.json``."""

    path: str
    blake3: str
    size: int
    mode: int = 0o100644
    role: str = "output"
    source: str | None = None  # where an input came from (repo-relative or absolute)
    kind: str = "file"  # "file" or "dir" (a Merkle root over a listing stored in the CAS)
    files: int | None = None  # number of files under a "dir" entry
    stored: bool = True  # False: only the hash was recorded (inputs not copied to the CAS)

    def to_json(self) -> dict[str, Any]:
        """The manifest entry as JSON data (optional fields omitted when unset)."""
        out: dict[str, Any] = {
            "path": self.path,
            "blake3": self.blake3,
            "size": self.size,
            "mode": f"{self.mode:o}",
            "role": self.role,
        }
        if self.source is not None:
            out["source"] = self.source
        if self.kind != "file":
            out["kind"] = self.kind
            out["files"] = self.files
        if not self.stored:
            out["stored"] = False
        return out

    @classmethod
    def from_json(cls, data: Any) -> ArtifactEntry:
        """Parse and check one manifest entry (names from outside are validated)."""
        if not isinstance(data, dict):
            raise FormatError("artifacts.json: an entry is not an object")
        try:
            path = normalize_artifact_path(data["path"])
            digest = str(data["blake3"])
            size = int(data["size"])
            mode = int(str(data.get("mode", "100644")), 8)
            role = str(data.get("role", "output"))
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"artifacts.json: malformed entry {data!r}: {exc}") from exc
        if not _HEX_RE.fullmatch(digest):
            raise FormatError(f"artifacts.json: {path}: {digest!r} is not a BLAKE3 hex digest")
        if size < 0:
            raise FormatError(f"artifacts.json: {path}: negative size")
        if role not in ROLES:
            raise FormatError(f"artifacts.json: {path}: unknown role {role!r}")
        kind = str(data.get("kind", "file"))
        if kind not in ("file", "dir"):
            raise FormatError(f"artifacts.json: {path}: unknown kind {kind!r}")
        if mode not in ((DIR_MODE,) if kind == "dir" else FILE_MODES):
            allowed = "40000" if kind == "dir" else "100644 or 100755"
            raise FormatError(f"artifacts.json: {path}: mode {data.get('mode')!r} is not {allowed}")
        files = data.get("files")
        source = data.get("source")
        if (files is not None and not isinstance(files, int)) or (
            source is not None and not isinstance(source, str)
        ):
            raise FormatError(f"artifacts.json: {path}: malformed 'files' or 'source'")
        return cls(
            path=path,
            blake3=digest,
            size=size,
            mode=mode,
            role=role,
            source=source,
            kind=kind,
            files=files,
            stored=bool(data.get("stored", True)),
        )


def manifest_to_json(entries: Iterable[ArtifactEntry]) -> list[dict[str, Any]]:
    """``artifacts.json`` content, sorted by (role, path) for stable diffs."""
    return [e.to_json() for e in sorted(entries, key=lambda e: (e.role, e.path))]


def manifest_from_json(data: Any) -> list[ArtifactEntry]:
    """Parse ``artifacts.json`` content."""
    if not isinstance(data, list):
        raise FormatError("artifacts.json is not a list")
    return [ArtifactEntry.from_json(d) for d in data]
