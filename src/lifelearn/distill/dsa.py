"""Differentiable siamese augmentation (DSA; Zhao & Bilen 2021) as MTT uses it
(utils.DiffAugment with ParamDiffAug, aug_mode 'S', strategy
'color_crop_cutout_flip_scale_rotate'), built from kornia.augmentation.

Each call picks ONE of the strategy's transforms (MTT's mode 'S') and draws its parameters
once; every batch passed in the same call (the siamese pair) gets exactly those parameters.
The draw is seeded by `seed` (torch's RNG forked, so nothing else's randomness moves), so
the same seed gives the same augmentation. Every transform is differentiable in the images.

MTT's ranges (ParamDiffAug): flip p 0.5, scale 1.2, rotate 15 degrees, crop/pad 0.125,
cutout 0.5 of the side, brightness 1.0, saturation 2.0, contrast 0.5. Departures: kornia's
definitions of the colour transforms (brightness as an additive shift in [-0.5, 0.5],
contrast and saturation as factors in [0.5, 1.5] and [0, 2]; saturation only for 3 channels)
and of crop (a translation by up to 0.125 of the size with zero fill, as MTT's pad-and-crop).
"""
from __future__ import annotations

import torch

MTT_STRATEGY = "color_crop_cutout_flip_scale_rotate"


def _transforms(name: str, channels: int):
    import kornia.augmentation as K

    if name == "color":
        ops = [K.RandomBrightness(brightness=(0.5, 1.5), p=1.0)]
        if channels == 3:
            ops.append(K.RandomSaturation(saturation=(0.0, 2.0), p=1.0))
        return ops + [K.RandomContrast(contrast=(0.5, 1.5), p=1.0)]
    if name == "crop":
        return [K.RandomAffine(degrees=0.0, translate=(0.125, 0.125), p=1.0)]
    if name == "cutout":
        return [K.RandomErasing(scale=(0.25, 0.25), ratio=(1.0, 1.0), value=0.0, p=1.0)]
    if name == "flip":
        return [K.RandomHorizontalFlip(p=0.5)]
    if name == "scale":
        return [K.RandomAffine(degrees=0.0, scale=(1 / 1.2, 1.2, 1 / 1.2, 1.2), p=1.0)]
    if name == "rotate":
        return [K.RandomRotation(degrees=15.0, p=1.0)]
    raise ValueError(f"dataset_distillation.dsa_strategy: unknown transform {name!r}; "
                     f"allowed: color, crop, cutout, flip, scale, rotate")


class SiameseAugment:
    """`aug(x1, x2, ..., seed=s)`: the same random transform, same parameters, on every batch
    (all of one shape (N, C, H, W)); returns one tensor for one batch, else a list."""

    def __init__(self, strategy: str = MTT_STRATEGY, channels: int = 3):
        import kornia.augmentation as K

        names = [n for n in strategy.split("_") if n]
        if not names:
            raise ValueError("dataset_distillation.dsa_strategy: empty strategy")
        self.names = names
        self.ops = [K.AugmentationSequential(*_transforms(n, channels)) for n in names]

    def __call__(self, *batches: torch.Tensor, seed: int):
        shape = batches[0].shape
        if any(b.shape != shape for b in batches):
            raise ValueError(f"siamese batches must share one shape, got {[tuple(b.shape) for b in batches]}")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            op = self.ops[int(torch.randint(len(self.ops), (1,)))]
            params = op.forward_parameters(shape)
        out = [op(b, params=params) for b in batches]
        return out[0] if len(out) == 1 else out


def build(enabled: bool, strategy: str, channels: int) -> SiameseAugment | None:
    """The DSA of the `dsa` / `dsa_strategy` config keys, or None when off."""
    return SiameseAugment(strategy, channels) if enabled else None
