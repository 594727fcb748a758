"""``mlflow.sklearn``: scikit-learn models as run artifacts, and autologging.

``log_model`` stores the fitted estimator (cloudpickle when installed, else
pickle) in MLflow's model layout as the artifact ``name`` (default ``model``);
``load_model("runs:/<run-id>/model")`` loads it back. ``autolog()`` makes every
``fit`` of a scikit-learn estimator record the estimator's params
(``get_params(deep=True)``), MLflow's training metrics (``training_score``;
accuracy, precision, recall, F1, log loss and ROC AUC for classifiers; MSE,
RMSE, MAE and R² for regressors), the tags ``estimator_name`` and
``estimator_class``, and the fitted model. scikit-learn is imported when one
of these is called.
"""

from __future__ import annotations

import contextlib
import functools
import os
import pickle
import threading
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

from gitexp.errors import GitExpError, MissingExtra, UnsupportedCall, UsageError
from gitexp.mlflow import _models as models
from gitexp.mlflow._session import SESSION
from gitexp.mlflow.entities import ModelInfo

FLAVOR = "sklearn"
MODEL_FILE = "model.pkl"
_FORMATS = ("cloudpickle", "pickle")


def _sklearn() -> Any:
    try:
        import sklearn
    except ImportError as exc:
        raise MissingExtra("mlflow.sklearn", "mlflow", "scikit-learn") from exc
    return sklearn


def _serializer(serialization_format: str | None, call: str) -> tuple[str, Any]:
    fmt_ = serialization_format or "cloudpickle"
    if fmt_ not in _FORMATS:
        raise UnsupportedCall(f"{call}(serialization_format={fmt_!r})", "cloudpickle or pickle")
    if fmt_ == "cloudpickle":
        try:
            import cloudpickle

            return fmt_, cloudpickle
        except ImportError:
            return "pickle", pickle
    return fmt_, pickle


def _save(
    sk_model: Any,
    path: str,
    serialization_format: str | None,
    pip_requirements: Any,
    input_example: Any,
    run_id: str | None,
    artifact_path: str | None,
    call: str,
) -> dict[str, Any]:
    sklearn = _sklearn()
    used, module = _serializer(serialization_format, call)
    with open(os.path.join(path, MODEL_FILE), "wb") as f:
        module.dump(sk_model, f)
    reqs = (
        list(pip_requirements)
        if pip_requirements is not None
        else [
            models.requirement("scikit-learn"),
            *([models.requirement("cloudpickle")] if used == "cloudpickle" else []),
        ]
    )
    return models.write_model_dir(
        path,
        FLAVOR,
        {
            "pickled_model": MODEL_FILE,
            "serialization_format": used,
            "sklearn_version": sklearn.__version__,
            "code": None,
        },
        {"loader_module": "mlflow.sklearn", "model_path": MODEL_FILE, "predict_fn": "predict"},
        reqs,
        input_example,
        run_id,
        artifact_path,
    )


def log_model(
    sk_model: Any,
    artifact_path: str | None = None,
    conda_env: Any = None,
    code_paths: Any = None,
    serialization_format: str | None = None,
    registered_model_name: str | None = None,
    signature: Any = None,
    input_example: Any = None,
    await_registration_for: Any = 300,
    pip_requirements: Any = None,
    extra_pip_requirements: Any = None,
    pyfunc_predict_fn: str = "predict",
    metadata: Any = None,
    extra_files: Any = None,
    params: Any = None,
    tags: Any = None,
    model_type: Any = None,
    step: int = 0,
    model_id: Any = None,
    name: str | None = None,
    **kwargs: Any,
) -> ModelInfo:
    """Store a fitted estimator as the run's artifact ``name`` (or
    ``artifact_path``; default ``model``)."""
    call = "mlflow.sklearn.log_model"
    models.check_unsupported(
        call,
        conda_env=conda_env,
        code_paths=code_paths,
        registered_model_name=registered_model_name,
        signature=signature,
        extra_pip_requirements=extra_pip_requirements,
        metadata=metadata,
        extra_files=extra_files,
        params=params,
        tags=tags,
        model_type=model_type,
        model_id=model_id,
        **kwargs,
    )
    target = name or artifact_path or "model"
    return models.log_model_dir(
        target,
        lambda path, run_id, artifact: _save(
            sk_model,
            path,
            serialization_format,
            pip_requirements,
            input_example,
            run_id,
            artifact,
            call,
        ),
        call,
    )


def save_model(
    sk_model: Any,
    path: str,
    conda_env: Any = None,
    code_paths: Any = None,
    mlflow_model: Any = None,
    serialization_format: str | None = None,
    signature: Any = None,
    input_example: Any = None,
    pip_requirements: Any = None,
    extra_pip_requirements: Any = None,
    pyfunc_predict_fn: str = "predict",
    metadata: Any = None,
    extra_files: Any = None,
    **kwargs: Any,
) -> None:
    """Write a fitted estimator to the new directory ``path`` in MLflow's layout."""
    call = "mlflow.sklearn.save_model"
    models.check_unsupported(
        call,
        conda_env=conda_env,
        code_paths=code_paths,
        mlflow_model=mlflow_model,
        signature=signature,
        extra_pip_requirements=extra_pip_requirements,
        metadata=metadata,
        extra_files=extra_files,
        **kwargs,
    )
    directory = models.fresh_dir(path, call)
    _save(
        sk_model, directory, serialization_format, pip_requirements, input_example, None, None, call
    )


