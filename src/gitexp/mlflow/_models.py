"""Models as artifacts: what ``mlflow.sklearn`` and ``mlflow.pytorch`` share.

A logged model is one directory artifact of the run, ``<name>/``, laid out as
MLflow lays out a model: an ``MLmodel`` file (YAML: the flavors and how to
load them), the serialized model, ``requirements.txt``. ``runs:/<run-id>/<name>``
(the ``model_uri`` ``log_model`` returns) loads it back, restored from the CAS
with every byte verified; so does a local directory in that layout, MLflow's own
included.
"""

from __future__ import annotations

import os
import sys
import tempfile
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gitexp import __version__
from gitexp import records as fmt
from gitexp.errors import UnsupportedCall, UsageError
from gitexp.mlflow._session import SESSION
from gitexp.mlflow.entities import ModelInfo

MLMODEL = "MLmodel"
REQUIREMENTS = "requirements.txt"
INPUT_EXAMPLE = "input_example.json"
PYFUNC = "python_function"


def check_unsupported(call: str, **given: Any) -> None:
    """log_model/save_model arguments git-exp has no mapping for raise when given."""
    for name, value in given.items():
        if value is not None:
            raise UnsupportedCall(f"{call}({name}=...)")


def _python_version() -> str:
    return ".".join(str(n) for n in sys.version_info[:3])


def write_model_dir(
    path: str,
    flavor: str,
    flavor_conf: Mapping[str, Any],
    pyfunc_conf: Mapping[str, Any],
    requirements: Sequence[str],
    input_example: Any = None,
    run_id: str | None = None,
    artifact_path: str | None = None,
) -> dict[str, Any]:
    """Write ``MLmodel``, ``requirements.txt`` and the input example into ``path``
    (which holds the serialized model already); returns the flavors."""
    import yaml

    flavors = {
        PYFUNC: {**pyfunc_conf, "python_version": _python_version()},
        flavor: dict(flavor_conf),
    }
    doc: dict[str, Any] = {
        "flavors": flavors,
        "model_uuid": uuid.uuid4().hex,
        "utc_time_created": fmt.utc_now().strftime("%Y-%m-%d %H:%M:%S.%f"),
        "saved_by": f"git-exp {__version__}",
    }
    if artifact_path is not None:
        doc["artifact_path"] = artifact_path
    if run_id is not None:
        doc["run_id"] = run_id
    if input_example is not None:
        import json

        with open(os.path.join(path, INPUT_EXAMPLE), "w") as f:
            json.dump(_jsonable_example(input_example), f)
        doc["saved_input_example_info"] = {"artifact_path": INPUT_EXAMPLE, "type": "json_object"}
    with open(os.path.join(path, MLMODEL), "w") as f:
        yaml.safe_dump(doc, f, default_flow_style=False)
    with open(os.path.join(path, REQUIREMENTS), "w") as f:
        f.write("".join(f"{r}\n" for r in requirements))
    return flavors


def _jsonable_example(example: Any) -> Any:
    if hasattr(example, "to_dict") and hasattr(example, "columns"):  # a pandas DataFrame
        return example.to_dict(orient="split")
    if hasattr(example, "tolist"):
        return example.tolist()
    return example


def requirement(dist: str) -> str:
    """``dist==version`` of an installed distribution, else its name."""
    from importlib import metadata

    try:
        return f"{dist}=={metadata.version(dist)}"
    except metadata.PackageNotFoundError:
        return dist


def log_model_dir(
    name: str,
    save: Callable[[str, str | None, str], dict[str, Any]],
    call: str,
) -> ModelInfo:
    """Save a model with ``save(directory, run_id, name)`` in a temporary directory
    and log that directory as the run's artifact ``name``."""
    from gitexp.interop.mlflow_names import run_uri

    name = fmt.normalize_artifact_path(name)
    opened = SESSION.active()
    run_id = opened.run.id
    with tempfile.TemporaryDirectory(prefix="gitexp-model-") as tmp:
        path = os.path.join(tmp, "model")
        os.makedirs(path)
        flavors = save(path, run_id, name)
        opened.run.log_artifact(path, name=name)
    return ModelInfo(
        artifact_path=name,
        model_uri=run_uri(run_id, name),
        run_id=run_id,
        flavors=flavors,
        utc_time_created=fmt.iso(fmt.utc_now()) or "",
    )


def fresh_dir(path: str, call: str) -> str:
    """``save_model``'s destination: a directory that does not exist yet (MLflow's rule)."""
    path = os.path.abspath(os.fspath(path))
    if os.path.exists(path):
        raise UsageError(f"{call}: {path} exists already")
    os.makedirs(path)
    return path


def local_model(model_uri: str, dst_path: str | None, call: str) -> str:
    """A model's directory on disk: ``runs:/<run-id>/<path>`` restored from the
    run's artifacts (under ``dst_path``), or a local path / ``file:`` URI."""
    from gitexp.interop.mlflow_names import parse_run_uri

    uri = os.fspath(model_uri)
    parsed = parse_run_uri(uri)
    if parsed is not None:
        run_id, path = parsed
        return SESSION.download(run_id, path or None, dst_path)
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    elif "://" in uri or uri.startswith("models:"):
        raise UnsupportedCall(f"{call}({uri!r})", "load from a runs:/ URI or a local directory")
    if not os.path.isdir(uri):
        raise UsageError(f"{call}: no model directory at {uri}")
    return uri


def read_mlmodel(path: str, flavor: str, call: str) -> dict[str, Any]:
    """The flavor's configuration from a model directory's ``MLmodel``."""
    import yaml

    try:
        with open(os.path.join(path, MLMODEL)) as f:
            doc = yaml.safe_load(f)
    except OSError as exc:
        raise UsageError(f"{call}: {path} has no {MLMODEL} file: not a model") from exc
    flavors = doc.get("flavors") if isinstance(doc, dict) else None
    if not isinstance(flavors, dict) or not isinstance(flavors.get(flavor), dict):
        raise UsageError(f"{call}: the model at {path} has no {flavor} flavor")
    conf: dict[str, Any] = flavors[flavor]
    return conf
