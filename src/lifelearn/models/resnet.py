"""CIFAR-style ResNet-18 (He et al. 2016): 3x3 stem without max-pool, four stages
of two BasicBlocks with widths w, 2w, 4w, 8w (w = 64 in the paper), global average
pooling. 2-D inputs only."""
from __future__ import annotations

from torch import nn
from torch.nn import functional as F

from lifelearn.models.base import Backbone


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class ResNet18(Backbone):
    def __init__(self, input_shape, num_classes, width=64, mean=None, std=None):
        super().__init__(input_shape, mean, std)
        if len(input_shape) != 3:
            raise ValueError(f"resnet18 needs (C, H, W) inputs, got {tuple(input_shape)}")
        layers = [nn.Conv2d(input_shape[0], width, 3, 1, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
        cin = width
        for i, cout in enumerate([width, 2 * width, 4 * width, 8 * width]):
            stride = 1 if i == 0 else 2
            layers += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self._init_head(cin, num_classes)
