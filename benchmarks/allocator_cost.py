"""What glibc's default malloc thresholds cost the pipeline's heavy loops: each case in a
fresh process with glibc's defaults against one that called
lifelearn.allocator.keep_freed_memory() first, alternating, same work and seeds.

    python benchmarks/allocator_cost.py [--repeats 3] [--cases autoattack mtard_epoch dd_evaluation]

Cases (the default profile's settings, one thread):
  autoattack      AutoAttack (APGD-CE, APGD-T x 9, 100 iterations) on the first 500 MNIST-1D
                  test points, a fresh MTARD student labelled with its own predictions
  mtard_epoch     one MTARD training epoch (benchmarks/max_pool_cost.py's loop)
  dd_evaluation   one dataset-distillation evaluation network, IPC 10, 300 of its 1000 epochs
Malloc settings are per process, so every measurement is its own process (start-up and a
warm-up call not timed). Each run prints a digest of its result: both settings must give
the same. Prints the median seconds and the ratio per case and writes
benchmarks/results/allocator_cost.json.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CASES = ("autoattack", "mtard_epoch", "dd_evaluation")
SETTINGS = ("glibc_defaults", "keep_freed_memory")


def digest(tensor) -> str:
    return hashlib.md5(tensor.detach().contiguous().numpy().tobytes()).hexdigest()


def run_case(case: str) -> tuple[float, str]:
    """(seconds, result digest) of one timed run of `case` in this process."""
    import torch

    from lifelearn.config import load_config
    from lifelearn.data import load_dataset, prepare_dataset

    torch.set_num_threads(1)
    cfg = load_config(ROOT / "config", "default")
    name = "digits" if case == "dd_evaluation" else cfg["mtard"]["dataset"]
    if not (ROOT / "data" / name / "meta.json").exists():
        prepare_dataset(name, data_root=ROOT / "data")
    ds = load_dataset(ROOT / "data" / name)
    if case == "dd_evaluation":
        return _dd_evaluation(cfg, ds)
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from max_pool_cost import autoattack_case, mtard_epoch_case

    run = autoattack_case(cfg, ds, 500) if case == "autoattack" else mtard_epoch_case(cfg, ds)
    if case == "autoattack":
        autoattack_case(cfg, ds, 50)()  # warm-up: first calls
    else:
        run()
    seconds, result = run()
    return seconds, digest(result)


def _dd_evaluation(cfg: dict, ds) -> tuple[float, str]:
    from dataclasses import replace

    import numpy as np

    from lifelearn.studies.dataset_distillation import train_on_synthetic

    section = cfg["dataset_distillation"]
    idx = np.concatenate([np.flatnonzero(ds.y_train == c)[:10] for c in range(ds.num_classes)])
    synthetic = replace(ds, x_train=ds.x_train[idx], y_train=ds.y_train[idx])
    train = {**section["evaluation"]["train"], "epochs": 300}
    train_on_synthetic(synthetic, section["model"], {**train, "epochs": 20}, 0.01, 0, 100)  # warm-up
    start = time.perf_counter()
    metrics, history = train_on_synthetic(synthetic, section["model"], train, 0.01, 0, 100)
    seconds = time.perf_counter() - start
    return seconds, hashlib.md5(json.dumps([metrics, history], sort_keys=True).encode()).hexdigest()


def child(case: str, setting: str) -> None:
    if setting == "keep_freed_memory":
        from lifelearn.allocator import keep_freed_memory

        if not keep_freed_memory():
            raise SystemExit("keep_freed_memory: not on glibc")
    seconds, result = run_case(case)
    print(json.dumps({"seconds": seconds, "digest": result}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=CASES)
    parser.add_argument("--child", nargs=2, metavar=("CASE", "SETTING"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    rows = []
    for case in args.cases:
        seconds, digests = {s: [] for s in SETTINGS}, set()
        for _ in range(args.repeats):
            for setting in SETTINGS:
                out = subprocess.run([sys.executable, __file__, "--child", case, setting], check=True,
                                     capture_output=True, text=True).stdout
                result = json.loads(out.strip().splitlines()[-1])
                seconds[setting].append(result["seconds"])
                digests.add(result["digest"])
        median = {s: statistics.median(v) for s, v in seconds.items()}
        row = {"case": case, "seconds": seconds, "median": median,
               "ratio": median["glibc_defaults"] / median["keep_freed_memory"], "same_result": len(digests) == 1}
        rows.append(row)
        print(f"{case:14s} glibc defaults {median['glibc_defaults']:7.2f} s, keep_freed_memory "
              f"{median['keep_freed_memory']:7.2f} s, {row['ratio']:.2f}x; same result: {row['same_result']}",
              flush=True)
    out = ROOT / "benchmarks" / "results" / "allocator_cost.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"repeats": args.repeats, "cases": rows}, indent=1))
    if not all(r["same_result"] for r in rows):
        raise SystemExit("keep_freed_memory changed a result")


if __name__ == "__main__":
    main()
