"""The registry in git: ``refs/models/<name>``, one commit per event.

Each commit's tree holds ``model.json`` (the state after the event) and
``versions/<N>/`` per version: ``version.json``, the run's tree (``run/``) and
the code's tree (``code/``). Commits are written here; the ref is moved by
compare-and-swap by the caller. docs/format.md describes the layout.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gitexp import records as fmt
from gitexp.errors import FormatError, GitExpError, ModelNotFound, StoreError
from gitexp.git import MODE_TREE, CommitInfo, GitRepo
from gitexp.records import ArtifactEntry
from gitexp.records.models import (
    CODE_TREE,
    MODEL_JSON,
    MODELS_NAMESPACE,
    RUN_TREE,
    VERSION_JSON,
    VERSIONS_DIR,
    check_format,
    model_ref,
    validate_model_name,
    version_artifact,
    version_dir,
)
from gitexp.registry.state import Event, ModelState, describe_event

SUBJECT_MAX = 100


@dataclass
class Model:
    """A model as read from one commit of its ref."""

    state: ModelState
    sha: str | None  # the commit (None: the model does not exist yet)
    tree: str | None

    @property
    def name(self) -> str:
        """The model's name."""
        return self.state.name


@dataclass
class Version:
    """One version of a model: ``version.json`` plus its stage and aliases now."""

    model: str
    number: int
    stage: str
    aliases: list[str]
    data: dict[str, Any]
    run_tree: str | None = None
    code_tree: str | None = None

    @property
    def artifact(self) -> ArtifactEntry:
        """The registered artifact."""
        return version_artifact(self.data, f"{self.model} v{self.number}: {VERSION_JSON}")

    @property
    def run(self) -> dict[str, Any]:
        """What ``version.json`` says of the run."""
        run = self.data.get("run")
        return run if isinstance(run, dict) else {}

    @property
    def lineage(self) -> dict[str, Any]:
        """Code, inputs, environment."""
        lin = self.data.get("lineage")
        return lin if isinstance(lin, dict) else {}

    @property
    def label(self) -> str:
        """``name vN``."""
        return f"{self.model} v{self.number}"


@dataclass
class HistoryEntry:
    """One commit of a model's ref: the event it applied, and who wrote it."""

    sha: str
    event: Event
    author: str
    commit_time: int
    state: ModelState = field(repr=False)


def batch_doc(got: tuple[str, str, bytes | int] | None, what: str) -> Any:
    """A JSON document from :meth:`GitRepo.cat_batch` (asked with ``max_size``
    MAX_DOC_BYTES), parsed and bounded."""
    if got is None:
        raise FormatError(f"{what} is missing")
    if isinstance(got[2], int):
        raise FormatError(f"{what} is {got[2]:,} bytes, more than {fmt.MAX_DOC_BYTES:,} allowed")
    return fmt.parse_json(got[2], what)


def read(repo: GitRepo, name: str, sha: str | None = None) -> Model:
    """The model at its tip (or at commit ``sha``); a model with no ref and no
    versions when it does not exist yet."""
    ref = model_ref(name)
    if sha is None:
        sha = repo.get_ref(ref)
    if sha is None:
        return Model(ModelState(name), None, None)
    return _read_commit(repo, name, sha)


def _read_commit(repo: GitRepo, name: str, sha: str) -> Model:
    try:
        info = repo.commit_info(sha)
        found = repo.lookup_path(info.tree, MODEL_JSON)
    except (GitExpError, KeyError) as exc:
        raise FormatError(f"model {name} ({sha[:12]}): cannot read its commit: {exc}") from exc
    if found is None:
        raise FormatError(f"model {name} ({sha[:12]}) has no {MODEL_JSON}")
    what = f"model {name} ({sha[:12]}): {MODEL_JSON}"
    blob = repo.read_blob(found[1], fmt.MAX_DOC_BYTES)
    state = ModelState.from_json(fmt.parse_json(blob, what), what)
    if state.name != name:
        raise FormatError(f"{what} names model {state.name!r}")
    return Model(state, sha, info.tree)


