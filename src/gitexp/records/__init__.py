"""Format version 1: names, refs, canonical JSON and the run-tree files.

Pure: no I/O. Everything that turns a run into bytes in a git tree, or bytes
back into a run, goes through here, so that the format is defined in one place
(and written down in ``docs/format.md``):

- ``names``: the constants of the format, experiment names, run ids, tags, ``ExpRef``;
- ``jsonform``: canonical JSON and the param values it holds;
- ``times``: UTC times in ISO-8601;
- ``artifacts``: ``artifacts.json`` entries and their paths;
- ``summary``: ``summary.json``;
- ``run``: ``run.json``, ``env.json``, ``code.json`` as typed records.

Callers import from the package (``from gitexp import records as fmt``).
"""

from __future__ import annotations

from gitexp.records.alerts import (
    ALERT_EVENTS,
    ALERT_LEVELS,
    END_EVENTS,
    MAX_ALERTS,
    SYSTEM_PREFIX,
    alert_entry,
    is_system_metric,
    parse_alerts,
)
from gitexp.records.artifacts import (
    ArtifactEntry,
    manifest_from_json,
    manifest_to_json,
    normalize_artifact_path,
)
from gitexp.records.jsonform import (
    MAX_DEPTH,
    MAX_DOC_BYTES,
    canonical_json,
    compact_json,
    decode_float,
    deep_merge,
    doc_limit,
    flatten,
    json_depth,
    parse_json,
    set_dotted,
    to_jsonable,
)
from gitexp.records.names import (
    _HEX_RE,
    ALERTS_JSON,
    ARTIFACTS_JSON,
    CODE_JSON,
    DEFAULT_EXPERIMENT,
    ENV_JSON,
    FINAL_STATUSES,
    FORMAT_VERSION,
    MAX_KEY_LEN,
    MAX_NAME_LEN,
    METRICS_DIR,
    NAMESPACE,
    PARAMS_JSON,
    ROLES,
    RUN_JSON,
    STATUSES,
    SUMMARY_JSON,
    ExpRef,
    has_surrogates,
    is_run_id,
    new_run_id,
    validate_experiment,
    validate_note,
    validate_run_name,
    validate_tag,
)
from gitexp.records.run import (
    CodeInfo,
    EnvInfo,
    Gpu,
    Note,
    RunInfo,
    check_version,
)
from gitexp.records.summary import (
    MetricSummary,
    Summary,
)
from gitexp.records.times import (
    iso,
    parse_age,
    parse_iso,
    utc_now,
)

__all__ = [
    "ALERTS_JSON",
    "ALERT_EVENTS",
    "ALERT_LEVELS",
    "ARTIFACTS_JSON",
    "CODE_JSON",
    "DEFAULT_EXPERIMENT",
    "END_EVENTS",
    "ENV_JSON",
    "FINAL_STATUSES",
    "FORMAT_VERSION",
    "MAX_ALERTS",
    "MAX_DEPTH",
    "MAX_DOC_BYTES",
    "MAX_KEY_LEN",
    "MAX_NAME_LEN",
    "METRICS_DIR",
    "NAMESPACE",
    "PARAMS_JSON",
    "ROLES",
    "RUN_JSON",
    "STATUSES",
    "SUMMARY_JSON",
    "SYSTEM_PREFIX",
    "_HEX_RE",
    "ArtifactEntry",
    "CodeInfo",
    "EnvInfo",
    "ExpRef",
    "Gpu",
    "MetricSummary",
    "Note",
    "RunInfo",
    "Summary",
    "alert_entry",
    "canonical_json",
    "check_version",
    "compact_json",
    "decode_float",
    "deep_merge",
    "doc_limit",
    "flatten",
    "has_surrogates",
    "is_run_id",
    "is_system_metric",
    "iso",
    "json_depth",
    "manifest_from_json",
    "manifest_to_json",
    "new_run_id",
    "normalize_artifact_path",
    "parse_age",
    "parse_alerts",
    "parse_iso",
    "parse_json",
    "set_dotted",
    "to_jsonable",
    "utc_now",
    "validate_experiment",
    "validate_note",
    "validate_run_name",
    "validate_tag",
]
