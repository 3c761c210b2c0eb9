"""What ran a job, in words, without importing torch (for CPU-only stage jobs)."""

from __future__ import annotations

import os
import platform


def cpu_name() -> str:
    """CPU model and logical CPU count, e.g. 'Intel(R) Xeon(R) ... (2 logical CPUs)'."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name} ({os.cpu_count()} logical CPUs)"
