"""Backbones (build_model), in-model normalisation, and self-describing checkpoints."""
from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from lifelearn.models import build_model, model_names
from lifelearn.models.checkpoint import load_model, save_model

# (spec, input_shape): every arch on every input kind it accepts; resnet18 kept narrow.
CASES = [
    ({"arch": "mlp", "hidden": [16, 8]}, (1, 8, 8)),
    ({"arch": "mlp", "hidden": [16]}, (1, 40)),
    ({"arch": "convnet", "channels": [4, 8]}, (1, 40)),
    ({"arch": "convnet", "channels": [4, 8]}, (1, 8, 8)),
    ({"arch": "resnet18", "width": 4}, (3, 32, 32)),
]
IDS = [f"{s['arch']}-{'x'.join(map(str, shape))}" for s, shape in CASES]


def _expected_feature_dim(spec: dict, input_shape) -> int:
    """The penultimate width, from the spec (written out, not read from the model)."""
    if spec["arch"] == "mlp":
        return spec["hidden"][-1]
    if spec["arch"] == "convnet":
        return spec["channels"][-1]
    return 8 * spec["width"]  # resnet18: stages w, 2w, 4w, 8w


@pytest.mark.parametrize("spec,input_shape", CASES, ids=IDS)
def test_shapes_features_and_head(spec, input_shape):
    torch.manual_seed(0)
    n, classes = 5, 7
    model = build_model(spec, input_shape, classes).eval()
    x = torch.rand(n, *input_shape)
    with torch.no_grad():
        logits = model(x)
        feats = model.features(x)
        via_head = model.head(feats)
    assert logits.shape == (n, classes)
    assert model.feature_dim == _expected_feature_dim(spec, input_shape)
    assert feats.shape == (n, model.feature_dim)
    assert isinstance(model.head, nn.Linear)
    assert (model.head.in_features, model.head.out_features) == (model.feature_dim, classes)
    assert torch.equal(logits, via_head)
    # the head really is the last step: replacing it changes the logits accordingly
    with torch.no_grad():
        model.head.weight.zero_()
        model.head.bias.copy_(torch.arange(classes, dtype=torch.float32))
        assert torch.equal(model(x), torch.arange(classes, dtype=torch.float32).expand(n, classes))


def test_mlp_feature_matches_hand_computation():
    """MLP features = relu(W flatten(x) + b) on the normalised input, by hand."""
    torch.manual_seed(0)
    mean, std = [0.25], [0.5]
    model = build_model({"arch": "mlp", "hidden": [3]}, (1, 2, 2), 2, mean, std)
    lin = model.body[1]
    x = torch.rand(4, 1, 2, 2)
    z = ((x - 0.25) / 0.5).reshape(4, 4)
    expected = torch.clamp(z @ lin.weight.T + lin.bias, min=0)
    assert torch.allclose(model.features(x), expected, atol=1e-6)


NORM_CASES = [
    ({"arch": "mlp", "hidden": [6]}, (2, 3, 3), [0.1, 0.7], [0.2, 0.5]),
    ({"arch": "convnet", "channels": [4]}, (2, 10), [0.3, 0.6], [0.25, 0.1]),
    ({"arch": "convnet", "channels": [4, 4]}, (3, 6, 6), [0.1, 0.5, 0.9], [0.2, 0.3, 0.4]),
    ({"arch": "resnet18", "width": 2}, (3, 8, 8), [0.49, 0.48, 0.45], [0.25, 0.24, 0.26]),
]


@pytest.mark.parametrize("spec,input_shape,mean,std", NORM_CASES,
                         ids=[f"{c[0]['arch']}-{len(c[1]) - 1}d" for c in NORM_CASES])
def test_normalisation_inside_model(spec, input_shape, mean, std):
    torch.manual_seed(0)
    normed = build_model(spec, input_shape, 4, mean, std).eval()
    plain = build_model(spec, input_shape, 4).eval()
    weights = {k: v for k, v in normed.state_dict().items() if k not in ("mean", "std")}
    missing, unexpected = plain.load_state_dict(weights, strict=False)
    assert sorted(missing) == ["mean", "std"] and not unexpected

    x = torch.rand(6, *input_shape)
    view = (1, len(mean)) + (1,) * (len(input_shape) - 1)
    x_std = (x - torch.tensor(mean).view(view)) / torch.tensor(std).view(view)
    with torch.no_grad():
        assert torch.allclose(normed(x), plain(x_std), atol=1e-5)
        # and the normalisation is not a no-op: the plain model on raw x differs
        assert not torch.allclose(normed(x), plain(x), atol=1e-3)
    # the statistics are buffers (saved in state_dict, not trained)
    assert "mean" in normed.state_dict() and "std" in normed.state_dict()
    assert all(p is not normed.mean and p is not normed.std for p in normed.parameters())


