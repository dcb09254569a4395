"""The training package: paper npz loader, splits, targets, augmentation, a tiny run, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from L3LocatorLib.projection import PreprocessConfig
from training.augment import (
    AugmentConfig,
    augment,
    band_target_2d,
    row_stretch,
    row_targets,
)
from training.evaluate import calibrate_threshold, score
from training.sources import Sample, load_paper_npz, load_samples, save_samples, split_indices

LEVELS7 = ("T12", "L1", "L2", "L3", "L4", "L5", "S1")


def make_paper_npz(path, n=6, seed=0):
    """A tiny npz in the paper's exact format: ragged MIPs, ydata per annotator."""
    rng = np.random.default_rng(seed)
    images_f, images_s, spacings, names = [], [], [], []
    ann1, ann2 = [], []
    for i in range(n):
        rows, cols = int(rng.integers(90, 140)), int(rng.integers(80, 120))
        s = [float(rng.uniform(0.7, 0.9)), float(rng.uniform(0.7, 0.9)), [2.5, 1.25, 3.0][i % 3]]
        l3 = float(rng.uniform(25, rows - 25))
        f = np.full((rows, cols), -50.0, dtype=np.float32)
        f[:, cols // 2 - 6 : cols // 2 + 6] = 300.0  # a spine-like column
        f[int(round(l3)), :] = 1400.0  # a bright line at L3
        images_f.append(f)
        images_s.append(f[:, ::-1].copy())
        spacings.append(s)
        names.append(f"scan{i}")
        ann1.append(l3 - 1.0)
        ann2.append(l3 + 1.0)
    ragged_f = np.empty(n, dtype=object)
    ragged_s = np.empty(n, dtype=object)
    for i in range(n):
        ragged_f[i], ragged_s[i] = images_f[i], images_s[i]
    np.savez(
        path, images_f=ragged_f, images_s=ragged_s,
        ydata=np.array({"annotator_a": np.array(ann1), "annotator_b": np.array(ann2)}),
        names=np.array(names), spacings=np.array(spacings),
    )
    return images_f, spacings, (np.array(ann1) + np.array(ann2)) / 2


def test_paper_npz_loader_semantics(tmp_path):
    path = tmp_path / "l3_dataset.npz"
    images, spacings, mean_rows = make_paper_npz(path)
    config = PreprocessConfig()
    samples = load_paper_npz(path, config)
    assert len(samples) == 6
    for sample, image, s, row in zip(samples, images, spacings, mean_rows):
        h = image.shape[0]
        assert sample.frontal_hu.shape == (int(np.floor((h - 1) * s[2] / 2.0 + 1e-6)) + 1, 256)
        assert sample.l3_row == pytest.approx(row * s[2] / 2.0)  # annotator mean, then mm
        assert sample.known_levels == ("L3",)
        # The bright line drawn at L3 appears at the converted row (within a pixel).
        profile = sample.frontal_hu[:, 128]
        assert abs(int(np.argmax(profile)) - sample.l3_row) <= 1.0
        # Columns: 0.7-0.9 mm input pixels resampled to 2 mm, centred: image is narrower.
        assert sample.frontal_hu[5, 0] == config.hu_min - 1
    filtered = load_paper_npz(path, config, seed_filter=True)
    assert len(filtered) == sum(int(r * s[2]) <= 512 for r, s in zip(mean_rows, spacings))
    seeded = load_paper_npz(path, PreprocessConfig(pixel_mm=1.0), seed_preprocess=True)
    assert seeded[0].frontal_hu.shape == (512, 512)


def test_seed_style_contiguous_folds():
    n = 979
    for k in range(1, 6):
        train, val = split_indices(n, 5, k)
        assert list(val) == list(range(int(0.2 * (k - 1) * n), int(0.2 * k * n)))
        assert sorted(np.concatenate([train, val])) == list(range(n))
    train, val = split_indices(10, 5, 2, mode="random", seed=1)
    assert len(val) == 2 and len(set(train) | set(val)) == 10
    assert len(split_indices(10, 1, 1)[1]) == 0


def test_row_targets():
    t, m = row_targets({"L3": 10.3, "L4": 40.0}, LEVELS7, LEVELS7, 32, sigma=1.5)
    i3, i4 = LEVELS7.index("L3"), LEVELS7.index("L4")
    assert m.tolist() == [1.0] * 7
    assert np.argmax(t[i3]) == 10 and t[i3].max() > 0.9
    assert t[i4].max() == 0.0  # outside the image: trains toward "absent"
    assert t[LEVELS7.index("L1")].max() == 0.0  # known absent
    t, m = row_targets({"L3": 33.0}, ("L3",), LEVELS7, 32)
    assert m[i3] == 0.0  # just outside the edge: ambiguous, masked
    assert m.sum() == 0.0  # other levels unknown to this source
    t, m = row_targets({"L3": 10.0}, ("L3",), ("L3",), 32, kind="band")
    assert np.flatnonzero(t[0]).tolist() == list(range(7, 13))
    assert band_target_2d(t, 20)[0, 10].tolist() == [0.0] * 7 + [1.0] * 7 + [0.0] * 6


def _line_sample(h=150, w=256, row=70.4, name="s"):
    image = np.full((h, w), 99.0, dtype=np.float32)
    image[int(round(row))] = 1400.0
    return Sample(
        frontal_hu=image, sagittal_hu=image.copy(), level_rows={"L3": row},
        known_levels=("L3",), l3_row=row, l3_top_row=row - 8, l3_bottom_row=row + 8, name=name,
    )


def test_augment_is_deterministic_and_moves_rows_with_the_image():
    sample = _line_sample()
    config = PreprocessConfig()
    for seed in range(12):
        a = augment(sample, np.random.default_rng(seed), 64, config,
                    AugmentConfig(window_scale=0, window_shift=0, p_noise=0, p_blur=0,
                                  p_thick=0, p_occlude=0))
        b = augment(sample, np.random.default_rng(seed), 64, config)
        c = augment(sample, np.random.default_rng(seed), 64, config)
        np.testing.assert_array_equal(b.images, c.images)
        assert a.images.shape == (2, 64, 256)
        row = a.level_rows["L3"]
        if 1 <= row <= 62:
            assert abs(np.argmax(a.images[0, :, 128]) - row) <= 1.0
        assert a.l3_extent[0] < row < a.l3_extent[1]


def test_gamma_window_fades_mid_tones_and_keeps_the_rest():
    from training.augment import gamma_window

    config = PreprocessConfig()
    lo, hi = config.hu_min, config.hu_max
    hu = np.linspace(-1100, 3000, 4101).astype(np.float32)
    out = hu.copy()
    gamma_window(out, lo, hi, 2.0)
    outside = (hu <= lo) | (hu >= hi)
    np.testing.assert_array_equal(out[outside], hu[outside])
    assert np.all(np.diff(out) >= 0)  # monotonic, so bone stays brighter than soft tissue
    mid = (hu > lo + 50) & (hu < hi - 50)
    assert np.all(out[mid] < hu[mid])
    # cancellous bone (300 HU: 14 % up the window) falls to 2 %; dense cortex stays bright
    assert out[hu == 300][0] < lo + 40 and out[hu == 1400][0] > 1200
    # In the crops: the p_gamma views are the same crop with faded mid-tones.
    sample = _line_sample()
    plain = AugmentConfig(window_scale=0, window_shift=0, p_noise=0, p_blur=0, p_thick=0,
                          p_occlude=0, p_flip=0, p_warp=0, view_dropout=0)
    a = augment(sample, np.random.default_rng(3), 64, config, plain)
    b = augment(sample, np.random.default_rng(3), 64, config,
                AugmentConfig(**{**plain.__dict__, "p_gamma": 1.0}))
    assert a.level_rows == b.level_rows
    assert np.all(b.images <= a.images + 1e-3) and np.any(b.images < a.images - 1)


def test_row_stretch_is_smooth_monotonic_and_keeps_the_ends():
    for seed in range(5):
        mapped = row_stretch(200, np.random.default_rng(seed), 0.12, 10.0)
        steps = np.diff(mapped)
        assert mapped[0] == 0.0 and mapped[-1] == pytest.approx(199.0)
        assert steps.min() > 0.5 and steps.max() < 2.0  # strictly increasing, bounded stretch
        assert np.std(np.log(steps)) > 0.03  # it does stretch


def test_warped_crops_keep_levels_on_their_rows():
    sample = _line_sample(h=300, row=150.0)
    sample.level_rows["L2"] = 120.0
    sample.frontal_hu[120] = 1400.0
    quiet = dict(window_scale=0, window_shift=0, p_noise=0, p_blur=0, p_thick=0, p_occlude=0,
                 p_warp=1.0, p_l3_inside=1.0)
    checked = 0
    for seed in range(20):
        a = augment(sample, np.random.default_rng(seed), 96, PreprocessConfig(),
                    AugmentConfig(**quiet))
        column = a.images[0, :, 128]
        for name in ("L3", "L2"):
            row = a.level_rows[name]
            if 2 <= row <= 93:
                window = slice(int(row) - 2, int(row) + 3)
                peak = window.start + int(np.argmax(column[window]))
                assert abs(peak - row) <= 0.75, (seed, name, peak, row)
                checked += 1
    assert checked >= 25


def test_near_edge_hard_negatives_put_l3_just_outside():
    sample = _line_sample(h=300, row=150.0)
    config = AugmentConfig(p_l3_inside=0.0, p_l3_cut=1.0, p_cut_near=1.0)
    near, mid, _ = config.cut_gap_px
    for seed in range(20):
        a = augment(sample, np.random.default_rng(seed), 64, PreprocessConfig(), config)
        row = a.level_rows["L3"]
        gap = -row if row < 0 else row - 63
        assert near - 1e-6 <= gap <= mid + 1e-6, (seed, row)


def test_short_field_of_view_blanks_rows_and_their_levels():
    i3 = LEVELS7.index("L3")
    # Only rows 40..63 show the scan: L3 at row 20 is absent there, at row 38 it is unsure.
    t, m = row_targets({"L3": 20.0}, LEVELS7, LEVELS7, 64, rows_with_data=(40, 63))
    assert m[i3] == 1.0 and t[i3].max() == 0.0
    t, m = row_targets({"L3": 38.0}, LEVELS7, LEVELS7, 64, rows_with_data=(40, 63))
    assert m[i3] == 0.0
    t, m = row_targets({"L3": 45.0}, LEVELS7, LEVELS7, 64, rows_with_data=(40, -1))
    assert m[i3] == 1.0 and np.argmax(t[i3]) == 45

    sample = _line_sample(h=300, row=150.0)
    sample.frontal_hu += 300.0  # a background brighter than the blank fill
    sample.sagittal_hu += 300.0
    quiet = dict(window_scale=0, window_shift=0, p_noise=0, p_blur=0, p_thick=0, p_occlude=0,
                 p_short_fov=1.0, scale=(1.0, 1.0))
    fill = PreprocessConfig().hu_min - 1.0
    sides = set()
    for seed in range(12):
        a = augment(sample, np.random.default_rng(seed), 128, PreprocessConfig(),
                    AugmentConfig(**quiet))
        first, last = a.rows_with_data
        assert 60 <= last - first + 1 <= 160 and (first == 0 or last == 127)
        sides.add(first == 0)
        blank = np.ones(128, dtype=bool)
        blank[first : last + 1] = False
        assert np.all(a.images[:, blank] == fill)
        assert np.mean(a.images[0, first : last + 1, 128] > fill) > 0.5  # the scan is kept
    assert sides == {True, False}


def test_calibrate_threshold_and_score():
    assert calibrate_threshold([0.9, 0.8, 0.7], [0.1, 0.3]) == pytest.approx(0.5)
    assert calibrate_threshold([0.9], []) == 0.1
    sample = _line_sample()
    absent = Sample(frontal_hu=sample.frontal_hu, sagittal_hu=sample.sagittal_hu,
                    level_rows={}, known_levels=("L3",), l3_row=None, name="neg")
    prob = np.exp(-0.5 * ((np.arange(150) - 72.4) / 1.5) ** 2)[None] * 0.9
    metrics, rows = score([sample, absent], [{"fused": prob}, {"fused": prob * 0.2}],
                          ("L3",), threshold=0.5)
    m = metrics["fused"]
    assert m["median_mm"] == pytest.approx(4.0, abs=0.01)
    assert m["within_5mm"] == 100.0 and m["in_body"] == 100.0
    assert m["presence_accuracy"] == 100.0 and m["false_alarms"] == 0
    assert rows[1]["l3_present"] is False


def test_sample_cache_round_trip(tmp_path):
    samples = [_line_sample(h=40 + i, row=20.5, name=f"n{i}") for i in range(3)]
    save_samples(tmp_path / "c.npz", samples, {"k": 1})
    back, info = load_samples(tmp_path / "c.npz")
    assert info == {"k": 1}
    for a, b in zip(samples, back):
        np.testing.assert_array_equal(a.frontal_hu, b.frontal_hu)
        assert (a.name, a.l3_row, a.level_rows, a.l3_top_row) == (
            b.name, b.l3_row, b.level_rows, b.l3_top_row)


def test_tiny_preset_loss_goes_down():
    paddle = pytest.importorskip("paddle")
    from L3LocatorLib.network import build_model
    from training.train import TrainConfig, loss_fn, make_batch

    paddle.seed(0)
    samples = [_line_sample(h=120, row=30.0 + 7 * i) for i in range(8)]
    config = TrainConfig(out="unused", crop_rows=64, lr=5e-3, seed=0)
    model = build_model("tiny")
    opt = paddle.optimizer.Adam(learning_rate=5e-3, parameters=model.parameters())
    x, t, m = make_batch(samples, range(8), 0, 0, config, ("frontal", "sagittal"), LEVELS7,
                         PreprocessConfig(), AugmentConfig(enabled=False), 2)
    x, t, m = paddle.to_tensor(x), paddle.to_tensor(t), paddle.to_tensor(m)
    losses = []
    for _ in range(25):
        loss = loss_fn(paddle, model, x, t, m, config)
        loss.backward()
        opt.step()
        opt.clear_grad()
        losses.append(float(loss.numpy()))
    assert losses[-1] < 0.5 * losses[0]


def test_cli_train_then_evaluate_end_to_end(tmp_path, monkeypatch):
    paddle = pytest.importorskip("paddle")
    from L3LocatorLib.network import load_model
    from training.cli import main

    data = tmp_path / "l3_dataset.npz"
    make_paper_npz(data, n=10)
    out = tmp_path / "run"
    args = ["train", "--data", str(data), "--arch", "tiny", "--epochs", "1", "--out", str(out),
            "--crop-rows", "64", "--batch-size", "4"]
    assert main(args) == 0
    meta = json.loads((out / "model.json").read_text())
    assert meta["levels"] == list(LEVELS7) and meta["views"] == ["frontal", "sagittal"]
    assert meta["training"]["n_validation"] == 2
    assert (out / "curves.png").is_file() and (out / "checkpoints" / "last.pdparams").is_file()
    # Resume with one more epoch continues from the checkpoint.
    assert main(args[:6] + ["2"] + args[7:] + ["--resume"]) == 0
    state = json.loads((out / "checkpoints" / "last.json").read_text())
    assert [h["epoch"] for h in state["history"]] == [1, 2]
    # The exported model loads and agrees with the checkpoint's network.
    loaded = load_model(out / "model.json", device="cpu")
    from L3LocatorLib.network import build_model

    net = build_model(loaded.config)
    net.set_state_dict(paddle.load(str(out / "checkpoints" / "last.pdparams")))
    net.eval()
    x = np.random.default_rng(0).random((1, 2, 70, 256), dtype=np.float32)
    with paddle.no_grad():
        direct = paddle.nn.functional.sigmoid(net.row_logits(paddle.to_tensor(x))).numpy()
    np.testing.assert_array_equal(loaded.predict(x), direct)
    ev = tmp_path / "eval"
    assert main(["evaluate", "--model", str(out / "model.json"), "--data", str(data),
                 "--out", str(ev), "--worst", "1"]) == 0
    metrics = json.loads((ev / "metrics.json").read_text())
    assert metrics["n_scans"] == 2  # the model's own validation fold, never training data
    assert set(metrics["metrics"]) == {"fused", "frontal", "sagittal"}
    assert (ev / "per_scan.csv").is_file() and (ev / "worst_fused_01.png").is_file()
    # Without --out the results go to the working folder, never beside the model (the
    # shipped model's folder is inside the installed package).
    before = sorted(p.name for p in out.iterdir())
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    assert main(["evaluate", "--model", str(out / "model.json"), "--data", str(data)]) == 0
    assert sorted(p.name for p in out.iterdir()) == before
    [made] = list(work.iterdir())
    assert made.name.startswith("eval_model_") and (made / "metrics.json").is_file()


def test_training_is_deterministic_with_a_seed(tmp_path):
    pytest.importorskip("paddle")
    from training.cli import main

    data = tmp_path / "l3_dataset.npz"
    make_paper_npz(data, n=8, seed=3)
    digests = []
    for run in ("a", "b"):
        out = tmp_path / run
        assert main(["train", "--data", str(data), "--arch", "tiny", "--epochs", "1", "--out",
                     str(out), "--crop-rows", "48", "--batch-size", "3", "--seed", "7"]) == 0
        digests.append(json.loads((out / "model.json").read_text())["sha256"])
    assert digests[0] == digests[1]


def test_single_view_training_exports_a_late_fusion_model():
    from training.train import TrainConfig, fusion_for

    both = ("frontal", "sagittal")
    assert fusion_for(TrainConfig(out="run", view_dropout=1.0), both) == "mean"
    assert fusion_for(TrainConfig(out="run", view_dropout=0.3), both) == "network"
    assert fusion_for(TrainConfig(out="run", view_dropout=1.0), ("sagittal",)) == "network"
