"""Test-set evaluation of a classifier: accuracy, loss and per-class accuracy."""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F
from torchmetrics.functional.classification import multiclass_accuracy

from lifelearn.phases import timed

# Values evaluate_classifier's `{prefix}_<key>` can take: a share of samples, a mean CE.
METRIC_RANGES = {"acc": (0.0, 1.0), "loss": (0.0, math.inf)}


@torch.no_grad()
def predict_logits(model: torch.nn.Module, x: torch.Tensor, batch_size: int = 1024) -> torch.Tensor:
    """Logits of `model` (in eval mode) on `x`, in batches."""
    was_training = model.training
    model.eval()
    out = torch.cat([model(x[i : i + batch_size]) for i in range(0, len(x), batch_size)])
    model.train(was_training)
    return out


@timed("evaluation")
def evaluate_classifier(model, x, y, num_classes: int, batch_size: int = 1024, prefix: str = "test") -> dict:
    """{prefix}_acc, {prefix}_loss (mean CE) and {prefix}_per_class_acc (list of C)."""
    logits = predict_logits(model, x, batch_size)
    per_class = multiclass_accuracy(logits, y, num_classes=num_classes, average=None)
    return {
        f"{prefix}_acc": (logits.argmax(1) == y).float().mean().item(),
        f"{prefix}_loss": F.cross_entropy(logits, y).item(),
        f"{prefix}_per_class_acc": [round(v, 6) for v in per_class.tolist()],
    }
