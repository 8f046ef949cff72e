"""Backbones by name: `build_model(spec, input_shape, num_classes, mean, std)`.

Every model takes inputs in [0, 1] and normalises them itself (so attacks and
augmentation work in [0, 1] for any dataset), and exposes `features(x)` (the
penultimate representation) and `head` (the final Linear layer), which
distillation and continual-learning methods build on.
"""
from __future__ import annotations

from typing import Callable

from torch import nn

from lifelearn.models.base import Backbone
from lifelearn.models.convnet import ConvNet
from lifelearn.models.mlp import MLP
from lifelearn.models.resnet import ResNet18

MODELS: dict[str, Callable[..., Backbone]] = {
    "mlp": MLP,
    "convnet": ConvNet,
    "resnet18": ResNet18,
}


def model_names() -> list[str]:
    return sorted(MODELS)


def build_model(spec: dict, input_shape, num_classes: int, mean=None, std=None) -> nn.Module:
    """Build `spec["arch"]` with the remaining spec keys as its options."""
    options = dict(spec)
    arch = options.pop("arch", None)
    if arch not in MODELS:
        raise ValueError(f"unknown model arch {arch!r}; allowed: {', '.join(model_names())}")
    return MODELS[arch](input_shape=tuple(input_shape), num_classes=num_classes, mean=mean, std=std, **options)
