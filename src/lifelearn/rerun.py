"""What one `snakemake` invocation leaves for the next (read by the Snakefile only, so
that no job's code depends on it).

Snakemake 9 (snakemake/snakemake#4166, open) skips a job whose only inputs updated by a
rerun job are ancient(), without checking its own triggers: when prepare_data reruns, the
jobs below it whose code or params changed are left out of that invocation's plan.
"""
from __future__ import annotations

import os
from pathlib import Path

DOWNSTREAM_SKIPPED = ("prepare_data wrote {names} again in this run. Snakemake (issue #4166) does not plan the "
                      "jobs below a rerun data job in the same invocation, even when their own code or params "
                      "changed: run the same snakemake command once more (`make run` runs the data stage first).")


def prepared_since(logs: str | os.PathLike, start: float) -> list[str]:
    """The datasets whose prepare_data log (logs/<profile>/prepare_data/<name>.log) was
    written at or after `start` (a time.time()): the data this invocation prepared again."""
    root = Path(logs) / "prepare_data"
    return sorted(p.stem for p in root.glob("*.log") if p.stat().st_mtime >= start) if root.is_dir() else []
