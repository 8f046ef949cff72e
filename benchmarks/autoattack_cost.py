"""What the targeted DLR loss costs an AutoAttack evaluation: ART's own loss
(`loss_type="difference_logits_ratio"`, a Python loop over the samples) against
evaluate.autoattack.DifferenceLogitsRatio (the same formula vectorised), same model, data
and seed, in one process.

    python benchmarks/autoattack_cost.py [--samples 500] [--repeats 3]

The evaluation is the default profile's MTARD AutoAttack (`mtard.autoattack`: APGD-CE and
APGD-T with 9 targets, 100 iterations, eps 0.03, on the first `samples` MNIST-1D test
points) of a freshly initialised student of the study's architecture, labelled with its own
predictions so that every point is attacked by every stage (the loop's largest share; a
trained student leaves fewer points to the targeted stage). Variants alternate so drift
affects both alike; prints the median seconds of each and their ratio, checks both return
the same examples bit for bit, and writes benchmarks/results/autoattack_cost.json. One thread.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from unittest import mock

import numpy as np
import torch

from lifelearn.config import load_config
from lifelearn.data import load_dataset, prepare_dataset
from lifelearn.evaluate import autoattack as aa
from lifelearn.io import write_json
from lifelearn.models import build_model

ROOT = Path(__file__).resolve().parents[1]
ORIGINAL_ATTACK = aa._attack


def arts_dlr_attack(name, estimator, s, targeted):
    """evaluate.autoattack._attack with ART's own DLR loss (the way before issue 16)."""
    if name == "apgd-t":
        return aa.apgd(estimator, s, targeted, "difference_logits_ratio")
    return ORIGINAL_ATTACK(name, estimator, s, targeted)


def run_once(arts_loss: bool, model, x, y, cfg) -> tuple[float, np.ndarray, list]:
    start = time.perf_counter()
    with mock.patch.object(aa, "_attack", arts_dlr_attack if arts_loss else ORIGINAL_ATTACK):
        x_adv, _, stages = aa.autoattack(model, x, y, cfg, seed=0)
    return time.perf_counter() - start, x_adv.numpy(), stages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    study = load_config(ROOT / "config", "default")["mtard"]
    if not (ROOT / "data" / study["dataset"] / "meta.json").exists():
        prepare_dataset(study["dataset"], data_root=ROOT / "data")
    ds = load_dataset(ROOT / "data" / study["dataset"])
    torch.manual_seed(0)
    model = build_model(study["student"], ds.input_shape, ds.num_classes, ds.mean, ds.std).eval()
    x = torch.as_tensor(ds.x_test[: args.samples])
    with torch.no_grad():
        y = model(x).argmax(1)
    cfg = {**study["autoattack"], "samples": args.samples}
    seconds = {"arts_loss": [], "vectorised": []}
    examples = {}
    for _ in range(args.repeats):
        for variant in seconds:
            t, examples[variant], stages = run_once(variant == "arts_loss", model, x, y, cfg)
            seconds[variant].append(t)
    same = bool(np.array_equal(examples["arts_loss"], examples["vectorised"]))
    median = {k: statistics.median(v) for k, v in seconds.items()}
    ratio = median["arts_loss"] / median["vectorised"]
    print(f"AutoAttack on {args.samples} points (stages {stages}): ART's DLR {median['arts_loss']:.1f} s, "
          f"vectorised {median['vectorised']:.1f} s, {ratio:.2f}x; same examples: {same}")
    out = ROOT / "benchmarks" / "results" / "autoattack_cost.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    write_json(out, {"samples": args.samples, "repeats": args.repeats, "seconds": seconds, "median": median,
                     "ratio": ratio, "same_examples": same, "stages": stages})
    if not same:
        raise SystemExit("the vectorised DLR gave different examples from ART's")


if __name__ == "__main__":
    main()
