"""records.run: run.json, env.json and code.json as typed records that lose nothing."""

from __future__ import annotations

import json
import subprocess

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import finished_run, git
from gitexp.errors import UnsupportedFormat
from gitexp.records import CodeInfo, EnvInfo, Note, RunInfo

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=8,
)
known_keys = st.sampled_from(
    sorted({*RunInfo._FIELDS, *CodeInfo._FIELDS, *EnvInfo._FIELDS, "unknown", "x"})
)


@pytest.mark.parametrize("cls", [RunInfo, CodeInfo, EnvInfo])
@given(data=st.dictionaries(known_keys | st.text(max_size=8), json_values, max_size=8))
def test_any_json_object_reads_and_writes_back_unchanged(cls, data):
    """Whatever another release (or a damaged clone) wrote: known fields of the wrong
    type and unknown fields come back exactly, so a rewrite never loses them."""
    assert cls.from_json(data).to_json() == data


def _blob(repo, ref, name):
    return json.loads(git("show", f"{ref}:{name}", cwd=repo))


def test_the_files_a_real_run_writes_read_typed_and_back_unchanged(repo):
    (repo / "dirty.txt").write_text("uncommitted\n")
    ref = finished_run("typed", params={"lr": 0.1}, tags=["b", "a"], name="first", repo=repo)
    run_json = _blob(repo, ref, "run.json")
    info = RunInfo.from_json(run_json)
    assert info.to_json() == run_json
    assert (info.experiment, info.name, info.status, info.tags) == (
        "typed",
        "first",
        "finished",
        ("a", "b"),
    )
    assert info.finished and info.command == ("test",) and info.extra == {}
    assert info.id == ref.rsplit("/", 1)[1]

    code_json = _blob(repo, ref, "code.json")
    code = CodeInfo.from_json(code_json)
    assert code.to_json() == code_json and code.extra == {}
    head = git("rev-parse", "HEAD", cwd=repo).strip()
    assert code.dirty and code.head == head and code.commit == code.snapshot != head
    assert "dirty.txt" in code.changed
    assert git("rev-parse", f"{code.commit}^{{tree}}", cwd=repo).strip() == code.tree

    env_json = _blob(repo, ref, "env.json")
    env = EnvInfo.from_json(env_json)
    assert env.to_json() == env_json and env.extra == {}
    import pytest as _pytest

    assert env.package_versions["pytest"] == _pytest.__version__
    assert env.python["implementation"] == "CPython"


def test_unknown_fields_of_a_newer_writer_are_kept_and_typed_fields_still_read():
    data = {
        "format": 1,
        "status": "failed",
        "exit_code": 3,
        "notes": [{"time": "2026-12-01T00:00:00Z", "text": "hi"}],
        "gpu_hours": 1.5,
        "owner": {"team": "vision"},
    }
    info = RunInfo.from_json(data)
    assert info.exit_code == 3 and info.notes == (Note("2026-12-01T00:00:00Z", "hi"),)
    assert info.extra == {"gpu_hours": 1.5, "owner": {"team": "vision"}}
    assert info.to_json() == data


def test_a_field_of_the_wrong_type_reads_as_absent_and_is_kept_as_written():
    data = {"format": 1, "exit_code": "3", "tags": "oops", "status": 7}
    info = RunInfo.from_json(data)
    assert info.exit_code is None and info.tags == () and info.status == "running"
    assert info.to_json() == data


def test_a_record_made_in_code_writes_only_what_is_set():
    assert RunInfo(format=1, id="x", status="finished").to_json() == {
        "format": 1,
        "id": "x",
        "status": "finished",
    }
    assert CodeInfo(head="a" * 40, dirty=True, changed=("b",)).to_json() == {
        "head": "a" * 40,
        "dirty": True,
        "changed": ["b"],
    }


def test_records_are_frozen():
    info = RunInfo.from_json({"status": "running"})
    with pytest.raises(AttributeError):
        info.status = "finished"  # type: ignore[misc]


def test_another_format_version_is_refused_with_one_line():
    with pytest.raises(UnsupportedFormat, match=r"format version 2; .*upgrade git-exp"):
        RunInfo.from_json({"format": 2}).check_version("run x")
    RunInfo.from_json({"format": 1}).check_version("run x")


def test_git_reads_what_to_json_gives_as_the_same_blob(repo):
    """Written back through canonical JSON, a record is byte for byte the blob git has."""
    from gitexp.records import canonical_json

    ref = finished_run("typed", repo=repo)
    for name, cls in (("run.json", RunInfo), ("code.json", CodeInfo), ("env.json", EnvInfo)):
        raw = subprocess.run(
            ["git", "cat-file", "blob", f"{ref}:{name}"], cwd=repo, capture_output=True, check=True
        ).stdout
        assert canonical_json(cls.from_json(json.loads(raw)).to_json()) == raw, name


def test_a_git_exp_run_run_has_no_field_the_records_do_not_know(repo, gx):
    """Every field git-exp itself writes is typed: ``extra`` is for other writers."""
    gx.ok("run", "-e", "typed", "--", "git", "--version")
    ref = git("for-each-ref", "--format=%(refname)", "refs/experiments/typed", cwd=repo).strip()
    for name, cls in (("run.json", RunInfo), ("code.json", CodeInfo), ("env.json", EnvInfo)):
        record = cls.from_json(_blob(repo, ref, name))
        assert record.extra == {}, (name, record.extra)
    info = RunInfo.from_json(_blob(repo, ref, "run.json"))
    assert info.exit_code == 0 and info.command == ("git", "--version") and info.cwd_rel == "."
