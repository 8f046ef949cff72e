"""Continual fine-tuning (PAPERS.md sections 5 and 6): task streams (scenarios), one
training template with plug-in hooks (template), strategies by name (strategies/), the
refresh-learning plug-in (refresh), continual evaluation (evaluation) and where a stream starts (starts); the study that
runs configurations over seeds is lifelearn.studies.continual."""
