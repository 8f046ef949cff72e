"""AutoAttack robust accuracy (Croce & Hein, ICML 2020; RobustBench's L-inf evaluation)
through the adversarial-robustness-toolbox (ART), the kept library (DESIGN: torchattacks
needs torchvision, which does not import beside the CPU torch build; ART does).

The *standard* version of AutoAttack runs, each on the samples still classified
correctly after the previous ones (a sample counts as robust only if it survives all):

    APGD-CE  untargeted, cross-entropy, 100 iterations, 1 restart, initial step 2 eps
    APGD-T   targeted DLR loss, 100 iterations, 1 restart per target, 9 targets: the
             classes of the 2nd..10th largest clean logit (autoattack's `n_target_classes`)
    FAB-T    targeted minimum-norm attack, 9 targets
    Square   black-box random search, 5000 queries, p_init 0.8, 1 restart

Here each is ART's implementation (`AutoProjectedGradientDescent`, `SquareAttack`),
chained with ART's own AutoAttack bookkeeping (`art.attacks.evasion.auto_attack.run_attack`:
attack the still-robust samples, keep an example only if it is misclassified and inside
the eps-ball; ART 1.20.1's `AutoAttack.generate` itself imports `multiprocess`, an
undeclared dependency of its parallel mode, and runs every attack untargeted before any
targeted one; tests/test_autoattack.py checks the chain equals that class on one attack).
Where this differs from RobustBench's reference `autoattack` package:
- FAB-T is not in ART and is left out (`attacks` lists what ran; the report says so), so
  the accuracy is an upper bound of the reference's.
- Square needs image-shaped (N, C, H, W) inputs in ART; on 1-D signals (MNIST-1D) it is
  skipped and reported as skipped.
- ART's APGD keeps the last iterate rather than the best one found, and its targeted DLR
  is -(z_t - max_{i != t} z_i) / (z_pi1 - z_pi3) (ART's form) rather than the
  reference's -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2).
The targeted DLR loss is ART's formula computed without its Python loop over the samples
(`DifferenceLogitsRatio`, the same values and gradients, bit for bit: tests); that loop
was about a quarter of an MNIST-1D AutoAttack's time (benchmarks/autoattack_cost.py).
ART draws its random starts and Square's proposals from numpy's global generator: it is
seeded per call (and its previous state restored), so the result is reproducible.

The robust accuracy is measured on the first `samples` points of the evaluated split
(RobustBench evaluates the first n test points) to bound its CPU cost; the clean accuracy
on the same points and their mean, the weighted robust accuracy of MTARD on AutoAttack,
are reported beside it.
"""
from __future__ import annotations

import random
import time
from contextlib import contextmanager

import numpy as np
import torch

from lifelearn.evaluate.robustness import attacked
from lifelearn.phases import timed

# what the standard version runs, in its order; FAB-T is not in ART
STANDARD = ("apgd-ce", "apgd-t", "fab-t", "square")
SUPPORTED = ("apgd-ce", "apgd-t", "square")
DEFAULTS = {"attacks": ["apgd-ce", "apgd-t", "square"], "iterations": 100, "targets": 9, "square_queries": 5000,
            "square_p_init": 0.8, "batch_size": 500, "tuning": False}
# Values robustness metrics `{prefix}_<key>` can take (lifelearn.evaluate.metric_range)
METRIC_RANGES = {"autoattack_acc": (0.0, 1.0), "autoattack_clean_acc": (0.0, 1.0),
                 "autoattack_weighted_robust_acc": (0.0, 1.0)}


def autoattack_settings(cfg: dict) -> dict:
    """The full AutoAttack settings: `cfg` (eps and samples required) over DEFAULTS;
    ValueError for an attack ART does not provide."""
    out = {**DEFAULTS, **cfg}
    unknown = [a for a in out["attacks"] if a not in SUPPORTED]
    if unknown:
        raise ValueError(f"unknown AutoAttack attack(s) {unknown}; ART provides: {', '.join(SUPPORTED)}"
                         + (" (FAB-T is not in ART)" if "fab-t" in unknown else ""))
    out["eps"], out["samples"] = float(out["eps"]), int(out["samples"])
    return out


