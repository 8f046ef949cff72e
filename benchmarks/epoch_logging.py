"""What the per-epoch MLflow logging costs a Lightning fit: the row sent straight to the
loggers (train.fit.EpochRows, the pipeline's way) against Lightning's `self.log_dict` of
the same row (the way before issue 16), both into a real MLflow run, same run.

    python benchmarks/epoch_logging.py [--epochs 60] [--repeats 3]

The fit is one seed of the default profile's vanilla-KD student (`tgeo_kd`: MLP on 720
MNIST-1D samples, batch 128, 60 epochs, validation every epoch), the teacher the seed-0
checkpoint when present, else a fresh network of its architecture (same cost). Variants
alternate so drift affects both alike; prints the median seconds of each, their ratio,
and checks both leave the same MLflow series (keys, steps; values to float32 rounding,
Lightning's stored precision). Writes benchmarks/results/epoch_logging.json. One thread.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.loggers import MLFlowLogger

from lifelearn import tracking
from lifelearn.data import load_dataset, prepare_dataset
from lifelearn.io import write_json
from lifelearn.models import build_model
from lifelearn.studies.tgeo_kd import METHODS
from lifelearn.train.data import InMemoryDataModule
from lifelearn.train.fit import EpochRows, make_trainer
from lifelearn.train.runner import training_subset

from tgeo_kd_epoch_cost import study_config, teacher_for

ROOT = Path(__file__).resolve().parents[1]


def fit_once(via_log_dict: bool, cfg: dict, ds, teacher, epochs: int, tmp: Path, uri: str) -> tuple[float, dict]:
    """Seconds of one fit and the MLflow series it left ({key: [(step, value)]})."""
    pl.seed_everything(0, workers=True)
    subset = training_subset(ds, cfg["train"].get("train_samples"), 0)
    model = build_model(cfg["student"], ds.input_shape, ds.num_classes, ds.mean, ds.std)
    train = {**cfg["train"], "epochs": epochs}
    method_cfg = {k: v for k, v in cfg["methods"]["kd"].items() if k != "tune"}
    module = METHODS["kd"].build(model, teacher, subset, train, method_cfg, 0)
    if via_log_dict:  # the module as it logged before: Lightning's result collection
        end = module.on_train_epoch_end

        def on_train_epoch_end():
            end()
            module.log_dict({k: float(v) for k, v in module.history[-1].items() if k != "epoch"}, on_epoch=True)
        module.on_train_epoch_end = on_train_epoch_end
    with tracking.tracked_run(tracking.RunContext(uri, "bench"), "epoch_logging", "kd", {}, {}) as run:
        logger = MLFlowLogger(experiment_name="epoch_logging", run_id=run.run_id, tracking_uri=uri)
        trainer = make_trainer(epochs, None, logger, {"accelerator": "cpu", "progress_bar": False})
        if via_log_dict:
            trainer.callbacks = [c for c in trainer.callbacks if not isinstance(c, EpochRows)]
        datamodule = InMemoryDataModule(subset, train["batch_size"], seed=0)
        start = time.perf_counter()
        trainer.fit(module, datamodule=datamodule)
        seconds = time.perf_counter() - start
        client = logger.experiment
        series = {k: sorted((p.step, p.value) for p in client.get_metric_history(run.run_id, k))
                  for k in client.get_run(run.run_id).data.metrics}
    return seconds, series


def same_series(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(
        [s for s, _ in a[k]] == [s for s, _ in b[k]]
        and all(abs(x - y) <= 1e-6 * max(1.0, abs(x)) for (_, x), (_, y) in zip(a[k], b[k])) for k in a)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = study_config()
    ds = load_dataset(prepare_dataset(cfg["dataset"], ROOT / "data"))
    teacher = teacher_for(cfg, ds)
    times = {"log_dict": [], "epoch_rows": []}
    series = {}
    with tempfile.TemporaryDirectory() as tmp:
        uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
        for _ in range(args.repeats):
            for name in times:
                seconds, series[name] = fit_once(name == "log_dict", cfg, ds, teacher, args.epochs, Path(tmp), uri)
                times[name].append(seconds)
    median = {k: statistics.median(v) for k, v in times.items()}
    result = {"epochs": args.epochs, "repeats": args.repeats, "seconds": times, "median_s": median,
              "ratio_log_dict_over_epoch_rows": median["log_dict"] / median["epoch_rows"],
              "same_mlflow_series": same_series(series["log_dict"], series["epoch_rows"])}
    for name, s in median.items():
        print(f"{name:>10}: {s:.2f} s per fit of {args.epochs} epochs ({1000 * s / args.epochs:.1f} ms per epoch)")
    print(f"log_dict / epoch rows: {result['ratio_log_dict_over_epoch_rows']:.2f}x; "
          f"same MLflow series: {result['same_mlflow_series']}")
    write_json(ROOT / "benchmarks" / "results" / "epoch_logging.json", result)


if __name__ == "__main__":
    main()
