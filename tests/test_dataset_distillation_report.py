"""Dataset-distillation report: the shared control step size (chosen on val only), the
control rows beside the claims' pairs, the ablation table; the evaluation loop as MTT's."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch

from lifelearn.report.sections import dataset_distillation as sec


def _rows(tmp_path, runs):
    """runs: {(name, seed): (test_acc, [(lr, val, test), ...])} -> the results frame."""
    rows = []
    for (name, seed), (acc, control) in runs.items():
        d = tmp_path / name / f"seed{seed}"
        d.mkdir(parents=True)
        (d / "metrics.json").write_text(json.dumps({"metrics": {"test_acc": acc, "control": [
            {"lr": lr, "val_acc": v, "test_acc": t} for lr, v, t in control]}}))
        rows.append({"name": name, "seed": seed, "test_acc": acc, "syn_lr": 0.01, "result_dir": str(d)})
    return pd.DataFrame(rows)


def test_the_control_step_size_is_chosen_on_val_over_all_methods_never_on_test(tmp_path):
    # lr 0.1 has the best TEST accuracy everywhere but the worse mean val accuracy: 0.01 must be chosen
    df = _rows(tmp_path, {
        ("a_ipc1", 0): (0.5, [(0.01, 0.9, 0.2), (0.1, 0.5, 0.99)]),
        ("b_ipc1", 0): (0.4, [(0.01, 0.3, 0.1), (0.1, 0.6, 0.99)]),  # b alone prefers 0.1; the mean over methods: 0.6 vs 0.55
        ("a_ipc10", 0): (0.8, [(0.01, 0.1, 0.9), (0.1, 0.2, 0.1)]),
    })
    assert sec.control_choice(df) == {1: 0.01, 10: 0.1}
    values = sec.control_values(df, {1: 0.01, 10: 0.1}).set_index("name")["test_acc"].to_dict()
    assert values == {"a_ipc1": 0.2, "b_ipc1": 0.1, "a_ipc10": 0.1}


def test_control_table_pairs_each_claim_under_both_protocols(tmp_path):
    # learned: a beats b by 10 pp on both seeds; control: b beats a by 20 pp on both
    runs = {}
    for seed in (0, 1):
        runs[("a_ipc1", seed)] = (0.6, [(0.01, 0.5, 0.3)])
        runs[("b_ipc1", seed)] = (0.5, [(0.01, 0.5, 0.5)])
    table = sec.control_table(_rows(tmp_path, runs), [{"id": "c1", "a": "a_ipc1", "b": "b_ipc1"}])
    row = next(line for line in table.splitlines() if line.startswith("| c1"))
    assert "+10.00 [+10.00, +10.00]" in row and "-20.00 [-20.00, -20.00]" in row and row.count("| 2 / 2 |") == 1


def test_ablation_table_has_mtt_each_addition_and_all_paired_on_the_ablation_seeds(tmp_path):
    methods = {"mtt": {"method": "mtt", "experts": "plain"},
               "abl_weight_perturbation": {"method": "mtt", "experts": "plain", "weight_perturbation": True,
                                           "ablation": True},
               "smooth_mtt": {"method": "mtt", "experts": "smooth", "representative_init": True, "balanced_loss": True,
                              "intermediate_matching": True, "weight_perturbation": True, "inner_momentum": True}}
    runs = {("mtt_ipc1", s): (0.5 + 0.01 * s, []) for s in range(4)}  # seed 3 is not an ablation seed
    runs |= {("smooth_mtt_ipc1", s): (0.3, []) for s in range(4)}
    runs |= {("abl_weight_perturbation_ipc1", s): (0.6 + 0.01 * s, []) for s in range(3)}
    table = sec.ablation_table(_rows(tmp_path, runs), methods)
    lines = [line for line in table.splitlines() if line.startswith("| 1 |")]
    assert [line.split(" | ")[1] for line in lines] == ["mtt", "abl_weight_perturbation", "smooth_mtt"]
    assert "| 3 |" in lines[0]  # mtt on the 3 ablation seeds only
    assert "+10.00 [+10.00, +10.00]" in lines[1] and "3 / 3" in lines[1]
    assert "weight_perturbation; experts plain" in lines[1] and "| all |" in lines[2]


class _Data:
    """A tiny dataset object with the fields train_on_synthetic reads."""

    def __init__(self, n: int = 6, seed: int = 0, channels: int = 1):
        g = torch.Generator().manual_seed(seed)
        shape = (channels, 4, 4)
        self.x_train, self.y_train = torch.rand(n, *shape, generator=g).numpy(), np.arange(n) % 2
        self.x_val, self.y_val = torch.rand(8, *shape, generator=g).numpy(), np.arange(8) % 2
        self.x_test, self.y_test = self.x_val[::-1].copy(), self.y_val
        self.input_shape, self.num_classes, self.mean, self.std = shape, 2, None, None


def test_evaluation_trains_as_mtt_and_reports_the_last_epoch(monkeypatch):
    from lifelearn.studies import dataset_distillation as study

    seen = []
    real_sgd = torch.optim.SGD
    monkeypatch.setattr(torch.optim, "SGD", lambda params, **kw: seen.append(kw) or real_sgd(params, **kw))
    train = {"epochs": 4, "batch_size": 256, "optimizer": "sgd", "momentum": 0.9, "weight_decay": 0.0005,
             "schedule": "multistep", "milestones": [3], "gamma": 0.1}
    spec = {"arch": "convnet", "channels": [2], "norm": "instance"}
    metrics, history = study.train_on_synthetic(_Data(), spec, train, 0.05, seed=0, val_every=2)
    assert seen == [{"lr": 0.05, "momentum": 0.9, "weight_decay": 0.0005}]
    assert [h["epoch"] for h in history] == [1, 3] and metrics["epochs"] == 4 and metrics["lr"] == 0.05
    assert history[-1]["lr"] == pytest.approx(0.005)  # x0.1 after the milestone
    assert metrics["val_acc"] == history[-1]["val_acc"]  # the last epoch, not the best
    again, _ = study.train_on_synthetic(_Data(), spec, train, 0.05, seed=0, val_every=2)
    assert again["test_acc"] == metrics["test_acc"]  # seeded


def _noise_augment(x, seed):
    """A seeded stand-in for DSA: the same seed gives the same perturbation."""
    return x + 0.1 * torch.randn(x.shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("augment", [None, _noise_augment, "dsa"])
def test_batched_evaluation_networks_equal_each_trained_alone(augment):
    """train_networks with batch > 1 (issue 16 part 3): every network's metrics and history as
    train_on_synthetic gives it alone, for networks of different sets, step sizes and seeds,
    two set sizes (grouped by shape) and a batch smaller than a group (chunked). Tolerance:
    losses 1e-5 absolute (float32 through 12 epochs; observed about 1e-7), accuracies equal."""
    from lifelearn.studies import dataset_distillation as study

    train = {"epochs": 12, "batch_size": 4, "optimizer": "sgd", "momentum": 0.9, "weight_decay": 0.0005,
             "schedule": "multistep", "milestones": [8], "gamma": 0.1}
    spec = {"arch": "convnet", "channels": [3, 4], "norm": "instance"}

    def arrays(ds):
        if augment == "dsa":  # MTT's differentiable siamese augmentation (kornia), as the paper profile
            return study.prepared(ds, {"zca": False, "dsa": "color_crop_cutout_flip_scale_rotate"})
        base = study._arrays(ds, None)
        return None if augment is None else (*base[:5], augment)

    channels = 3 if augment == "dsa" else 1
    sets = [_Data(6, 0, channels), _Data(6, 1, channels), _Data(9, 2, channels), _Data(6, 3, channels)]
    networks = [study.Network(ds, arrays(ds), lr, seed)
                for ds, lr, seed in zip(sets + sets[:2], [0.05, 0.1, 0.02, 0.3, 0.01, 0.2], [0, 1, 2, 3, 1000, 1001])]
    alone = study.train_networks(networks, spec, train, val_every=4, batch=1)
    batched = study.train_networks(networks, spec, train, val_every=4, batch=3)
    for (m1, h1), (m2, h2) in zip(alone, batched):
        assert m1["test_acc"] == m2["test_acc"] and m1["val_acc"] == m2["val_acc"] and m1["lr"] == m2["lr"]
        assert m2["test_loss"] == pytest.approx(m1["test_loss"], abs=1e-5)
        assert [h["epoch"] for h in h1] == [h["epoch"] for h in h2] == [3, 7, 11]
        for r1, r2 in zip(h1, h2):
            assert r1["val_acc"] == r2["val_acc"] and r2["lr"] == pytest.approx(r1["lr"], rel=1e-12)
            assert r2["train_loss"] == pytest.approx(r1["train_loss"], abs=1e-5)
            assert r2["val_loss"] == pytest.approx(r1["val_loss"], abs=1e-5)
    assert len({round(m["test_loss"], 6) for m, _ in alone}) == len(networks)  # the networks do differ


def _synthetic_rows(tmp_path, sets):
    """sets: {name: x array (10 classes x 1 image)} -> frame rows pointing at stored synthetic sets."""
    rows = []
    for name, x in sets.items():
        syn, res = tmp_path / "syn" / name, tmp_path / "res" / name
        syn.mkdir(parents=True)
        res.mkdir(parents=True)
        np.save(syn / "x_train.npy", x.astype(np.float32))
        np.save(syn / "y_train.npy", np.arange(10))
        (res / "metrics.json").write_text(json.dumps({"synthetic_set": str(syn)}))
        rows.append({"name": name, "seed": 0, "result_dir": str(res)})
    return pd.DataFrame(rows)


def test_synthetic_figure_puts_the_compared_methods_first_and_says_when_values_leave_0_1(tmp_path):
    names = ["abl_b_ipc1", "smooth_mtt_ipc1", "abl_a_ipc1", "random_ipc1", "mtt_ipc1"]
    assert sec._figure_order(names) == ["random_ipc1", "mtt_ipc1", "smooth_mtt_ipc1", "abl_a_ipc1", "abl_b_ipc1"]
    rng = np.random.default_rng(0)
    plain = _synthetic_rows(tmp_path / "plain", {n: rng.uniform(0, 1, (10, 1, 4, 4)) for n in names})
    text = sec.synthetic_figure(plain, tmp_path / "out", 1)
    assert (tmp_path / "out" / "figures" / "dataset_distillation-synthetic-ipc1.png").exists()
    assert "0 (white) to 1 (black)" in text and "own value range" not in text
    whitened = _synthetic_rows(tmp_path / "zca", {"mtt_ipc1": rng.normal(0, 2, (10, 1, 4, 4))})
    assert "own value range" in sec.synthetic_figure(whitened, tmp_path / "out2", 1)