def test_mean_std_must_have_one_value_per_channel():
    with pytest.raises(ValueError, match="3 values"):
        build_model({"arch": "convnet"}, (3, 8, 8), 10, mean=[0.5], std=[0.5])


def test_unknown_arch_names_allowed():
    assert model_names() == ["convnet", "mlp", "resnet18"]
    with pytest.raises(ValueError) as err:
        build_model({"arch": "vgg16"}, (3, 32, 32), 10)
    msg = str(err.value)
    assert "vgg16" in msg
    for name in ("convnet", "mlp", "resnet18"):
        assert name in msg
    with pytest.raises(ValueError, match="resnet18"):
        build_model({}, (3, 32, 32), 10)


@pytest.mark.parametrize("spec,input_shape", [
    ({"arch": "convnet"}, (1, 4, 4, 4)),
    ({"arch": "convnet"}, (1,)),
    ({"arch": "resnet18"}, (3, 32)),
    ({"arch": "resnet18"}, (3, 4, 8, 8)),
])
def test_wrong_input_rank_rejected(spec, input_shape):
    with pytest.raises(ValueError, match=spec["arch"]):
        build_model(spec, input_shape, 10)


# --- checkpoints -----------------------------------------------------------------

def _trained_looking_convnet(spec, shape, mean, std):
    """A convnet whose BatchNorm running stats and weights are not at their init."""
    torch.manual_seed(1)
    model = build_model(spec, shape, 5, mean, std)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.rand(16, *shape))
    return model.eval()


def test_checkpoint_round_trip(tmp_path):
    spec, shape, mean, std = {"arch": "convnet", "channels": [4, 6]}, (2, 8, 8), [0.2, 0.4], [0.3, 0.35]
    model = _trained_looking_convnet(spec, shape, mean, std)
    bn = model.body[1]
    assert not torch.equal(bn.running_mean, torch.zeros_like(bn.running_mean))
    path = tmp_path / "sub" / "model.pt"
    save_model(path, model, spec, shape, 5)
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["model.pt"]  # no temp file left

    loaded = load_model(path)
    sd, sd2 = model.state_dict(), loaded.state_dict()
    assert sd.keys() == sd2.keys()
    for k in sd:
        assert torch.equal(sd[k], sd2[k]), k
    assert torch.equal(loaded.mean.flatten(), torch.tensor(mean))
    x = torch.rand(7, *shape)
    with torch.no_grad():
        assert torch.equal(model(x), loaded.eval()(x))


def test_checkpoint_is_plain_weights(tmp_path):
    spec, shape = {"arch": "mlp", "hidden": [5]}, (1, 3, 3)
    model = build_model(spec, shape, 4, [0.5], [0.25])
    path = tmp_path / "m.pt"
    save_model(path, model, spec, shape, 4)
    payload = torch.load(path, weights_only=True)
    assert payload["spec"] == spec
    assert payload["input_shape"] == [1, 3, 3]
    assert payload["num_classes"] == 4
    assert set(payload["state_dict"]) == set(model.state_dict())
    assert torch.equal(payload["state_dict"]["std"].flatten(), torch.tensor([0.25]))


def test_checkpoint_with_mismatched_spec_raises(tmp_path):
    spec, shape = {"arch": "convnet", "channels": [4, 8]}, (1, 8, 8)
    model = build_model(spec, shape, 3)
    path = tmp_path / "bad.pt"
    torch.save({"spec": {"arch": "convnet", "channels": [6, 8]}, "input_shape": list(shape), "num_classes": 3,
                "state_dict": model.state_dict()}, path)
    with pytest.raises(ValueError, match=re.escape(str(path))):
        load_model(path)
    # a wrong class count does not fit either
    path2 = tmp_path / "bad2.pt"
    torch.save({"spec": spec, "input_shape": list(shape), "num_classes": 4, "state_dict": model.state_dict()}, path2)
    with pytest.raises(ValueError, match=re.escape(str(path2))):
        load_model(path2)


