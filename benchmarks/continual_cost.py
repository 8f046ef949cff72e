"""Cost of continual evaluation and of each strategy, measured in one process.

    python benchmarks/continual_cost.py [--data data/digits] [--repeats 3]

On the online class-incremental split-digits stream (MLP 100-100, batch 10, one pass):
(1) wall time of the stream with evaluation every k = 1 and k = 10 iterations (every seen
task on its fixed test subset), as a ratio to the same stream with evaluation only after
each task (k = 0); (2) training steps per second per strategy (evaluation excluded) and
its ratio to fine-tuning. Medians over repeats; one thread, CPU. Writes
benchmarks/results/continual_cost.json. Ratios, never timed asserts.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from lifelearn.continual.evaluation import ContinualEvaluator
from lifelearn.continual.scenarios import build_scenario
from lifelearn.continual.strategies import build_plugins
from lifelearn.continual.template import ContinualLearner
from lifelearn.data import load_dataset
from lifelearn.io import write_json
from lifelearn.models import build_model
from lifelearn.studies.continual import strategies_for_seed

ROOT = Path(__file__).resolve().parents[1]
TRAIN = {"epochs": 1, "batch_size": 10, "optimizer": "sgd", "lr": 0.1}
STRATEGIES = {
    "finetune": ({"finetune": {}}, False), "er": ({"er": {"buffer": 200}}, False),
    "uer": ({"uer": {"buffer": 200}}, False), "l2": ({"l2": {}}, False), "ewc": ({"ewc": {}}, False),
    "lwf": ({"lwf": {}}, False), "featkd": ({"featkd": {}}, False), "er+refresh": ({"er": {"buffer": 200}}, True),
    "single_task": ({"single_task": {}}, False),
    "synthetic_er": ({"synthetic_er": {"synthetic": "mtt_ipc10"}}, False),  # when the default DD set exists
}


def one_run(ds, strategies: dict, refresh: bool, every: int, seed: int,
            synthetic_root: Path | None = None) -> tuple[float, float, int]:
    """(wall seconds, training seconds, iterations) of one stream."""
    torch.manual_seed(seed)
    sc = build_scenario(ds, "class_incremental", 5, seed)
    model = build_model({"arch": "mlp", "hidden": [100, 100]}, ds.input_shape, ds.num_classes, ds.mean, ds.std)
    ev = ContinualEvaluator(sc, every, 1000, seed)
    plugins = build_plugins(strategies_for_seed(strategies, seed, synthetic_root), refresh)
    learner = ContinualLearner(model, sc, plugins, TRAIN, seed, ev)
    start = time.perf_counter()
    learner.fit()
    return time.perf_counter() - start, learner.train_seconds, learner.iteration


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(ROOT / "data" / "digits"))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--synthetic", default=str(ROOT / "checkpoints" / "default" / "dataset_distillation" / "synthetic"),
                        help="root of the dataset-distillation sets (synthetic_er is skipped without mtt_ipc10)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    ds = load_dataset(args.data)
    one_run(ds, {"er": {}}, True, 1, 99)  # warm-up (lazy imports, allocator)
    evals = {}
    for every in (0, 10, 1):
        evals[every] = statistics.median(one_run(ds, {"er": {"buffer": 200}}, False, every, s)[0]
                                         for s in range(args.repeats))
    steps = {}
    synthetic = Path(args.synthetic)
    for name, (strategies, refresh) in STRATEGIES.items():
        if name == "synthetic_er" and not all((synthetic / "mtt_ipc10" / f"seed{s}").exists() for s in range(args.repeats)):
            print(f"synthetic_er skipped: no {synthetic}/mtt_ipc10 (run the dataset_distillation study first)")
            continue
        runs = [one_run(ds, strategies, refresh, 0, s, synthetic) for s in range(args.repeats)]
        steps[name] = statistics.median(it / train for _, train, it in runs)
    result = {
        "stream": "online class-incremental split-digits, 5 tasks, batch 10, MLP 100-100, ER M=200",
        "wall_seconds_by_eval_every": {str(k): round(v, 4) for k, v in evals.items()},
        "eval_cost_ratio_k1": round(evals[1] / evals[0], 3),
        "eval_cost_ratio_k10": round(evals[10] / evals[0], 3),
        "train_steps_per_second": {k: round(v, 1) for k, v in steps.items()},
        "steps_per_second_ratio_to_finetune": {k: round(v / steps["finetune"], 3) for k, v in steps.items()},
        "repeats": args.repeats,
    }
    print(f"stream wall time, eval every k=1 / eval only at task ends: {result['eval_cost_ratio_k1']:.2f}x; "
          f"k=10: {result['eval_cost_ratio_k10']:.2f}x")
    for name, v in steps.items():
        print(f"{name:12s} {v:8.0f} train steps/s  ({v / steps['finetune']:.2f}x finetune)")
    write_json(ROOT / "benchmarks" / "results" / "continual_cost.json", result)


if __name__ == "__main__":
    main()
