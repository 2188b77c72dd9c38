"""Run pip-audit on the lock file; say so plainly when the advisory data is out of reach.

pip-audit asks PyPI's JSON API for advisories. A registry mirror without that
API answers "Dependency not found on PyPI" for every package: that is no
verdict, so this reports it and exits 0. Any vulnerability found fails.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

VENV_BIN = Path(sys.executable).parent


def main() -> int:
    cmd = [
        str(VENV_BIN / "pip-audit"),
        "-r", "requirements.lock", "--no-deps", "--disable-pip", "--format", "json",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    try:
        report = json.loads(proc.stdout)
    except ValueError:
        print(proc.stderr or proc.stdout, file=sys.stderr)
        return proc.returncode or 1
    deps = report.get("dependencies", [])
    checked = [d for d in deps if "skip_reason" not in d]
    vulnerable = [d for d in checked if d.get("vulns")]
    for dep in vulnerable:
        ids = ", ".join(v["id"] for v in dep["vulns"])
        print(f"VULNERABLE {dep['name']}=={dep['version']}: {ids}")
    if deps and not checked:
        print(f"pip-audit: no advisory data reachable for any of {len(deps)} packages; no verdict")
        return 0
    print(f"pip-audit: {len(checked)} packages checked, {len(vulnerable)} vulnerable")
    return 1 if vulnerable else 0


if __name__ == "__main__":
    sys.exit(main())
