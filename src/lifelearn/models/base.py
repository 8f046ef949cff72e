"""Shared shape of every backbone: normalise -> body (features) -> linear head."""
from __future__ import annotations

import torch
from torch import nn


class Backbone(nn.Module):
    """in [0, 1] -> per-channel normalisation -> `body` -> `head`.

    Subclasses set `self.body` (returning a flat feature vector of size
    `self.feature_dim`) and call `self._init_head(num_classes)`.
    """

    def __init__(self, input_shape, mean=None, std=None):
        super().__init__()
        channels = input_shape[0]
        spatial = (1,) * (len(input_shape) - 1)
        mean = torch.as_tensor(mean if mean is not None else [0.0] * channels, dtype=torch.float32)
        std = torch.as_tensor(std if std is not None else [1.0] * channels, dtype=torch.float32)
        if mean.numel() != channels or std.numel() != channels:
            raise ValueError(f"mean/std need {channels} values (one per input channel)")
        self.register_buffer("mean", mean.view(1, channels, *spatial))
        self.register_buffer("std", std.clamp_min(1e-6).view(1, channels, *spatial))
        self.input_shape = tuple(input_shape)

    def _init_head(self, feature_dim: int, num_classes: int) -> None:
        self.feature_dim = feature_dim
        self.head = nn.Linear(feature_dim, num_classes)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(self.normalize(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))
