"""Evaluation: classification metrics (and, in later stages, robustness and continual metrics)."""
