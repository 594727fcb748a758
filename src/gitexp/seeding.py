"""``gitexp.seed_everything``: one seed for every random number generator in reach."""

from __future__ import annotations

import importlib
import importlib.util
import os
import random
import sys
from typing import Any

ENV_SEED = "GITEXP_SEED"  # set by ``git exp reproduce`` to the recorded seed
MAX_SEED = 2**32 - 1  # numpy's legacy seed range; torch and random accept it too


def _importable(name: str) -> bool:
    if name in sys.modules:
        return True
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def seed_everything(seed: int | None = None, deterministic: bool = True) -> int:
    """Seed Python's ``random``, numpy, and torch, TensorFlow and jax when they are
    importable; record ``seed`` in the active run's params (or, called before any
    run is started, in the next run this process starts); return the seed.

    ``seed=None`` takes ``GITEXP_SEED`` when it is set (``git exp reproduce``
    sets it to the seed recorded by the run it replays), and otherwise draws a
    fresh seed, which is recorded, so the run can still be reproduced.

    With ``deterministic`` (the default) it also sets the usual determinism
    flags: ``PYTHONHASHSEED`` for child processes (this interpreter's own hash
    seed is fixed at start-up), ``CUBLAS_WORKSPACE_CONFIG``,
    ``torch.use_deterministic_algorithms(True, warn_only=True)``, cuDNN's
    ``deterministic``/``benchmark`` flags, ``TF_DETERMINISTIC_OPS`` and XLA's
    ``--xla_gpu_deterministic_ops``. jax has no global generator: build your
    keys from the returned seed (``jax.random.PRNGKey(seed)``).

    Raises:
        UsageError: ``seed`` (or ``GITEXP_SEED``) is not an integer in [0, 2**32).
    """
    from gitexp.errors import UsageError

    if seed is None:
        text = os.environ.get(ENV_SEED, "").strip()
        if text:
            try:
                seed = int(text)
            except ValueError as exc:
                raise UsageError(f"{ENV_SEED}={text!r} is not an integer seed") from exc
        else:
            seed = int.from_bytes(os.urandom(4), "little")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise UsageError(f"a seed is an integer, not {seed!r}")
    if not 0 <= seed <= MAX_SEED:
        raise UsageError(f"seed {seed} is outside [0, 2**32)")

    random.seed(seed)
    os.environ["PYTHONHASHSEED"] = str(seed)
    if _importable("numpy"):
        import numpy as np

        np.random.seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    if _importable("torch"):
        _seed_torch(seed, deterministic)
    if "tensorflow" in sys.modules:  # importing TensorFlow only to seed it costs seconds
        _seed_tensorflow(seed, deterministic)
    if deterministic and _importable("jax"):
        flags = os.environ.get("XLA_FLAGS", "")
        if "--xla_gpu_deterministic_ops" not in flags:
            os.environ["XLA_FLAGS"] = (flags + " --xla_gpu_deterministic_ops=true").strip()

    from gitexp.tracking import log_params_now_or_next

    log_params_now_or_next({"seed": seed})
    return seed


def _seed_torch(seed: int, deterministic: bool) -> None:
    torch: Any = importlib.import_module("torch")
    torch.manual_seed(seed)
    if hasattr(torch, "cuda") and torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        cudnn = getattr(getattr(torch, "backends", None), "cudnn", None)
        if cudnn is not None:
            cudnn.deterministic = True
            cudnn.benchmark = False


def _seed_tensorflow(seed: int, deterministic: bool) -> None:
    tf: Any = sys.modules["tensorflow"]
    if hasattr(tf, "random") and hasattr(tf.random, "set_seed"):
        tf.random.set_seed(seed)
    if deterministic:
        os.environ.setdefault("TF_DETERMINISTIC_OPS", "1")
        experimental = getattr(getattr(tf, "config", None), "experimental", None)
        if experimental is not None and hasattr(experimental, "enable_op_determinism"):
            experimental.enable_op_determinism()
