"""Diagonal empirical Fisher information: the mean over samples of the squared
per-sample gradient of the cross-entropy (EWC, Kirkpatrick et al. 2017; refresh
learning's F, Wang et al. 2024), computed with torch.func (vmap over grad)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap


def diagonal_fisher(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor,
                    batch: int = 256) -> dict[str, torch.Tensor]:
    """{parameter name: E[(d CE / d theta)^2]} over (x, y); `mask` (N, C) bool
    restricts the logits each sample is scored on (task-incremental heads)."""
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}

    def loss(p, xi, yi, mi):
        out = functional_call(model, (p, buffers), (xi.unsqueeze(0),))
        return F.cross_entropy(out.masked_fill(~mi.unsqueeze(0), -1e9), yi.unsqueeze(0))

    per_sample = vmap(grad(loss), in_dims=(None, 0, 0, 0))
    total = {k: torch.zeros_like(v) for k, v in params.items()}
    was_training = model.training
    model.eval()
    try:
        for i in range(0, len(x), batch):
            g = per_sample(params, x[i:i + batch], y[i:i + batch], mask[i:i + batch])
            for k in total:
                total[k] += g[k].pow(2).sum(0)
    finally:
        model.train(was_training)
    return {k: v / max(len(x), 1) for k, v in total.items()}
