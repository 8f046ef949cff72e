"""Training: the in-memory data module, the Lightning classifier, and `fit`."""