def require(repo: GitRepo, name: str) -> Model:
    """The model at its tip; ModelNotFound when there is no such model."""
    model = read(repo, name)
    if model.sha is None:
        known = ", ".join(list_names(repo)[:10]) or "none yet"
        raise ModelNotFound(f"no model {name!r} in this repository (models: {known})")
    return model


def list_names(repo: GitRepo) -> list[str]:
    """Every model name with a ref here, sorted."""
    out = []
    for ref in repo.ref_names_under(MODELS_NAMESPACE):
        rest = ref[len(MODELS_NAMESPACE) :]
        try:
            out.append(validate_model_name(rest))
        except GitExpError:
            continue  # not a model ref (some other tool's)
    return sorted(out)


def read_version(repo: GitRepo, model: Model, number: int) -> Version:
    """Version ``number`` of ``model`` as of the commit it was read from."""
    state = model.state
    if number not in state.stage_of or model.tree is None:
        raise ModelNotFound(f"model {model.name} has no version {number}")
    what = f"{model.name} v{number}: {VERSION_JSON}"
    found = repo.lookup_path(model.tree, version_dir(number))
    if found is None or found[0] != MODE_TREE:
        raise FormatError(
            f"model {model.name} ({model.sha or ''}): {version_dir(number)} is missing"
        )
    entries = repo.read_tree(found[1])
    if VERSION_JSON not in entries:
        raise FormatError(f"{what} is missing")
    blob = repo.read_blob(entries[VERSION_JSON][1], fmt.MAX_DOC_BYTES)
    data = check_format(fmt.parse_json(blob, what), what)
    if data.get("version") != number or data.get("model") != model.name:
        raise FormatError(f"{what} describes another version")
    version_artifact(data, what)  # a version whose artifact entry is malformed is refused
    run_tree = entries.get(RUN_TREE)
    code_tree = entries.get(CODE_TREE)
    return Version(
        model.name,
        number,
        state.stage_of[number],
        state.aliases_of(number),
        data,
        run_tree[1] if run_tree and run_tree[0] == MODE_TREE else None,
        code_tree[1] if code_tree and code_tree[0] == MODE_TREE else None,
    )


def read_versions(repo: GitRepo, model: Model) -> list[Version]:
    """Every version of ``model``, oldest first, read in one batch."""
    if model.tree is None or not model.state.stage_of:
        return []
    numbers = sorted(model.state.stage_of)
    names = [f"{model.tree}:{version_dir(n)}/{VERSION_JSON}" for n in numbers]
    blobs = repo.cat_batch(names, fmt.MAX_DOC_BYTES)
    out = []
    for n, got in zip(numbers, blobs):
        what = f"{model.name} v{n}: {VERSION_JSON}"
        data = check_format(batch_doc(got, what), what)
        state = model.state
        out.append(Version(model.name, n, state.stage_of[n], state.aliases_of(n), data))
    return out


def write(
    repo: GitRepo,
    model: Model,
    state: ModelState,
    message: str,
    new_version: tuple[int, bytes, str | None, str | None] | None = None,
) -> Model:
    """Write the commit of ``state`` on top of ``model`` (its tip is the parent);
    ``new_version`` is (N, version.json, run tree, code tree) of a registration.
    Returns the model at the new commit (the ref is not moved here)."""
    changes: dict[str, Any] = {MODEL_JSON: fmt.canonical_json(state.to_json())}
    if new_version is not None:
        number, doc, run_tree, code_tree = new_version
        base = version_dir(number)
        changes[f"{base}/{VERSION_JSON}"] = doc
        if run_tree is not None:
            changes[f"{base}/{RUN_TREE}"] = (MODE_TREE, run_tree)
        if code_tree is not None:
            changes[f"{base}/{CODE_TREE}"] = (MODE_TREE, code_tree)
    tree = repo.update_tree(model.tree, changes)
    sha = repo.write_commit(tree, [model.sha] if model.sha else [], message)
    return Model(state, sha, tree)


