"""Small ConvNet for 1-D (C, L) or 2-D (C, H, W) inputs.

Blocks of conv(k=3) -> BatchNorm -> ReLU -> max-pool(2) with the given channel widths
(pooling skipped once the spatial size is 1), then global average pooling and a
linear head.
"""
from __future__ import annotations

from torch import nn

from lifelearn.models.base import Backbone


class ConvNet(Backbone):
    def __init__(self, input_shape, num_classes, channels=(32, 64), mean=None, std=None):
        super().__init__(input_shape, mean, std)
        dims = len(input_shape) - 1
        if dims not in (1, 2):
            raise ValueError(f"convnet needs (C, L) or (C, H, W) inputs, got {tuple(input_shape)}")
        conv, norm, pool, gap = {
            1: (nn.Conv1d, nn.BatchNorm1d, nn.MaxPool1d, nn.AdaptiveAvgPool1d),
            2: (nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.AdaptiveAvgPool2d),
        }[dims]
        layers, width, size = [], input_shape[0], min(input_shape[1:])
        for c in channels:
            layers += [conv(width, c, 3, padding=1, bias=False), norm(c), nn.ReLU()]
            if size >= 2:
                layers.append(pool(2))
                size //= 2
            width = c
        layers += [gap(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self._init_head(width, num_classes)
