"""The machine a benchmark ran on, named the same way by every benchmark (no third-party import)."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``) and whether it has AVX-512, else what ``platform`` says."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    name = next((line.split(":", 1)[1].strip() for line in info.splitlines() if line.startswith("model name")),
                platform.machine())
    return f"{name} ({'with' if ' avx512f' in info else 'without'} AVX-512)"
