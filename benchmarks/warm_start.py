"""Fixed start-up of a job, cold and warm (issue 16): the wall seconds from launching a
job's process until it has imported what its code path imports (benchmarks/import_cost.py's
entries: continual, continual evaluation, report, a Lightning study), measured from
outside the process, side by side in one run:

- cold: a fresh interpreter does the imports itself (a job without a server);
- warm: a fresh interpreter (the glue) hands the same imports to a child of a
  lifelearn.warm server started once for the run (what a study or report job does when
  the pipeline's server listens).

    python benchmarks/warm_start.py [--repeat 5]

The two alternate per repeat; the table has each one's median and smallest seconds and
the ratio of the medians. Neither includes Snakemake's own wrapper (the same in both) or
the job's work. The figures depend on the machine and its load: read them as this run's.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from import_cost import ENTRIES  # noqa: E402

from lifelearn import warm  # noqa: E402

CLIENT = "import sys; from lifelearn.warm import run_remote; sys.exit(run_remote(sys.argv[1], sys.argv[2], " \
         "'warm_start:execute'))"


def entry_code(name: str) -> str:
    entry = ENTRIES[name]
    return "\n".join([*(f"import {m}" for m in entry["imports"]), *entry.get("calls", [])])


def execute(code: str) -> None:
    """What a warm child runs: the entry's imports and calls."""
    exec(code, {})


def launch(argv: list[str]) -> float:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])])}
    start = time.perf_counter()
    subprocess.run(argv, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--entries", nargs="*", default=["continual", "continual_evaluation", "report", "teachers"])
    args = parser.parse_args()
    server, path = warm.start()
    try:
        if not warm.wait_ready(path):
            raise SystemExit("the warm server did not start")
        times = {name: {"cold": [], "warm": []} for name in args.entries}
        for _ in range(args.repeat):
            for name in args.entries:
                code = entry_code(name)
                times[name]["cold"].append(launch([sys.executable, "-c", code]))
                times[name]["warm"].append(launch([sys.executable, "-c", CLIENT, path, code]))
    finally:
        warm.stop(server, path)
    load = os.getloadavg()[0]
    print(f"job start-up, wall seconds from launch to imports done ({args.repeat} repeats, "
          f"load average {load:.1f} at the end)")
    print(f"{'entry':22s} {'cold med':>9s} {'cold min':>9s} {'warm med':>9s} {'warm min':>9s} {'warm/cold':>10s}")
    for name, t in times.items():
        cold, hot = statistics.median(t["cold"]), statistics.median(t["warm"])
        print(f"{name:22s} {cold:9.2f} {min(t['cold']):9.2f} {hot:9.2f} {min(t['warm']):9.2f} {hot / cold:10.2f}")


if __name__ == "__main__":
    main()
