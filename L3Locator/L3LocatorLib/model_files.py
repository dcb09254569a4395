"""Model files: read and check a model's metadata JSON and its ``.npz`` weights.

A model is two files side by side::

    <name>.json       ModelMetadata: format, architecture, preprocessing, views,
                      levels, absent threshold, weights file name and sha256,
                      training data, metrics, software versions
    <name>.npz        the weights: one plain numeric array per parameter name

Reading a model never runs code from its files and never trusts a size it has not
checked: the weights are read member by member from the zip, each member's ``.npy``
header (shape, dtype) is checked against what the architecture needs *before* its data
is inflated, and the total is capped (``MAX_WEIGHTS_BYTES``), so a member claiming
32 GiB or a deflate bomb is refused at the cost of reading a few headers. PaddlePaddle's
``.pdparams`` is a Python pickle, which can run anything when loaded, so it is refused
(``python -m training.export convert`` converts one you trust). The sha256 in the JSON
proves the two files belong together, not where they came from.

``read_metadata`` refuses a JSON it cannot honour: unknown format version, any field of
the wrong type, any number outside its sane range (``SETTING_RANGES``, the one table of
them), a ``weights`` entry that is not a plain file name beside the JSON.
``verified_weights_path`` refuses weights that are missing, leave the model's folder
(through a symbolic link), are too large or do not match the sha256. Each refusal is a
``ModelError`` that names the file and says what to do. Loading and running the network
is ``network``'s job.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import zipfile
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping, Optional

import numpy as np

from .errors import ModelError, refuse_unknown_fields
from .model import ModelConfig
from .preprocess import PreprocessConfig

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


#: The sane range (inclusive, in the field's unit) of every number a model's settings hold:
#: the one place they are set. A value outside it is a damaged or hostile file, refused
#: before anything is built, read or projected (a 1e-9 mm slab, a 0.001 mm pixel that
#: would make every scan's projections enormous, a 1e308 HU window).
#: ``context_dilations`` is checked per entry. ``version`` fields are checked for equality
#: (``errors.refuse_other_version``) instead.
SETTING_RANGES: dict[str, dict[str, tuple[float, float]]] = {
    "arch": {
        "in_channels": (1, 16),  # input channels
        "base_width": (1, 256),  # channels of the first level
        "depth": (0, 6),  # 2x down-samplings
        "n_outputs": (1, 64),  # output channels (levels)
        "max_width": (0, 1024),  # channel cap (0 = none)
        "decoder_width": (0, 1024),  # 1-D decoder channels (0 = as the encoder)
        "context_dilations": (1, 64),  # each dilation (rows)
    },
    "preprocess": {
        "pixel_mm": (0.25, 10.0),  # projection pixel (mm)
        "hu_min": (-1100.0, 4000.0),  # window (HU)
        "hu_max": (-1100.0, 4000.0),
        "width_mm": (64.0, 1024.0),  # projection width (mm)
        "slab_mm": (1.0, 500.0),  # sagittal slab thickness (mm)
        "sagittal_spine_fraction": (0.0, 1.0),  # fraction of the sagittal width
        "bone_hu": (-1100.0, 4000.0),  # spine thresholds (HU)
        "body_hu": (-1100.0, 4000.0),
        "oblique_tolerance": (0.0, 0.1),  # off-axis direction cosine
    },
}
#: The widest layer (channels) and the most context dilations an architecture may have:
#: with ``SETTING_RANGES`` they bound the network built from a model file before its
#: weights are read (the seed's U-Net, the largest we know, is 1024 wide).
MAX_LAYER_WIDTH = 1024
MAX_DILATIONS = 8
#: Pairs of settings that must be ordered (lower, upper).
_ORDERED = (("preprocess", "hu_min", "hu_max"), ("preprocess", "body_hu", "bone_hu"))


def _check_ranges(meta: ModelMetadata, source: str) -> None:
    """Every number of the settings inside its ``SETTING_RANGES``, windows ordered and the
    widest layer within ``MAX_LAYER_WIDTH``; raises ``ModelError`` naming each problem."""
    settings = {"arch": meta.arch, "preprocess": meta.preprocess}
    problems = []
    for section, limits in SETTING_RANGES.items():
        for name, (low, high) in limits.items():
            value = settings[section].get(name)
            values = value if isinstance(value, list) else [] if value is None else [value]
            outside = [v for v in values if not low <= v <= high]
            if outside:
                problems.append(f"{name} is {_shown(outside[0])}, outside {low:g} to {high:g}")
    for section, low_name, high_name in _ORDERED:
        low, high = settings[section].get(low_name), settings[section].get(high_name)
        if low is not None and high is not None and low >= high:
            problems.append(f"{low_name} must be below {high_name}")
    if not problems:
        arch = {**asdict(ModelConfig()), **meta.arch}
        widest = arch["base_width"] * 2 ** arch["depth"]
        if arch["max_width"]:
            widest = min(widest, arch["max_width"])
        if max(widest, arch["decoder_width"]) > MAX_LAYER_WIDTH:
            problems.append(f"its widest layer has {max(widest, arch['decoder_width'])} "
                            f"channels, more than {MAX_LAYER_WIDTH}")
        if len(arch["context_dilations"]) > MAX_DILATIONS:
            problems.append(f"it has {len(arch['context_dilations'])} context dilations, more "
                            f"than {MAX_DILATIONS}")
    if problems:
        raise ModelError(f"{source}: the model's settings are invalid ({'; '.join(problems)}). "
                         "The model file is damaged or was edited by hand; re-export or "
                         "re-download the model.")


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file (read in 1 MiB blocks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


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


#: The most bytes of weights a model may hold, inflated (and the largest weights file read):
#: 4x the seed's 31 M-parameter U-Net in float32. Checked from the zip's member headers
#: before any array is inflated.
MAX_WEIGHTS_BYTES = 512 * 2**20
#: The most bytes a member's ``.npy`` header may take (NumPy's own limit).
_MAX_NPY_HEADER = 10_000

#: What a network expects of one parameter: its shape and dtype.
ParamSpec = tuple[tuple[int, ...], np.dtype]


@dataclass(frozen=True)
class _Member:
    """One ``.npy`` member of a weights zip, from its headers only."""

    info: zipfile.ZipInfo
    shape: tuple[int, ...]
    dtype: np.dtype
    fortran_order: bool
    data_offset: int  #: bytes of .npy header before the data

    @property
    def data_bytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


def read_weights(path: Path, expected: Optional[Mapping[str, ParamSpec]] = None, *,
                 model: str = "", max_bytes: int = MAX_WEIGHTS_BYTES) -> dict[str, np.ndarray]:
    """The arrays of a ``.npz`` weights file, by parameter name.

    Every member's headers (the zip's sizes, the ``.npy`` shape and dtype) are checked
    before any data is inflated: each member must hold exactly the array its header
    describes, of plain numbers (never a pickle), all together at most ``max_bytes``; with
    ``expected`` (parameter name -> shape and dtype, from the network the architecture
    builds) the names, shapes and dtypes must be exactly those. ``model`` names the JSON in
    messages. Raises ``ModelError`` saying what is wrong and what to do.
    """
    try:
        _check_file_size(path, max_bytes)
        with zipfile.ZipFile(path) as archive:
            members = _member_headers(archive, path)
            _check_members(members, expected, path, model, max_bytes)
            return {name: _read_member(archive, member) for name, member in members.items()}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, NotImplementedError,
            RuntimeError) as error:  # RuntimeError: an encrypted member
        raise ModelError(
            f"Cannot read the weights file {path} ({error}). It is damaged or not a weights "
            "file of plain numbers; re-download or re-export the model.") from None


def _check_file_size(path: Path, max_bytes: int) -> None:
    size = path.stat().st_size
    if size > max_bytes:
        raise ModelError(f"The weights file {path} is {size / 2**20:.0f} MB, more than any "
                         f"L3Locator model ({max_bytes / 2**20:.0f} MB): it is not a model's "
                         "weights. Re-download or re-export the model.")


def _member_headers(archive: zipfile.ZipFile, path: Path) -> dict[str, _Member]:
    """Parameter name -> its member's headers; nothing but headers is inflated."""
    members: dict[str, _Member] = {}
    for info in archive.infolist():
        name = info.filename[:-4] if info.filename.endswith(".npy") else ""
        if not name or name in members:
            problem = "is repeated" if name else "is not a .npy array"
            raise ModelError(f"The weights file {path} is not plain weights: its member "
                             f"{info.filename!r} {problem}. Re-export the model.")
        with archive.open(info) as stream:
            version = np.lib.format.read_magic(stream)
            if version == (1, 0):
                header = np.lib.format.read_array_header_1_0(stream, _MAX_NPY_HEADER)
            elif version == (2, 0):
                header = np.lib.format.read_array_header_2_0(stream, _MAX_NPY_HEADER)
            else:
                raise ValueError(f"{info.filename} is a .npy file of version {version}")
            shape, fortran_order, dtype = header
            members[name] = _Member(info, tuple(shape), dtype, fortran_order, stream.tell())
    return members


