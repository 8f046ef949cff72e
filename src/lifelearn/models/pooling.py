"""Max pooling by 2 over 1-D signals (window 2, stride 2): nn.MaxPool1d(2), the same values
and gradients bit for bit, faster on CPU where a gradient flows (issue 16).

Why: when the input requires a gradient, PyTorch's CPU max_pool1d runs the 2-D
with-indices kernel, a scalar loop per (sample, channel) row: on this project's 2-core
machine ~0.45 ms forward on the MTARD student's [128, 16, 40] activations, about 30% of an
MTARD training step (PGD on the student) and of an AutoAttack evaluation (cProfile,
2026-12-06). Here the element each window keeps is found with vectorised comparisons of the
two halves and gathered (`torch.gather`): forward and backward 2.1x faster, an MTARD
training epoch 1.3x, an AutoAttack evaluation 1.25x (benchmarks/max_pool_cost.py).

Exactness: the scan of max pooling (aten's CPU kernels) keeps the running maximum unless
the next value is larger or NaN, so a window of two keeps its second element exactly when
`takes_second`; the gathered value is that element, and the backward of `gather` sends the
incoming gradient to it and an exact 0 to the other (windows do not overlap), as max_pool's
backward does with its indices. `gather` is linear in its input, so second derivatives pass too. An odd last element is dropped (floor), as
nn.MaxPool1d does. tests/test_models.py checks values, gradients and second derivatives
against nn.MaxPool1d on ties, NaN and odd lengths. Without a gradient (evaluation, frozen
teachers) and on other devices (CUDA), PyTorch's own kernel runs: it is fast there.
2-D ConvNets keep nn.MaxPool2d: gathering from 2 x 2 windows the same way was slower than
PyTorch's kernel at the dataset-distillation study's 8 x 8 and 4 x 4 sizes (measured).
"""
from __future__ import annotations

import torch
from torch import nn


def takes_second(first: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """Where max pooling's scan, holding `first`, moves to `second`: larger, or NaN."""
    return (second > first) | second.isnan()


def gather_pair_max(x: torch.Tensor) -> torch.Tensor:
    """max_pool1d(x, 2) over the last dimension of x [..., L] as a gather of the kept elements."""
    n = x.shape[-1] // 2
    pairs = x[..., :2 * n].unflatten(-1, (n, 2))
    kept = torch.add(torch.arange(0, 2 * n, 2, device=x.device), takes_second(pairs[..., 0], pairs[..., 1]))
    return x.gather(-1, kept)


class HalvingMaxPool1d(nn.MaxPool1d):
    """nn.MaxPool1d(2), bit for bit, faster on CPU under autograd (module docstring)."""

    def __init__(self):
        super().__init__(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type == "cpu" and x.requires_grad and torch.is_grad_enabled():
            return gather_pair_max(x)
        return super().forward(x)
