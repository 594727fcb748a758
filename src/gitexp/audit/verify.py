"""``git exp verify [RUN | NAME@STAGE]``: check a lineage and say what it proves.

Checks, each ``ok``, ``warning`` or ``failed``:

- signatures: the registry commits that registered the version and put it in
  its stage, the run's commits and its code commit, through ``git
  verify-commit`` (a bad signature fails; an unsigned commit is a warning);
- the run record: the run commit the version names is here, and its manifest
  holds the registered artifact with the same BLAKE3;
- the artifact's bytes: in the local store and hashing to their BLAKE3 (a
  directory: its listing and every file);
- the code: the code commit is here, with the tree the run recorded;
- the data: the run recorded its inputs (a warning when it recorded none);
  stored inputs' bytes verify.

With ``strict``, warnings fail too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gitexp import records as fmt
from gitexp.errors import GitExpError, ModelNotFound, RunNotFound
from gitexp.git import SignatureCheck
from gitexp.records import ArtifactEntry, ExpRef
from gitexp.records.models import EXCLUSIVE_STAGES
from gitexp.registry import record
from gitexp.registry.ops import is_model_address, resolve
from gitexp.registry.record import Version
from gitexp.remotes import listing_files
from gitexp.store import ExpStore, RunRecord

OK, WARNING, FAILED = "ok", "warning", "failed"


@dataclass
class Check:
    """One thing checked."""

    name: str  # signatures, run record, artifact, code, data
    status: str  # ok, warning, failed
    detail: str

    def to_json(self) -> dict[str, str]:
        """As JSON data."""
        return {"check": self.name, "status": self.status, "detail": self.detail}


@dataclass
class Report:
    """What ``verify`` found about one model version or run."""

    subject: str  # "fraud v3 (production)" or "run exp/id"
    facts: dict[str, Any]
    checks: list[Check] = field(default_factory=list)
    signatures: list[dict[str, Any]] = field(default_factory=list)
    strict: bool = False

    @property
    def ok(self) -> bool:
        """No check failed (nor warned, when strict)."""
        bad = (FAILED, WARNING) if self.strict else (FAILED,)
        return not any(c.status in bad for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        """As JSON data."""
        return {
            "subject": self.subject,
            "ok": self.ok,
            "facts": self.facts,
            "checks": [c.to_json() for c in self.checks],
            "signatures": self.signatures,
        }


def _signature_json(what: str, check: SignatureCheck) -> dict[str, Any]:
    return {
        "commit": check.sha,
        "what": what,
        "signed": check.signed,
        "good": check.good,
        "kind": check.kind,
        "signer": check.signer,
        "detail": check.detail,
    }


def _signatures(store: ExpStore, commits: list[tuple[str, str]], report: Report) -> None:
    """Check the signature of each (commit, what); one summary check."""
    repo = store.repo
    good, unsigned, bad, missing = [], [], [], []
    signers: set[str] = set()
    for sha, what in commits:
        if not repo.has_object(sha):
            missing.append(what)
            continue
        check = repo.verify_commit(sha)
        report.signatures.append(_signature_json(what, check))
        if not check.signed:
            unsigned.append(what)
        elif check.good:
            good.append(what)
            if check.signer:
                signers.add(check.signer)
        else:
            bad.append(f"{what} ({check.detail})")
    if bad:
        report.checks.append(Check("signatures", FAILED, "bad signature: " + "; ".join(bad)))
    elif unsigned:
        shown = ", ".join(unsigned[:4]) + (
            f" (+{len(unsigned) - 4} more)" if len(unsigned) > 4 else ""
        )
        report.checks.append(
            Check("signatures", WARNING, f"{len(unsigned)} unsigned commit(s): {shown}")
        )
    elif good:
        report.checks.append(
            Check("signatures", OK, f"{len(good)} commit(s), good: {', '.join(sorted(signers))}")
        )
    if missing:
        report.checks.append(
            Check("signatures", FAILED, "commits not in this repository: " + ", ".join(missing))
        )


def _verify_bytes(store: ExpStore, entry: ArtifactEntry, label: str) -> tuple[str, str]:
    """(status, detail) of an entry's bytes in the local store."""
    cas = store.cas
    try:
        if entry.kind == "dir":
            cas.verify(entry.blake3)
            rows = listing_files(cas.get_bytes(entry.blake3), label)
            for _, key, _, _ in rows:
                cas.verify(key)
            return OK, f"{len(rows)} file(s), {entry.size} bytes, BLAKE3 verified"
        cas.verify(entry.blake3)
        return OK, f"{entry.size} bytes, BLAKE3 {entry.blake3[:16]} verified"
    except GitExpError as exc:
        return FAILED, str(exc)


