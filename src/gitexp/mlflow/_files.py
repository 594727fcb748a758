"""The files ``log_dict``, ``log_text``, ``log_figure`` and ``log_image`` write,
byte for byte as MLflow writes them (the same JSON/YAML dump, ``savefig``,
Pillow's PNG), so a run logged through the shim holds the artifacts MLflow's
would. matplotlib and Pillow are imported only when a figure or an image is
logged."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Mapping
from typing import Any

from gitexp.errors import MissingExtra, UnsupportedCall, UsageError

Writer = Callable[[str], None]


def dict_writer(dictionary: Mapping[str, Any], artifact_file: str) -> Writer:
    """YAML for ``.yml``/``.yaml``, else JSON indented by 2 (unknown objects as text)."""
    extension = os.path.splitext(artifact_file)[1]

    def write(path: str) -> None:
        with open(path, "w") as f:
            if extension in (".yml", ".yaml"):
                import yaml

                yaml.dump(dictionary, f, indent=2, default_flow_style=False)
            else:
                json.dump(dictionary, f, indent=2, default=str)

    return write


def text_writer(text: str) -> Writer:
    if not isinstance(text, str):
        raise UsageError(f"log_text takes text, not {type(text).__name__}")

    def write(path: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)

    return write


def figure_writer(
    figure: Any, artifact_file: str, save_kwargs: Mapping[str, Any] | None, call: str
) -> Writer:
    """A matplotlib figure (``savefig``) or a plotly figure (HTML or an image)."""
    kwargs = dict(save_kwargs or {})

    def is_matplotlib(fig: Any) -> bool:
        if "matplotlib" not in sys.modules:
            return False
        import matplotlib.figure

        return isinstance(fig, matplotlib.figure.Figure)

    def is_plotly(fig: Any) -> bool:
        if "plotly" not in sys.modules:
            return False
        import plotly.graph_objects

        return isinstance(fig, plotly.graph_objects.Figure)

    if is_matplotlib(figure):
        return lambda path: figure.savefig(path, **kwargs)
    if is_plotly(figure):
        ext = os.path.splitext(artifact_file)[1]
        if ext == ".html":
            return lambda path: figure.write_html(path, **kwargs)
        if ext in (".png", ".jpeg", ".webp", ".svg", ".pdf"):
            return lambda path: figure.write_image(path, **kwargs)
        raise UsageError(
            f"{call}: a plotly figure is written as .html, .png, .jpeg, .webp, .svg or .pdf"
        )
    raise UnsupportedCall(
        f"{call} of a {type(figure).__name__}", "log a matplotlib or plotly figure"
    )


def to_pil(image: Any, call: str) -> Any:
    """A numpy array or a Pillow image as a Pillow image (MLflow's conversion:
    floats in [0, 1] and integers in [0, 255] to 8 bits)."""
    try:
        from PIL import Image
    except ImportError as exc:
        raise MissingExtra(call, "mlflow", "pillow") from exc
    if isinstance(image, Image.Image):
        return image
    import numpy as np

    if not isinstance(image, np.ndarray):
        raise UnsupportedCall(
            f"{call} of a {type(image).__name__}", "log a numpy array or a PIL image"
        )
    if image.dtype.kind not in "biuf":
        raise UsageError(f"{call}: an image array of {image.dtype} (bool, integers or floats)")
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise UsageError(f"{call}: an image is HxW or HxWx1/3/4, not {image.shape}")
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    is_int = np.issubdtype(image.dtype, np.integer)
    high = 255 if is_int else 1
    if image.min() < 0 or image.max() > high:
        if is_int:
            raise UsageError(f"{call}: integer pixels must be within [0, 255]")
        image = (image - image.min()) / (image.max() - image.min())
    if not is_int:
        image = image * 255
    return Image.fromarray(image.astype(np.uint8))


def image_writer(image: Any, call: str) -> Writer:
    pil = to_pil(image, call)
    return lambda path: pil.save(path)
