"""Processes of a benchmark run: Redis, the simulator, the contenders; each
stopped by its PID within a bounded time. Also the /proc readings (CPU time,
resident memory) and the simulator's admin API."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from executor.redis_server import RedisProcess, free_port

LISTENING = re.compile(r"listening on (http://\S+)")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parent.parent
STOP_TIMEOUT_S = 10.0


@dataclass
class Proc:
    """A child process writing to its own log file."""

    name: str
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, lines: int = 20) -> str:
        return "\n".join(self.output().splitlines()[-lines:])

    def cpu_s(self) -> float:
        return cpu_seconds(self.pid)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> int:
        """SIGTERM, then SIGKILL if it has not exited within ``timeout``."""
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)
            try:
                return self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.pid, signal.SIGKILL)
        return self.process.wait(timeout=timeout)


def spawn(name: str, args: list[str], log: Path, env: Mapping[str, str] | None = None) -> Proc:
    """Start ``python args...`` with the current interpreter, in the log's directory
    (so no ``.env`` of the checkout is read). ``bench`` modules get the checkout on
    their path; the daemon and the simulator run from the installed package alone, with
    the import path they have in production."""
    extra = dict(env or {})
    if args[:2] != ["-m", "executor"]:
        paths = (str(ROOT), os.environ.get("PYTHONPATH"))
        extra.setdefault("PYTHONPATH", os.pathsep.join(p for p in paths if p))
    handle = log.open("wb")
    try:
        process = subprocess.Popen(
            [sys.executable, *args],
            cwd=log.parent,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **extra},
            stdout=handle,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    finally:
        handle.close()
    return Proc(name, process, log)


async def wait_for_line(proc: Proc, pattern: re.Pattern[str], within_s: float) -> re.Match[str]:
    deadline = time.monotonic() + within_s
    while not (match := pattern.search(proc.output())):
        if not proc.alive() or time.monotonic() > deadline:
            raise RuntimeError(f"{proc.name} did not start:\n{proc.tail()}")
        await asyncio.sleep(0.05)
    return match


# ---- /proc -------------------------------------------------------------------------


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process, from /proc/<pid>/stat."""
    text = Path(f"/proc/{pid}/stat").read_text()
    # The command name may hold spaces: fields are counted after its closing paren.
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def memory_kb(pid: int, field: str) -> int:
    """A line of /proc/<pid>/status in kB: VmRSS (now) or VmHWM (peak)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise KeyError(field)


# ---- the lab: every process of a run, stopped on exit -------------------------------


class Lab:
    """Owns the processes of a run; ``close`` stops each by PID, newest first."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self._procs: list[Proc] = []
        self._redis: RedisProcess | None = None

    def start(self, name: str, args: list[str], env: Mapping[str, str] | None = None) -> Proc:
        proc = spawn(name, args, self.workdir / f"{name}.log", env)
        self._procs.append(proc)
        return proc

    def find(self, name: str) -> Proc:
        return next(p for p in self._procs if p.name == name)

    def stop(self, proc: Proc, timeout: float = STOP_TIMEOUT_S) -> int:
        try:
            return proc.stop(timeout)
        finally:
            if proc in self._procs:
                self._procs.remove(proc)

    async def stop_async(self, proc: Proc, grace_s: float = STOP_TIMEOUT_S) -> int:
        """``stop`` without blocking the event loop (other runs may be going on)."""
        return await asyncio.to_thread(self.stop, proc, grace_s)

    @property
    def redis_pid(self) -> int:
        assert self._redis is not None and self._redis.process is not None
        return self._redis.process.pid

    def redis(self) -> str:
        """Start a private redis-server (no persistence) and return its URL."""
        directory = self.workdir / "redis"
        directory.mkdir(exist_ok=True)
        self._redis = RedisProcess(free_port(), directory, appendonly=False)
        self._redis.start()
        return self._redis.url

    async def simulator(self, name: str, *flags: str) -> tuple[Proc, str]:
        proc = self.start(name, ["-m", "executor", "sim", "--host", "127.0.0.1", "--port", "0",
                                 *flags])  # fmt: skip
        match = await wait_for_line(proc, LISTENING, within_s=30)
        return proc, match.group(1)

    def close(self) -> None:
        while self._procs:
            self.stop(self._procs[-1])
        if self._redis is not None:
            self._redis.stop()
            self._redis = None


@contextlib.contextmanager
def lab(workdir: Path) -> Iterator[Lab]:
    running = Lab(workdir)
    previous = signal.getsignal(signal.SIGTERM)

    def on_term(_signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt("SIGTERM")

    signal.signal(signal.SIGTERM, on_term)
    try:
        yield running
    finally:
        running.close()
        signal.signal(signal.SIGTERM, previous)


# ---- the simulator's admin API -----------------------------------------------------


class SimAdmin:
    """``/sim/*`` of one simulator: reset, fault knobs, orders, counters."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._http = httpx.AsyncClient(base_url=url, timeout=60)

    async def aclose(self) -> None:
        await self._http.aclose()

    async def reset(self) -> None:
        (await self._http.post("/sim/reset")).raise_for_status()

    async def faults(self, **knobs: Any) -> dict[str, Any]:
        response = await self._http.post("/sim/faults", json=knobs)
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    async def stats(self) -> dict[str, Any]:
        response = await self._http.get("/sim/stats")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result

    async def orders(self) -> list[dict[str, Any]]:
        response = await self._http.get("/sim/orders")
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()
        return result

    async def arrivals(self) -> dict[str, int]:
        """orderLinkId -> the monotonic ns at which its order request arrived."""
        return {o["orderLinkId"]: int(o["received_ns"]) for o in await self.orders()}

    async def created(self) -> int:
        """Orders asked for since the last reset, alone or in a batch, whatever their answer."""
        return int((await self.stats()).get("orders", 0))

    async def wait_created(self, count: int, within_s: float) -> bool:
        """Until ``count`` orders have arrived; False if not within ``within_s``."""
        deadline = time.monotonic() + within_s
        while await self.created() < count:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True
