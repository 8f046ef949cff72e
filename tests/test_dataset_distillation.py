"""Dataset distillation (MTT + smooth experts): formulas on hand cases, gradients against
finite differences, representative initialisation, expert files, config vs code."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from lifelearn.distill import dataset_distillation as dd
from lifelearn.models import build_model

from conftest import REPO


def test_matching_loss_equals_the_formula_on_a_hand_case():
    start, target = torch.tensor([0.0, 0.0, 0.0]), torch.tensor([1.0, 2.0, 2.0])  # ||start - target||^2 = 9
    student = torch.tensor([1.0, 1.0, 0.0])  # ||student - target||^2 = 0 + 1 + 4 = 5
    assert dd.matching_loss(student, start, target).item() == pytest.approx(5 / 9)
    assert dd.matching_loss(target, start, target).item() == 0.0
    assert dd.matching_loss(start, start, target).item() == 1.0


def test_intermediate_matching_adds_the_mean_of_the_intermediate_terms():
    traj = torch.tensor([[0.0], [1.0], [2.0], [4.0]])  # theta*_0..3
    params = [torch.tensor([0.0]), torch.tensor([0.5]), torch.tensor([1.0]), torch.tensor([1.5]), torch.tensor([3.0])]
    # M = 2 from t = 1: final 3.0 vs theta*_3 = 4: (1 / 9); step round(1 * 4 / 2) = 2 -> 1.0 vs theta*_2 = 2: 1 / 1
    plain = dd.trajectory_loss(params, traj, 1, 2, traj[1])
    inter = dd.trajectory_loss(params, traj, 1, 2, traj[1], intermediate=True)
    assert plain.item() == pytest.approx(1 / 9)
    assert inter.item() == pytest.approx(1 / 9 + 1.0)


def test_intermediate_terms_are_summed_at_floor_steps_as_the_authors_code():
    # M = 3, N = 5 steps from t = 0: the authors' middle steps are (5 // 3) * j = 1, 2 (round would give 2, 3)
    traj = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    params = [torch.tensor([v]) for v in (0.0, 1.0, 1.0, 2.0, 2.0, 3.0)]
    # final 3 vs 3: 0; step 1 = 1 vs theta*_1 = 1: 0; step 2 = 1 vs theta*_2 = 2: 1 / 4 (start 0)
    assert dd.trajectory_loss(params, traj, 0, 3, traj[0], intermediate=True).item() == pytest.approx(0.25)


def test_matching_loss_is_normalised_by_the_start_the_student_began_from():
    traj = torch.tensor([[0.0], [1.0], [3.0]])
    params = [torch.tensor([1.0]), torch.tensor([2.0])]  # a perturbed start 1.0, final 2.0, target theta*_2 = 3
    # the authors' param_dist: ||start - target||^2 = (1 - 3)^2 = 4, not the expert's (0 - 3)^2 = 9
    assert dd.trajectory_loss(params, traj, 0, 2, params[0]).item() == pytest.approx(1 / 4)


def test_clipping_schedule_has_its_documented_values():
    assert [round(dd.clip_factor(e), 10) for e in range(12)] == [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95, 1.0, 1.0]
    older = [0.5, 0.5, 0.55, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9]  # the earlier revision, as a config value
    assert [dd.clip_factor(e, older) for e in range(12)] == older + [1.0]
    assert dd.clip_factor(0, []) == 1.0  # [] = no clipping loss


def test_expert_lr_decays_once_after_epoch_half_plus_one():
    # both buffer.py: `if e in [E // 2 + 1]: lr *= decay` after training epoch e; E = 10 -> epochs 7.. decayed
    assert [dd.lr_at(e, 1.0, 10, 0.6) for e in range(10)] == [1.0] * 7 + [0.6] * 3
    assert [dd.lr_at(e, 1.0, 10, 1.0) for e in range(10)] == [1.0] * 10


class _Linear(nn.Module):
    def __init__(self, w):
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x):  # (B, C, H, W) -> (B, K): logits_k = sum_c w[k, c] * sum_hw x[c]
        return torch.einsum("kc,bchw->bk", self.w, x)


def test_gradient_penalty_is_the_authors_per_pixel_norm_of_the_summed_logits_gradient():
    # d sum_k logits_k / d x[b, c, h, w] = sum_k w[k, c] = (1, 2) for channels 0, 1: per pixel the norm over
    # channels is sqrt(1 + 4) = sqrt 5 everywhere; lambda 2 * (sqrt 5 - 1)^2
    model = _Linear(torch.tensor([[0.5, 1.0], [0.5, 1.0]]))
    x = torch.rand(3, 2, 2, 2)
    assert dd.gradient_penalty(model, x, 2.0).item() == pytest.approx(2.0 * (math.sqrt(5) - 1) ** 2)
    # independent of the input for a linear model; the graph reaches the weights (create_graph)
    penalty = dd.gradient_penalty(model, torch.zeros(1, 2, 1, 1), 1.0)
    (g,) = torch.autograd.grad(penalty, model.w)
    # penalty = (sqrt(a^2 + b^2) - 1)^2 with a = w00 + w10 = 1, b = w01 + w11 = 2; d/dw00 = 2 (r - 1) a / r
    r = math.sqrt(5)
    assert g[0, 0].item() == pytest.approx(2 * (r - 1) * 1 / r) and g[1, 1].item() == pytest.approx(2 * (r - 1) * 2 / r)


def test_smooth_experts_use_their_optimiser_and_plain_experts_plain_sgd():
    torch.manual_seed(0)
    x, y = torch.rand(20, 1, 4, 4), torch.arange(20) % 2
    cfg = yaml.safe_load((REPO / "config" / "studies" / "dataset_distillation.yaml").read_text())["dataset_distillation"]
    smooth, plain = cfg["experts"]["sets"]["smooth"], cfg["experts"]["sets"]["plain"]
    assert (smooth["momentum"], smooth["weight_decay"], smooth["grad_penalty"]) == (0.9, 0.001, 2.0)
    assert smooth["clip_schedule"] == list(dd.AUTHORS_CLIP_SCHEDULE)
    assert (plain["momentum"], plain["weight_decay"], plain["lr_decay"], plain["clip_schedule"]) == (0.0, 0.0, 1.0, [])
    seen = []
    real_sgd = torch.optim.SGD

    def spy(params, **kw):
        seen.append(kw)
        return real_sgd(params, **kw)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(torch.optim, "SGD", spy)
        model = build_model({"arch": "convnet", "channels": [2], "norm": "instance"}, (1, 4, 4), 2)
        out = dd.train_expert(model, x, y, {"epochs": 6, "batch_size": 10, "lr": 0.1}, seed=0, options=smooth)
    # E = 6: decay after epoch 4 -> epoch 5 at 0.06, the optimiser rebuilt there
    assert seen == [{"lr": 0.1, "momentum": 0.9, "weight_decay": 0.001}, {"lr": pytest.approx(0.06), "momentum": 0.9,
                                                                         "weight_decay": 0.001}]
    assert out["lr"].tolist() == pytest.approx([0.1] * 5 + [0.06])


def test_clipping_loss_scales_the_first_expert_steps():
    # one full-batch step of plain SGD: the step under factor 0.5 is half the unclipped one
    x, y = torch.rand(8, 1, 4, 4), torch.arange(8) % 2
    steps = []
    for schedule in ([], [0.5]):
        torch.manual_seed(0)
        model = build_model({"arch": "convnet", "channels": [2], "norm": "instance"}, (1, 4, 4), 2)
        traj = dd.train_expert(model, x, y, {"epochs": 1, "batch_size": 8, "lr": 0.1}, seed=0,
                               options={"clip_schedule": schedule})["trajectory"]
        steps.append(traj[1] - traj[0])
    assert torch.allclose(steps[1], 0.5 * steps[0], atol=1e-7)


def test_balance_factor_is_the_documented_log_weight():
    # h = max_start // 2 = 5: t >= h -> log_5(t - h + 8); t < h -> 1 / log_5(h - t + 8)
    assert dd.balance_factor(5, 10) == pytest.approx(math.log(8) / math.log(5))
    assert dd.balance_factor(9, 10) == pytest.approx(math.log(12) / math.log(5))
    assert dd.balance_factor(0, 10) == pytest.approx(math.log(5) / math.log(13))
    assert dd.balance_factor(0, 10) < dd.balance_factor(4, 10) < dd.balance_factor(5, 10) < dd.balance_factor(9, 10)


def test_weight_perturbation_follows_w_plus_w_d_over_norm_d_on_convolution_weights_only():
    layout = [("conv", torch.Size([1, 1, 2, 2])), ("b", torch.Size([2])), ("fc", torch.Size([1, 2]))]
    flat = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])
    out = dd.perturb(flat, layout, torch.Generator().manual_seed(0))
    d = torch.randn(1, 1, 2, 2, generator=torch.Generator().manual_seed(0))
    w = flat[:4].view(1, 1, 2, 2)
    assert torch.allclose(out[:4].view(1, 1, 2, 2), w + w * d / d.norm())
    assert torch.equal(out[4:], flat[4:])  # biases and the linear weight untouched (the authors' ndim == 4)


def _tiny_problem():
    torch.manual_seed(0)
    model = build_model({"arch": "convnet", "channels": [3], "norm": "instance"}, (1, 4, 4), 3).double()
    layout = dd.param_layout(model)
    start = dd.flat_params(model).double()
    target = start + 0.05 * torch.randn(start.shape, dtype=torch.float64)
    x = torch.rand(3, 1, 4, 4, dtype=torch.float64)
    y = torch.tensor([0, 1, 2])
    return model, layout, start, target, x, y


def _loss(model, layout, start, target, x, y, log_lr, momentum):
    params = dd.unroll(model, layout, start.clone().requires_grad_(True), x, y, log_lr.exp(), 3, momentum)
    return dd.matching_loss(params[-1], start, target)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_gradients_reach_images_and_step_size_and_match_finite_differences(momentum):
    model, layout, start, target, x, y = _tiny_problem()
    x = x.requires_grad_(True)
    log_lr = torch.tensor(math.log(0.5), dtype=torch.float64, requires_grad=True)
    loss = _loss(model, layout, start, target, x, y, log_lr, momentum)
    gx, glr = torch.autograd.grad(loss, [x, log_lr])
    assert gx.abs().sum() > 0 and glr.abs() > 0
    eps = 1e-6
    for idx in [(0, 0, 1, 2), (2, 0, 3, 0), (1, 0, 0, 0)]:
        xp, xm = x.detach().clone(), x.detach().clone()
        xp[idx] += eps
        xm[idx] -= eps
        fd = (_loss(model, layout, start, target, xp, y, log_lr.detach(), momentum)
              - _loss(model, layout, start, target, xm, y, log_lr.detach(), momentum)) / (2 * eps)
        assert gx[idx].item() == pytest.approx(fd.item(), rel=1e-4, abs=1e-9)
    fd = (_loss(model, layout, start, target, x.detach(), y, log_lr.detach() + eps, momentum)
          - _loss(model, layout, start, target, x.detach(), y, log_lr.detach() - eps, momentum)) / (2 * eps)
    assert glr.item() == pytest.approx(fd.item(), rel=1e-4)


def test_unroll_takes_plain_sgd_steps():
    model, layout, start, _, x, y = _tiny_problem()
    params = dd.unroll(model, layout, start.clone().requires_grad_(True), x, y, torch.tensor(0.1, dtype=torch.float64), 2)
    ref = build_model({"arch": "convnet", "channels": [3], "norm": "instance"}, (1, 4, 4), 3).double()
    torch.nn.utils.vector_to_parameters(start.clone(), ref.parameters())
    opt = torch.optim.SGD(ref.parameters(), lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        nn.functional.cross_entropy(ref(x), y).backward()
        opt.step()
    assert torch.allclose(params[-1].detach(), torch.nn.utils.parameters_to_vector(ref.parameters()), atol=1e-12)


def test_representative_init_returns_the_samples_nearest_the_kmeans_centres():
    from sklearn.cluster import KMeans

    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [10.0, 0.0]])
    logits, y = [], []
    for c in range(2):  # two classes, each two well separated blobs shifted per class
        for centre in centres:
            logits.append(centre + c * 100 + rng.normal(0, 1, (20, 2)))
            y += [c] * 20
    logits, y = np.concatenate(logits), np.asarray(y)
    idx = dd.representative_init(logits, y, 2, 2, seed=0)
    assert len(idx) == 4 and len(set(idx.tolist())) == 4
    for c in range(2):
        members = np.flatnonzero(y == c)
        km = KMeans(n_clusters=2, n_init=10, random_state=0).fit(logits[members])
        nearest = {int(members[np.argmin(np.linalg.norm(logits[members] - k, axis=1))]) for k in km.cluster_centers_}
        assert set(idx[2 * c:2 * c + 2].tolist()) == nearest
        assert (y[idx[2 * c:2 * c + 2]] == c).all()


def test_random_init_is_ipc_per_class_and_seeded():
    y = np.repeat(np.arange(3), 10)
    a, b = dd.random_real_init(y, 2, 3, 0), dd.random_real_init(y, 2, 3, 0)
    assert np.array_equal(a, b) and np.array_equal(y[a], [0, 0, 1, 1, 2, 2])
    assert not np.array_equal(a, dd.random_real_init(y, 2, 3, 1))


def test_expert_file_is_compact_and_loads_weights_only(tmp_path):
    torch.manual_seed(0)
    spec = {"arch": "convnet", "channels": [4], "norm": "instance"}
    model = build_model(spec, (1, 8, 8), 3)
    x, y = torch.rand(40, 1, 8, 8), torch.arange(40) % 3
    result = dd.train_expert(model, x, y, {"epochs": 3, "batch_size": 16, "lr": 0.1}, seed=0,
                             options={"clip_schedule": [0.5, 0.6], "grad_penalty": 2.0})
    assert result["trajectory"].shape == (4, sum(p.numel() for p in model.parameters()))
    assert torch.equal(result["trajectory"][-1], dd.flat_params(model))
    torch.save(dd.expert_payload(model, result, spec, (1, 8, 8), 3), tmp_path / "e.pt")
    traj, payload = dd.load_trajectory(tmp_path / "e.pt")  # weights_only=True inside
    assert torch.equal(traj, result["trajectory"])
    assert set(payload["trajectory"]) == {n for n, _ in model.named_parameters()}
    assert all(t.shape[0] == 4 for t in payload["trajectory"].values())


def _toy_expert():
    """A 2-class toy problem on 8x8 inputs, its instance-norm ConvNet and a 4-epoch expert."""
    torch.manual_seed(0)
    model = build_model({"arch": "convnet", "channels": [4], "norm": "instance"}, (1, 8, 8), 2)
    x = torch.rand(60, 1, 8, 8)
    y = (x[:, 0, :4].mean((1, 2)) > x[:, 0, 4:].mean((1, 2))).long()
    traj = dd.train_expert(model, x, y, {"epochs": 4, "batch_size": 10, "lr": 0.1}, seed=0)["trajectory"]
    return model, x, y, traj


def test_distill_lowers_the_matching_loss_on_a_toy_problem():
    model, x, y, traj = _toy_expert()
    s = dd.DistillSettings(ipc=2, iterations=30, syn_steps=5, expert_epochs=1, max_start_epoch=1,
                           lr_img=1.0, lr_lr=0.01, lr_init=0.1)
    idx = dd.random_real_init(y.numpy(), 2, 2, 0)
    out = dd.distill(model, [traj], x[idx], y[idx], s, seed=0)
    losses = [h["loss"] for h in out["history"]]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    assert out["x"].min() >= 0 and out["x"].max() <= 1 and out["lr"] > 0


def test_an_interrupted_distillation_resumes_from_its_progress_and_ends_as_an_uninterrupted_one(tmp_path, monkeypatch):
    model, x, y, traj = _toy_expert()
    s = dd.DistillSettings(ipc=2, iterations=25, syn_steps=3, expert_epochs=1, max_start_epoch=2, lr_img=1.0,
                           lr_lr=0.01, lr_init=0.1, weight_perturbation=True, inner_momentum=True)
    idx = dd.random_real_init(y.numpy(), 2, 2, 0)
    clean = dd.distill(model, [traj, traj.flip(0)], x[idx], y[idx], s, seed=3)

    progress, calls = tmp_path / "progress.pt", {"n": 0}
    real_loss = dd.trajectory_loss

    def dies_at_iteration_15(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 16:
            raise KeyboardInterrupt("killed")
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(dd, "trajectory_loss", dies_at_iteration_15)
    with pytest.raises(KeyboardInterrupt):
        dd.distill(model, [traj, traj.flip(0)], x[idx], y[idx], s, seed=3, progress=progress)
    assert torch.load(progress, weights_only=True)["iteration"] == dd.PROGRESS_EVERY
    monkeypatch.setattr(dd, "trajectory_loss", real_loss)
    resumed = dd.distill(model, [traj, traj.flip(0)], x[idx], y[idx], s, seed=3, progress=progress)
    assert [h["iteration"] for h in resumed["history"]] == list(range(25))
    assert resumed["history"] == clean["history"]
    assert torch.equal(resumed["x"], clean["x"]) and resumed["lr"] == clean["lr"]


def _seed_runs(x, y, trajectories, seeds, progress_dir=None):
    return [dd.SeedRun(seed, trajectories, x[dd.random_real_init(y.numpy(), 2, 2, seed)],
                       None if progress_dir is None else progress_dir / f"seed{seed}.pt") for seed in seeds]


ALL_SWITCHES = dict(balanced_loss=True, intermediate_matching=True, weight_perturbation=True, inner_momentum=True)


@pytest.mark.parametrize("switches", [{}, ALL_SWITCHES, {"batch_syn": 3}], ids=["mtt", "all-switches", "batch-syn"])
def test_seeds_distilled_together_equal_each_distilled_alone(switches):
    """distill_seeds: with each seed's own forward, K seeds in lock-step equal K `distill` runs
    bit for bit (the stacked images and step sizes under one SGD, the summed losses: nothing
    mixes seeds); batched as one model (stacked), within float tolerance: after 12
    iterations (image step 1.0) images to 1e-4 absolute (in [0, 1]), step sizes and losses
    to 1e-4 relative (observed up to 1e-5 and 1e-6: the grouped kernels sum in another order)."""
    model, x, y, traj = _toy_expert()
    s = dd.DistillSettings(ipc=2, iterations=12, syn_steps=4, expert_epochs=1, max_start_epoch=2, lr_img=1.0,
                           lr_lr=0.01, lr_init=0.1, **switches)
    trajectories = [traj, traj.flip(0)]
    y_syn = y[dd.random_real_init(y.numpy(), 2, 2, 0)]
    alone = [dd.distill(model, trajectories, r.x_init, y_syn, s, r.seed) for r in _seed_runs(x, y, trajectories, [0, 1, 2])]
    together = dd.distill_seeds(model, _seed_runs(x, y, trajectories, [0, 1, 2]), y_syn, s)
    for a, t in zip(alone, together):
        assert torch.equal(a["x"], t["x"]) and a["lr"] == t["lr"] and a["history"] == t["history"]
    stacked = dd.distill_seeds(model, _seed_runs(x, y, trajectories, [0, 1, 2]), y_syn, s, stacked=True)
    for a, t in zip(alone, stacked):
        torch.testing.assert_close(t["x"], a["x"], atol=1e-4, rtol=0)
        assert t["lr"] == pytest.approx(a["lr"], rel=1e-4)
        assert [h["loss"] for h in t["history"]] == pytest.approx([h["loss"] for h in a["history"]], rel=1e-4)
        assert [(h["expert"], h["start_epoch"]) for h in t["history"]] == [(h["expert"], h["start_epoch"])
                                                                           for h in a["history"]]
    assert len({round(t["lr"], 6) for t in together}) == 3  # the seeds really differ


def test_seeds_distilled_together_resume_even_when_their_progress_files_disagree(tmp_path, monkeypatch):
    """A kill while the group writes its progress files can leave one seed a save behind: the
    lagging seed is brought level first, and every seed ends as in an uninterrupted run."""
    model, x, y, traj = _toy_expert()
    s = dd.DistillSettings(ipc=2, iterations=27, syn_steps=3, expert_epochs=1, max_start_epoch=2, lr_img=1.0,
                           lr_lr=0.01, lr_init=0.1, weight_perturbation=True, inner_momentum=True)
    trajectories, seeds = [traj, traj.flip(0)], [0, 1, 2]
    y_syn = y[dd.random_real_init(y.numpy(), 2, 2, 0)]
    clean = dd.distill_seeds(model, _seed_runs(x, y, trajectories, seeds), y_syn, s)
    real_loss, calls = dd.trajectory_loss, {"n": 0}

    def dies_after(iterations):
        def loss(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] > iterations * len(seeds):
                raise KeyboardInterrupt("killed")
            return real_loss(*args, **kwargs)
        return loss

    monkeypatch.setattr(dd, "trajectory_loss", dies_after(15))
    with pytest.raises(KeyboardInterrupt):
        dd.distill_seeds(model, _seed_runs(x, y, trajectories, seeds, tmp_path), y_syn, s)
    behind = (tmp_path / "seed1.pt").read_bytes()  # seed 1's state at iteration 10
    calls["n"] = 0
    monkeypatch.setattr(dd, "trajectory_loss", dies_after(10))  # resumed at 10, killed at 20
    with pytest.raises(KeyboardInterrupt):
        dd.distill_seeds(model, _seed_runs(x, y, trajectories, seeds, tmp_path), y_syn, s)
    (tmp_path / "seed1.pt").write_bytes(behind)
    assert [torch.load(tmp_path / f"seed{k}.pt", weights_only=True)["iteration"] for k in seeds] == [20, 10, 20]
    monkeypatch.setattr(dd, "trajectory_loss", real_loss)
    resumed = dd.distill_seeds(model, _seed_runs(x, y, trajectories, seeds, tmp_path), y_syn, s)
    for a, b in zip(clean, resumed):
        assert [h["iteration"] for h in b["history"]] == list(range(27))
        assert a["history"] == b["history"] and torch.equal(a["x"], b["x"]) and a["lr"] == b["lr"]


def test_convnet_norm_option_keeps_batchnorm_by_default():
    default = build_model({"arch": "convnet", "channels": [4]}, (1, 8, 8), 3)
    assert any(isinstance(m, nn.BatchNorm2d) for m in default.modules())
    inst = build_model({"arch": "convnet", "channels": [4], "norm": "instance"}, (1, 8, 8), 3)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in inst.modules())
    assert not list(inst.buffers())[2:]  # only the normalisation mean/std: no running statistics
    with pytest.raises(ValueError, match="allowed: batch, instance, none"):
        build_model({"arch": "convnet", "channels": [4], "norm": "layer"}, (1, 8, 8), 3)


def test_schema_mirrors_the_switches_and_norms():
    from lifelearn.models.convnet import NORMS

    shared = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())["$defs"]
    method = yaml.safe_load((REPO / "config" / "schemas" / "dataset_distillation.yaml").read_text())["$defs"]["method"]
    assert set(method["else"]["required"]) == {"experts", *dd.SWITCHES}
    assert shared["model"]["allOf"][1]["then"]["properties"]["norm"]["enum"] == list(NORMS)
    config = yaml.safe_load((REPO / "config" / "studies" / "dataset_distillation.yaml").read_text())["dataset_distillation"]
    assert config["methods"]["random"] == {"method": "random"}  # the baseline: an ordinary entry
    assert not any(config["methods"]["mtt"][k] for k in dd.SWITCHES)  # plain MTT: all switches off
    assert config["experts"]["sets"][config["methods"]["mtt"]["experts"]] == {
        "momentum": 0.0, "weight_decay": 0.0, "lr_decay": 1.0, "clip_schedule": [], "grad_penalty": 0.0}


def _section(**method):
    cfg = yaml.safe_load((REPO / "config" / "studies" / "dataset_distillation.yaml").read_text())["dataset_distillation"]
    cfg["methods"]["x"] = {**cfg["methods"]["mtt"], **method}
    return cfg


def test_inner_momentum_must_match_the_experts_optimiser():
    from lifelearn.studies.dataset_distillation import check_section

    check_section(_section())  # the shipped config is consistent
    check_section(_section(experts="smooth", inner_momentum=True))
    with pytest.raises(ValueError, match=r"methods\.x\.inner_momentum.*experts\.sets\.plain\.momentum"):
        check_section(_section(inner_momentum=True))  # momentum inner loop on momentum-free experts
    with pytest.raises(ValueError, match=r"methods\.x\.inner_momentum.*experts\.sets\.smooth\.momentum"):
        check_section(_section(experts="smooth", inner_momentum=False))
    with pytest.raises(ValueError, match=r"methods\.x\.experts"):
        check_section(_section(experts="nope"))
    cfg = _section()
    cfg["experts"]["per_seed"] = cfg["experts"]["num"] + 1
    with pytest.raises(ValueError, match=r"experts\.per_seed"):
        check_section(cfg)
    cfg = _section()
    cfg["experts"]["train"]["momentum"] = 0.9
    with pytest.raises(ValueError, match=r"experts\.train\.momentum"):
        check_section(cfg)


BATCHING_KEYS = [("evaluation", "batched_networks"), ("distill", "batched_seeds")]


@pytest.mark.parametrize("part, key", BATCHING_KEYS)
@pytest.mark.parametrize("value, at_ipc1, at_ipc10", [(1, 1, 1), (8, 8, 8), ({"ipc1": 30}, 30, 1),
                                                      ({"ipc1": 30, "ipc10": 4}, 30, 4)])
def test_batching_is_one_integer_or_one_per_named_ipc(part, key, value, at_ipc1, at_ipc10):
    from lifelearn.config import load_config, validate_config
    from lifelearn.studies.dataset_distillation import batched_networks, check_section, per_ipc

    cfg = _section()
    cfg[part][key] = value
    check_section(cfg)
    assert (per_ipc(cfg[part][key], 1), per_ipc(cfg[part][key], 10)) == (at_ipc1, at_ipc10)
    full = load_config(REPO / "config", "default")
    full["dataset_distillation"][part][key] = value
    validate_config(full, REPO / "config")
    assert batched_networks({}, 1) == 1  # not set: one by one


@pytest.mark.parametrize("part, key", BATCHING_KEYS)
def test_batching_of_an_unknown_ipc_or_bad_value_is_named(part, key):
    import copy

    from lifelearn.config import load_config, validate_config
    from lifelearn.studies.dataset_distillation import check_section

    cfg = _section()
    cfg[part][key] = {"ipc1": 30, "ipc50": 8}
    with pytest.raises(ValueError, match=rf"{part}\.{key}\.ipc50: no such IPC in "
                                         r"dataset_distillation\.ipc \(1, 10\)"):
        check_section(cfg)
    full = load_config(REPO / "config", "default")
    for bad in ({"ipc01": 3}, {"ipc1": 0}, {}, 0, {"one": 2}):
        wrong = copy.deepcopy(full)
        wrong["dataset_distillation"][part][key] = bad
        with pytest.raises(ValueError, match=rf"dataset_distillation\.{part}\.{key}"):
            validate_config(wrong, REPO / "config")


def test_each_seed_draws_its_own_experts_from_the_pool():
    from lifelearn.studies.dataset_distillation import expert_draw

    draws = [expert_draw(10, 5, s) for s in range(5)]
    assert all(len(set(d)) == 5 and all(0 <= i < 10 for i in d) for d in draws)
    assert draws[0] == expert_draw(10, 5, 0)  # seeded
    assert len({tuple(d) for d in draws}) > 1  # seeds differ in their experts
    assert expert_draw(4, 4, 3) == [0, 1, 2, 3]


def test_synthetic_set_is_a_dataset_with_the_real_val_and_test(tmp_path):
    from lifelearn.data import load_dataset
    from lifelearn.data.arrays import write_dataset
    from lifelearn.studies.dataset_distillation import write_synthetic

    real = {f"{k}_{s}": (np.random.default_rng(0).random((6, 1, 2, 2), dtype=np.float32) if k == "x"
                         else np.arange(6) % 3) for s in ("train", "val", "test") for k in ("x", "y")}
    meta = {"name": "toy", "num_classes": 3, "input_shape": [1, 2, 2], "mean": [0.5], "std": [0.3],
            "augment": "none", "source": "test", "splits": {"train": 6, "val": 6, "test": 6}, "split_seed": 0}
    write_dataset(tmp_path / "real", real, meta)
    x = np.full((3, 1, 2, 2), 0.25, np.float32)
    write_synthetic(tmp_path / "syn", tmp_path / "real", x, np.arange(3), 0.02, {"method": "m", "ipc": 1, "seed": 0})
    ds = load_dataset(tmp_path / "syn")
    assert np.array_equal(ds.x_train, x) and np.array_equal(ds.x_test, real["x_test"])
    assert ds.mean == (0.5,) and ds.name == "toy"
    saved = yaml.safe_load((tmp_path / "syn" / "meta.json").read_text())
    assert saved["lr"] == 0.02 and saved["splits"]["train"] == 3


def test_an_ipc_the_dataset_cannot_supply_is_named():
    from lifelearn.distill.dataset_distillation import check_ipc

    y = np.array([0] * 5 + [1] * 3 + [2] * 7)
    check_ipc(y, 3, 3, "toy")  # every class has 3 or more
    with pytest.raises(ValueError, match=r"dataset_distillation.ipc: IPC 4 needs 4 training images per class.*"
                                         r"toy's training split has fewer for class\(es\) \{1: 3\}"):
        check_ipc(y, 4, 3, "toy")


def test_plan_ablation_rows_run_their_seeds_without_control_and_the_main_rows_with_it():
    from lifelearn.config import load_config
    from lifelearn.jobs import Layout
    from lifelearn.studies import dataset_distillation as study

    cfg = load_config(REPO / "config")
    jobs = {j.rule: j for j in study.jobs(cfg, Layout("default"))}
    assert jobs["dd_distill_abl_weight_perturbation"].seeds == cfg["seeds"][:3]
    assert jobs["dd_distill_mtt"].seeds == cfg["seeds"]
    assert "seeds" not in jobs["dd_distill_abl_weight_perturbation"].spec["method_cfg"]
    assert jobs["dd_evaluate_abl_weight_perturbation"].spec["evaluation"]["control_lr_grid"] == []
    assert jobs["dd_evaluate_mtt"].spec["evaluation"]["control_lr_grid"] == cfg["dataset_distillation"]["evaluation"][
        "control_lr_grid"]
    assert len(jobs["dd_experts_smooth"].outputs["experts"]) == cfg["dataset_distillation"]["experts"]["num"]
    assert jobs["dd_distill_mtt"].spec["experts_per_seed"] == cfg["dataset_distillation"]["experts"]["per_seed"]
    assert "experts_per_seed" not in jobs["dd_distill_random"].spec  # the baseline reads no experts
