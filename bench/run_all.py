"""Run every benchmark in turn (``make bench``); each writes its section of RESULTS.md.

Benchmarks never pass or fail anything; a failing script is reported and the rest run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
SCRIPTS = [
    ["latency.py"],
    ["throughput.py"],
    ["cold_start.py"],
    ["indexing.py"],
    ["memory.py"],
    ["faiss_index.py"],
    ["ask_during_write.py"],
    ["merge_latency.py"],
]
# ``--threads-one``: the same latency and throughput with one encoder thread, a check
# of the thread settings against the two cores (about five minutes more).
THREADS_ONE = [["latency.py", "--threads", "1"], ["throughput.py", "--threads", "1"]]
# ``--scale``: the Python and PostgreSQL manuals first (about an hour at 20,000 chunks;
# ``--scale-chunks`` picks the size), then the scripts that read its results, then the chart.
SCALE = [["scale.py"], ["memory.py"], ["faiss_index.py"], ["scale_chart.py"]]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", action="store_true", help="only the scale benchmarks")
    parser.add_argument("--scale-chunks", type=int, default=20_000)
    parser.add_argument("--threads-one", action="store_true",
                        help="also latency and throughput with one encoder thread")
    opts = parser.parse_args()
    scripts = SCRIPTS + (THREADS_ONE if opts.threads_one else [])
    if opts.scale:
        scripts = [s + (["--chunks", str(opts.scale_chunks)] if s[0] == "scale.py" else [])
                   for s in SCALE]
    failed = []
    for script, *args in scripts:
        print(f"== {script} {' '.join(args)}", flush=True)
        done = subprocess.run([sys.executable, str(BENCH / script), *args], cwd=BENCH.parent)
        if done.returncode != 0:
            failed.append(script)
    if failed:
        print(f"benchmarks that failed: {', '.join(failed)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
