"""``digits-resnet`` — a small residual CNN with BatchNorm on the bundled 8×8 digits.

The data are ``digits-cnn``'s (scikit-learn's 1797 digits, stratified 80/20 split, standardized;
see :mod:`optimlab.lab.problems.digits`). The model is a ResNet in miniature: a 3×3 convolution
stem (``width`` channels) with BatchNorm and ReLU, a residual block at 8×8, a residual block that
halves the resolution and doubles the channels (1×1 convolution + BatchNorm on the shortcut),
global average pooling and a linear layer to the 10 classes. Residual blocks are
conv–BN–ReLU–conv–BN plus the shortcut, then ReLU (He et al. 2016).

BatchNorm keeps running statistics — buffers — so this problem cannot train as the lab's batched
replicas: it runs on the sequential path. It is evaluated in eval mode (running statistics), as a
trained network is used; under Schedule-Free the lab first recomputes those statistics at the
averaged weights (:func:`optimlab.lab.loop.evaluation_mode`), as its authors require.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from optimlab.lab.problems.digits import OPTIONS as DIGITS_OPTIONS
from optimlab.lab.problems.digits import _Digits
from optimlab.lab.problems.parabola import _int_option

OPTIONS = {**DIGITS_OPTIONS, "width": "channels of the first stage (default 16)"}


class ResidualBlock(nn.Module):
    """conv3×3–BN–ReLU–conv3×3–BN plus the shortcut (a strided 1×1 conv + BN when the shape
    changes), then ReLU."""

    def __init__(self, channels_in: int, channels_out: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels_in, channels_out, 3, stride=stride, padding=1, bias=False)
        self.norm1 = nn.BatchNorm2d(channels_out)
        self.conv2 = nn.Conv2d(channels_out, channels_out, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(channels_out)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or channels_in != channels_out:
            self.shortcut = nn.Sequential(
                nn.Conv2d(channels_in, channels_out, 1, stride=stride, bias=False),
                nn.BatchNorm2d(channels_out),
            )

    def forward(self, x: Tensor) -> Tensor:
        h = torch.relu(self.norm1(self.conv1(x)))
        return torch.relu(self.norm2(self.conv2(h)) + self.shortcut(x))


def digits_resnet(width: int) -> nn.Module:
    """The model: stem, a block at 8×8, a block at 4×4 with twice the channels, pool, linear."""
    return nn.Sequential(
        nn.Conv2d(1, width, 3, padding=1, bias=False),
        nn.BatchNorm2d(width),
        nn.ReLU(),
        ResidualBlock(width, width),
        ResidualBlock(width, 2 * width, stride=2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(2 * width, 10),
    )


class DigitsResNet(_Digits):
    name = "digits-resnet"
    description = (
        "sklearn 8×8 digits, small ResNet with BatchNorm (2 residual blocks), cross-entropy, batch 32, "
        "10 epochs; sequential (buffers)"
    )
    target_loss = 0.05
    version = "1"
    image = True
    option_names = OPTIONS

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        super().__init__(options)
        self.width = _int_option(self.name, self.options, "width", 16)

    def make_model(self) -> nn.Module:
        return digits_resnet(self.width)

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        """The digits metrics in eval mode (BatchNorm's running statistics); the mode is restored."""
        training = model.training
        model.eval()
        try:
            return super().evaluate(model)
        finally:
            model.train(training)