def art_classifier(model: torch.nn.Module, input_shape, num_classes: int, loss: torch.nn.Module | None = None):
    """ART's PyTorchClassifier around a logits model on inputs in [0, 1]; `loss` the one its
    gradients are of (default cross-entropy)."""
    from art.estimators.classification import PyTorchClassifier

    device = next(model.parameters()).device
    return PyTorchClassifier(model=model, loss=loss or torch.nn.CrossEntropyLoss(), input_shape=tuple(input_shape),
                             nb_classes=int(num_classes), clip_values=(0.0, 1.0),
                             device_type="gpu" if device.type == "cuda" else "cpu")


class DifferenceLogitsRatio(torch.nn.modules.loss._Loss):
    """ART 1.20.1's targeted DLR loss (`DifferenceLogitsRatioPyTorch` in
    art/attacks/evasion/auto_projected_gradient_descent.py), vectorised: with t the target
    (one-hot `y_true`), pi the logits sorted in decreasing order and i the largest class
    other than t, -(z_t - z_i) / (z_pi1 - z_pi3). ART picks each sample's logits in a Python
    loop and through N x N diagonals; here by `gather`, the terms made in ART's order so that
    autograd sums their gradients in the same order (equal bit for bit: tests)."""

    def __init__(self):
        super().__init__(reduction="mean")

    def forward(self, y_pred: torch.Tensor, y_true: torch.Tensor) -> torch.Tensor:
        target = y_true.float().argmax(dim=1)
        order = y_pred.argsort(dim=1)
        other = torch.where(order[:, -1] != target, order[:, -1], order[:, -2])
        z_1, z_3, z_i, z_y = (y_pred.gather(1, index[:, None])[:, 0] for index in (order[:, -1], order[:, -3],
                                                                                    other, target))
        dlr = (-(z_y - z_i) / (z_1 - z_3)).float()
        if self.reduction == "mean":
            return dlr.mean()
        if self.reduction == "sum":
            return dlr.sum()
        if self.reduction == "none":
            return dlr
        raise ValueError(f"unknown reduction {self.reduction!r}")


def applicable(attack: str, input_shape) -> bool:
    """Square needs (C, H, W) inputs in ART; the gradient attacks take any shape."""
    return attack != "square" or len(input_shape) == 3


def _attack(name: str, estimator, s: dict, targeted: bool):
    from art.attacks.evasion import SquareAttack

    if name == "square":
        return SquareAttack(estimator, norm=np.inf, eps=s["eps"], max_iter=int(s["square_queries"]),
                            p_init=float(s["square_p_init"]), nb_restarts=1, batch_size=int(s["batch_size"]),
                            verbose=False)
    if name == "apgd-ce":
        return apgd(estimator, s, targeted, "cross_entropy")
    # ART's DLR as its own estimator's loss (loss_type None: APGD takes the estimator's)
    dlr = art_classifier(estimator.model, estimator.input_shape, estimator.nb_classes, DifferenceLogitsRatio())
    return apgd(dlr, s, targeted, None)


def apgd(estimator, s: dict, targeted: bool, loss_type: str | None):
    """ART's APGD with the settings `s` (AutoAttack's: 1 restart, initial step 2 eps);
    `loss_type` ART's name of its loss, None for the estimator's own."""
    from art.attacks.evasion import AutoProjectedGradientDescent

    return AutoProjectedGradientDescent(estimator, norm=np.inf, eps=s["eps"], eps_step=2 * s["eps"],
                                        max_iter=int(s["iterations"]), targeted=targeted, nb_random_init=1,
                                        batch_size=int(s["batch_size"]), loss_type=loss_type, verbose=False)


