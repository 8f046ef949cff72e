"""Progress of the long loops Lightning does not cover: dataset-distillation iterations
and expert training, continual streams, PGD evaluation over test batches.

    with progress("distill ipc10 seed0 iterations", total=s.iterations) as bar:
        for it in range(s.iterations):
            ...
            bar.update()

On an interactive terminal (stderr is a TTY) with the bar on, it is a tqdm bar. Otherwise,
as in a Snakemake job (whose stderr is its log, logs/<profile>/<rule>.log) or in CI, it is
one line to stderr,

    distill ipc10 seed0 iterations: 300/1000 (30%), 12.3 s, eta 28.7 s

at the marks of every 10% of the total, at most one per `interval` seconds, and always
the last one (`...: 1000/1000 (100%), 41.0 s`); nothing at all for a total of 0. The bar is
on unless `configure(bar=False)` (the config's cosmetic `progress_bar` key) or the
environment variable LIFELEARN_PROGRESS_BAR=0 turns it off.

Cost: `update()` is one addition and one integer comparison; the clock is read only at
the marks (every 10%; every 1% for the bar). Nothing here draws random numbers, so
results do not change with the progress output.
"""
from __future__ import annotations

import math
import os
import sys
import time
from typing import Callable, TextIO

INTERVAL = 10.0  # seconds: at most one line per interval (the last line is always written)
LINE_MARKS = 10  # a line may be written at every 1/LINE_MARKS of the total
BAR_MARKS = 100  # the bar is redrawn at every 1/BAR_MARKS of the total

_bar_on = os.environ.get("LIFELEARN_PROGRESS_BAR", "1").strip().lower() not in ("0", "false", "no", "off")


def configure(bar: bool) -> None:
    """Turn this process's terminal bar on or off (the config's `progress_bar`); lines
    where stderr is no terminal are written either way."""
    global _bar_on
    _bar_on = bool(bar)


def bar_enabled() -> bool:
    return _bar_on


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def format_line(label: str, n: int, total: int, elapsed: float, eta: float | None = None) -> str:
    """`<label>: n/total (pct%), elapsed s[, eta s]`."""
    line = f"{label}: {n}/{total} ({100 * n / total:.0f}%), {elapsed:.1f} s"
    return line if eta is None else f"{line}, eta {eta:.1f} s"


class Progress:
    """Progress of one loop of `total` steps (see the module docstring). `initial`: steps
    already done (a resumed loop; the eta uses the rate of this process's steps only).
    `interval`: seconds (default INTERVAL); `clock`: seconds now (default time.monotonic);
    `bar`: force the tqdm bar on or off (default: on a terminal when enabled)."""

    def __init__(self, label: str, total: int, *, initial: int = 0, stream: TextIO | None = None,
                 interval: float | None = None, clock: Callable[[], float] | None = None,
                 bar: bool | None = None):
        self.label, self.total, self.n = label, max(int(total), 0), int(initial)
        self.stream = sys.stderr if stream is None else stream
        self.interval = INTERVAL if interval is None else interval
        self.clock = time.monotonic if clock is None else clock
        self._first = self.n
        self._bar = None
        self._next = math.inf  # the step count at which update() next looks at the clock
        if self.total == 0 or self.n >= self.total:
            return
        self._start = self._last = self.clock()
        if bar if bar is not None else (_bar_on and _isatty(self.stream)):
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, initial=self.n, desc=self.label, file=self.stream,
                             dynamic_ncols=True, leave=True)
            self._marks = BAR_MARKS
        else:
            self._marks = LINE_MARKS
        self._next = self._mark_after(self.n)

    def _mark_after(self, n: int) -> int:
        """The first mark (a multiple of total / marks, rounded up) above n."""
        k = n * self._marks // self.total + 1
        return min(-(-k * self.total // self._marks), self.total)

    def add_total(self, extra: int) -> None:
        """Grow (or shrink) the total of a loop whose length is known only as it runs."""
        if self._next == math.inf or not extra:  # done, closed or empty
            return
        self.total = max(self.total + int(extra), self.n + 1)
        self._next = self._mark_after(self.n)
        if self._bar is not None:
            self._bar.total = self.total
            self._bar.refresh()

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.n >= self._next:
            self._at_mark()

    def _at_mark(self) -> None:
        done = self.n >= self.total
        self._next = math.inf if done else self._mark_after(self.n)
        if self._bar is not None:
            self._bar.update(min(self.n, self.total) - self._bar.n)
            if done:
                self.close()
            return
        now = self.clock()
        if done or now - self._last >= self.interval:
            self._last = now
            elapsed, steps = now - self._start, self.n - self._first
            eta = None if done or steps <= 0 else elapsed / steps * (self.total - self.n)
            print(format_line(self.label, min(self.n, self.total), self.total, elapsed, eta),
                  file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        self._next = math.inf

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress(label: str, total: int, **kwargs) -> Progress:
    """A Progress of `total` steps named `label` (keywords: see Progress)."""
    return Progress(label, total, **kwargs)
