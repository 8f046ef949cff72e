"""Evaluation: classification and robustness metrics of trained models, and the continual-learning
metrics over accuracy matrices and evaluation streams (continual_metrics; the study lifelearn.studies.continual runs them)."""
