"""Knowledge distillation: vanilla KD (kd.py) and the methods built on it."""