def load_model(model_uri: str, dst_path: str | None = None) -> Any:
    """The estimator stored at ``model_uri`` (``runs:/<run-id>/<name>`` or a directory)."""
    call = "mlflow.sklearn.load_model"
    path = models.local_model(model_uri, dst_path, call)
    conf = models.read_mlmodel(path, FLAVOR, call)
    file = os.path.join(path, str(conf.get("pickled_model", MODEL_FILE)))
    used = conf.get("serialization_format", "cloudpickle")
    if used == "skops":
        try:
            import skops.io
        except ImportError as exc:
            raise MissingExtra(
                f"{call} of a model MLflow saved with skops", "mlflow", "skops"
            ) from exc
        trusted = conf.get("skops_trusted_types") or skops.io.get_untrusted_types(file=file)
        return skops.io.load(file, trusted=trusted)
    if used not in _FORMATS:
        raise UnsupportedCall(f"{call} of a model serialized as {used!r}")
    with open(file, "rb") as f:
        if used == "cloudpickle":
            try:
                import cloudpickle

                return cloudpickle.load(f)
            except ImportError:
                pass
        return pickle.load(f)


# ------------------------------------------------------------------ autolog

_autolog: dict[str, Any] = {
    "enabled": False,
    "log_models": True,
    "extra_tags": {},
    "pos_label": None,
}
_patched: list[tuple[type, Any]] = []  # (class, its own fit before patching)
_hooks: list[tuple[type, Any]] = []  # (BaseEstimator, its own __init_subclass__ or None)
_local = threading.local()
_MARK = "_gitexp_autolog"


def autolog(
    log_input_examples: bool = False,
    log_model_signatures: bool = True,
    log_models: bool = True,
    log_datasets: bool = True,
    disable: bool = False,
    exclusive: bool = False,
    disable_for_unsupported_versions: bool = False,
    silent: bool = False,
    max_tuning_runs: int | None = 5,
    log_post_training_metrics: bool = True,
    serialization_format: str = "cloudpickle",
    registered_model_name: str | None = None,
    pos_label: Any = None,
    extra_tags: Mapping[str, str] | None = None,
) -> None:
    """Record every scikit-learn ``fit``: params, training metrics, the model.

    A ``fit`` outside a run starts one and ends it; inside a run it logs there.
    Nested fits (a pipeline's steps, a search's candidates) are not recorded
    separately: the outermost estimator is. ``disable=True`` turns it off.
    """
    call = "mlflow.sklearn.autolog"
    if disable:
        _unpatch()
        _autolog["enabled"] = False
        return
    if log_input_examples:
        raise UnsupportedCall(f"{call}(log_input_examples=True)")
    if exclusive:
        raise UnsupportedCall(f"{call}(exclusive=True)")
    if registered_model_name is not None:
        raise UnsupportedCall(f"{call}(registered_model_name=...)")
    _serializer(serialization_format, call)
    _autolog.update(
        enabled=True,
        log_models=log_models,
        extra_tags=dict(extra_tags or {}),
        pos_label=pos_label,
        serialization_format=serialization_format,
    )
    _patch()


def _patch() -> None:
    """Wrap the ``fit`` of every estimator class that defines one: those imported
    now (subclasses of ``BaseEstimator``) and, through ``__init_subclass__``, those
    imported later; nothing of scikit-learn is imported for it."""
    _sklearn()
    from sklearn.base import BaseEstimator

    stack = [BaseEstimator]
    while stack:
        cls = stack.pop()
        _patch_class(cls)
        stack.extend(cls.__subclasses__())
    if _hooks:
        return
    own = BaseEstimator.__dict__.get("__init_subclass__")

    def hook(cls: type, /, **kwargs: Any) -> None:
        if own is not None:
            own.__func__(cls, **kwargs)
        else:
            parent: Any = super(BaseEstimator, cls)
            parent.__init_subclass__(**kwargs)
        if _autolog["enabled"]:
            _patch_class(cls)

    setattr(BaseEstimator, "__init_subclass__", classmethod(hook))  # noqa: B010
    _hooks.append((BaseEstimator, own))


def _patch_class(cls: type) -> None:
    fit = cls.__dict__.get("fit")
    if fit is None or not callable(fit) or getattr(fit, _MARK, False):
        return
    _patched.append((cls, fit))
    setattr(cls, "fit", _wrap(fit))  # noqa: B010


