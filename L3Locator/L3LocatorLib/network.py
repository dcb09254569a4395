"""The network stage: build a network, load a trained model onto a device, and turn one
scan's projections into per-level row probabilities.

Reading and checking a model's files (metadata JSON, ``.npz`` weights) is
``model_files``'s job; ``load_model`` builds the network the metadata describes, asks
``model_files`` for weights that fit it exactly (every parameter's shape and dtype,
checked before a byte of weights is inflated) and caches the result per process.
``predict_views`` runs one model on one scan's projections and returns per-level
probabilities for the fused views and for each view alone (the other view's channel
zeroed; models are trained with such view dropout); ``decode`` reads rows off them.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from .errors import DependencyError, ModelError
from .model import LEVELS, ModelConfig, import_paddle, preset
from .model_files import (  # re-exported: the public import paths of model files stay here
    DEFAULT_MODEL_NAME,
    FORMAT_VERSION,
    FUSIONS,
    MODEL_FORMAT,
    ModelMetadata,
    ParamSpec,
    default_model_path,
    models_dir,
    read_metadata,
    read_weights,
    sha256_file,
    verified_weights_path,
    weights_path,
)
from .projection import Projections, network_input

log = logging.getLogger(__name__)


def build_model(config: ModelConfig | str = "default") -> Any:
    """A freshly initialised ``paddle.nn.Layer`` for ``config`` (or a preset name of
    ``model.PRESETS``). Raises ``DependencyError`` when PaddlePaddle is missing."""
    if isinstance(config, str):
        config = preset(config)
    import_paddle()  # a clear message when PaddlePaddle is missing
    from . import networks  # imports paddle: only when a network is built

    cls = networks.RowNet if config.arch == "rownet" else networks.UNet2D
    return cls(config)


def parameter_specs(network: Any) -> dict[str, ParamSpec]:
    """Shape and dtype of every parameter and buffer of a paddle Layer, by name: what its
    weights file must hold."""
    return {name: (tuple(int(n) for n in tensor.shape),
                   np.dtype(str(tensor.dtype).rsplit(".", 1)[-1]))
            for name, tensor in network.state_dict().items()}


def resolve_device(device: str = "auto") -> str:
    """Turn ``"auto" | "cpu" | "gpu" | "gpu:N"`` into a paddle device string.

    ``auto`` picks the GPU when PaddlePaddle was built with CUDA and a GPU is
    visible, else the CPU. Asking for a GPU that is not usable raises
    ``DependencyError`` explaining how to get the CUDA build.
    """
    paddle = import_paddle()
    device = (device or "auto").lower().strip()
    cuda_build = bool(paddle.device.is_compiled_with_cuda())
    n_gpus = 0
    if cuda_build:
        try:
            n_gpus = int(paddle.device.cuda.device_count())
        except Exception:  # noqa: BLE001 - driver problems mean "no usable GPU"
            n_gpus = 0
    if device == "auto":
        return "gpu:0" if n_gpus > 0 else "cpu"
    if device == "cpu":
        return "cpu"
    if device.startswith("gpu") or device.startswith("cuda"):
        index = 0
        if ":" in device:
            try:
                index = int(device.split(":", 1)[1])
            except ValueError as error:
                raise DependencyError(
                    f"Unknown device {device!r}; use cpu, gpu or gpu:N."
                ) from error
        if not cuda_build:
            raise DependencyError(
                "A GPU was requested, but the installed PaddlePaddle is the CPU-only build. "
                "Install the CUDA build from PaddlePaddle's own package index (it is not on "
                'PyPI): python -m pip install "paddlepaddle-gpu>=3" -i '
                "https://www.paddlepaddle.org.cn/packages/stable/cu126/ , or use device 'cpu'."
            )
        if index >= n_gpus:
            raise DependencyError(
                f"A GPU was requested (gpu:{index}), but PaddlePaddle sees {n_gpus} GPU(s). "
                "Check the NVIDIA driver and CUDA_VISIBLE_DEVICES, or use device 'cpu'."
            )
        return f"gpu:{index}"
    raise DependencyError(f"Unknown device {device!r}; use auto, cpu, gpu or gpu:N.")


def expand_channels(x: np.ndarray, in_channels: int) -> np.ndarray:
    """Repeat the views of ``x`` ``[B, C, H, W]`` to fill ``in_channels`` (the seed's
    network takes one view three times)."""
    if x.shape[1] == in_channels:
        return x
    if in_channels % x.shape[1] == 0:
        return np.repeat(x, in_channels // x.shape[1], axis=1)
    raise ValueError(f"input has {x.shape[1]} channel(s); the model needs {in_channels}")


class LoadedModel:
    """A model ready to predict: network in eval mode on its device, plus metadata.

    Attributes:
        metadata: the ``ModelMetadata`` read from the JSON.
        preprocess: ``PreprocessConfig`` the model was trained with.
        views: input views in channel order.
        levels: output level names in channel order.
        threshold: absent threshold for the answer level.
        device: paddle device string ("cpu", "gpu:0").
        path: the JSON file.
    """

    def __init__(self, network: Any, metadata: ModelMetadata, device: str, path: Path) -> None:
        self.network = network
        self.metadata = metadata
        self.preprocess = metadata.preprocess_config
        self.config = metadata.model_config
        self.views = tuple(metadata.views)
        self.levels = tuple(metadata.levels)
        self.threshold = float(metadata.threshold)
        self.device = device
        self.path = path
        self._lock = threading.Lock()

    @property
    def answer_index(self) -> int:
        return self.levels.index(self.metadata.answer_level)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Probabilities ``[B, n_levels, H]`` (0..1) for windowed inputs ``[B, C, H, W]``
        (float32, C = ``len(views)``, rows superior -> inferior, any H and W)."""
        paddle = import_paddle()
        x = expand_channels(np.asarray(x, dtype=np.float32), self.config.in_channels)
        x = np.ascontiguousarray(x)
        with self._lock:
            paddle.set_device(self.device)
            with paddle.no_grad():
                logits = self.network.row_logits(paddle.to_tensor(x))
                probs = paddle.nn.functional.sigmoid(logits)
            return np.asarray(probs.numpy(), dtype=np.float32)


