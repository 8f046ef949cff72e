"""ZCA whitening of an image dataset, as MTT applies it before training experts and
distilling (Cazenavette et al. 2022, utils.get_dataset with --zca: kornia's
ZCAWhitening(eps=0.1, compute_inv=True) fitted on the train images, applied to train and test).

Fitted on the TRAIN split only; val and test are transformed with the train statistics.
kornia.enhance.ZCAWhitening is used as MTT uses it; it differs from MTT only in that our
images are in [0, 1] and are not standardised first (the transform centres them itself).
"""
from __future__ import annotations

import torch

MTT_EPS = 0.1  # MTT's ZCAWhitening(eps=0.1)


def fit_zca(x_train: torch.Tensor, eps: float = MTT_EPS):
    """A kornia ZCAWhitening fitted on `x_train` (N, ...) alone, with its inverse (the
    pipeline fits it once per dataset, rule dd_zca, and its jobs read it: load_zca)."""
    from kornia.enhance import ZCAWhitening

    return ZCAWhitening(eps=eps, compute_inv=True).fit(torch.as_tensor(x_train, dtype=torch.float32))


def whiten_splits(ds, eps: float = MTT_EPS, fit_on=None, zca=None) -> dict[str, torch.Tensor]:
    """{"train", "val", "test"}: the dataset's x arrays whitened by `zca` (a fitted
    transform, e.g. load_zca's: a synthetic set uses the REAL train split's) or else by a
    ZCA fitted on `fit_on` (default: ds.x_train)."""
    zca = zca if zca is not None else fit_zca(ds.x_train if fit_on is None else fit_on, eps)
    with torch.no_grad():
        return {s: zca(torch.as_tensor(getattr(ds, f"x_{s}"), dtype=torch.float32)) for s in ("train", "val", "test")}


def save_zca(path, zca) -> None:
    """Write a fitted transform (its eps and kornia's state dict: mean, matrix, inverse)
    atomically, for the jobs that whiten against it (rule dd_zca)."""
    from lifelearn.io import save_torch

    save_torch(path, {"eps": float(zca.eps), "state": zca.state_dict()})


def load_zca(path):
    """The transform `save_zca` wrote, fitted (kornia loads the fit from its state dict)."""
    from kornia.enhance import ZCAWhitening

    saved = torch.load(path, weights_only=True)
    zca = ZCAWhitening(eps=saved["eps"], compute_inv=True)
    zca.load_state_dict(saved["state"])
    return zca

