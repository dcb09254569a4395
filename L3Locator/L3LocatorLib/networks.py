"""The PaddlePaddle network classes behind ``network.build_model`` (see ``model`` for the
architectures). This module imports paddle at its top, so it is itself imported
only when a network is built: ``import L3LocatorLib`` and ``model`` stay free of paddle.
"""

from __future__ import annotations

from typing import Any

import paddle
from paddle import nn
from paddle.nn import functional as F

from .model import ModelConfig


def norm2d(kind: str, ch: int) -> Any:
    if kind == "batch":
        return nn.BatchNorm2D(ch)
    if kind == "group":
        return nn.GroupNorm(_groups(ch), ch)
    return nn.Identity()

def norm1d(kind: str, ch: int) -> Any:
    if kind == "batch":
        return nn.BatchNorm1D(ch)
    if kind == "group":
        return nn.GroupNorm(_groups(ch), ch)
    return nn.Identity()

def init_weights(layer: Any) -> None:
    kaiming = nn.initializer.KaimingNormal()
    zero = nn.initializer.Constant(0.0)
    for sub in layer.sublayers(include_self=True):
        if isinstance(sub, (nn.Conv2D, nn.Conv1D, nn.Conv2DTranspose)):
            kaiming(sub.weight)
            if sub.bias is not None:
                zero(sub.bias)

class ConvBlock2D(nn.Layer):
    """Two 3x3 convolutions, each followed by norm and ReLU."""

    def __init__(self, cin: int, cout: int, norm: str, bias: bool | None = None) -> None:
        super().__init__()
        bias = norm == "none" if bias is None else bias
        self.body = nn.Sequential(
            nn.Conv2D(cin, cout, 3, padding=1, bias_attr=None if bias else False),
            norm2d(norm, cout),
            nn.ReLU(),
            nn.Conv2D(cout, cout, 3, padding=1, bias_attr=None if bias else False),
            norm2d(norm, cout),
            nn.ReLU(),
        )

    def forward(self, x: Any) -> Any:
        return self.body(x)

class ConvBlock1D(nn.Layer):
    """Two 1-D convolutions along rows (kernel 3, given dilations), norm, ReLU."""

    def __init__(self, cin: int, cout: int, norm: str, dilations: tuple[int, ...] = (1, 1)):
        super().__init__()
        bias = norm == "none"
        layers: list[Any] = []
        ch = cin
        for d in dilations:
            layers += [
                nn.Conv1D(ch, cout, 3, padding=d, dilation=d,
                          bias_attr=None if bias else False),
                norm1d(norm, cout),
                nn.ReLU(),
            ]
            ch = cout
        self.body = nn.Sequential(*layers)

    def forward(self, x: Any) -> Any:
        return self.body(x)

def width_max(x: Any) -> Any:
    # Max pooling with a full-width kernel: same result as x.max(axis=3), but its
    # backward pass is about 100x faster on CPU in PaddlePaddle 3.3.
    return F.max_pool2d(x, (1, int(x.shape[3]))).squeeze(3)

def pad_to(x: Any, multiple: int) -> tuple[Any, int, int]:
    h, w = int(x.shape[2]), int(x.shape[3])
    ph = (-h) % multiple
    pw = (-w) % multiple
    if ph or pw:
        x = F.pad(x, [0, pw, 0, ph])
    return x, h, w

class RowNet(nn.Layer):
    """2-D encoder -> max+mean over width -> 1-D U-Net decoder along rows."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        cap = config.max_width or 10**9
        widths = [min(config.base_width * 2**d, cap) for d in range(config.depth + 1)]
        self.encoders = nn.LayerList()
        cin = config.in_channels
        for w in widths:
            self.encoders.append(ConvBlock2D(cin, w, config.norm))
            cin = w
        self.pool = nn.MaxPool2D(2, 2)
        dec = [config.decoder_width or w for w in widths]
        # 1-D features per level: max and mean over width of the encoder output.
        self.context = ConvBlock1D(
            2 * widths[-1], dec[-1], config.norm, config.context_dilations or (1, 1)
        )
        self.decoders = nn.LayerList()
        for d in range(config.depth - 1, -1, -1):
            self.decoders.append(ConvBlock1D(dec[d + 1] + 2 * widths[d], dec[d], config.norm))
        self.head = nn.Conv1D(dec[0], config.n_outputs, 1)
        init_weights(self)
        # Start with low probabilities everywhere (most rows are negatives).
        nn.initializer.Constant(-4.0)(self.head.bias)

    def forward(self, x: Any) -> Any:
        x, h, _ = pad_to(x, self.config.downsample)
        skips = []
        for d, enc in enumerate(self.encoders):
            if d > 0:
                x = self.pool(x)
            x = enc(x)
            skips.append(paddle.concat([width_max(x), x.mean(axis=3)], axis=1))
        y = self.context(skips[-1])
        for i, dec in enumerate(self.decoders):
            d = self.config.depth - 1 - i
            y = paddle.repeat_interleave(y, 2, axis=2)
            y = dec(paddle.concat([y, skips[d]], axis=1))
        return self.head(y)[:, :, :h]

    def row_logits(self, x: Any) -> Any:
        return self.forward(x)

class UNet2D(nn.Layer):
    """The seed's U-Net (configurable width, depth, norm, channels)."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        widths = [config.base_width * 2**d for d in range(config.depth + 1)]
        if config.max_width:
            widths = [min(w, config.max_width) for w in widths]
        self.encoders = nn.LayerList()
        cin = config.in_channels
        for w in widths:
            # Convolutions keep their bias before batch norm, as in the seed.
            self.encoders.append(ConvBlock2D(cin, w, config.norm, bias=True))
            cin = w
        self.pool = nn.MaxPool2D(2, 2)
        self.ups = nn.LayerList()
        self.decoders = nn.LayerList()
        for d in range(config.depth - 1, -1, -1):
            self.ups.append(nn.Conv2DTranspose(widths[d + 1], widths[d], 2, stride=2))
            self.decoders.append(ConvBlock2D(2 * widths[d], widths[d], config.norm, bias=True))
        self.head = nn.Conv2D(widths[0], config.n_outputs, 1)
        init_weights(self)

    def forward(self, x: Any) -> Any:
        x, h, w = pad_to(x, self.config.downsample)
        skips = []
        for d, enc in enumerate(self.encoders):
            if d > 0:
                x = self.pool(x)
            x = enc(x)
            skips.append(x)
        y = skips[-1]
        for i, (up, dec) in enumerate(zip(self.ups, self.decoders)):
            d = self.config.depth - 1 - i
            y = dec(paddle.concat([up(y), skips[d]], axis=1))
        return self.head(y)[:, :, :h, :w]

    def row_logits(self, x: Any) -> Any:
        return width_max(self.forward(x))


def _groups(ch: int) -> int:
    for g in (8, 4, 2):
        if ch % g == 0:
            return g
    return 1