def _check_members(members: dict[str, _Member], expected: Optional[Mapping[str, ParamSpec]],
                   path: Path, model: str, max_bytes: int) -> None:
    """Each member plain numbers and exactly its header's size, the total within
    ``max_bytes``, and (with ``expected``) every name, shape and dtype as expected."""
    for name, member in members.items():
        if member.dtype.kind not in "fiu" or member.dtype.hasobject:
            raise ModelError(f"The weights file {path} holds non-numeric data ({name}, "
                             f"{member.dtype}); re-export the model.")
        if member.info.file_size != member.data_offset + member.data_bytes:
            raise ModelError(
                f"The weights file {path} is damaged or was tampered with: its member {name} "
                f"holds {member.info.file_size} bytes, but its header describes an array of "
                f"{member.data_bytes}. Re-download or re-export the model.")
    if expected is not None:
        missing = sorted(set(expected) - set(members))
        extra = sorted(set(members) - set(expected))
        wrong = [f"{k} is {list(m.shape)} {m.dtype}, not {list(expected[k][0])} "
                 f"{np.dtype(expected[k][1])}" for k, m in members.items()
                 if k in expected and (m.shape, m.dtype) != (tuple(expected[k][0]),
                                                             np.dtype(expected[k][1]))]
        if missing or extra or wrong:
            detail = "; ".join(part for part in (
                f"missing {', '.join(missing[:3])}" if missing else "",
                f"unexpected {', '.join(extra[:3])}" if extra else "",
                f"wrong shape or type: {'; '.join(wrong[:3])}" if wrong else "") if part)
            raise ModelError(
                f"The weights in {path} do not fit the architecture described in "
                f"{model or 'the model file'} ({detail}). The two files are from different "
                "models; re-export the model.")
    total = sum(member.data_bytes for member in members.values())
    if total > max_bytes:
        raise ModelError(f"The weights in {path} would take {total / 2**20:.0f} MB, more than "
                         f"any L3Locator model ({max_bytes / 2**20:.0f} MB). Re-download or "
                         "re-export the model.")


