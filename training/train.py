"""The training loop: batches, loss, validation, checkpoints, curves, export.

Deterministic for a given ``seed``: the weights are initialised after
``paddle.seed(seed)``, and every augmentation draws from a generator seeded
with ``(seed, epoch, position in the epoch)``, so ``--resume`` continues the
same sequence of batches.
"""

from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from L3LocatorLib.errors import ModelError
from L3LocatorLib.model import (
    LEVELS,
    ModelConfig,
    count_parameters,
    import_paddle,
    preset,
)
from L3LocatorLib.model_files import read_metadata, read_weights, verified_weights_path
from L3LocatorLib.network import build_model, expand_channels
from L3LocatorLib.projection import PreprocessConfig, window

from .augment import AugmentConfig, augment, band_target_2d, row_targets
from .evaluate import calibrate_threshold, predict_samples, presence_confidences, score
from .export import export_model
from .sources import Sample

log = logging.getLogger(__name__)

VIEW_CHOICES = {"both": ("frontal", "sagittal"), "frontal": ("frontal",),
                "sagittal": ("sagittal",)}


@dataclass
class TrainConfig:
    """Every setting of one training run (saved in OUT/train_config.json and the model JSON)."""

    out: str
    data: str = ""
    arch: str = "default"
    views: str = "both"  #: both | frontal | sagittal
    levels: str = "all"  #: all (T12..S1) | L3
    epochs: int = 20
    batch_size: int = 8
    lr: float = 2e-3
    schedule: str = "cosine"  #: cosine (with warm-up) | step (the seed's StepDecay)
    weight_decay: float = 1e-4
    crop_rows: int = 256  #: training crop height (pixels; 512 mm at 2 mm)
    target: str = "gaussian"  #: gaussian | band | band2d (the seed's 2-D band, unet2d only)
    sigma: float = 1.5  #: Gaussian target width (pixels)
    loss: str = "bce"  #: bce | focal
    pos_weight: float = 1.0
    augment: bool = True
    view_dropout: float = 0.15
    hard_negatives: float = 0.2  #: fraction of crops cut just above or below L3
    steps_per_epoch: int = 0  #: 0 = one pass over the training scans
    seed: int = 0
    name: str = "model"
    version: str = "1"
    device: str = "cpu"
    threads: int = 1
    val_limit: int = 0  #: validate on at most this many scans (0 = all)
    #: weights to start from (fine-tuning): a model's ``.json`` (its weights, checked
    #: against the sha256) or a ``.npz`` of arrays named like the state dict; "" = random
    #: initialisation. Pickles (``.pdparams``) are refused: they can run code.
    init: str = ""
    #: overrides of ``AugmentConfig`` fields, e.g. ``{"p_warp": 0.0}``
    augmentation: dict[str, Any] = field(default_factory=dict)


def model_levels(config: TrainConfig, arch: ModelConfig) -> tuple[str, ...]:
    if config.levels == "L3" or arch.n_outputs == 1:
        return ("L3",)
    return LEVELS


def make_model_config(config: TrainConfig) -> ModelConfig:
    base = preset(config.arch)
    views = VIEW_CHOICES[config.views]
    overrides: dict[str, Any] = {}
    if base.in_channels % len(views) != 0:
        overrides["in_channels"] = len(views)
    if config.levels == "L3":
        overrides["n_outputs"] = 1
    return preset(config.arch, **overrides) if overrides else base