# ----------------------------------------------------------------- max pooling by 2 (1-D)
def _pool_inputs():
    """[N, C, L] inputs with ties (ReLU zeros, equal positive pairs), NaN in either slot of a
    pair and in both, and an odd length."""
    torch.manual_seed(0)
    out = []
    for shape in [(4, 3, 10), (3, 2, 9), (2, 16, 40)]:
        x = torch.randn(shape).relu()
        x[0, 0, :4] = 1.5  # two tied pairs at a positive value
        out.append(x)
        x = x.clone()
        x[1, 0, 2], x[1, 1, 5], x[1, 1, 6], x[1, 1, 7] = float("nan"), float("nan"), float("nan"), float("nan")
        out.append(x)
    return out


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal bit for bit, NaN where the other is NaN."""
    return torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num())


@pytest.mark.parametrize("x", _pool_inputs(), ids=lambda x: "x".join(map(str, x.shape)) + ("-nan" if x.isnan().any() else ""))
def test_halving_max_pool_equals_nn_max_pool_bit_for_bit(x):
    """Values, gradients and second derivatives of HalvingMaxPool1d equal nn.MaxPool1d(2)'s
    exactly, ties (first maximum kept), NaN (the last NaN kept) and odd lengths included."""
    from lifelearn.models.pooling import HalvingMaxPool1d

    ours, reference = HalvingMaxPool1d(), nn.MaxPool1d(2)
    x = x.clone().requires_grad_()
    y_ours, y_ref = ours(x), reference(x)
    assert _same(y_ours, y_ref)
    g = torch.randn_like(y_ref)
    (g_ours,) = torch.autograd.grad(y_ours, x, g, create_graph=True)
    (g_ref,) = torch.autograd.grad(y_ref, x, g, create_graph=True)
    assert torch.equal(g_ours, g_ref)
    assert (g_ref == 0).sum() >= x.numel() - y_ref.numel()  # one element of each window gets it

    def second(pool):
        (gx,) = torch.autograd.grad((pool(x) ** 2).sum(), x, create_graph=True)
        return torch.autograd.grad((gx ** 2).sum(), x)[0]

    assert _same(second(ours), second(reference))
    with torch.no_grad():  # no gradient: PyTorch's own kernel, the same values
        assert _same(ours(x), y_ref)


def test_convnet_1d_trains_as_with_nn_max_pool():
    """A 1-D ConvNet (BatchNorm, two pools) gives the same loss and parameter gradients bit
    for bit with HalvingMaxPool1d as with nn.MaxPool1d(2), also for an input gradient (PGD)."""
    import copy

    from torch.nn import functional as F

    from lifelearn.models.pooling import HalvingMaxPool1d

    torch.manual_seed(0)
    ours = build_model({"arch": "convnet", "channels": [8, 16]}, (1, 40), 10)
    assert sum(isinstance(m, HalvingMaxPool1d) for m in ours.modules()) == 2
    reference = copy.deepcopy(ours)
    for i, layer in enumerate(reference.body):
        if isinstance(layer, HalvingMaxPool1d):
            reference.body[i] = nn.MaxPool1d(2)
    x, y = torch.rand(32, 1, 40).requires_grad_(), torch.randint(10, (32,))
    results = []
    for model in (ours, reference):
        loss = F.cross_entropy(model(x), y)
        results.append((loss, torch.autograd.grad(loss, [x, *model.parameters()])))
    assert torch.equal(results[0][0], results[1][0])
    assert all(torch.equal(a, b) for a, b in zip(results[0][1], results[1][1]))
    assert torch.equal(ours.state_dict()["body.1.running_mean"], reference.state_dict()["body.1.running_mean"])


def test_checkpoints_of_equal_weights_are_equal_bytes(tmp_path):
    """save_model through lifelearn.io.save_torch: the same weights saved twice, to
    different paths, give byte-identical files (so their md5s in the protocol ledger compare
    across runs), and they load back."""
    import hashlib

    torch.manual_seed(0)
    model = build_model({"arch": "convnet", "channels": [4, 8]}, (1, 40), 3)
    spec = {"arch": "convnet", "channels": [4, 8]}
    paths = [tmp_path / "a" / "seed0.pt", tmp_path / "b" / "other.pt"]
    for path in paths:
        save_model(path, model, spec, (1, 40), 3)
    digests = {hashlib.md5(p.read_bytes()).hexdigest() for p in paths}
    assert len(digests) == 1
    loaded = load_model(paths[1])
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
