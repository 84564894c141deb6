"""Real processes for end-to-end tests: the simulator and the daemon, stopped by PID."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from executor.bybit.sim_state import PRIMARY

LISTENING = re.compile(r"listening on (http://\S+)")


@dataclass
class Proc:
    process: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.alive():
            os.kill(self.pid, sig)
            try:
                return self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
        return self.process.wait()


def _spawn(args: list[str], env: Mapping[str, str], log: Path) -> Proc:
    handle = log.open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "executor", *args],
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    handle.close()
    return Proc(process, log)


@contextmanager
def simulator(tmp: Path, *flags: str) -> Iterator[tuple[Proc, str]]:
    proc = _spawn(["sim", "--host", "127.0.0.1", "--port", "0", *flags], {}, tmp / "sim.log")
    try:
        deadline = time.monotonic() + 20
        while not (match := LISTENING.search(proc.output())):
            if not proc.alive() or time.monotonic() > deadline:
                raise RuntimeError(f"simulator did not start:\n{proc.output()}")
            time.sleep(0.05)
        yield proc, match.group(1)
    finally:
        proc.stop()


@contextmanager
def daemon(tmp: Path, env: Mapping[str, str], name: str = "daemon") -> Iterator[Proc]:
    base = {
        "EXECUTOR_PRIMARY_API_KEY": PRIMARY.api_key,
        "EXECUTOR_PRIMARY_API_SECRET": PRIMARY.secret,
        "EXECUTOR_LOG_FORMAT": "json",
    }
    proc = _spawn(["run"], {**base, **env}, tmp / f"{name}.log")
    try:
        yield proc
    finally:
        proc.stop()


def sim_orders(url: str) -> list[dict[str, object]]:
    response = httpx.get(f"{url}/sim/orders", timeout=10)
    response.raise_for_status()
    orders = response.json()
    assert isinstance(orders, list)
    return orders
