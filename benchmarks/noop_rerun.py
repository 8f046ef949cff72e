"""Cost of a no-op rerun: `snakemake -n` and `snakemake --cores all` on a pipeline
whose outputs are all up to date (run `make run` first).

    python benchmarks/noop_rerun.py [--profile default] [--repeats 3]

Prints the median wall time of each and writes benchmarks/results/noop_rerun.json.
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from lifelearn.io import write_json

ROOT = Path(__file__).resolve().parents[1]


def timed(args: list[str]) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "snakemake", *args], cwd=ROOT, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-2000:])
    return seconds, proc.stdout + proc.stderr


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--profile", default="default")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    config = ["--config", f"profile={args.profile}"]
    _, out = timed(["-n", *config])
    if "Nothing to be done" not in out:
        raise SystemExit(f"profile {args.profile} is not up to date: run the pipeline first")
    result = {"profile": args.profile}
    for label, cmd in [("dry_run_s", ["-n", *config]), ("noop_run_s", ["--cores", "all", *config])]:
        result[label] = statistics.median(timed(cmd)[0] for _ in range(args.repeats))
    write_json(ROOT / "benchmarks" / "results" / "noop_rerun.json", result)
    print(f"no-op rerun of profile {args.profile}, median of {args.repeats}:")
    print(f"  snakemake -n           {result['dry_run_s']:.2f} s")
    print(f"  snakemake --cores all  {result['noop_run_s']:.2f} s")


if __name__ == "__main__":
    main()
