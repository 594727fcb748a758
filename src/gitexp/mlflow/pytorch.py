"""``mlflow.pytorch``: PyTorch models as run artifacts.

``log_model`` stores the whole module with ``torch.save`` (``data/model.pth``,
MLflow's layout) as the artifact ``name`` (default ``model``);
``load_model("runs:/<run-id>/model")`` loads it back with ``torch.load``.
torch is imported when one of these is called. Autologging for PyTorch is not
supported (``autolog`` raises): use the Lightning logger of ``gitexp.integrations``.
"""

from __future__ import annotations

import os
from typing import Any

from gitexp.errors import MissingExtra, UnsupportedCall
from gitexp.mlflow import _models as models
from gitexp.mlflow.entities import ModelInfo

FLAVOR = "pytorch"
DATA = "data"
MODEL_FILE = "model.pth"
PICKLE_INFO = "pickle_module_info.txt"


def _torch() -> Any:
    try:
        import torch
    except ImportError as exc:
        raise MissingExtra("mlflow.pytorch", "mlflow", "torch") from exc
    return torch


def _save(
    model: Any,
    path: str,
    pickle_module: Any,
    pip_requirements: Any,
    input_example: Any,
    run_id: str | None,
    artifact_path: str | None,
) -> dict[str, Any]:
    torch = _torch()
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"mlflow.pytorch saves a torch.nn.Module, not {type(model).__name__}")
    data = os.path.join(path, DATA)
    os.makedirs(data)
    module = pickle_module
    if module is None:
        import pickle

        module = pickle
    torch.save(model, os.path.join(data, MODEL_FILE), pickle_module=module)
    with open(os.path.join(data, PICKLE_INFO), "w") as f:
        f.write(module.__name__)
    reqs = list(pip_requirements) if pip_requirements is not None else [models.requirement("torch")]
    return models.write_model_dir(
        path,
        FLAVOR,
        {"model_data": DATA, "pytorch_version": str(torch.__version__), "code": None},
        {"loader_module": "mlflow.pytorch", "data": DATA},
        reqs,
        input_example,
        run_id,
        artifact_path,
    )


def log_model(
    pytorch_model: Any,
    artifact_path: str | None = None,
    conda_env: Any = None,
    code_paths: Any = None,
    pickle_module: Any = None,
    registered_model_name: str | None = None,
    signature: Any = None,
    input_example: Any = None,
    await_registration_for: Any = 300,
    extra_files: Any = None,
    pip_requirements: Any = None,
    extra_pip_requirements: Any = None,
    metadata: Any = None,
    name: str | None = None,
    params: Any = None,
    tags: Any = None,
    model_type: Any = None,
    step: int = 0,
    model_id: Any = None,
    export_model: bool = False,
    serialization_format: Any = None,
    **kwargs: Any,
) -> ModelInfo:
    """Store a ``torch.nn.Module`` as the run's artifact ``name`` (or
    ``artifact_path``; default ``model``)."""
    call = "mlflow.pytorch.log_model"
    models.check_unsupported(
        call,
        conda_env=conda_env,
        code_paths=code_paths,
        registered_model_name=registered_model_name,
        signature=signature,
        extra_files=extra_files,
        extra_pip_requirements=extra_pip_requirements,
        metadata=metadata,
        params=params,
        tags=tags,
        model_type=model_type,
        model_id=model_id,
        export_model=export_model or None,
        serialization_format=None
        if serialization_format in (None, "pickle")
        else serialization_format,
        **kwargs,
    )
    target = name or artifact_path or "model"
    return models.log_model_dir(
        target,
        lambda path, run_id, artifact: _save(
            pytorch_model, path, pickle_module, pip_requirements, input_example, run_id, artifact
        ),
        call,
    )


def save_model(
    pytorch_model: Any,
    path: str,
    conda_env: Any = None,
    mlflow_model: Any = None,
    code_paths: Any = None,
    pickle_module: Any = None,
    signature: Any = None,
    input_example: Any = None,
    extra_files: Any = None,
    pip_requirements: Any = None,
    extra_pip_requirements: Any = None,
    metadata: Any = None,
    **kwargs: Any,
) -> None:
    """Write a ``torch.nn.Module`` to the new directory ``path`` in MLflow's layout."""
    call = "mlflow.pytorch.save_model"
    models.check_unsupported(
        call,
        conda_env=conda_env,
        mlflow_model=mlflow_model,
        code_paths=code_paths,
        signature=signature,
        extra_files=extra_files,
        extra_pip_requirements=extra_pip_requirements,
        metadata=metadata,
        **kwargs,
    )
    directory = models.fresh_dir(path, call)
    _save(pytorch_model, directory, pickle_module, pip_requirements, input_example, None, None)


def load_model(model_uri: str, dst_path: str | None = None, **kwargs: Any) -> Any:
    """The module stored at ``model_uri`` (``runs:/<run-id>/<name>`` or a
    directory); ``kwargs`` go to ``torch.load``."""
    call = "mlflow.pytorch.load_model"
    torch = _torch()
    path = models.local_model(model_uri, dst_path, call)
    conf = models.read_mlmodel(path, FLAVOR, call)
    data = os.path.join(path, str(conf.get("model_data", DATA)))
    file = os.path.join(data, MODEL_FILE) if os.path.isdir(data) else data
    kwargs.setdefault("weights_only", False)  # a whole pickled module, as MLflow saves it
    return torch.load(file, **kwargs)


def autolog(*args: Any, **kwargs: Any) -> None:
    """Not supported: PyTorch has no one ``fit`` to wrap."""
    raise UnsupportedCall(
        "mlflow.pytorch.autolog", "log from the training loop, or use gitexp.integrations"
    )


def __getattr__(name: str) -> Any:
    if name.startswith("_"):
        raise AttributeError(f"module 'gitexp.mlflow.pytorch' has no attribute {name!r}")
    raise UnsupportedCall(f"mlflow.pytorch.{name}")
