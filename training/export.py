"""Export a trained network as a model that ``L3LocatorLib`` loads unchanged: the weights
file plus its metadata JSON (architecture, preprocessing, views, levels, threshold,
training data, metrics, software versions)."""

from __future__ import annotations

import json
import logging
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

from L3LocatorLib import __version__
from L3LocatorLib.errors import DependencyError
from L3LocatorLib.model import import_paddle
from L3LocatorLib.network import ModelMetadata, sha256_file
from L3LocatorLib.projection import PreprocessConfig
from L3LocatorLib.result import jsonable

log = logging.getLogger(__name__)


def software_versions() -> dict[str, str]:
    """Versions of Python, numpy, PaddlePaddle and L3Locator (for model metadata)."""
    out = {"python": platform.python_version(), "numpy": np.__version__, "l3locator": __version__}
    try:
        paddle = import_paddle()
        out["paddlepaddle"] = paddle.__version__
    except DependencyError:
        pass
    return out


def export_model(
    model: Any,
    out_dir: str | os.PathLike[str],
    name: str,
    *,
    preprocess: PreprocessConfig,
    views: tuple[str, ...] | list[str],
    levels: tuple[str, ...] | list[str],
    threshold: float,
    version: str = "1",
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> Path:
    """Write ``out_dir/<name>.pdparams`` and ``out_dir/<name>.json``; return the JSON path.

    ``model`` is a paddle Layer from ``build_model`` (its ``config`` attribute is
    recorded). The weights are written first, then hashed, then the JSON.
    """
    paddle = import_paddle()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / f"{name}.pdparams"
    tmp = out / f"{name}.pdparams.tmp"
    # Plain numpy arrays: the file's bytes (and sha256) then depend on the weights only,
    # not on paddle's generated tensor names.
    state = {k: np.asarray(v.numpy()) for k, v in model.state_dict().items()}
    paddle.save(state, str(tmp))
    os.replace(tmp, weights)
    meta = ModelMetadata(
        name=name,
        version=str(version),
        arch=model.config.to_dict(),
        preprocess=preprocess.to_dict(),
        views=list(views),
        levels=list(levels),
        answer_level="L3",
        threshold=float(threshold),
        weights=weights.name,
        sha256=sha256_file(weights),
        training=jsonable(training or {}),
        metrics=jsonable(metrics or {}),
        software=software_versions(),
        created=time.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    path = out / f"{name}.json"
    path.write_text(json.dumps(meta.to_dict(), indent=1) + "\n", encoding="utf-8")
    log.info("Exported model %s (weights sha256 %s)", path, meta.sha256[:12])
    return path
