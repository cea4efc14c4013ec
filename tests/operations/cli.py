"""Run `spix-dsr` as a process: its own environment, from a given folder."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def spix(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """`spix-dsr ARGS` in `cwd`, with no SPIX_DSR_ setting but those in `env`."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("SPIX_DSR_")}
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