def _run_facts(rec: RunRecord | None, version: Version | None) -> dict[str, Any]:
    info = rec.info if rec is not None else (version.run if version else {})
    lineage = version.lineage if version is not None else {}
    code = rec.code if rec is not None else {}
    commits = rec.sha if rec is not None else (version.run.get("commit") if version else None)
    return {
        "run": rec.ref.short if rec is not None else f"{info.get('experiment')}/{info.get('id')}",
        "run_commit": commits,
        "status": info.get("status"),
        "user": info.get("user"),
        "host": info.get("host"),
        "start_time": info.get("start_time"),
        "end_time": info.get("end_time"),
        "code_commit": code.get("commit") or lineage.get("code_commit"),
        "branch": code.get("branch") or lineage.get("branch"),
        "dirty": code.get("dirty") if code else lineage.get("dirty"),
        "inputs": (
            fmt.manifest_to_json(rec.inputs()) if rec is not None else lineage.get("inputs", [])
        ),
    }


def _check_code(store: ExpStore, rec: RunRecord | None, version: Version | None) -> Check:
    repo = store.repo
    lineage = version.lineage if version is not None else {}
    code = rec.code if rec is not None else {}
    commit = code.get("commit") or lineage.get("code_commit")
    tree = code.get("tree") or lineage.get("code_tree")
    if not isinstance(commit, str):
        return Check("code", FAILED, "no code commit was recorded")
    if not repo.has_object(commit):
        kept = " (the registry keeps its tree)" if version is not None and version.code_tree else ""
        return Check("code", FAILED, f"code commit {commit[:12]} is not in this repository{kept}")
    got = repo.commit_info(commit).tree
    if isinstance(tree, str) and got != tree:
        return Check(
            "code", FAILED, f"code commit {commit[:12]} has tree {got[:12]}, not {tree[:12]}"
        )
    dirty = " (a snapshot of uncommitted work)" if code.get("dirty") or lineage.get("dirty") else ""
    return Check("code", OK, f"commit {commit[:12]} present{dirty}")


def _check_data(store: ExpStore, inputs: list[ArtifactEntry], label: str) -> Check:
    if not inputs:
        return Check("data", WARNING, "the run recorded no data inputs")
    parts, failed = [], []
    for entry in inputs:
        if entry.stored:
            status, detail = _verify_bytes(store, entry, f"{label}: {entry.path}")
            if status != OK:
                failed.append(f"{entry.path}: {detail}")
                continue
            parts.append(f"{entry.path} (stored, verified)")
        else:
            parts.append(f"{entry.path} (hash {entry.blake3[:12]})")
    if failed:
        return Check("data", FAILED, "; ".join(failed))
    return Check("data", OK, f"{len(inputs)} input(s) recorded: " + ", ".join(parts))


def _read_run(store: ExpStore, run: dict[str, Any]) -> tuple[RunRecord | None, str]:
    sha = run.get("commit")
    try:
        ref = ExpRef(str(run.get("experiment")), str(run.get("id")))
    except GitExpError as exc:
        return None, f"the version names no valid run: {exc}"
    if not isinstance(sha, str) or not store.repo.has_object(sha):
        return None, f"run commit {str(sha)[:12]} is not in this repository"
    try:
        return store.read(ref, sha), ""
    except GitExpError as exc:
        return None, f"run {ref.short} at {sha[:12]}: {exc}"


def _stage_commit(
    store: ExpStore, version: Version
) -> tuple[str | None, str | None, dict[str, Any]]:
    """(the commit that registered the version, the one that put it in its
    current stage, that event) from the model's history."""
    registered = staged = None
    event: dict[str, Any] = {}
    for entry in record.history(store.repo, version.model):
        ev = entry.event
        if ev.get("op") == "register" and ev.get("version") == version.number:
            registered = entry.sha
            break
        if (
            staged is None
            and version.stage in EXCLUSIVE_STAGES
            and ev.get("stage") == version.stage
        ):
            if (ev.get("op") == "promote" and ev.get("version") == version.number) or (
                ev.get("op") == "rollback" and ev.get("to") == version.number
            ):
                staged, event = entry.sha, ev
    return registered, staged, event