def _lr_at(config: TrainConfig, step: int, total: int, epoch: int) -> float:
    if config.schedule == "step":
        return config.lr * (0.1 ** (epoch // 30))
    warm = min(100, max(1, total // 20))
    if step < warm:
        return config.lr * (step + 1) / warm
    progress = (step - warm) / max(1, total - warm)
    return config.lr * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def make_batch(
    samples: Sequence[Sample],
    indices: Sequence[int],
    epoch: int,
    first_position: int,
    config: TrainConfig,
    views: tuple[str, ...],
    levels: tuple[str, ...],
    preprocess: PreprocessConfig,
    aug: AugmentConfig,
    in_channels: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x ``[B, C, H, W]``, target ``[B, L, H]`` or ``[B, L, H, W]``, mask ``[B, L]``)."""
    xs, ts, ms = [], [], []
    view_index = [("frontal", "sagittal").index(v) for v in views]
    for k, i in enumerate(indices):
        rng = np.random.default_rng([config.seed, epoch, first_position + k])
        a = augment(samples[i], rng, config.crop_rows, preprocess, aug)
        x = np.stack([window(a.images[v], preprocess) for v in view_index])
        if len(views) > 1 and aug.enabled and rng.random() < aug.view_dropout:
            x[int(rng.integers(0, len(views)))] = 0.0
        if in_channels != x.shape[0]:
            x = np.repeat(x, in_channels // x.shape[0], axis=0)
        kind = "band" if config.target in ("band", "band2d") else "gaussian"
        t, m = row_targets(a.level_rows, samples[i].known_levels, levels, config.crop_rows,
                           kind=kind, sigma=config.sigma, rows_with_data=a.rows_with_data)
        if config.target == "band2d":
            t = band_target_2d(t, x.shape[2])
        xs.append(x)
        ts.append(t)
        ms.append(m)
    return np.stack(xs).astype(np.float32), np.stack(ts), np.stack(ms)


def loss_fn(paddle: Any, model: Any, x: Any, target: Any, mask: Any, config: TrainConfig) -> Any:
    """Masked per-row BCE-with-logits (or focal) averaged over known levels and rows."""
    F = paddle.nn.functional
    if config.target == "band2d":
        logits = model(x)  # [B, L, H, W]
        m = mask.unsqueeze(-1).unsqueeze(-1)
    else:
        logits = model.row_logits(x)  # [B, L, H]
        m = mask.unsqueeze(-1)
    pos_weight = None
    if config.pos_weight != 1.0:
        pos_weight = paddle.to_tensor([config.pos_weight], dtype="float32")
    bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none",
                                             pos_weight=pos_weight)
    if config.loss == "focal":
        p = F.sigmoid(logits)
        p_t = p * target + (1 - p) * (1 - target)
        bce = bce * (1 - p_t) ** 2
    per_elem = float(np.prod(logits.shape[2:]))
    return (bce * m).sum() / (m.sum() * per_elem + 1e-6)


def _rename_optimizer_state(state: dict, model: Any, to_structured: bool) -> dict:
    """Optimizer state keys embed paddle's generated parameter names (``conv2d_16.w_0``),
    which differ between processes; store them under the structured names instead."""
    pairs = [(p.name, name) for name, p in model.named_parameters()]
    if not to_structured:
        pairs = [(b, a) for a, b in pairs]
    pairs.sort(key=lambda item: len(item[0]), reverse=True)
    out = {}
    for key, value in state.items():
        new_key = key
        for old, new in pairs:
            if key.startswith(old + "_"):
                new_key = "@" + new + key[len(old):] if to_structured else new + key[len(old):]
                break
            if not to_structured and key.startswith("@" + old + "_"):
                new_key = new + key[len(old) + 1:]
                break
        out[new_key] = value
    return out


def load_weights(paddle: Any, path: str) -> dict:
    """A state dict to start from: a model ``.json`` (its ``.npz`` weights, sha256 checked)
    or an ``.npz`` of arrays by parameter name. Neither can run code; anything else (a
    ``.pdparams`` pickle above all) is refused with ``ModelError``."""
    name = str(path).lower()
    if name.endswith(".json"):
        path = verified_weights_path(Path(path), read_metadata(Path(path)))
    elif not name.endswith(".npz"):
        raise ModelError(
            f"--init {path}: start from a model's .json or an .npz of weights. A .pdparams "
            "file is a Python pickle that can run code; convert a model you trust with "
            "'python -m training.export convert MODEL.json --trust-pickle'.")
    return {k: paddle.to_tensor(v) for k, v in read_weights(Path(path)).items()}


def _predictor(paddle: Any, model: Any) -> Any:
    def predict(x: np.ndarray) -> np.ndarray:
        with paddle.no_grad():
            logits = model.row_logits(paddle.to_tensor(x))
            return paddle.nn.functional.sigmoid(logits).numpy()

    return predict


def fusion_for(config: TrainConfig, views: Sequence[str]) -> str:
    """How the model's two views are combined (``network.FUSIONS``): a model that only
    ever saw one view at a time (``view_dropout`` 1) averages the views' answers."""
    return "mean" if len(views) > 1 and config.view_dropout >= 1.0 else "network"


def validate(paddle: Any, model: Any, samples: Sequence[Sample], views: tuple[str, ...],
             levels: tuple[str, ...], preprocess: PreprocessConfig, in_channels: int,
             threshold: float = 0.5, fusion: str = "network") -> tuple[dict, list, list]:
    model.eval()
    base = _predictor(paddle, model)

    def predict(x: np.ndarray) -> np.ndarray:
        return base(expand_channels(x, in_channels))

    predictions = predict_samples(predict, samples, views, preprocess, fusion=fusion)
    metrics, rows = score(samples, predictions, levels, threshold)
    model.train()
    return metrics, rows, predictions


def save_curves(history: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, 3, figsize=(12, 3.5))
    axes[0].plot(epochs, [h["train_loss"] for h in history], "b.-")
    axes[0].set_title("training loss")
    axes[0].set_yscale("log")
    for view, style in (("fused", "k.-"), ("frontal", "b.--"), ("sagittal", "g.--")):
        med = [h.get("val", {}).get(view, {}).get("median_mm") for h in history]
        if any(v is not None for v in med):
            axes[1].plot(epochs, [np.nan if v is None else v for v in med], style, label=view)
        body = [h.get("val", {}).get(view, {}).get("in_body") for h in history]
        if any(v is not None for v in body):
            axes[2].plot(epochs, [np.nan if v is None else v for v in body], style, label=view)
    axes[1].set_title("validation median error (mm)")
    axes[2].set_title("validation: row inside L3 (%)")
    for ax in axes:
        ax.set_xlabel("epoch")
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def _summary(val: dict) -> str:
    parts = []
    for view in ("fused", "frontal", "sagittal"):
        m = val.get(view)
        if m and "median_mm" in m:
            text = f"{view} med {m['median_mm']:.1f} mm"
            if "in_body" in m:
                text += f" in-L3 {m['in_body']:.0f}%"
            parts.append(text)
    return ", ".join(parts)


def train(
    config: TrainConfig,
    train_samples: Sequence[Sample],
    val_samples: Sequence[Sample],
    preprocess: PreprocessConfig,
    resume: bool = False,
    data_description: Optional[dict] = None,
    progress: bool = True,
) -> Path:
    """Train, checkpoint each epoch, export ``OUT/<name>.json``; return its path."""
    paddle = import_paddle()
    from tqdm import tqdm

    out = Path(config.out)
    ckpt_dir = out / "checkpoints"
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    paddle.set_device(config.device)
    if config.device == "cpu":
        try:
            paddle.base.core.set_num_threads(int(config.threads))
        except AttributeError:  # pragma: no cover - older paddle
            pass
    views = VIEW_CHOICES[config.views]
    arch = make_model_config(config)
    levels = model_levels(config, arch)
    if config.target == "band2d" and arch.arch != "unet2d":
        raise ValueError("the band2d target needs a 2-D output (arch unet2d, e.g. --arch seed)")
    if not train_samples:
        raise ValueError("no training samples")
    paddle.seed(config.seed)
    np.random.seed(config.seed)
    model = build_model(arch)
    n_params = count_parameters(model)
    steps = config.steps_per_epoch or max(1, len(train_samples) // config.batch_size)
    total_steps = steps * config.epochs
    optimizer = paddle.optimizer.AdamW(
        learning_rate=config.lr, parameters=model.parameters(), weight_decay=config.weight_decay
    ) if config.weight_decay else paddle.optimizer.Adam(
        learning_rate=config.lr, parameters=model.parameters()
    )
    aug = AugmentConfig(**{"enabled": config.augment, "view_dropout": config.view_dropout,
                           "p_l3_cut": config.hard_negatives, **config.augmentation})
    history: list[dict] = []
    start_epoch = 0
    state_file = ckpt_dir / "last.json"
    if resume and state_file.is_file():
        state = json.loads(state_file.read_text())
        model.set_state_dict(paddle.load(str(ckpt_dir / "last.pdparams")))
        optimizer.set_state_dict(_rename_optimizer_state(
            paddle.load(str(ckpt_dir / "last.pdopt")), model, to_structured=False))
        history = state["history"]
        start_epoch = state["epoch"]
        log.info("Resuming after epoch %d", start_epoch)
        print(f"Resuming from {ckpt_dir} after epoch {start_epoch}")
    elif resume and not config.init:
        print(f"No checkpoint in {ckpt_dir}; starting from scratch")
    if config.init and start_epoch == 0:
        model.set_state_dict(load_weights(paddle, config.init))
        print(f"Starting from the weights of {config.init}")
    (out / "train_config.json").write_text(json.dumps(asdict(config), indent=1))
    print(f"{arch.arch} {config.arch}: {n_params:,} parameters; views {', '.join(views)}; "
          f"levels {', '.join(levels)}; {len(train_samples)} training / {len(val_samples)} "
          f"validation scans; {steps} steps/epoch")
    val_subset = list(val_samples)
    if config.val_limit and len(val_subset) > config.val_limit:
        pick = np.linspace(0, len(val_subset) - 1, config.val_limit).round().astype(int)
        val_subset = [val_subset[i] for i in pick]
    model.train()
    started = time.perf_counter()
    for epoch in range(start_epoch, config.epochs):
        epoch_start = time.perf_counter()
        order = np.random.default_rng([config.seed, epoch, 10**6]).permutation(
            max(len(train_samples), steps * config.batch_size)
        ) % len(train_samples)
        losses = []
        bar = tqdm(range(steps), desc=f"epoch {epoch + 1}/{config.epochs}", unit="step",
                   disable=not progress, leave=True)
        for step in bar:
            first = step * config.batch_size
            idx = order[first : first + config.batch_size]
            x, t, m = make_batch(train_samples, idx, epoch, first, config, views, levels,
                                 preprocess, aug, arch.in_channels)
            optimizer.set_lr(_lr_at(config, epoch * steps + step, total_steps, epoch))
            loss = loss_fn(paddle, model, paddle.to_tensor(x), paddle.to_tensor(t),
                           paddle.to_tensor(m), config)
            loss.backward()
            optimizer.step()
            optimizer.clear_grad()
            losses.append(float(loss.numpy()))
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "train_loss": float(np.mean(losses)),
            "seconds": time.perf_counter() - epoch_start,
        }
        if val_subset:
            metrics, _, _ = validate(paddle, model, val_subset, views, levels, preprocess,
                                     arch.in_channels, fusion=fusion_for(config, views))
            record["val"] = metrics
        history.append(record)
        line = f"epoch {epoch + 1}: loss {record['train_loss']:.4f}, {record['seconds']:.0f} s"
        if "val" in record:
            line += "; validation " + _summary(record["val"])
        (tqdm.write if progress else print)(line)
        paddle.save(model.state_dict(), str(ckpt_dir / "last.pdparams"))
        paddle.save(_rename_optimizer_state(optimizer.state_dict(), model, True),
                    str(ckpt_dir / "last.pdopt"))
        if n_params < 5_000_000:
            paddle.save(model.state_dict(), str(ckpt_dir / f"epoch_{epoch + 1:03d}.pdparams"))
        state_file.write_text(json.dumps({"epoch": epoch + 1, "history": history}, indent=1))
        save_curves(history, out / "curves.png")
    seconds = time.perf_counter() - started
    # Calibrate the absent threshold on the full validation set and record its metrics.
    threshold = 0.1
    final: dict[str, Any] = {}
    if val_samples:
        _, _, predictions = validate(paddle, model, val_samples, views, levels, preprocess,
                                     arch.in_channels, fusion=fusion_for(config, views))
        main_view = "fused" if len(views) > 1 else views[0]
        pos, neg = presence_confidences(val_samples, predictions, levels, main_view)
        threshold = calibrate_threshold(pos, neg)
        final, _ = score(val_samples, predictions, levels, threshold)
        print(f"absent threshold {threshold:.3f} (from {len(pos)} scans with L3, "
              f"{len(neg)} without)")
    model.eval()
    training = {
        "data": config.data,
        "description": data_description or {},
        "n_train": len(train_samples),
        "n_validation": len(val_samples),
        "config": asdict(config),
        "parameters": n_params,
        "train_seconds": round(seconds, 1),
        "history": [{k: v for k, v in h.items() if k != "val"} for h in history],
    }
    path = export_model(
        model, out, config.name, preprocess=preprocess, views=views, levels=levels,
        threshold=threshold, fusion=fusion_for(config, views), version=config.version,
        training=training,
        metrics={"validation": final},
    )
    print(f"exported {path}")
    return path
