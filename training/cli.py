"""Command line: ``python -m training train|evaluate ...``.

Examples::

    python -m training train --data l3_dataset.npz --arch tiny --epochs 1 --out runs/t
    python -m training train --data phantoms:600:0 --val phantoms:100:100000 --out runs/p
    python -m training evaluate --model runs/p/model.json --data phantoms:200:200000
    python -m training evaluate --model runs/s/model.json --data l3_dataset.npz --fold 5

SOURCE: ``PATH.npz`` (the paper's data set), ``FOLDER[:CSV]`` (CTs + CSV of L3
positions), ``phantoms:N[:SEED]``, ``labelmap:PATH[:N[:SEED]]``; join with ``+``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

from L3LocatorLib.model_files import read_metadata
from L3LocatorLib.preprocess import PreprocessConfig

from .evaluate import evaluate_model, format_metrics
from .sources import default_cache_dir, parse_sources, seed_config, split_indices
from .train import TrainConfig, train


def _add_data_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True, help="SOURCE[+SOURCE...] (see module help)")
    p.add_argument("--folds", type=int, default=5,
                   help="K for K-fold splits (default 5; 1 = no split)")
    p.add_argument("--fold", type=int, default=5, help="validation block 1..K (default 5)")
    p.add_argument("--split", choices=("contiguous", "random"), default="contiguous",
                   help="contiguous 1/K blocks as in the seed (default), or shuffled")
    p.add_argument("--cache", default=None,
                   help="folder for generated/projected samples (default OUT/cache or "
                        "~/.cache/l3locator)")
    p.add_argument("--seed-filter", action="store_true",
                   help="paper npz: drop scans whose L3 lies below row 512 at 1 mm (the seed)")
    p.add_argument("--seed-preprocess", action="store_true",
                   help="paper npz: the seed's exact images (1 mm, 512x512, min-max, mask)")
    p.add_argument("--processes", type=int, default=2, help="processes for generation")
    p.add_argument("--device", default="cpu", help="cpu (default), gpu, gpu:N or auto")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for PaddlePaddle (default 1: fastest for small nets)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m training", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train a model and export it")
    _add_data_options(t)
    t.add_argument("--val", default=None,
                   help="validation SOURCE (default: fold --fold of --data)")
    t.add_argument("--out", required=True, help="output folder")
    t.add_argument("--arch", default="default", help="preset: default, tiny or seed")
    t.add_argument("--views", choices=("both", "frontal", "sagittal"), default=None,
                   help="input views (default both; sagittal for --arch seed)")
    t.add_argument("--levels", choices=("all", "L3"), default="all",
                   help="predict T12..S1 (default) or L3 only")
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--batch-size", type=int, default=8)
    t.add_argument("--lr", type=float, default=None, help="default 2e-3 (0.01 for seed)")
    t.add_argument("--schedule", choices=("cosine", "step"), default=None)
    t.add_argument("--steps-per-epoch", type=int, default=0)
    t.add_argument("--crop-rows", type=int, default=256)
    t.add_argument("--target", choices=("gaussian", "band", "band2d"), default="gaussian")
    t.add_argument("--sigma", type=float, default=1.5)
    t.add_argument("--loss", choices=("bce", "focal"), default="bce")
    t.add_argument("--pos-weight", type=float, default=1.0)
    t.add_argument("--no-augment", action="store_true")
    t.add_argument("--view-dropout", type=float, default=0.15,
                   help="share of training crops with one view blanked (default 0.15); 1 "
                        "trains single views only and exports a late-fusion model (the mean "
                        "of the two views' answers)")
    t.add_argument("--hard-negatives", type=float, default=0.2,
                   help="fraction of training crops cut just above or below L3 (default 0.2)")
    t.add_argument("--val-limit", type=int, default=0,
                   help="validate each epoch on at most this many scans (0 = all)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--name", default="model", help="model file name (OUT/<name>.json)")
    t.add_argument("--version", default="1")
    t.add_argument("--resume", action="store_true", help="continue from OUT/checkpoints")
    t.add_argument("--init", default="",
                   help="start from these weights (a model .json, or an .npz of weights, of the "
                        "same architecture), e.g. the shipped model, to fine-tune it")
    t.add_argument("--augmentation", default="",
                   help='JSON overrides of AugmentConfig fields, e.g. \'{"p_bend": 0.5}\'')
    e = sub.add_parser("evaluate", help="score an exported model")
    _add_data_options(e)
    e.add_argument("--model", required=True, help="model .json")
    e.add_argument("--out", default=None, help="folder for per_scan.csv, metrics.json, PNGs "
                   "(default: ./eval_<model name>_<time>)")
    e.add_argument("--all", action="store_true",
                   help="score every scan of --data (default: the validation fold when "
                        "--data is the model's own training source)")
    e.add_argument("--worst", type=int, default=8, help="worst-case pictures per view")
    return parser


def _setup_threads(threads: int) -> None:
    # Must happen before PaddlePaddle is imported: its CPU kernels read OMP_NUM_THREADS.
    os.environ.setdefault("OMP_NUM_THREADS", str(threads))
    os.environ.setdefault("MKL_NUM_THREADS", str(threads))


def _load(args: argparse.Namespace, spec: str, config, cache: Path):
    return parse_sources(spec, config, cache, seed_filter=args.seed_filter,
                         seed_preprocess=args.seed_preprocess, processes=args.processes)


def _preprocess(args: argparse.Namespace):
    return seed_config() if args.seed_preprocess else PreprocessConfig()


def cmd_train(args: argparse.Namespace) -> int:
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cache = Path(args.cache) if args.cache else out / "cache"
    is_seed = args.arch == "seed"
    views = args.views or ("sagittal" if is_seed else "both")
    config = TrainConfig(
        out=str(out), data=args.data, arch=args.arch, views=views, levels=args.levels,
        epochs=args.epochs, batch_size=args.batch_size,
        lr=args.lr if args.lr is not None else (0.01 if is_seed else 2e-3),
        schedule=args.schedule or ("step" if is_seed else "cosine"),
        weight_decay=0.0 if is_seed else 1e-4,
        crop_rows=args.crop_rows, target=args.target, sigma=args.sigma, loss=args.loss,
        pos_weight=args.pos_weight, augment=not args.no_augment,
        view_dropout=args.view_dropout, hard_negatives=args.hard_negatives,
        steps_per_epoch=args.steps_per_epoch, seed=args.seed,
        name=args.name, version=args.version, device=args.device, threads=args.threads,
        val_limit=args.val_limit, init=args.init,
        augmentation=json.loads(args.augmentation) if args.augmentation else {},
    )
    preprocess = _preprocess(args)
    samples = _load(args, args.data, preprocess, cache)
    if args.val:
        train_samples, val_samples = samples, _load(args, args.val, preprocess, cache)
        split = {"validation": args.val}
    else:
        tr, va = split_indices(len(samples), args.folds, args.fold, args.split, args.seed)
        train_samples = [samples[i] for i in tr]
        val_samples = [samples[i] for i in va]
        split = {"folds": args.folds, "fold": args.fold, "split": args.split}
    description = {"source": args.data, **split, "seed_filter": args.seed_filter,
                   "seed_preprocess": args.seed_preprocess}
    train(config, train_samples, val_samples, preprocess, resume=args.resume,
          data_description=description)
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    meta = read_metadata(args.model)
    preprocess = meta.preprocess_config
    # Defaults stay out of the model's folder: the shipped model's is inside the package.
    out = Path(args.out) if args.out else Path(f"eval_{meta.name}_{time.strftime('%Y%m%d_%H%M%S')}")
    cache = Path(args.cache) if args.cache else default_cache_dir()
    samples = _load(args, args.data, preprocess, cache)
    trained_on = meta.training.get("description", {})
    same_source = trained_on.get("source") == args.data and "folds" in trained_on
    if same_source and not args.all:
        # Never score training data: keep the model's own validation fold.
        _, va = split_indices(len(samples), trained_on["folds"], trained_on["fold"],
                              trained_on.get("split", "contiguous"),
                              meta.training.get("config", {}).get("seed", 0))
        samples = [samples[i] for i in va]
        print(f"{args.data} is the model's training source: scoring its validation fold "
              f"{trained_on['fold']}/{trained_on['folds']} ({len(samples)} scans)")
    elif args.folds > 1 and args.fold and "--fold" in sys.argv:
        _, va = split_indices(len(samples), args.folds, args.fold, args.split, 0)
        samples = [samples[i] for i in va]
    metrics = evaluate_model(args.model, samples, out, device=args.device, worst=args.worst)
    print(format_metrics(metrics))
    print(f"per-scan CSV, metrics.json and worst-case pictures in {out}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_threads(args.threads)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "train":
        return cmd_train(args)
    return cmd_evaluate(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
