"""Where a job's wall time goes: start-up (interpreter and imports until the job function
starts), data loading, training, evaluation, MLflow logging, writing outputs, and the rest
(issue 16, part 1).

One `PhaseTimer` is active per job process (`job_phases`, entered by the job's glue); the
library marks its seams with `phase(name)` / `@timed(name)` (lifelearn.data load_dataset,
the training loops, the evaluators, lifelearn.tracking, lifelearn.io's writers), which cost
nothing when no timer is active (tests, notebooks). Time is split exclusively: a phase
nested in another (a metric logged during training) counts for the inner one only, so the
phases add up to the job's wall time. `job_phases` writes the split beside Snakemake's
benchmark file of the job (`logs/<profile>/benchmarks/<rule>.phases.json`), which
lifelearn.pipeline_cost reads next to the benchmark .tsv. Light imports only (psutil
is loaded by `startup_seconds` alone): every job imports this module.
"""
from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

PHASES = ("data", "training", "evaluation", "logging", "writing", "other")
PHASE_SUFFIX = ".phases.json"
# the heavy packages a job may load; the file lists those it had loaded when it ended
HEAVY_MODULES = ("torch", "pytorch_lightning", "lightning_fabric", "torch._dynamo", "mlflow", "pandas",
                 "sklearn", "scipy.stats", "scipy.optimize", "matplotlib", "seaborn", "art", "kornia")

# set by lifelearn.warm in a forked child: the job ran warm, and when its glue process was created
WARM_ENV = "LIFELEARN_WARM_CHILD"
CREATED_ENV = "LIFELEARN_JOB_CREATED"

_ACTIVE: "PhaseTimer | None" = None


class PhaseTimer:
    """Exclusive wall-time split of one job over named phases, on `clock` (seconds)."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter):
        self.clock = clock
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self._stack: list[str] = []
        self._mark = clock()

    def _charge(self) -> None:
        """The time since the last mark to the innermost open phase ('other' outside all)."""
        now = self.clock()
        name = self._stack[-1] if self._stack else "other"
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self._mark
        self._mark = now

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if name not in PHASES:
            raise ValueError(f"phase {name!r}: not one of {', '.join(PHASES)}")
        self._charge()
        self._stack.append(name)
        try:
            yield
        finally:
            self._charge()
            self._stack.pop()

    def split(self) -> dict[str, float]:
        """Seconds per phase up to now."""
        self._charge()
        return dict(self.seconds)


def phase(name: str):
    """The active timer's phase `name` (a context manager); a no-op without one."""
    return _ACTIVE.phase(name) if _ACTIVE is not None else contextlib.nullcontext()


def timed(name: str):
    """Decorator: every call of the function counts as phase `name`."""
    def wrap(fn):
        @functools.wraps(fn)
        def inner(*args, **kwargs):
            if _ACTIVE is None:
                return fn(*args, **kwargs)
            with _ACTIVE.phase(name):
                return fn(*args, **kwargs)
        return inner
    return wrap


def startup_seconds() -> float:
    """Wall seconds from this process's creation (the OS's record, psutil) to now; in a
    warm child (lifelearn.warm), from its glue process's creation."""
    created = os.environ.get(CREATED_ENV)
    if not created:
        import psutil

        created = psutil.Process().create_time()
    return max(time.time() - float(created), 0.0)


def phases_path(profile: str, rule: str, root: str | os.PathLike = ".") -> Path:
    """Where job `rule` of `profile` writes its split: beside its Snakemake benchmark file."""
    return Path(root) / "logs" / profile / "benchmarks" / f"{rule}{PHASE_SUFFIX}"


@contextlib.contextmanager
def job_phases(path: str | os.PathLike | None, rule: str, startup_s: float | None = None,
               clock: Callable[[], float] = time.perf_counter) -> Iterator[PhaseTimer]:
    """Time the job run inside as its phases and write them to `path` (None: only time),
    also when the job fails (status `failed`); `startup_s` defaults to startup_seconds()."""
    global _ACTIVE
    startup = startup_seconds() if startup_s is None else startup_s
    timer, previous, status = PhaseTimer(clock), _ACTIVE, "failed"
    _ACTIVE = timer
    try:
        yield timer
        status = "ok"
    finally:
        _ACTIVE = previous
        if path is not None:
            split = timer.split()
            write_split(path, {"rule": rule, "status": status, "startup_s": round(startup, 4),
                               "phases": {k: round(v, 4) for k, v in split.items()},
                               "job_s": round(sum(split.values()), 4),
                               "loaded": [m for m in HEAVY_MODULES if m in sys.modules], **process_usage()})


def process_usage() -> dict:
    """This process's CPU seconds (user + system) and max RSS (MB), and whether it is a
    warm child (lifelearn.warm: forked by the server, so Snakemake's benchmark of the job,
    which measures the glue process, does not include it)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_s": round(usage.ru_utime + usage.ru_stime, 4), "max_rss_mb": round(usage.ru_maxrss / 1024, 1),
            "warm": os.environ.get(WARM_ENV) == "1"}


def write_split(path: str | os.PathLike, record: dict) -> None:
    """Write `record` as JSON atomically (temp file + rename; lifelearn.io is not imported
    here: io's writers are timed through this module)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        json.dump(record, handle, indent=2, sort_keys=True)
        handle.write("\n")
    os.replace(tmp, path)
