"""The network stage: load a trained model (metadata JSON + weights), pick a device, and
turn one scan's projections into per-level row probabilities.

A model is two files side by side::

    <name>.json       ModelMetadata: format, architecture, preprocessing, views,
                      levels, absent threshold, weights file name and sha256,
                      training data, metrics, software versions
    <name>.npz        the weights: one plain numeric array per parameter name, read with
                      ``numpy.load(allow_pickle=False)``

Loading a model never runs code from its files: the weights format holds numbers only
(PaddlePaddle's ``.pdparams`` is a Python pickle, which can run anything when loaded, so it
is refused; ``python -m training.export convert`` converts one you trust). The sha256 in
the JSON proves the two files belong together, not where they came from.

``load_model`` refuses a JSON it cannot honour (unknown format version, any field of the
wrong type or out of range, a ``weights`` entry that is not a plain file name beside the
JSON) and weights that are missing, truncated or do not match (sha256 and parameter
shapes), each with a ``ModelError`` that names the file and says what to do. ``predict_views`` runs
one model on one scan's projections and returns per-level probabilities for
the fused views and for each view alone (the other view's channel zeroed;
models are trained with such view dropout); ``decode`` reads rows off them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import threading
import time
import zipfile
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .errors import DependencyError, ModelError, refuse_unknown_fields
from .model import LEVELS, ModelConfig, build_model, import_paddle
from .projection import PreprocessConfig, Projections, network_input

log = logging.getLogger(__name__)

#: The ``format`` field every model JSON carries.
MODEL_FORMAT = "l3locator-model"
#: The metadata layout this code reads and writes.
FORMAT_VERSION = 1
#: File name of the model used when none is given.
DEFAULT_MODEL_NAME = "default.json"
VIEWS = ("frontal", "sagittal")
#: How a two-view model's combined ("fused") answer is made: "network" runs the network on
#: both views at once; "mean" averages the probabilities of each view run alone (late
#: fusion, for models trained on single views).
FUSIONS = ("network", "mean")
#: The weights file ending: NumPy .npz of plain numeric arrays (no pickle).
WEIGHTS_SUFFIX = ".npz"
#: Weights files that are Python pickles (PaddlePaddle): refused, never opened.
PICKLE_SUFFIXES = (".pdparams", ".pdopt", ".pkl", ".pickle", ".pt", ".pth")


@dataclass
class ModelMetadata:
    """Everything needed to rebuild, trust and describe a trained model.

    Attributes:
        name, version: identify the model (shown in results and QA pictures).
        arch: ``ModelConfig.to_dict()``.
        preprocess: ``PreprocessConfig.to_dict()`` used for training.
        views: input channels in order, from ``("frontal", "sagittal")``; a model whose
            ``in_channels`` is a multiple of ``len(views)`` gets each view repeated
            (the seed feeds one view three times).
        levels: output channel names, superior -> inferior (e.g. ``LEVELS``).
        answer_level: the level reported as the answer ("L3").
        threshold: peak probability below which the answer level is "absent"
            (calibrated on validation data with hard negatives).
        flag_threshold: peak probability from which an answer below ``threshold`` is
            still given, flagged, when both views point to one vertebra
            (``presence.decide``; calibrated on real CT); None: no such answers.
        fusion: how the combined answer of two views is made (``FUSIONS``).
        weights: weights file name, relative to the JSON's folder.
        sha256: hex digest of the weights file.
        training: description of the training data and settings.
        metrics: evaluation figures (validation), free-form.
        software: versions of the software that trained the model.
        created: ISO date/time.
        format, format_version: ``MODEL_FORMAT`` and ``FORMAT_VERSION``.
    """

    name: str
    arch: dict[str, Any]
    preprocess: dict[str, Any]
    views: list[str]
    levels: list[str]
    weights: str
    sha256: str
    version: str = "0"
    answer_level: str = "L3"
    threshold: float = 0.5
    flag_threshold: Optional[float] = None
    fusion: str = "network"
    training: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    software: dict[str, Any] = field(default_factory=dict)
    created: str = ""
    format: str = MODEL_FORMAT
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "the model file") -> ModelMetadata:
        """Validate and build; raises ``ModelError`` naming ``source`` when not understood."""
        if not isinstance(data, dict) or data.get("format") != MODEL_FORMAT:
            raise ModelError(
                f"{source} is not an L3Locator model description (expected \"format\": "
                f"\"{MODEL_FORMAT}\"). Choose the .json file written next to the weights."
            )
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise ModelError(
                f"{source} uses model format version {version}; this version of L3Locator "
                f"reads version {FORMAT_VERSION}. Update L3Locator or use a model made for it."
            )
        refuse_unknown_fields(cls, data, source)
        missing = [f.name for f in fields(cls) if f.name not in data
                   and f.default is MISSING and f.default_factory is MISSING]
        if missing:
            raise ModelError(f"{source} is incomplete (no {', '.join(missing)}). Re-export the "
                             "model.")
        for name, value in data.items():
            problem = _FIELD_CHECKS[name](value)
            if problem:
                raise ModelError(f"{source}: the field \"{name}\" {problem} (found "
                                 f"{_shown(value)}). Re-export the model or fix the file.")
        meta = cls(**data)
        if meta.flag_threshold is not None and meta.flag_threshold > meta.threshold:
            raise ModelError(f"{source}: flag_threshold {meta.flag_threshold} is above the "
                             f"threshold {meta.threshold}. Re-calibrate the model.")
        if meta.answer_level not in meta.levels:
            raise ModelError(f"{source}: answer level {meta.answer_level!r} is not one of its "
                             f"levels {meta.levels}. Re-export the model.")
        return meta

    @property
    def model_config(self) -> ModelConfig:
        return ModelConfig.from_dict(self.arch)

    @property
    def preprocess_config(self) -> PreprocessConfig:
        return PreprocessConfig.from_dict(self.preprocess)


def _shown(value: Any) -> str:
    text = json.dumps(value) if _json_ok(value) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _json_ok(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def _text(value: Any) -> str:
    return "" if isinstance(value, str) and value.strip() else "must be non-empty text"


def _any_text(value: Any) -> str:
    return "" if isinstance(value, str) else "must be text"


def _mapping(value: Any) -> str:
    return "" if isinstance(value, dict) else "must be an object ({...})"


def _names(allowed: Optional[tuple[str, ...]] = None) -> Any:
    def check(value: Any) -> str:
        if (not isinstance(value, list) or not value
                or not all(isinstance(v, str) and v for v in value)):
            return "must be a non-empty list of names"
        if len(set(value)) != len(value):
            return "must not repeat a name"
        if allowed is not None and not set(value) <= set(allowed):
            return f"may only hold {', '.join(allowed)}"
        return ""

    return check


def _probability(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "must be a number"
    if not math.isfinite(value) or not 0.0 < value < 1.0:
        return "must be a probability strictly between 0 and 1"
    return ""


def _fusion(value: Any) -> str:
    return "" if value in FUSIONS else f"must be one of {', '.join(FUSIONS)}"


def _weights_name(value: Any) -> str:
    """A plain file name beside the JSON: no folder, no '..', no absolute path."""
    if not isinstance(value, str) or not value.strip():
        return "must be a file name"
    if (value in (".", "..") or "/" in value or "\\" in value or ":" in value
            or value.startswith(".") or os.path.isabs(value)):
        return "must be a plain file name in the model's own folder (no path)"
    return ""


def _sha256(value: Any) -> str:
    if (isinstance(value, str) and len(value) == 64
            and all(c in "0123456789abcdef" for c in value)):
        return ""
    return "must be 64 lower-case hexadecimal digits"


def _format_version(value: Any) -> str:
    whole = isinstance(value, int) and not isinstance(value, bool)
    return "" if whole else "must be a whole number"


#: One check per ``ModelMetadata`` field: "" when the value is acceptable, else what is wrong.
_FIELD_CHECKS: dict[str, Any] = {
    "name": _text,
    "version": _text,
    "arch": _mapping,
    "preprocess": _mapping,
    "views": _names(VIEWS),
    "levels": _names(),
    "answer_level": _text,
    "threshold": _probability,
    "flag_threshold": lambda value: "" if value is None else _probability(value),
    "fusion": _fusion,
    "weights": _weights_name,
    "sha256": _sha256,
    "training": _mapping,
    "metrics": _mapping,
    "software": _mapping,
    "created": _any_text,
    "format": _text,
    "format_version": _format_version,
}


def _check_settings(values: dict[str, Any], cls: type, what: str, source: str) -> None:
    """Every field of a settings dataclass (``ModelConfig``, ``PreprocessConfig``) has the
    type its default has, and every number is finite; raises ``ModelError``."""
    for f in fields(cls):
        if f.name not in values:
            continue
        value, default = values[f.name], getattr(cls, f.name, None)
        if isinstance(default, bool):
            ok = isinstance(value, bool)
        elif isinstance(default, int):
            ok = isinstance(value, int) and not isinstance(value, bool)
        elif isinstance(default, float):
            ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
                  and math.isfinite(value))
        elif isinstance(default, str):
            ok = isinstance(value, str)
        elif isinstance(default, tuple):
            ok = isinstance(value, list) and all(
                isinstance(v, int) and not isinstance(v, bool) for v in value)
        else:
            ok = True
        if not ok:
            kind = type(default).__name__ if default is not None else "value"
            raise ModelError(f"{source}: {what} field \"{f.name}\" must be a finite {kind} "
                             f"(found {_shown(value)}). Re-export the model or fix the file.")


def _check_ranges(meta: ModelMetadata, source: str) -> None:
    """Sizes that must be positive, and windows that must be ordered."""
    arch, pre = meta.arch, meta.preprocess
    positive = {**{k: arch.get(k) for k in ("in_channels", "base_width", "n_outputs")},
                **{k: pre.get(k) for k in ("pixel_mm", "width_mm", "slab_mm")}}
    non_negative = {k: arch.get(k) for k in ("depth", "max_width", "decoder_width")}
    non_negative["oblique_tolerance"] = pre.get("oblique_tolerance")
    problems = [f"{k} must be above 0" for k, v in positive.items() if v is not None and v <= 0]
    problems += [f"{k} must not be negative" for k, v in non_negative.items()
                 if v is not None and v < 0]
    if any(d < 1 for d in arch.get("context_dilations", ())):
        problems.append("context_dilations must all be 1 or more")
    if pre.get("hu_min", 0) >= pre.get("hu_max", 1):
        problems.append("hu_min must be below hu_max")
    fraction = pre.get("sagittal_spine_fraction")
    if fraction is not None and not 0 <= fraction <= 1:
        problems.append("sagittal_spine_fraction must be between 0 and 1")
    if problems:
        raise ModelError(f"{source}: invalid settings ({'; '.join(problems)}). Re-export the "
                         "model or fix the file.")


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ------------------------------------------------------------ loading


def models_dir() -> Path:
    """Folder of the shipped models: ``L3Locator/Resources/Models`` next to the package,
    else the ``L3LocatorLib._models`` package data (wheel installs)."""
    here = Path(__file__).resolve().parent.parent / "Resources" / "Models"
    if here.is_dir():
        return here
    try:
        from importlib import resources

        packaged = Path(str(resources.files("L3LocatorLib") / "_models"))
        if packaged.is_dir():
            return packaged
    except (ImportError, AttributeError, TypeError, ModuleNotFoundError):  # pragma: no cover
        pass
    return here


def default_model_path() -> Path:
    """Path of the default model's JSON (it may not exist)."""
    return models_dir() / DEFAULT_MODEL_NAME


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