def _read_member(archive: zipfile.ZipFile, member: _Member) -> np.ndarray:
    """The array of one checked member: exactly its header's bytes (the zip's CRC checked)."""
    with archive.open(member.info) as stream:
        stream.read(member.data_offset)
        data = stream.read(member.data_bytes)
        if len(data) != member.data_bytes or stream.read(1):
            raise ValueError(f"{member.info.filename} is not the size its header says")
    flat = np.frombuffer(data, dtype=member.dtype)
    order = "F" if member.fortran_order else "C"
    return np.array(flat.reshape(member.shape, order=order), order="C")


def verified_weights_path(json_path: Path, meta: ModelMetadata) -> Path:
    """The weights file of a model (see ``weights_path``): present, in the model's own
    folder (a symbolic link that leads elsewhere is refused like a ``../`` name), no larger
    than ``MAX_WEIGHTS_BYTES`` and matching the sha256 in its JSON; else ``ModelError``
    saying what to do."""
    weights = weights_path(json_path, meta)
    if not weights.is_file():
        raise ModelError(
            f"The weights file {weights} named by {json_path.name} is missing. Copy it next to "
            "the model .json (both files belong together) or re-export the model."
        )
    if weights.resolve().parent != json_path.resolve().parent:
        raise ModelError(
            f"The weights file {weights} named by {json_path.name} is a link to "
            f"{weights.resolve()}, outside the model's own folder. Copy the weights file "
            "itself next to the model .json."
        )
    _check_file_size(weights, MAX_WEIGHTS_BYTES)
    digest = sha256_file(weights)
    if digest != meta.sha256:
        raise ModelError(
            f"The weights file {weights} does not match {json_path.name} (sha256 "
            f"{digest[:12]}... instead of {meta.sha256[:12]}...): it is truncated, damaged or "
            "from another model. Copy the matching weights or re-download the model."
        )
    return weights