def commit_message(name: str, event: Event, details: Sequence[str] = ()) -> str:
    """The commit's message: what happened (and why), then details, one per line."""
    subject = describe_event(name, event)
    why = str(event.get("message") or "").strip()
    first = why.splitlines()[0] if why else ""
    if first:
        subject = f"{subject}: {first}"
    if len(subject) > SUBJECT_MAX:
        subject = subject[: SUBJECT_MAX - 1] + "…"
    body = [ln for ln in why.splitlines()[1:]] if why else []
    lines = [subject, ""]
    if body:
        lines += [*body, ""]
    lines += list(details)
    return "\n".join(lines).rstrip() + "\n"


def history(repo: GitRepo, name: str, limit: int | None = None) -> Iterator[HistoryEntry]:
    """The model's commits, newest first (the first-parent chain of its ref)."""
    sha = repo.get_ref(model_ref(name))
    if sha is None:
        raise ModelNotFound(f"no model {name!r} in this repository")
    yield from walk(repo, name, sha, limit)


def walk(
    repo: GitRepo, name: str, sha: str | None, limit: int | None = None, stop: str | None = None
) -> Iterator[HistoryEntry]:
    """Commits from ``sha`` back to the first (or up to, not including, ``stop``),
    newest first; their ``model.json`` files read in one batch."""
    infos: list[CommitInfo] = []
    while sha is not None and sha != stop and (limit is None or len(infos) < limit):
        info = repo.commit_info(sha)
        infos.append(info)
        sha = info.parents[0] if info.parents else None
    if not infos:
        return
    blobs = repo.cat_batch([f"{info.tree}:{MODEL_JSON}" for info in infos], fmt.MAX_DOC_BYTES)
    for info, got in zip(infos, blobs):
        what = f"model {name} ({info.sha[:12]}): {MODEL_JSON}"
        state = ModelState.from_json(batch_doc(got, what), what)
        if state.name != name:
            raise FormatError(f"{what} names model {state.name!r}")
        event = state.event or {"op": "register"}
        yield HistoryEntry(info.sha, event, info.author, info.commit_time, state)


def chain(repo: GitRepo, sha: str | None, limit: int = 1_000_000) -> list[str]:
    """The commit ids from ``sha`` back to the model's first commit, newest first."""
    out: list[str] = []
    while sha is not None and len(out) < limit:
        out.append(sha)
        if not repo.has_object(sha):
            raise StoreError(f"registry commit {sha[:12]} is missing")
        info = repo.commit_info(sha)
        sha = info.parents[0] if info.parents else None
    return out


def merge_base(repo: GitRepo, a: str, b: str) -> str | None:
    """The newest commit both histories share (None: they share none)."""
    theirs = set(chain(repo, b))
    for sha in chain(repo, a):
        if sha in theirs:
            return sha
    return None


def check_model_commit(repo: GitRepo, name: str, sha: str, known: Collection[str] = ()) -> str:
    """Why a commit from elsewhere is not a readable model ('' when it is): its
    ``model.json`` and every version it lists must read, and so must every
    commit of its history down to one in ``known`` (read here before)."""
    try:
        model = _read_commit(repo, name, sha)
        read_versions(repo, model)
        cur: str | None = sha
        while cur is not None and cur not in known:
            _read_commit(repo, name, cur)
            parents = repo.commit_info(cur).parents
            if len(parents) > 1:
                return f"registry commit {cur[:12]} has {len(parents)} parents"
            cur = parents[0] if parents else None
    except (GitExpError, KeyError, ValueError) as exc:
        return str(exc)
    return ""


def models_under(refs: Mapping[str, str]) -> dict[str, str]:
    """model name -> sha for the refs under ``refs/models/`` of ``refs``."""
    out = {}
    for ref, sha in refs.items():
        if not ref.startswith(MODELS_NAMESPACE):
            continue
        try:
            out[validate_model_name(ref[len(MODELS_NAMESPACE) :])] = sha
        except GitExpError:
            continue
    return out


__all__ = [
    "VERSIONS_DIR",
    "HistoryEntry",
    "Model",
    "Version",
    "chain",
    "check_model_commit",
    "commit_message",
    "history",
    "list_names",
    "merge_base",
    "models_under",
    "read",
    "read_version",
    "read_versions",
    "require",
    "walk",
    "write",
]