_CACHE: dict[tuple[str, float, str], LoadedModel] = {}
_CACHE_LOCK = threading.Lock()


def load_model(
    json_path: str | os.PathLike[str] | None = None, device: str = "auto"
) -> LoadedModel:
    """Load a model from its JSON (None = the default model), cached per process.

    The cache key is (resolved path, modification time, device): editing or
    replacing the files reloads them. Raises ``ModelError`` for missing,
    truncated, mismatched or unknown model files and ``DependencyError`` when
    PaddlePaddle (or the requested GPU) is not available.
    """
    path = Path(json_path) if json_path is not None else default_model_path()
    if not path.is_file():
        if json_path is None:
            raise ModelError(
                f"The default model is missing ({path}). Reinstall the L3Locator extension, or "
                "choose a model .json file trained with the training package."
            )
        raise ModelError(f"Model file not found: {path}. Choose an existing model .json file.")
    path = path.resolve()
    resolved_device = resolve_device(device)
    key = (str(path), path.stat().st_mtime, resolved_device)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            return cached
        loaded = _load_uncached(path, resolved_device)
        _CACHE[key] = loaded
        return loaded


def clear_model_cache() -> None:
    """Forget every loaded model (tests, or after replacing files in place)."""
    with _CACHE_LOCK:
        _CACHE.clear()


def _load_uncached(path: Path, device: str) -> LoadedModel:
    started = time.perf_counter()
    meta = read_metadata(path)
    config = meta.model_config
    if config.n_outputs != len(meta.levels):
        raise ModelError(
            f"{path}: the network has {config.n_outputs} outputs but the file lists "
            f"{len(meta.levels)} levels. Re-export the model."
        )
    if config.in_channels % len(meta.views) != 0:
        raise ModelError(f"{path}: {config.in_channels} input channels cannot hold {meta.views}.")
    weights = verified_weights_path(path, meta)
    paddle = import_paddle()
    paddle.set_device(device)
    network = build_model(config)
    state = read_weights(weights, parameter_specs(network), model=path.name)
    network.set_state_dict({k: paddle.to_tensor(v) for k, v in state.items()})
    network.eval()
    log.info("Loaded model %s on %s in %.2f s", path, device, time.perf_counter() - started)
    return LoadedModel(network, meta, device, path)


# ------------------------------------------------------------ one scan


def view_probabilities(
    predict: Any, x: np.ndarray, views: tuple[str, ...] | list[str], fusion: str = "network",
    per_view: bool = True,
) -> dict[str, np.ndarray]:
    """Per-level row probabilities of one scan's windowed input ``x`` ``[C, H, W]``
    (channels in ``views`` order): view name -> ``[n_levels, H]``. ``predict`` maps a batch
    ``[B, C, H, W]`` to ``[B, n_levels, H]``. With two views: "fused" (``fusion``: the
    network on both, or the mean of each view alone), then, when ``per_view`` (always
    with "mean"), each view alone with the other channel zeroed, in one batch."""
    if len(views) == 1:
        return {views[0]: predict(x[None])[0]}
    if fusion == "network" and not per_view:
        return {"fused": predict(x[None])[0]}
    singles = np.zeros((len(views), *x.shape), dtype=x.dtype)
    for i in range(len(views)):
        singles[i, i] = x[i]
    if fusion == "mean":
        probs = predict(singles)
        return {"fused": probs.mean(axis=0), **{v: probs[i] for i, v in enumerate(views)}}
    probs = predict(np.concatenate([x[None], singles]))
    return {"fused": probs[0], **{v: probs[i + 1] for i, v in enumerate(views)}}


def predict_views(
    model: LoadedModel, projections: Projections, per_view: bool = True
) -> dict[str, np.ndarray]:
    """Per-level row probabilities of one scan: view name -> float32 ``[n_levels, n_rows]``.

    ``"fused"`` is the combined answer of every view the model takes (its
    ``fusion``); with two views and ``per_view`` the batch also holds each view alone
    (the other channel zeroed), so the network runs once on a batch. Rows are the
    projections' rows (superior -> inferior). The projections must have been made with
    ``model.preprocess`` (same pixel size and HU window); a mismatch raises ``ModelError``.
    """
    if projections.config != model.preprocess:
        raise ModelError(
            "The projections were made with different preprocessing settings than the model "
            "was trained with; project the volume with model.preprocess."
        )
    return view_probabilities(model.predict, network_input(projections, model.views),
                              model.views, model.metadata.fusion, per_view)


__all__ = [
    "DEFAULT_MODEL_NAME",
    "FORMAT_VERSION",
    "FUSIONS",
    "LEVELS",
    "LoadedModel",
    "MODEL_FORMAT",
    "ModelMetadata",
    "build_model",
    "clear_model_cache",
    "default_model_path",
    "load_model",
    "models_dir",
    "parameter_specs",
    "predict_views",
    "read_metadata",
    "read_weights",
    "resolve_device",
    "sha256_file",
    "verified_weights_path",
    "view_probabilities",
    "weights_path",
]
