"""Where a process's CPU time goes: py-spy samples while it drains the
throughput backlog, summarised by function (own and inclusive share)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

RATE_HZ = 200
# Frames that mean "waiting", not working: left out of the shares.
IDLE = ("select (selectors.py", "poll (selectors.py")
# Frames every busy sample passes through: not worth a row.
PLUMBING = frozenset({"<frozen runpy>", "runners.py", "base_events.py", "events.py",
                      "__main__.py", "cli.py"})  # fmt: skip


@dataclass(frozen=True)
class Hotspot:
    frame: str
    own: float  # share of busy samples with this frame on top
    inclusive: float  # share of busy samples with this frame anywhere on the stack


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


class Recorder:
    """``py-spy record`` attached to ``pid`` until ``stop``; raw collapsed stacks."""

    def __init__(self, pid: int, output: Path) -> None:
        binary = py_spy()
        if binary is None:
            raise FileNotFoundError("py-spy (pip install py-spy)")
        self.output = output
        self._log = output.with_suffix(".log").open("wb")
        self._process = subprocess.Popen(
            [binary, "record", "--pid", str(pid), "--rate", str(RATE_HZ), "--format", "raw",
             "--output", str(output)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )  # fmt: skip

    def stop(self) -> Path | None:
        if self._process.poll() is None:
            os.kill(self._process.pid, signal.SIGINT)
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._log.close()
        return self.output if self.output.exists() else None


def _short(frame: str) -> str:
    """``func (path/to/module.py:123)`` -> ``func (module.py)``: one entry per function."""
    name, _, where = frame.partition(" (")
    module = where.rsplit("/", 1)[-1].split(":", 1)[0].rstrip(")")
    return f"{name} ({module})" if module else name


def _module(short: str) -> str:
    return short.rpartition(" (")[2].rstrip(")")


def hotspots(lines: Iterable[str], top: int = 25) -> tuple[int, list[Hotspot]]:
    """(busy samples, the functions with the largest inclusive share)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    busy = 0
    for line in lines:
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        frames = [f for f in stack.split(";") if " (" in f]
        if not frames or any(frames[-1].startswith(idle) for idle in IDLE):
            continue
        count = int(count_text)
        busy += count
        own[_short(frames[-1])] += count
        for frame in {_short(f) for f in frames}:
            inclusive[frame] += count
    if busy == 0:
        return 0, []
    ranked = sorted(
        (f for f in inclusive if _module(f) not in PLUMBING), key=lambda f: (-inclusive[f], f)
    )[:top]
    return busy, [Hotspot(f, own[f] / busy, inclusive[f] / busy) for f in ranked]
