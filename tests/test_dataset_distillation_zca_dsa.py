"""MTT's CIFAR pipeline parts: ZCA whitening (fitted on train only, whitens) and
differentiable siamese augmentation (same seed -> same augmentation for the pair;
gradients reach the synthetic images)."""
from __future__ import annotations

import pytest
import torch

from lifelearn.data.zca import fit_zca, whiten_splits
from lifelearn.distill import dataset_distillation as dd
from lifelearn.distill.dsa import MTT_STRATEGY, SiameseAugment


def _correlated(n, seed):
    g = torch.Generator().manual_seed(seed)
    mix = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.8, 0.6, 0.0, 0.0], [0.5, 0.5, 0.7, 0.0], [0.1, 0.3, 0.2, 0.9]])
    return (torch.randn(n, 4, generator=g) @ mix.T + 3.0).view(n, 1, 2, 2)


class _Splits:
    def __init__(self):
        self.x_train, self.x_val, self.x_test = _correlated(2000, 0), _correlated(50, 1) + 10.0, _correlated(50, 2)


def test_zca_whitens_the_train_split_covariance_to_identity():
    x = _correlated(2000, 0)
    w = fit_zca(x, eps=1e-6)(x).flatten(1)
    cov = torch.cov(w.T)
    assert torch.allclose(w.mean(0), torch.zeros(4), atol=1e-4)
    assert torch.allclose(cov, torch.eye(4), atol=1e-3)
    assert not torch.allclose(torch.cov(x.flatten(1).T), torch.eye(4), atol=0.1)  # it was not white before


def test_zca_is_fitted_on_train_only():
    w = whiten_splits(_Splits(), eps=1e-6)
    assert torch.allclose(w["train"].flatten(1).mean(0), torch.zeros(4), atol=1e-4)
    # val is shifted by +10: transformed with the TRAIN mean and matrix it keeps a large mean; fitted on itself it would not
    assert w["val"].flatten(1).mean(0).abs().max() > 1.0
    fitted_on_val = fit_zca(_Splits().x_val, eps=1e-6)(_Splits().x_val)
    assert fitted_on_val.flatten(1).mean(0).abs().max() < 1e-3
    # a synthetic set passes the real train split to fit on: same transform for its val/test
    again = whiten_splits(_Splits(), eps=1e-6, fit_on=_Splits().x_train)
    assert torch.allclose(again["test"], w["test"])


@pytest.mark.parametrize("channels", [1, 3])
def test_the_same_seed_gives_the_siamese_pair_the_same_augmentation(channels):
    aug = SiameseAugment(MTT_STRATEGY, channels)
    real, syn = torch.rand(5, channels, 8, 8), torch.rand(5, channels, 8, 8)
    for seed in range(12):  # covers every transform of the strategy
        a_real, a_syn = aug(real, syn, seed=seed)
        assert torch.equal(a_real, aug(real, seed=seed)) and torch.equal(a_syn, aug(syn, seed=seed))
        # the pair shares the transform: on identical inputs the outputs are identical
        x, y = aug(real, real.clone(), seed=seed)
        assert torch.equal(x, y)
    outs = {aug(real, seed=s).sum().item() for s in range(12)}
    assert len(outs) > 3  # seeds differ


def test_dsa_does_not_move_the_global_rng():
    aug = SiameseAugment(MTT_STRATEGY, 1)
    torch.manual_seed(0)
    aug(torch.rand(2, 1, 8, 8), seed=3)
    after = torch.rand(1)
    torch.manual_seed(0)
    torch.rand(2, 1, 8, 8)
    assert torch.equal(torch.rand(1), after)


def test_gradients_reach_the_synthetic_images_through_dsa_in_the_inner_loop():
    from lifelearn.models import build_model

    torch.manual_seed(0)
    model = build_model({"arch": "convnet", "channels": [3], "norm": "instance"}, (1, 8, 8), 2)
    layout = dd.param_layout(model)
    start = dd.flat_params(model).requires_grad_(True)
    x = torch.rand(4, 1, 8, 8, requires_grad=True)
    y = torch.tensor([0, 1, 0, 1])
    aug = SiameseAugment("rotate_scale_crop_color", 1)
    params = dd.unroll(model, layout, start, x, y, torch.tensor(0.1), 3, gen=torch.Generator().manual_seed(0),
                       augment=aug)
    (g,) = torch.autograd.grad(params[-1].pow(2).sum(), x)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    # the inner loop's augmentation is seeded from the distillation generator: repeatable
    again = dd.unroll(model, layout, start, x, y, torch.tensor(0.1), 3, gen=torch.Generator().manual_seed(0),
                      augment=aug)
    assert torch.equal(again[-1], params[-1])


def test_unknown_transform_is_named():
    with pytest.raises(ValueError, match="dsa_strategy: unknown transform 'blur'"):
        SiameseAugment("flip_blur", 1)


def test_a_saved_zca_whitens_exactly_as_the_fit_it_came_from(tmp_path):
    from lifelearn.data.zca import load_zca, save_zca

    x = _correlated(300, 4)
    fitted = fit_zca(x, eps=1e-3)
    save_zca(tmp_path / "zca.pt", fitted)
    loaded = load_zca(tmp_path / "zca.pt")
    assert loaded.fitted and loaded.eps == 1e-3
    assert torch.equal(loaded(x), fitted(x)) and torch.equal(loaded.inverse_transform(x), fitted.inverse_transform(x))
    assert torch.equal(whiten_splits(_Splits(), zca=loaded)["test"], fitted(_Splits().x_test))


@pytest.mark.parametrize("zca", [True, False])
def test_one_dd_zca_job_fits_the_whitening_every_dd_job_reads(zca):
    """zca: true plans dd_zca (fitted once on the real train split) as an input of every
    experts, distill and evaluate job; without it there is no such job."""
    from lifelearn.config import load_config
    from lifelearn.jobs import Layout
    from lifelearn.studies import dataset_distillation as study

    cfg = load_config("config", "paper")
    cfg["dataset_distillation"]["zca"] = zca
    jobs = study.jobs(cfg, Layout("paper"))
    fits = [j for j in jobs if j.step == "zca"]
    if not zca:
        assert not fits and not any("zca" in j.inputs for j in jobs)
        return
    [fit] = fits
    assert fit.rule == "dd_zca" and fit.datasets == ("cifar10",)
    assert fit.outputs["zca"] == ["checkpoints/paper/dataset_distillation/zca/cifar10.pt"]
    assert all(j.inputs["zca"] == fit.outputs["zca"] for j in jobs if j is not fit)
