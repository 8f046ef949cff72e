"""Reservoir-sampling replay buffer (Vitter 1985; ER as in Chaudhry et al. 2019):
after n stream samples, every one of them is in the buffer with probability M / n."""
from __future__ import annotations

import torch


class ReservoirBuffer:
    """Fixed-capacity buffer of (x, y, task id) kept by reservoir sampling, and optionally
    each sample's logits at insertion `z` (DER++, Buzzega et al. 2020; Mammoth's
    utils/buffer.py keeps them in the same slots as the examples)."""

    def __init__(self, capacity: int, generator: torch.Generator):
        if capacity < 1:
            raise ValueError("buffer capacity must be >= 1")
        self.capacity, self.generator = int(capacity), generator
        self.seen = 0
        self.x = self.y = self.t = self.z = None

    def __len__(self) -> int:
        return min(self.seen, self.capacity)

    def add(self, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor, z: torch.Tensor | None = None) -> None:
        """Offer each sample of a batch in turn: fill while not full, else replace slot
        j ~ U{0..n-1} when j < capacity (n = samples seen so far, this one included).
        `z` (logits, one row a sample) is stored with its sample when given."""
        if self.x is None:
            self.x = torch.empty((self.capacity, *x.shape[1:]), dtype=x.dtype)
            self.y = torch.empty(self.capacity, dtype=y.dtype)
            self.t = torch.empty(self.capacity, dtype=t.dtype)
            if z is not None:
                self.z = torch.empty((self.capacity, *z.shape[1:]), dtype=z.dtype)
        if (z is None) != (self.z is None):
            raise ValueError("a buffer keeps logits for every sample or for none")
        for i in range(len(x)):
            self.seen += 1
            if self.seen <= self.capacity:
                slot = self.seen - 1
            else:
                slot = int(torch.randint(self.seen, (1,), generator=self.generator))
                if slot >= self.capacity:
                    continue
            self.x[slot], self.y[slot], self.t[slot] = x[i], y[i], t[i]
            if z is not None:
                self.z[slot] = z[i]

    def sample_indices(self, n: int) -> torch.Tensor | None:
        """Slots of n stored samples drawn uniformly without replacement (all when fewer); None when empty."""
        size = len(self)
        if size == 0:
            return None
        return torch.randperm(size, generator=self.generator)[:n]

    def sample(self, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None:
        """n stored samples drawn uniformly without replacement (all when fewer); None when empty."""
        idx = self.sample_indices(n)
        if idx is None:
            return None
        return self.x[idx], self.y[idx], self.t[idx]
