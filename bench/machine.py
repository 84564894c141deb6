"""The machine a run measured: CPU, cores, kernel, Python, Redis, library versions."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
import time
from importlib import metadata
from pathlib import Path
from typing import Any

LIBRARIES = ("aiohttp", "httpx", "redis", "pybit", "ccxt", "uvloop")


def _first(path: str, prefix: str) -> str:
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(prefix):
                return line.split(":", 1)[1].strip() if ":" in line else line.split("=", 1)[1]
    except OSError:
        pass
    return "unknown"


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _commit(root: Path) -> str:
    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=False, timeout=10
        )
        return done.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    changed = git("status", "--porcelain", "--untracked-files=no", "--", "executor")
    return f"{head} (executor/ modified)" if changed else head


def busy_s() -> float:
    """CPU seconds every core of the machine has spent busy since boot (/proc/stat)."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def own_s() -> float:
    """CPU seconds of this process and of every child it has waited for."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


class LoadMeter:
    """What the rest of the machine used while the benchmark ran, in cores: other
    work on a 2-core machine shows up in every percentile, so the report says so."""

    def __init__(self) -> None:
        self._wall, self._busy, self._own = time.monotonic(), busy_s(), own_s()

    def other_cores(self) -> float:
        wall = time.monotonic() - self._wall
        other = (busy_s() - self._busy) - (own_s() - self._own)
        return max(0.0, other / wall) if wall > 0 else 0.0


def describe(redis_version: str, root: Path) -> dict[str, Any]:
    memory_kb = _first("/proc/meminfo", "MemTotal").split()[0]
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _first("/proc/cpuinfo", "model name"),
        "cores": os.cpu_count(),
        "memory_gb": round(int(memory_kb) / 2**20, 1) if memory_kb.isdigit() else None,
        "os": _first("/etc/os-release", "PRETTY_NAME=").strip('"'),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "redis": redis_version,
        "libraries": {name: v for name in LIBRARIES if (v := _version(name)) is not None},
        "commit": _commit(root),
    }
