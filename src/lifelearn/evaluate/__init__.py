"""Evaluation: classification and robustness metrics of trained models, and the continual-learning
metrics over accuracy matrices and evaluation streams (continual_metrics; the study lifelearn.studies.continual runs them)."""
from __future__ import annotations

SPLITS = ("train", "val", "test")


def metric_range(name: str) -> tuple[float, float]:
    """(low, high): every value metric `name` can take, as the module that computes it
    declares: a continual metric by its key, a classification or robustness metric by its
    key after the split prefix (test_acc -> acc). KeyError for a metric declared nowhere."""
    from lifelearn.evaluate import autoattack, classification, continual_metrics, robustness

    declared = continual_metrics.metric_range(name)
    split, _, key = name.partition("_")
    if declared is None and split in SPLITS:
        declared = (robustness.METRIC_RANGES.get(key) or autoattack.METRIC_RANGES.get(key)
                    or classification.METRIC_RANGES.get(key))
    if declared is None:
        raise KeyError(f"metric {name!r} has no declared range (lifelearn.evaluate.*.METRIC_RANGES)")
    return declared