def read_metadata(path: str | os.PathLike[str]) -> ModelMetadata:
    """Read and validate a model JSON without loading weights."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelError(
            f"Cannot read the model description {path} ({error}). The file is damaged or not a "
            "model .json; re-export or re-download the model."
        ) from error
    source = str(path)
    meta = ModelMetadata.from_dict(data, source=source)
    _check_settings(meta.arch, ModelConfig, "the architecture", source)
    _check_settings(meta.preprocess, PreprocessConfig, "the preprocessing", source)
    _check_ranges(meta, source)
    try:
        meta.model_config  # noqa: B018 - validates the architecture
        meta.preprocess_config  # noqa: B018 - validates the preprocessing
    except (TypeError, ValueError) as error:
        raise ModelError(f"{source}: the model's settings are not understood ({error}). "
                         "Re-export the model.") from None
    return meta


def weights_path(json_path: Path, meta: ModelMetadata) -> Path:
    """The weights file of a model: the plain name in ``meta.weights``, beside the JSON.

    Raises ``ModelError`` for weights in a pickle format (``.pdparams``): those can run
    code when loaded and are never opened here.
    """
    name = meta.weights
    if name.lower().endswith(PICKLE_SUFFIXES):
        raise ModelError(
            f"{json_path.name} names weights in PaddlePaddle's .pdparams format ({name}), a "
            "Python pickle that can run any program when it is opened, so L3Locator does not "
            "open it. If you trust where this model came from, convert it once with "
            f"'python -m training.export convert {json_path} --trust-pickle' and use the "
            "converted model; otherwise ask its author for the .npz version.")
    if not name.lower().endswith(WEIGHTS_SUFFIX):
        raise ModelError(f"{json_path.name} names weights {name!r}; L3Locator reads weights "
                         f"from a {WEIGHTS_SUFFIX} file. Re-export the model.")
    return json_path.parent / name


def read_weights(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a ``.npz`` weights file, by parameter name. Never unpickles: a file
    holding Python objects is refused (``ModelError``)."""
    try:
        with np.load(path, allow_pickle=False) as data:
            if not isinstance(data, np.lib.npyio.NpzFile):
                raise ValueError("not an .npz archive")
            arrays = {name: data[name] for name in data.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ModelError(
            f"Cannot read the weights file {path} ({error}). It is damaged or not a weights "
            "file of plain numbers; re-download or re-export the model.") from None
    bad = [k for k, v in arrays.items() if v.dtype.kind not in "fiu"]
    if bad:
        raise ModelError(f"The weights file {path} holds non-numeric data ({bad[0]}); "
                         "re-export the model.")
    return arrays


def verified_weights_path(json_path: Path, meta: ModelMetadata) -> Path:
    """The weights file of a model (see ``weights_path``), present and matching the sha256
    in its JSON; else ``ModelError`` saying what to do."""
    weights = weights_path(json_path, meta)
    if not weights.is_file():
        raise ModelError(
            f"The weights file {weights} named by {json_path.name} is missing. Copy it next to "
            "the model .json (both files belong together) or re-export the model."
        )
    digest = sha256_file(weights)
    if digest != meta.sha256:
        raise ModelError(
            f"The weights file {weights} does not match {json_path.name} (sha256 "
            f"{digest[:12]}... instead of {meta.sha256[:12]}...): it is truncated, damaged or "
            "from another model. Copy the matching weights or re-download the model."
        )
    return weights


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
    state = read_weights(weights)
    expected = network.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    wrong = [
        k for k in expected
        if k in state and list(state[k].shape) != list(expected[k].shape)
    ]
    if missing or extra or wrong:
        detail = "; ".join(
            part
            for part in (
                f"missing {', '.join(missing[:3])}" if missing else "",
                f"unexpected {', '.join(extra[:3])}" if extra else "",
                f"wrong shape {', '.join(wrong[:3])}" if wrong else "",
            )
            if part
        )
        raise ModelError(
            f"The weights in {weights} do not fit the architecture described in {path.name} "
            f"({detail}). The two files are from different models; re-export the model."
        )
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
    "clear_model_cache",
    "default_model_path",
    "load_model",
    "models_dir",
    "read_weights",
    "weights_path",
    "predict_views",
    "read_metadata",
    "resolve_device",
    "sha256_file",
    "verified_weights_path",
    "view_probabilities",
]
