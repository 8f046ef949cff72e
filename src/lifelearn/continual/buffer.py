"""Reservoir-sampling replay buffer (Vitter 1985; ER as in Chaudhry et al. 2019):
after n stream samples, every one of them is in the buffer with probability M / n."""
from __future__ import annotations

import torch


class ReservoirBuffer:
    """Fixed-capacity buffer of (x, y, task id) kept by reservoir sampling."""

    def __init__(self, capacity: int, generator: torch.Generator):
        if capacity < 1:
            raise ValueError("buffer capacity must be >= 1")
        self.capacity, self.generator = int(capacity), generator
        self.seen = 0
        self.x = self.y = self.t = None

    def __len__(self) -> int:
        return min(self.seen, self.capacity)

    def add(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor) -> None:
        """Offer each sample of a batch in turn: fill while not full, else replace slot
        j ~ U{0..n-1} when j < capacity (n = samples seen so far, this one included)."""
        if self.x is None:
            self.x = torch.empty((self.capacity, *x.shape[1:]), dtype=x.dtype)
            self.y = torch.empty(self.capacity, dtype=y.dtype)
            self.t = torch.empty(self.capacity, dtype=t.dtype)
        for i in range(len(x)):
            self.seen += 1
            if self.seen <= self.capacity:
                slot = self.seen - 1
            else:
                slot = int(torch.randint(self.seen, (1,), generator=self.generator))
                if slot >= self.capacity:
                    continue
            self.x[slot], self.y[slot], self.t[slot] = x[i], y[i], t[i]

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """n stored samples drawn uniformly without replacement (all when fewer); None when empty."""
        size = len(self)
        if size == 0:
            return None
        idx = torch.randperm(size, generator=self.generator)[:n]
        return self.x[idx], self.y[idx], self.t[idx]
