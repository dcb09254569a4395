"""The network family: PaddlePaddle models that turn MIPs into per-row level logits.

Two architectures share one interface (``row_logits``):

``"rownet"`` (the default family)
    A 2-D convolutional encoder over the stacked views ``[B, C, H, W]``; at every
    encoder level the feature map is reduced over the image width (columns) by
    max AND mean pooling, giving 1-D features along rows; a 1-D U-Net decoder
    (up-sampling along rows, skip connections from those reduced features)
    returns ``n_outputs`` logits per input row: ``[B, n_outputs, H]``. One
    output channel per vertebral level (``LEVELS``), so the network has to
    count vertebrae, and channel ``"L3"`` is the answer.

``"unet2d"``
    The seed's 2-D U-Net (64 base channels, 4 poolings, batch norm, transposed
    convolutions, 1-channel 2-D output map; about 31 M parameters), kept for
    reproduction and benchmarks. Its row logits are the maximum of the 2-D map
    over the width; ``forward`` returns the 2-D map ``[B, n_outputs, H, W]``.

Images of any size work: height and width are padded (zeros, i.e. black after
windowing) to a multiple of the down-sampling factor and the output is cropped
back, so output row ``r`` is input row ``r``.

PaddlePaddle is imported only when a model is built, so this module imports
without it; ``import_paddle`` raises ``DependencyError`` with install advice.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, replace
from typing import Any

from .errors import DependencyError, ModelError, refuse_other_version, refuse_unknown_fields

log = logging.getLogger(__name__)

#: The vertebral levels a multi-level model predicts, superior -> inferior.
LEVELS = ("T12", "L1", "L2", "L3", "L4", "L5", "S1")

#: How to install PaddlePaddle (shown to users when it is missing).
PADDLE_INSTALL_HINT = (
    'Install it with: python -m pip install "paddlepaddle>=3" (CPU). For an NVIDIA GPU use '
    "the CUDA build from PaddlePaddle's own package index (not PyPI), e.g. python -m pip "
    'install "paddlepaddle-gpu>=3" -i https://www.paddlepaddle.org.cn/packages/stable/cu126/ . '
    "In 3D Slicer run the same command in the Python console with slicer.util.pip_install."
)


def import_paddle() -> Any:
    """Import and return the ``paddle`` module, or raise ``DependencyError`` saying how
    to install it."""
    import warnings

    from .quiet import CCACHE_WARNING

    # PaddlePaddle's import warns that ccache (a compiler cache) is missing: L3 Locator
    # builds no C++ extension, so the warning only confuses users of the library too.
    warnings.filterwarnings("ignore", message=CCACHE_WARNING, category=UserWarning)
    try:
        import paddle  # noqa: PLC0415
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise DependencyError(
            f"PaddlePaddle is not installed (or failed to import: {error}). {PADDLE_INSTALL_HINT}"
        ) from error
    return paddle


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of one network; recorded in each model's metadata JSON.

    Attributes:
        arch: ``"rownet"`` (2-D encoder, width pooling, 1-D decoder) or ``"unet2d"``.
        in_channels: input channels (2 = frontal and sagittal stacked; 1 = one view;
            the seed feeds 3 copies of one view).
        base_width: channels of the first encoder level; doubled per level up to
            ``max_width``.
        depth: number of 2x down-samplings; images are padded to a multiple of
            ``2**depth`` rows and columns.
        norm: ``"batch"``, ``"group"`` (8 groups or fewer) or ``"none"``.
        n_outputs: output channels (one per level in ``LEVELS`` by default).
        max_width: channel cap for deep levels (rownet; unet2d ignores it when 0).
        decoder_width: channels of the 1-D decoder (rownet; 0 = same as the encoder).
        context_dilations: dilations of the 1-D context block at the deepest level
            (rownet), which widens the receptive field along rows for counting.
        version: bump when the meaning of a field changes.
    """

    arch: str = "rownet"
    in_channels: int = 2
    base_width: int = 8
    depth: int = 5
    norm: str = "batch"
    n_outputs: int = len(LEVELS)
    max_width: int = 64
    decoder_width: int = 32
    context_dilations: tuple[int, ...] = (1, 2, 4)
    version: int = 1

    def __post_init__(self) -> None:
        if self.arch not in ("rownet", "unet2d"):
            raise ModelError(f"Unknown architecture {self.arch!r}; expected 'rownet' or 'unet2d'.")
        if self.norm not in ("batch", "group", "none"):
            raise ModelError(f"Unknown norm {self.norm!r}; expected 'batch', 'group' or 'none'.")
        if self.in_channels < 1 or self.base_width < 1 or self.depth < 0 or self.n_outputs < 1:
            raise ModelError(f"Invalid model configuration: {self}")
        object.__setattr__(self, "context_dilations", tuple(int(d) for d in self.context_dilations))

    @property
    def downsample(self) -> int:
        """Height and width are padded to a multiple of this (pixels)."""
        return 2**self.depth

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["context_dilations"] = list(self.context_dilations)
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """Build from metadata; refuses fields or versions this code does not know."""
        refuse_unknown_fields(cls, data, "The model's architecture")
        values = dict(data)
        if "context_dilations" in values:
            values["context_dilations"] = tuple(values["context_dilations"])
        config = cls(**values)
        refuse_other_version(config.version, cls.version, "The model's architecture")
        return config


#: Named configurations. ``seed``: the seed's 31 M-parameter 2-D U-Net (one view, three
#: repeated channels, one output). ``tiny``: a rownet for smoke tests (trains in seconds).
#: ``default``: the rownet we ship (chosen by measurement; see the training README).
PRESETS: dict[str, ModelConfig] = {
    "seed": ModelConfig(
        arch="unet2d", in_channels=3, base_width=64, depth=4, norm="batch", n_outputs=1,
        max_width=0, decoder_width=0, context_dilations=(),
    ),
    "tiny": ModelConfig(
        arch="rownet", in_channels=2, base_width=4, depth=3, norm="batch",
        n_outputs=len(LEVELS), max_width=16, decoder_width=8, context_dilations=(1, 2),
    ),
    "default": ModelConfig(),
}


def preset(name: str, **overrides: Any) -> ModelConfig:
    """A preset by name, optionally with fields replaced (e.g. ``in_channels=1``)."""
    if name not in PRESETS:
        raise ModelError(f"Unknown model preset {name!r}; choose one of {', '.join(PRESETS)}.")
    return replace(PRESETS[name], **overrides) if overrides else PRESETS[name]


def row_logits(model: Any, x: Any) -> Any:
    """Per-row logits ``[B, n_outputs, H]`` of either architecture for input ``[B, C, H, W]``
    (a paddle Tensor)."""
    return model.row_logits(x)


def count_parameters(model: Any, trainable_only: bool = False) -> int:
    """Number of parameters (all, or only trainable ones) of a paddle Layer."""
    total = 0
    for p in model.parameters():
        if trainable_only and p.stop_gradient:
            continue
        total += int(p.size)
    return total
