"""Shared helpers for the benchmarks: timing statistics, the machine, RESULTS.md, servers.

Benchmarks print their figures and replace their own section of bench/RESULTS.md
(between ``<!-- name -->`` markers), so each script can be re-run alone.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "bench"
RESULTS = BENCH / "RESULTS.md"
WORK = BENCH / ".work"  # indexes and exports the benchmarks build (git-ignored)
QUESTIONS = REPO / "tests" / "questions.jsonl"
PY = sys.executable

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


def questions() -> list[str]:
    with open(QUESTIONS, encoding="utf-8") as fh:
        return [json.loads(line)["question"] for line in fh if line.strip()]


def stats_ms(samples_s: Sequence[float]) -> dict[str, float]:
    ms = sorted(s * 1000 for s in samples_s)
    q = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else ms * 99
    return {"p50": statistics.median(ms), "p95": q[94], "min": ms[0], "max": ms[-1], "n": len(ms)}


def fmt(s: dict[str, float]) -> str:
    return f"p50 {s['p50']:.2f} ms, p95 {s['p95']:.2f} ms, min {s['min']:.2f}, max {s['max']:.2f}"


def time_each(fn: Callable[[str], Any], items: Sequence[str]) -> list[float]:
    out = []
    for item in items:
        t = time.perf_counter()
        fn(item)
        out.append(time.perf_counter() - t)
    return out


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def wait_for_quiet(max_load: float = 1.0, timeout_s: float | None = None) -> str:
    """Wait (bounded) until the 1-minute load average is below ``max_load``."""
    if timeout_s is None:  # BENCH_QUIET_WAIT_S=0 measures at once
        timeout_s = float(os.environ.get("BENCH_QUIET_WAIT_S", "300"))
    deadline = time.monotonic() + timeout_s
    while os.getloadavg()[0] > max_load and time.monotonic() < deadline:
        time.sleep(5)
    return load_average()


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gib = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem_gib:.0f} GiB, {platform.system()} "
        f"{platform.release()}, Python {platform.python_version()}"
    )


def versions() -> str:
    import importlib.metadata as md

    out = []
    for pkg in ("torch", "sentence-transformers", "onnxruntime", "tokenizers", "faiss-cpu"):
        try:
            out.append(f"{pkg} {md.version(pkg)}")
        except md.PackageNotFoundError:
            pass
    return ", ".join(out)


def write_section(name: str, body: str) -> None:
    """Replace this benchmark's section of RESULTS.md (creating the file if needed)."""
    header = (
        "# Benchmark results\n\n"
        "Written by the scripts in `bench/` (`make bench` runs them all). Every ratio is "
        "against a bare baseline measured in the same run on the same machine.\n"
    )
    text = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else header
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    script = Path(sys.argv[0]).resolve()
    shown = script.relative_to(REPO).as_posix() if script.is_relative_to(REPO) else sys.argv[0]
    command = " ".join(shlex.quote(a) for a in [".venv/bin/python", shown, *sys.argv[1:]])
    stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    section = (
        f"{start}\n## {name}\n\n"
        f"- date: {stamp}\n- machine: {machine()}\n- versions: {versions()}\n"
        f"- command: `{command}`\n- load average at start (1/5/15 min): {LOAD_AT_START}\n\n"
        f"{body.rstrip()}\n{end}"
    )
    if start in text and end in text:
        before, rest = text.split(start, 1)
        after = rest.split(end, 1)[1]
        text = before + section + after
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    RESULTS.write_text(text, encoding="utf-8")
    print(f"wrote section {name!r} of {RESULTS.relative_to(REPO)}")


LOAD_AT_START = load_average()
WORK.mkdir(parents=True, exist_ok=True)
(WORK / ".gitignore").write_text("*\n", encoding="utf-8")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def seed_index(backend: str = "torch") -> Path:
    """An index of seeds/ built with the bundled model (reused between runs)."""
    index_dir = WORK / "seed-index"
    if not (index_dir / "CURRENT").exists():
        subprocess.run(
            [PY, str(BENCH / "_serve.py"), "--index-only", "--index-dir", str(index_dir),
             "--backend", backend],
            check=True,
        )
    return index_dir


def start_server(
    index_dir: Path, *, backend: str, threads: int, batching: bool = True, port: int | None = None
) -> tuple[subprocess.Popen[bytes], str, float]:
    """Start bench/_serve.py; returns (process, base url, seconds until /readyz said 200)."""
    import httpx

    port = port or free_port()
    cmd = [PY, str(BENCH / "_serve.py"), "--index-dir", str(index_dir), "--port", str(port),
           "--backend", backend, "--threads", str(threads)]
    if not batching:
        cmd.append("--no-batching")
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    return proc, url, wait_ready(proc, url, started, httpx)


def wait_ready(proc: subprocess.Popen[bytes], url: str, started: float, httpx: Any) -> float:
    while True:
        if proc.poll() is not None:
            err = proc.stderr.read().decode() if proc.stderr else ""
            raise RuntimeError(f"server exited with {proc.returncode}: {err[-2000:]}")
        try:
            if httpx.get(url + "/readyz", timeout=1.0).status_code == 200:
                return time.perf_counter() - started
        except httpx.HTTPError:
            pass
        time.sleep(0.02)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def use_src(src: Path | None) -> Any:
    """citeqa, imported from ``src`` (``--src``: another checkout's src/, for a before
    and after figure) instead of this checkout; says which one runs."""
    if src is not None:
        sys.path.insert(0, str(src.resolve()))
    import citeqa

    print(f"citeqa from {Path(citeqa.__file__).parent}")
    return citeqa
