"""Small ConvNet for 1-D (C, L) or 2-D (C, H, W) inputs.

Blocks of conv(k=3) -> norm -> ReLU -> max-pool(2) with the given channel widths
(pooling skipped once the spatial size is 1), then global average pooling and a
linear head. `norm` is "batch" (BatchNorm, the default), "instance" (per-sample,
per-channel normalisation with an affine transform: GroupNorm with one group per
channel, the "instancenorm" ConvNet of MTT, Cazenavette et al. 2022) or "none";
the last two keep no running statistics, so the network is a pure function of its
parameters (what unrolled, functional training needs).
"""
from __future__ import annotations

from torch import nn

from lifelearn.models.base import Backbone
from lifelearn.models.pooling import HalvingMaxPool1d

NORMS = ("batch", "instance", "none")


def _norm_layer(kind: str, dims: int, channels: int) -> nn.Module:
    if kind == "batch":
        return (nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d)(channels)
    if kind == "instance":
        return nn.GroupNorm(channels, channels, affine=True)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown convnet norm {kind!r}; allowed: {', '.join(NORMS)}")


class ConvNet(Backbone):
    def __init__(self, input_shape, num_classes, channels=(32, 64), norm="batch", mean=None, std=None):
        super().__init__(input_shape, mean, std)
        dims = len(input_shape) - 1
        if dims not in (1, 2):
            raise ValueError(f"convnet needs (C, L) or (C, H, W) inputs, got {tuple(input_shape)}")
        conv, pool, gap = {
            1: (nn.Conv1d, HalvingMaxPool1d, nn.AdaptiveAvgPool1d),
            2: (nn.Conv2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d),
        }[dims]
        layers, width, size = [], input_shape[0], min(input_shape[1:])
        for c in channels:
            # without BatchNorm the conv keeps its bias (nothing else shifts the activations)
            layers += [conv(width, c, 3, padding=1, bias=norm != "batch"), _norm_layer(norm, dims, c), nn.ReLU()]
            if size >= 2:
                layers.append(pool() if dims == 1 else pool(2))
                size //= 2
            width = c
        layers += [gap(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self._init_head(width, num_classes)
