"""Run every benchmark in turn (``make bench``); each writes its section of RESULTS.md.

Benchmarks never pass or fail anything; a failing script is reported and the rest run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
SCRIPTS = [
    ["latency.py"],
    ["latency.py", "--threads", "1"],
    ["throughput.py"],
    ["throughput.py", "--threads", "1"],
    ["cold_start.py"],
]


def main() -> int:
    failed = []
    for script, *args in SCRIPTS:
        print(f"== {script} {' '.join(args)}", flush=True)
        done = subprocess.run([sys.executable, str(BENCH / script), *args], cwd=BENCH.parent)
        if done.returncode != 0:
            failed.append(script)
    if failed:
        print(f"benchmarks that failed: {', '.join(failed)}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