def autoattack(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: dict, seed: int = 0):
    """Standard AutoAttack (as ART provides it) on (x, y): returns (x_adv, robust, stages):
    the examples, a bool tensor (correct on the clean input and on every attack) and
    [(attack, robust count after it)] in the order run (skipped attacks absent). The model
    is `attacked` (eval mode, parameters frozen: ART's gradients are the input's only)."""
    from art.attacks.evasion.auto_attack import run_attack

    s = autoattack_settings(cfg)
    with attacked(model), seeded_numpy(seed):
        estimator = art_classifier(model, x.shape[1:], _num_classes(model, x))
        x_np = x.detach().cpu().numpy().astype(np.float32)
        labels = y.detach().cpu().numpy()
        eye = np.eye(estimator.nb_classes, dtype=np.float32)
        logits = estimator.predict(x_np, batch_size=int(s["batch_size"]))
        robust = logits.argmax(1) == labels
        x_adv, stages = x_np.copy(), []
        for name in s["attacks"]:
            if not applicable(name, x.shape[1:]):
                continue
            if name == "apgd-t":
                order = np.argsort(-logits, axis=1)  # targets: 2nd..(targets+1)-th largest clean logit
                attack = _attack(name, estimator, s, targeted=True)
                for k in range(1, min(int(s["targets"]), estimator.nb_classes - 1) + 1):
                    if robust.any():
                        x_adv, robust = run_attack(x_adv, eye[order[:, k]], robust, attack, estimator, np.inf, s["eps"])
            elif robust.any():
                x_adv, robust = run_attack(x_adv, eye[labels], robust, _attack(name, estimator, s, False), estimator,
                                           np.inf, s["eps"])
            stages.append((name, int(robust.sum())))
    return torch.from_numpy(x_adv).to(x.device), torch.from_numpy(robust).to(x.device), stages


@contextmanager
def seeded_numpy(seed: int):
    """numpy's and Python's global generators (ART draws its random starts and Square's
    proposals from them) seeded with `seed`, their previous states restored after."""
    np_state, py_state = np.random.get_state(), random.getstate()
    np.random.seed(seed)
    random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


def _num_classes(model, x) -> int:
    with torch.no_grad():
        return int(model(x[:1]).shape[1])


@timed("evaluation")
def autoattack_metrics(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: dict, seed: int = 0,
                       prefix: str = "test") -> dict[str, float]:
    """On the first `samples` points of (x, y): {prefix}_autoattack_acc (robust accuracy),
    _autoattack_clean_acc (clean accuracy on the same points), _autoattack_weighted_robust_acc
    (their mean), _autoattack_samples, _autoattack_seconds (its CPU/GPU wall time) and
    _autoattack_acc_<attack> (robust accuracy after each attack, cumulative)."""
    s = autoattack_settings(cfg)
    x, y = x[: s["samples"]], y[: s["samples"]]
    start = time.perf_counter()
    with attacked(model), torch.no_grad():
        clean = int((model(x).argmax(1) == y).sum()) / len(y)
    _, robust, stages = autoattack(model, x, y, s, seed)
    n = len(y)
    out = {f"{prefix}_autoattack_acc": int(robust.sum()) / n, f"{prefix}_autoattack_clean_acc": clean}
    out[f"{prefix}_autoattack_weighted_robust_acc"] = (out[f"{prefix}_autoattack_acc"] + clean) / 2
    out |= {f"{prefix}_autoattack_acc_{name.replace('-', '_')}": count / n for name, count in stages}
    out |= {f"{prefix}_autoattack_samples": n, f"{prefix}_autoattack_seconds": round(time.perf_counter() - start, 2)}
    return out


def attacks_run(cfg: dict, input_shape) -> list[str]:
    """The attacks of `cfg` that run on inputs of `input_shape` (report and ledger)."""
    return [a for a in autoattack_settings(cfg)["attacks"] if applicable(a, input_shape)]