def _unpatch() -> None:
    while _patched:
        cls, own = _patched.pop()
        setattr(cls, "fit", own)  # noqa: B010
    while _hooks:
        base, own = _hooks.pop()
        if own is None:
            with contextlib.suppress(AttributeError):
                delattr(base, "__init_subclass__")
        else:
            setattr(base, "__init_subclass__", own)  # noqa: B010


@contextlib.contextmanager
def _outermost() -> Iterator[bool]:
    depth = getattr(_local, "depth", 0)
    _local.depth = depth + 1
    try:
        yield depth == 0
    finally:
        _local.depth = depth


def _wrap(fit: Any) -> Any:
    @functools.wraps(fit)
    def patched_fit(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _outermost() as outermost:
            if not (outermost and _autolog["enabled"]):
                return fit(self, *args, **kwargs)
            started = not SESSION.fluent
            opened = SESSION.active() if not started else SESSION.start(tags=_autolog["extra_tags"])
            try:
                result = fit(self, *args, **kwargs)
                _record_fit(self, args, kwargs)
            except BaseException as exc:
                if started:
                    SESSION.end(opened.run.id, exc=(type(exc), exc, exc.__traceback__))
                raise
            if started:
                SESSION.end(opened.run.id, "FINISHED")
            return result

    setattr(patched_fit, _MARK, True)
    return patched_fit


def _record_fit(estimator: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> None:
    from gitexp.interop.mlflow_names import stored_param
    from gitexp.tracking import GitExpWarning

    opened = SESSION.active()
    params = {k: stored_param(v) for k, v in estimator.get_params(deep=True).items()}
    try:
        SESSION.log_params(None, params, "mlflow.sklearn.autolog")
    except UsageError as exc:  # a second fit in the same run with other params
        warnings.warn(f"git-exp: autolog kept the params logged first: {exc}", GitExpWarning, 2)
    cls = type(estimator)
    SESSION.set_tags(
        None,
        {"estimator_name": cls.__name__, "estimator_class": f"{cls.__module__}.{cls.__qualname__}"},
        "mlflow.sklearn.autolog",
    )
    X = args[0] if args else kwargs.get("X")
    y = args[1] if len(args) > 1 else kwargs.get("y")
    weight = kwargs.get("sample_weight")
    if X is not None:
        metrics = training_metrics(estimator, X, y, weight, _autolog["pos_label"])
        if metrics:
            opened.run.log_metrics(metrics, step=0)
    if _autolog["log_models"]:
        log_model(estimator, name="model", serialization_format=_autolog["serialization_format"])


def training_metrics(
    estimator: Any, X: Any, y: Any, sample_weight: Any = None, pos_label: Any = None
) -> dict[str, float]:
    """MLflow's ``training_*`` metrics of a fitted estimator on its training data."""
    import numpy as np
    from sklearn import base, metrics

    out: dict[str, float] = {}

    def add(name: str, fn: Any, *a: Any, **kw: Any) -> None:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out["training_" + name] = float(fn(*a, **kw))
        except (GitExpError, ValueError, TypeError, AttributeError):
            pass  # MLflow leaves out a metric that cannot be computed for this data

    if y is not None and base.is_classifier(estimator):
        y_pred = estimator.predict(X)
        average = "weighted" if pos_label is None else "binary"
        weights = {"sample_weight": sample_weight}
        for name, fn in (
            ("precision_score", metrics.precision_score),
            ("recall_score", metrics.recall_score),
            ("f1_score", metrics.f1_score),
        ):
            add(name, fn, y, y_pred, pos_label=pos_label, average=average, **weights)
        add("accuracy_score", metrics.accuracy_score, y, y_pred, normalize=True, **weights)
        if hasattr(estimator, "predict_proba"):
            try:
                proba = estimator.predict_proba(X)
            except (ValueError, AttributeError):
                proba = None
            if proba is not None:
                add("log_loss", metrics.log_loss, y, proba, **weights)
                score = proba[:, 1] if len(proba[0]) == 2 else proba
                add(
                    "roc_auc",
                    metrics.roc_auc_score,
                    y,
                    score,
                    average="weighted",
                    multi_class="ovo",
                    **weights,
                )
    elif y is not None and base.is_regressor(estimator):
        y_pred = estimator.predict(X)
        for name, fn in (
            ("mean_squared_error", metrics.mean_squared_error),
            ("mean_absolute_error", metrics.mean_absolute_error),
            ("r2_score", metrics.r2_score),
        ):
            add(name, fn, y, y_pred, sample_weight=sample_weight, multioutput="uniform_average")
        if "training_mean_squared_error" in out:
            out["training_root_mean_squared_error"] = float(
                np.sqrt(out["training_mean_squared_error"])
            )
    if hasattr(estimator, "score"):
        if y is None:
            add("score", estimator.score, X)
        else:
            add("score", estimator.score, X, y, sample_weight=sample_weight)
    return out


def __getattr__(name: str) -> Any:
    if name.startswith("_"):
        raise AttributeError(f"module 'gitexp.mlflow.sklearn' has no attribute {name!r}")
    raise UnsupportedCall(f"mlflow.sklearn.{name}")
