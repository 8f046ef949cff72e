"""Fine-tune: plain cross-entropy on the current task only (the lower bound)."""
from __future__ import annotations

from lifelearn.continual.template import Plugin


class Finetune(Plugin):
    name = "finetune"
