"""Issue 15: the continual protocols that decide verdicts: ER's loss combination, the
no-switch control stream, LwF-MC and regularisation anchored at the pretrained start, DER++."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lifelearn.continual.buffer import ReservoirBuffer
from lifelearn.continual.strategies.er import ER


def _learner(model):
    return type("L", (), {"model": model, "ce": lambda self, o, y, t: F.cross_entropy(o, y)})()


def _identity_head():
    m = nn.Linear(2, 2)
    with torch.no_grad():
        m.weight.copy_(torch.eye(2))
        m.bias.zero_()
    return m


# ---- ER's two reductions -------------------------------------------------------------------------
@pytest.mark.parametrize("combine", ["mean", "sum"])
def test_er_combines_current_and_replay_ce_as_configured(combine):
    # current: x = e0 (y 0), e1 (y 1) -> logits e0, e1: CE = log(1 + e^-1) each
    # replay:  x = (0, 2) (y 0)       -> logits (0, 2): CE = log(1 + e^2)
    model = _identity_head()
    er = ER(buffer=1, replay_batch=1, combine=combine)
    er.buffer = ReservoirBuffer(1, torch.Generator().manual_seed(0))
    er.buffer.add(torch.tensor([[0.0, 2.0]]), torch.tensor([0]), torch.zeros(1, dtype=torch.long))
    x, y, t = torch.eye(2), torch.tensor([0, 1]), torch.zeros(2, dtype=torch.long)
    loss = er.batch_loss(_learner(model), x, y, t, x, model(x)).item()
    cur, rep = math.log(1 + math.exp(-1)), math.log(1 + math.exp(2))
    expected = {"mean": (2 * cur + rep) / 3, "sum": cur + rep}[combine]
    assert loss == pytest.approx(expected, rel=1e-6)


def test_er_without_replay_is_the_current_ce_and_an_unknown_combination_fails():
    model = _identity_head()
    for combine in ("mean", "sum"):
        er = ER(buffer=4, replay_batch=2, combine=combine)
        er.buffer = ReservoirBuffer(4, torch.Generator().manual_seed(0))
        x, y = torch.eye(2), torch.tensor([0, 1])
        assert er.batch_loss(_learner(model), x, y, None, x, model(x)).item() == pytest.approx(math.log(1 + math.exp(-1)))
    with pytest.raises(ValueError, match="combine"):
        ER(combine="max")


def test_the_uer_study_gives_er_the_sum_and_both_the_same_lr_selection():
    from lifelearn.config import load_config
    from conftest import REPO

    for profile in ("default", "smoke"):
        runs = load_config(REPO / "config", profile)["continual"]["runs"]
        pairs = [("online_er_m100", "online_uer_m100")] + ([("online_er_m200", "online_uer_m200")]
                                                           if profile == "default" else [])
        for er, uer in pairs:
            assert runs[er]["strategies"]["er"]["combine"] == "sum"
            assert runs[er]["tune"] == runs[uer]["tune"] and list(runs[er]["tune"]["grid"]) == ["train.lr"]
        assert runs["ci_er"]["strategies"]["er"].get("combine", "mean") == "mean"
