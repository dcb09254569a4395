"""Export a training run's epoch checkpoints (one, or the average of several) as models.

One job: turn ``RUN/checkpoints/epoch_NNN.*`` into a model that ``L3LocatorLib``
loads, so candidates can be scored on real cases while a run is still going and
the shipped model need not be whichever epoch happened to come last (rib
counting on real CT flipped from one epoch to the next). Averaging the weights of
the last few epochs is a cheap way to a choice that is stable across epochs.

    python -m training.checkpoints --run runs/x --epochs 8,9,10 --out runs/x/avg8-10 \\
        --template L3Locator/Resources/Models/default.json --val phantoms:150:900000:random

The architecture, preprocessing, views and levels come from ``--template`` (a model
JSON of the same architecture, e.g. the one the run was fine-tuned from); the
absent threshold is calibrated on ``--val`` exactly as training does (best balanced
accuracy of the L3 peak). Checkpoints are the run's own files: ``.npz`` arrays, or
``.pdparams`` written by ``paddle.save`` in this project's training (opened with
``paddle.load``, which unpickles: never point this at files from elsewhere).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from L3LocatorLib.model import import_paddle
from L3LocatorLib.model_files import FUSIONS, read_metadata
from L3LocatorLib.network import load_model
from L3LocatorLib.projection import PreprocessConfig

from .evaluate import calibrate_threshold, predict_samples, presence_confidences
from .export import write_model
from .sources import parse_sources

log = logging.getLogger(__name__)


def read_checkpoint(path: str | Path) -> dict[str, np.ndarray]:
    """Parameter name -> array of one of this project's checkpoints (.npz or .pdparams)."""
    path = Path(path)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as data:
            return {k: np.asarray(data[k]) for k in data.files}
    paddle = import_paddle()
    state = paddle.load(str(path))  # our own training output (see the module docstring)
    return {k: np.asarray(v.numpy() if hasattr(v, "numpy") else v) for k, v in state.items()}


def average_states(states: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Element-wise mean of state dicts with the same keys (float arrays; integer
    buffers such as step counters are taken from the last state)."""
    if not states:
        raise ValueError("no checkpoints to average")
    keys = set(states[0])
    for s in states[1:]:
        if set(s) != keys:
            raise ValueError("the checkpoints hold different parameters: not one architecture")
    out = {}
    for k in sorted(keys):
        arrays = [np.asarray(s[k]) for s in states]
        if np.issubdtype(arrays[-1].dtype, np.floating):
            out[k] = np.mean(np.stack(arrays), axis=0).astype(arrays[-1].dtype)
        else:
            out[k] = arrays[-1]
    return out


def checkpoint_path(run: Path, epoch: int) -> Path:
    for suffix in (".npz", ".pdparams"):
        path = run / "checkpoints" / f"epoch_{epoch:03d}{suffix}"
        if path.is_file():
            return path
    raise FileNotFoundError(f"{run}: no checkpoint for epoch {epoch}")


def export_checkpoints(run: Path, epochs: Sequence[int], out: Path, template: Path,
                       val: Optional[str] = None, cache: Optional[Path] = None,
                       name: str = "default", fusion: Optional[str] = None) -> Path:
    """Average the checkpoints of ``epochs`` of ``run`` and export them as ``out/<name>.json``.

    With ``val`` (a SOURCE) the absent threshold is calibrated on it; else the
    template's threshold is kept. ``fusion`` (``network.FUSIONS``; default: the
    template's) says how the two views are combined. Returns the JSON path.
    """
    meta = read_metadata(template)
    state = average_states([read_checkpoint(checkpoint_path(run, e)) for e in epochs])
    training = {"run": str(run), "epochs": list(epochs), "averaged": len(epochs) > 1,
                "template": str(template)}
    config_file = run / "train_config.json"
    if config_file.is_file():
        training["config"] = json.loads(config_file.read_text())

    def write(threshold: float, metrics: dict) -> Path:
        return write_model(state, out, name, arch=meta.arch, preprocess=meta.preprocess,
                           views=meta.views, levels=meta.levels, threshold=threshold,
                           fusion=fusion or meta.fusion,
                           version=meta.version, training=training, metrics=metrics)

    path = write(meta.threshold, {})
    if val:
        preprocess = PreprocessConfig.from_dict(meta.preprocess)
        samples = parse_sources(val, preprocess, cache)
        loaded = load_model(path)
        predictions = predict_samples(loaded.predict, samples, loaded.views, preprocess,
                                      fusion=loaded.metadata.fusion)
        view = "fused" if len(loaded.views) > 1 else loaded.views[0]
        pos, neg = presence_confidences(samples, predictions, loaded.levels, view)
        threshold = calibrate_threshold(pos, neg)
        path = write(threshold, {"threshold_calibration": {"source": val, "n_with_l3": len(pos),
                                                           "n_without": len(neg)}})
        print(f"absent threshold {threshold:.3f} (from {len(pos)} scans with L3, "
              f"{len(neg)} without)")
    return path


def _epochs(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.checkpoints",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="training output folder")
    parser.add_argument("--epochs", required=True, help="e.g. 10 or 8-10 or 6,8,10")
    parser.add_argument("--out", type=Path, required=True, help="folder for the model")
    parser.add_argument("--template", type=Path, required=True,
                        help="model JSON of the same architecture (settings, threshold)")
    parser.add_argument("--val", default=None, help="SOURCE to calibrate the threshold on")
    parser.add_argument("--cache", type=Path, default=None, help="sample cache folder")
    parser.add_argument("--name", default="default")
    parser.add_argument("--fusion", choices=FUSIONS, default=None,
                        help="how the two views are combined (default: the template's); "
                             "'mean' for a model trained on single views (--view-dropout 1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    path = export_checkpoints(args.run, _epochs(args.epochs), args.out, args.template,
                              args.val, args.cache, args.name, args.fusion)
    print(f"exported {path}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
