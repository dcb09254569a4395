"""Model export and loading: identical outputs, refusals with clear errors, devices."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from L3LocatorLib import network
from L3LocatorLib.decode import decode_prediction
from L3LocatorLib.errors import DependencyError, ModelError
from L3LocatorLib.model import LEVELS, preset
from L3LocatorLib.model_files import ModelMetadata, read_metadata
from L3LocatorLib.network import (
    build_model,
    load_model,
    predict_views,
    resolve_device,
)
from L3LocatorLib.projection import PreprocessConfig, ProjectionGeometry, Projections
from training.export import export_model

paddle = pytest.importorskip("paddle")


@pytest.fixture()
def exported(tmp_path):
    paddle.seed(3)
    model = build_model("tiny")
    model.eval()
    path = export_model(
        model,
        tmp_path / "m",
        "tiny_test",
        preprocess=PreprocessConfig(),
        views=("frontal", "sagittal"),
        levels=LEVELS,
        threshold=0.25,
        training={"data": "unit test"},
        metrics={"median_mm": 1.0},
    )
    network.clear_model_cache()
    return model, path


def test_export_then_load_gives_identical_outputs(exported):
    model, path = exported
    x = np.random.default_rng(0).random((2, 2, 53, 40), dtype=np.float32)
    with paddle.no_grad():
        expected = paddle.nn.functional.sigmoid(model.row_logits(paddle.to_tensor(x))).numpy()
    loaded = load_model(path, device="cpu")
    np.testing.assert_array_equal(loaded.predict(x), expected)
    assert loaded.levels == LEVELS and loaded.views == ("frontal", "sagittal")
    assert loaded.threshold == 0.25
    assert loaded.preprocess == PreprocessConfig()
    meta = json.loads(path.read_text())
    assert meta["weights"] == "tiny_test.npz" and len(meta["sha256"]) == 64
    assert meta["software"]["paddlepaddle"] == paddle.__version__
    assert load_model(path, device="cpu") is loaded  # cached


def test_missing_truncated_and_mismatched_weights(exported, tmp_path):
    _, path = exported
    weights = path.parent / "tiny_test.npz"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelError, match="truncated"):
        load_model(path, device="cpu")
    weights.unlink()
    with pytest.raises(ModelError, match="missing"):
        load_model(path, device="cpu")
    # Weights of another architecture with a matching hash: shapes do not fit.
    other = export_model(
        build_model(preset("tiny", base_width=6)), tmp_path / "o", "other",
        preprocess=PreprocessConfig(), views=("frontal", "sagittal"), levels=LEVELS,
        threshold=0.5,
    )
    shutil.copy(other.parent / "other.npz", weights)
    meta = json.loads(path.read_text())
    meta["sha256"] = network.sha256_file(weights)
    path.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="do not fit"):
        load_model(path, device="cpu")
    with pytest.raises(ModelError, match="not found"):
        load_model(tmp_path / "nope.json", device="cpu")


@pytest.mark.parametrize(
    "change, message",
    [
        ({"format_version": 2}, "format version"),
        ({"format": "something"}, "not an L3Locator model"),
        ({"surprise": 1}, "does not know"),
        ({"views": ["axial"]}, "may only hold frontal, sagittal"),
        ({"fusion": "max"}, "must be one of network, mean"),
    ],
)
def test_unknown_metadata_is_refused(exported, change, message):
    _, path = exported
    meta = json.loads(path.read_text())
    meta.update(change)
    path.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match=message):
        read_metadata(path)


def test_unknown_preprocessing_or_arch_is_refused(exported):
    _, path = exported
    meta = json.loads(path.read_text())
    meta["preprocess"]["gamma"] = 2.0
    path.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="preprocessing"):
        read_metadata(path)
    meta["preprocess"].pop("gamma")
    meta["arch"]["version"] = 7
    path.write_text(json.dumps(meta))
    with pytest.raises(ModelError, match="architecture"):
        read_metadata(path)
    path.write_text("{not json")
    with pytest.raises(ModelError, match="damaged"):
        read_metadata(path)


def test_devices():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") in ("cpu", "gpu:0")
    if not paddle.device.is_compiled_with_cuda():
        with pytest.raises(DependencyError, match="paddlepaddle.org.cn"):
            resolve_device("gpu")
    with pytest.raises(DependencyError):
        resolve_device("tpu")


def test_default_model_missing_message(monkeypatch, tmp_path):
    monkeypatch.setattr(network, "default_model_path", lambda: tmp_path / "default.json")
    with pytest.raises(ModelError, match="default model"):
        load_model(None, device="cpu")


def _fake_projections(n_rows: int = 70, n_cols: int = 32) -> Projections:
    rng = np.random.default_rng(5)
    config = PreprocessConfig()
    geometry = ProjectionGeometry(
        pixel_mm=config.pixel_mm, top_s_mm=100.0, frontal_r0_mm=30.0, sagittal_a0_mm=30.0,
        n_rows=n_rows, n_cols=n_cols, ijk_to_ras=np.eye(4), shape_ijk=(32, 32, 140),
    )
    image = (rng.random((n_rows, n_cols)) * 1000).astype(np.float32)
    return Projections(
        frontal_hu=image, sagittal_hu=image[:, ::-1].copy(), geometry=geometry,
        spine_frontal_col=np.full(n_rows, n_cols / 2), spine_sagittal_col=np.full(n_rows, 20.0),
        config=config,
    )


def test_predict_views_fused_and_per_view_then_decode(exported):
    _, path = exported
    loaded = load_model(path, device="cpu")
    projections = _fake_projections()
    pred = decode_prediction(
        predict_views(loaded, projections), loaded.levels, threshold=loaded.threshold,
        pixel_mm=loaded.preprocess.pixel_mm,
    )
    assert set(pred.probs) == {"fused", "frontal", "sagittal"}
    for probs in pred.probs.values():
        assert probs.shape == (len(LEVELS), 70)
        assert ((probs >= 0) & (probs <= 1)).all()
    assert pred.main_view == "fused"
    assert pred.answer().confidence == pytest.approx(pred.answer_profile().max(), rel=1e-6)
    # The fused entry is the model on both views; it equals predict on the full input.
    from L3LocatorLib.projection import network_input

    x = network_input(projections, loaded.views)[None]
    np.testing.assert_allclose(pred.probs["fused"], loaded.predict(x)[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(ModelError, match="preprocessing"):
        other = _fake_projections()
        object.__setattr__(other, "config", PreprocessConfig(pixel_mm=1.0))
        predict_views(loaded, other)


def _column_means(batch: np.ndarray) -> np.ndarray:
    """A stand-in network ``[B, 2, H, W] -> [B, 2, H]``: each channel's row means, squashed,
    plus the product of the two (a cross-view term, as a network may learn)."""
    frontal, sagittal = batch[:, 0].mean(-1), batch[:, 1].mean(-1)
    return np.stack([np.tanh(frontal + sagittal), np.tanh(frontal * sagittal + 0.1)], axis=1)


def test_view_probabilities_network_and_mean_fusion():
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, size=(2, 30, 20)).astype(np.float32)
    frontal_only, sagittal_only = x.copy(), x.copy()
    frontal_only[1] = 0
    sagittal_only[0] = 0
    singles = {"frontal": _column_means(frontal_only[None])[0],
               "sagittal": _column_means(sagittal_only[None])[0]}
    views = ("frontal", "sagittal")
    joint = network.view_probabilities(_column_means, x, views, "network")
    np.testing.assert_allclose(joint["fused"], _column_means(x[None])[0])
    late = network.view_probabilities(_column_means, x, views, "mean")
    np.testing.assert_allclose(late["fused"], (singles["frontal"] + singles["sagittal"]) / 2)
    for probs in (joint, late):
        assert list(probs) == ["fused", "frontal", "sagittal"]
        for view in views:
            np.testing.assert_allclose(probs[view], singles[view])
    assert list(network.view_probabilities(_column_means, x, views, per_view=False)) == ["fused"]
    one = network.view_probabilities(lambda b: np.tanh(b.mean(-1)), x[1:], ("sagittal",),
                                     "mean")
    assert list(one) == ["sagittal"]
    np.testing.assert_allclose(one["sagittal"], np.tanh(x[1:].mean(-1)))


def test_mean_fusion_model_round_trip(exported, tmp_path):
    from training.checkpoints import export_checkpoints

    model, path = exported
    assert read_metadata(path).fusion == "network"  # the default, also for older files
    run = tmp_path / "run" / "checkpoints"
    run.mkdir(parents=True)
    paddle.save(model.state_dict(), str(run / "epoch_001.pdparams"))
    late = export_checkpoints(tmp_path / "run", [1], tmp_path / "late", path, fusion="mean")
    loaded = load_model(late, device="cpu")
    assert loaded.metadata.fusion == "mean"
    probs = predict_views(loaded, _fake_projections())
    np.testing.assert_allclose(probs["fused"], (probs["frontal"] + probs["sagittal"]) / 2,
                               rtol=1e-5, atol=1e-6)


def test_metadata_round_trip(exported):
    _, path = exported
    meta = read_metadata(path)
    assert ModelMetadata.from_dict(meta.to_dict()) == meta
    assert meta.model_config == preset("tiny")
