"""Model checkpoints that rebuild themselves: architecture spec + weights, loaded with
torch.load(weights_only=True) (no pickled code is ever executed)."""
from __future__ import annotations

import os

import torch

from lifelearn.io import save_torch
from lifelearn.models import build_model


def save_model(path: str | os.PathLike, model, spec: dict, input_shape, num_classes: int) -> None:
    payload = {
        "spec": dict(spec),
        "input_shape": list(input_shape),
        "num_classes": int(num_classes),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    save_torch(path, payload)


def load_model(path: str | os.PathLike, map_location="cpu"):
    """Rebuild the saved architecture and load its weights (normalisation buffers included)."""
    payload = torch.load(path, map_location=map_location, weights_only=True)
    model = build_model(payload["spec"], payload["input_shape"], payload["num_classes"])
    try:
        model.load_state_dict(payload["state_dict"])
    except RuntimeError as err:
        raise ValueError(f"checkpoint {path} does not match architecture {payload['spec']}: {err}") from err
    return model