def verify_version(store: ExpStore, version: Version, strict: bool = False) -> Report:
    """Check one model version's lineage."""
    subject = f"{version.label} ({version.stage})"
    rec, why = _read_run(store, version.run)
    facts = {
        "model": version.model,
        "version": version.number,
        "stage": version.stage,
        "aliases": version.aliases,
        "registered": version.data.get("registered"),
        **_run_facts(rec, version),
        "artifact": version.artifact.to_json(),
        "metrics": version.data.get("metrics"),
        "environment": version.lineage.get("environment"),
    }
    report = Report(subject, facts, strict=strict)
    registered, staged, event = _stage_commit(store, version)
    if event:
        facts["promoted"] = {k: event.get(k) for k in ("op", "by", "time", "message")}
    commits: list[tuple[str, str]] = []
    if registered:
        commits.append((registered, f"registry: register v{version.number}"))
    if staged:
        commits.append((staged, f"registry: {event.get('op')} to {version.stage}"))
    entry = version.artifact
    if rec is None:
        report.checks.append(Check("run record", FAILED, why))
    else:
        commits += [(sha, f"run commit {sha[:12]}") for sha in store.history(rec.sha)]
        in_run = [a for a in rec.artifacts if a.path == entry.path and a.blake3 == entry.blake3]
        if in_run:
            report.checks.append(
                Check(
                    "run record", OK, f"run {rec.ref.short} records {entry.path} with this BLAKE3"
                )
            )
        else:
            report.checks.append(
                Check(
                    "run record",
                    FAILED,
                    f"run {rec.ref.short} does not record {entry.path} "
                    f"with BLAKE3 {entry.blake3[:16]}",
                )
            )
    code_commit = facts.get("code_commit")
    if isinstance(code_commit, str):
        commits.append((code_commit, f"code commit {code_commit[:12]}"))
    _signatures(store, commits, report)
    status, detail = _verify_bytes(store, entry, f"{version.label}: {entry.path}")
    if status != OK and not store.cas.has(entry.blake3):
        detail = (
            f"{entry.path}: not in the local store (git exp model get "
            f"{version.model}@v{version.number} fetches it, verified)"
        )
    report.checks.append(
        Check("artifact", status, f"{entry.path}: {detail}" if status == OK else detail)
    )
    report.checks.append(_check_code(store, rec, version))
    inputs = (
        rec.inputs()
        if rec is not None
        else [ArtifactEntry.from_json(i) for i in version.lineage.get("inputs") or []]
    )
    report.checks.append(_check_data(store, inputs, version.label))
    return report


def verify_run(store: ExpStore, address: str, strict: bool = False) -> Report:
    """Check one run's lineage: its commits' signatures, its outputs' bytes,
    its code, its inputs."""
    rec = store.read_settled(address)
    report = Report(f"run {rec.ref.short}", _run_facts(rec, None), strict=strict)
    report.facts["artifacts"] = fmt.manifest_to_json(a for a in rec.artifacts if a.role == "output")
    commits = [(sha, f"run commit {sha[:12]}") for sha in store.history(rec.sha)]
    if rec.code_commit:
        commits.append((rec.code_commit, f"code commit {rec.code_commit[:12]}"))
    _signatures(store, commits, report)
    outputs = [a for a in rec.artifacts if a.role == "output" and a.stored]
    failed = []
    for entry in outputs:
        status, detail = _verify_bytes(store, entry, f"{rec.ref.short}: {entry.path}")
        if status != OK:
            failed.append(detail)
    if failed:
        report.checks.append(Check("artifact", FAILED, "; ".join(failed)))
    elif outputs:
        report.checks.append(Check("artifact", OK, f"{len(outputs)} output(s), BLAKE3 verified"))
    else:
        report.checks.append(Check("artifact", WARNING, "the run stored no output artifact"))
    report.checks.append(_check_code(store, rec, None))
    report.checks.append(_check_data(store, rec.inputs(), rec.ref.short))
    return report


def verify(store: ExpStore, target: str | None = None, strict: bool = False) -> list[Report]:
    """Verify ``target``: a model version (``NAME@STAGE``, ``NAME@vN``, ...) or a
    run; without one, the production version of every model.

    Raises:
        ModelNotFound, RunNotFound: nothing to verify.
    """
    if target is not None:
        if is_model_address(target):
            return [verify_version(store, resolve(store, target), strict)]
        try:
            return [verify_run(store, target, strict)]
        except RunNotFound:
            if target in record.list_names(store.repo):
                return [verify_version(store, resolve(store, target), strict)]
            raise
    reports = []
    for name in record.list_names(store.repo):
        try:
            version = resolve(store, f"{name}@production")
        except ModelNotFound:
            continue
        reports.append(verify_version(store, version, strict))
    if not reports:
        raise ModelNotFound("no model has a version in production: name a run or NAME@STAGE")
    return reports
