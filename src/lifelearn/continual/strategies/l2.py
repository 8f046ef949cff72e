"""L2 regularisation towards anchor weights (PAPERS.md section 5; Smith et al. 2023):
lambda * sum_i w_i (theta_i - anchor_i)^2 with w_i = 1.

Two config keys select Smith et al.'s form (their code: learners/kd.py, class EWC_MC, in the
data-free-continual-learning code of Smith, Halbe et al., e.g. shaunak27/data-free-continual-learning):
- `backbone_only`: the penalty covers the feature extractor only, not the classifier head
  (their `self.params` are `model.feat`'s parameters);
- `from_start`: the first anchor is the starting (pretrained) weights, taken before task 1
  trains, so the penalty acts during task 1 too (their `init_task_param_reg`, "L2 from the
  start"); after every task the anchor moves to the task's final weights, as theirs does.
Defaults (False, False): the whole network, anchored after task 1 (the plain form)."""
from __future__ import annotations

import torch

from lifelearn.continual.common import parameters_copy
from lifelearn.continual.template import Plugin


def weighted_l2_penalty(model: torch.nn.Module, anchor: dict, weights: dict | None = None) -> torch.Tensor:
    """sum_i w_i (theta_i - anchor_i)^2 over the parameters `anchor` holds (w = 1 when
    `weights` is None)."""
    total = torch.zeros(())
    for k, p in model.named_parameters():
        if k not in anchor:
            continue
        sq = (p - anchor[k]).pow(2)
        total = total + (sq if weights is None else weights[k] * sq).sum()
    return total


def regularised_copy(model: torch.nn.Module, backbone_only: bool) -> dict[str, torch.Tensor]:
    """The anchor: a copy of every parameter, or of the backbone's only (not `model.head`)."""
    params = parameters_copy(model)
    if not backbone_only:
        return params
    return {k: v for k, v in params.items() if not k.startswith("head.")}


class L2(Plugin):
    name = "l2"

    def __init__(self, weight: float = 1.0, backbone_only: bool = False, from_start: bool = False):
        self.weight, self.anchor = float(weight), None
        self.backbone_only, self.from_start = bool(backbone_only), bool(from_start)

    def before_task(self, learner, task):
        if self.from_start and self.anchor is None:
            self.anchor = regularised_copy(learner.model, self.backbone_only)

    def after_task(self, learner, task):
        self.anchor = regularised_copy(learner.model, self.backbone_only)

    def extra_loss(self, learner, x, y, t, feats, out):
        if self.anchor is None:
            return None
        return self.weight * weighted_l2_penalty(learner.model, self.anchor)
