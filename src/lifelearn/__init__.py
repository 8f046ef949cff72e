"""lifelearn: reproduce knowledge-distillation and continual-learning papers end to end."""
