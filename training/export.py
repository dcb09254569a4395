"""Export a trained network as a model that ``L3LocatorLib`` loads unchanged: the weights
(``<name>.npz``, plain arrays by parameter name: nothing in it can run code) plus its
metadata JSON (architecture, preprocessing, views, levels, threshold, training data,
metrics, software versions).

Converting an old model whose weights are a PaddlePaddle ``.pdparams`` pickle is an
explicit, separate step, because opening a pickle runs whatever it contains::

    python -m training.export convert OLD.json --trust-pickle [--out FOLDER]

Only do it for a model from a source you trust. The converted model is written to a new
folder (default ``<OLD folder>/<name>-npz``); the original files are not changed.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from L3LocatorLib import __version__
from L3LocatorLib.errors import DependencyError, ModelError
from L3LocatorLib.model import import_paddle
from L3LocatorLib.model_files import WEIGHTS_SUFFIX, ModelMetadata, read_metadata, sha256_file
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
    fusion: str = "network",
    version: str = "1",
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
) -> Path:
    """Write ``out_dir/<name>.npz`` and ``out_dir/<name>.json``; return the JSON path.

    ``model`` is a paddle Layer from ``build_model`` (its ``config`` attribute is
    recorded). The weights are written first, then hashed, then the JSON.
    """
    state = {k: np.asarray(v.numpy()) for k, v in model.state_dict().items()}
    return write_model(state, out_dir, name, arch=model.config.to_dict(),
                       preprocess=preprocess.to_dict(), views=views, levels=levels,
                       threshold=threshold, fusion=fusion, version=version,
                       training=training, metrics=metrics)


def write_model(
    state: dict[str, np.ndarray],
    out_dir: str | os.PathLike[str],
    name: str,
    *,
    arch: dict[str, Any],
    preprocess: dict[str, Any],
    views: Sequence[str],
    levels: Sequence[str],
    threshold: float,
    fusion: str = "network",
    version: str = "1",
    training: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    software: dict[str, Any] | None = None,
    created: str = "",
) -> Path:
    """Write weights ``state`` (parameter name -> array) as ``<name>.npz`` and the metadata
    as ``<name>.json`` in ``out_dir``; the JSON is validated by reading it back."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    weights = out / f"{name}{WEIGHTS_SUFFIX}"
    tmp = out / f"{name}.tmp{WEIGHTS_SUFFIX}"
    # Plain, uncompressed arrays in a fixed order: the bytes (and sha256) depend on the
    # weights only.
    arrays = {k: np.ascontiguousarray(np.asarray(v)) for k, v in sorted(state.items())}
    with open(tmp, "wb") as stream:
        np.savez(stream, **arrays)
    os.replace(tmp, weights)
    meta = ModelMetadata(
        name=name,
        version=str(version),
        arch=jsonable(arch),
        preprocess=jsonable(preprocess),
        views=list(views),
        levels=list(levels),
        answer_level="L3",
        threshold=float(threshold),
        fusion=fusion,
        weights=weights.name,
        sha256=sha256_file(weights),
        training=jsonable(training or {}),
        metrics=jsonable(metrics or {}),
        software=software if software is not None else software_versions(),
        created=created or time.strftime("%Y-%m-%dT%H:%M:%S"),
    )
    path = out / f"{name}.json"
    path.write_text(json.dumps(meta.to_dict(), indent=1) + "\n", encoding="utf-8")
    read_metadata(path)  # what we write must be what we accept
    log.info("Exported model %s (weights sha256 %s)", path, meta.sha256[:12])
    return path


def convert_pickled_model(json_path: str | os.PathLike[str], out_dir: str | os.PathLike[str],
                          *, trust_pickle: bool = False) -> Path:
    """Convert a model whose weights are a ``.pdparams`` pickle to the ``.npz`` format.

    ``trust_pickle`` must be True: opening the pickle runs any code it holds, so only
    convert models from a source you trust. The weights must still match the JSON's sha256.
    Writes ``out_dir/<name>.npz`` and ``.json`` (``out_dir`` must not hold them yet);
    returns the new JSON path. Raises ``ModelError`` with what to do.
    """
    source = Path(json_path)
    if not trust_pickle:
        raise ModelError(
            "Converting a .pdparams model opens a Python pickle, which can run any program. "
            "Only do it for a model from a source you trust, and say so with --trust-pickle.")
    meta = read_metadata(source)
    if not meta.weights.lower().endswith(".pdparams"):
        raise ModelError(f"{source} names weights {meta.weights!r}, not a .pdparams file: "
                         "nothing to convert.")
    weights = source.parent / meta.weights
    if not weights.is_file() or sha256_file(weights) != meta.sha256:
        raise ModelError(f"{weights} is missing or does not match {source.name} (sha256); "
                         "it was not opened.")
    out = Path(out_dir)
    target = out / f"{source.stem}.json"
    if target.exists() or (out / f"{source.stem}{WEIGHTS_SUFFIX}").exists():
        raise ModelError(f"{out} already holds a model named {source.stem}; choose another "
                         "--out folder.")
    paddle = import_paddle()
    state = paddle.load(str(weights))  # the explicit, trusted opt-in
    arrays = {k: np.asarray(v.numpy() if hasattr(v, "numpy") else v) for k, v in state.items()}
    return write_model(
        arrays, out, source.stem, arch=meta.arch, preprocess=meta.preprocess,
        views=meta.views, levels=meta.levels, threshold=meta.threshold,
        version=meta.version, training=meta.training, metrics=meta.metrics,
        software=meta.software, created=meta.created,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.export convert OLD.json --trust-pickle [--out FOLDER]``."""
    parser = argparse.ArgumentParser(prog="python -m training.export",
                                     description="Model file conversions.")
    sub = parser.add_subparsers(dest="command", required=True)
    convert = sub.add_parser("convert", help="convert a .pdparams model to the .npz format")
    convert.add_argument("model", type=Path, help="the old model's .json")
    convert.add_argument("--out", type=Path,
                         help="folder for the converted model (default: <name>-npz beside it)")
    convert.add_argument("--trust-pickle", action="store_true",
                         help="I trust this model's source: open its pickle to convert it")
    args = parser.parse_args(argv)
    out = args.out or args.model.parent / f"{args.model.stem}-npz"
    try:
        path = convert_pickled_model(args.model, out, trust_pickle=args.trust_pickle)
    except ModelError as error:
        print(str(error), file=sys.stderr)
        return 2
    print(f"Wrote {path} and its weights {path.with_suffix(WEIGHTS_SUFFIX)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
