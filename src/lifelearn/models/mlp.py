"""Multi-layer perceptron on the flattened input."""
from __future__ import annotations

import math

from torch import nn

from lifelearn.models.base import Backbone


class MLP(Backbone):
    def __init__(self, input_shape, num_classes, hidden=(256, 256), mean=None, std=None):
        super().__init__(input_shape, mean, std)
        layers, width = [nn.Flatten()], math.prod(input_shape)
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        self.body = nn.Sequential(*layers)
        self._init_head(width, num_classes)
