"""``seed_preprocess`` must reproduce the seed article's preprocessing of the paper's npz.

The reference below re-states the article's ``normalise_spacing_and_preprocess``
and ``resize_img`` step by step (float64 canvases and all), independently of the
library's implementation.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import zoom

from training.original_port import seed_preprocess


def reference(image_f, image_s, loc, s):
    def to_0_255(img):
        img = np.clip(img, 100, 1500).astype(np.float32)
        ret = img - np.min(img)
        ret /= np.max(img) - np.min(img) + 1e-8
        return 255 * ret

    img_f = to_0_255(zoom(image_f, [s[2], s[0]]))
    img_s = to_0_255(zoom(image_s, [s[2], s[0]]))
    loc = int(loc * s[2])
    if loc > 512:
        return None
    h, w = img_f.shape
    if h > 512:
        img_f, img_s = img_f[:512, :], img_s[:512, :]
    else:
        pad_f, pad_s = np.zeros((512, w)), np.zeros((512, w))
        pad_f[:h], pad_s[:h] = img_f, img_s
        img_f, img_s = pad_f, pad_s
    if w > 512:
        mid = int(w * 0.5)
        img_f, img_s = img_f[:, mid - 256 : mid + 256], img_s[:, mid - 256 : mid + 256]
    else:
        pad_f, pad_s = np.zeros((512, 512)), np.zeros((512, 512))
        start = int(0.5 * (512 - w))
        pad_f[:, start : start + w], pad_s[:, start : start + w] = img_f, img_s
        img_f, img_s = pad_f, pad_s
    img_f[:, : int(0.35 * 512)] = 0
    img_f[:, int(0.65 * 512) :] = 0
    return img_f / 255, img_s / 255, loc


@pytest.mark.parametrize(
    "shape,spacing,loc",
    [
        ((300, 400), (0.8, 0.8, 2.5), 120.4),  # short and narrow: padded both ways
        ((700, 640), (0.9, 0.9, 1.0), 300.0),  # tall and wide: cropped both ways
        ((180, 520), (0.7, 0.7, 3.0), 170.0),  # L3 beyond row 512 after zoom: dropped
        ((260, 300), (1.0, 1.0, 2.0), 200.2),
    ],
)
def test_seed_preprocess_matches_the_article(shape, spacing, loc):
    rng = np.random.default_rng(len(shape) + int(loc))
    image_f = rng.integers(-1000, 2000, shape).astype(np.int16)
    image_s = rng.integers(-1000, 2000, shape).astype(np.int16)
    expected = reference(image_f, image_s, loc, spacing)
    got = seed_preprocess(image_f, image_s, loc, np.array(spacing))
    if expected is None:
        assert got is None
        return
    assert got is not None
    assert got.l3_row == expected[2]
    assert got.frontal.shape == got.sagittal.shape == (512, 512)
    assert np.allclose(got.frontal, expected[0], atol=1e-5)
    assert np.allclose(got.sagittal, expected[1], atol=1e-5)
    assert np.all(got.frontal[:, :179] == 0) and np.all(got.frontal[:, 332:] == 0)
