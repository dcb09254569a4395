"""Speed of the network presets on this machine: parameters, inference, training step.

Run: ``OMP_NUM_THREADS=1 python benchmarks/training_speed.py`` (or 2). Prints one line
per measurement; the ratios (seed / default) are measured in the same run.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from L3LocatorLib.model import count_parameters, preset
from L3LocatorLib.network import build_model


def _time(fn, repeat: int) -> float:
    fn()  # warm-up
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def main() -> None:
    import paddle

    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=300, help="scan height (2 mm rows)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--skip-seed-train", action="store_true")
    args = parser.parse_args()
    paddle.set_device("cpu")
    results = {}
    for name, shape_infer, shape_train in (
        ("tiny", (3, 2, args.rows, 256), (8, 2, 256, 256)),
        ("default", (3, 2, args.rows, 256), (8, 2, 256, 256)),
        # The seed: one view, 3 repeated channels, 512 x 512 at 1 mm.
        ("seed", (1, 3, 512, 512), (8, 3, 256, 256)),
    ):
        model = build_model(preset(name))
        model.eval()
        x = paddle.to_tensor(np.random.rand(*shape_infer).astype("float32"))
        with paddle.no_grad():
            t_inf = _time(lambda m=model, x=x: m.row_logits(x).numpy(),
                          args.repeat if name != "seed" else 2)
        model.train()
        opt = paddle.optimizer.Adam(1e-3, parameters=model.parameters())
        xt = paddle.to_tensor(np.random.rand(*shape_train).astype("float32"))

        def step(model=model, xt=xt, opt=opt) -> None:
            loss = model.row_logits(xt).mean()
            loss.backward()
            opt.step()
            opt.clear_grad()

        t_train = float("nan")
        if not (name == "seed" and args.skip_seed_train):
            t_train = _time(step, 2 if name == "seed" else args.repeat)
        results[name] = t_inf
        print(f"{name:8s} params {count_parameters(model):>11,d}  inference {shape_infer} "
              f"{t_inf * 1000:8.1f} ms  train step {shape_train} {t_train:6.2f} s")
    # Per-scan: the default runs 3 inputs (fused + each view); the seed runs 2 views x 1.
    print(f"seed (two views) / default (three inputs) per scan: "
          f"{2 * results['seed'] / results['default']:.0f}x")
    # Static graph vs eager for the default model (single input).
    model = build_model(preset("default"))
    model.eval()
    x1 = paddle.to_tensor(np.random.rand(1, 2, args.rows, 256).astype("float32"))
    with paddle.no_grad():
        eager = _time(lambda: model.row_logits(x1).numpy(), args.repeat)
        static = paddle.jit.to_static(model.row_logits, full_graph=True)
        try:
            t_static = _time(lambda: static(x1).numpy(), args.repeat)
            print(f"default [1,2,{args.rows},256]: eager {eager * 1000:.1f} ms, "
                  f"to_static {t_static * 1000:.1f} ms")
        except Exception as error:  # noqa: BLE001
            print(f"default eager {eager * 1000:.1f} ms; to_static failed: {error}")


if __name__ == "__main__":
    main()
