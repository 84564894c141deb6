"""Real processes for end-to-end tests: the simulator and the daemon, stopped by PID."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from executor.bybit.sim_state import PRIMARY
from executor.redis_server import free_port
from tests.integration.helpers import eventually

LISTENING = re.compile(r"listening on (http://\S+)")


@dataclass
class Proc:
    process: subprocess.Popen[bytes]
    log: Path
    env: Mapping[str, str] = field(default_factory=dict)

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.env['EXECUTOR_METRICS_PORT']}"

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        """The JSON log lines written so far."""
        return [json.loads(line) for line in self.output().splitlines() if line.startswith("{")]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        if self.alive():
            os.kill(self.pid, sig)
            try:
                return self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
        return self.process.wait()


def _spawn(args: list[str], env: Mapping[str, str], log: Path) -> Proc:
    handle = log.open("ab")  # a restarted daemon appends to its predecessor's log
    process = subprocess.Popen(
        [sys.executable, "-m", "executor", *args],
        env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
        stdout=handle,
        stderr=subprocess.STDOUT,
    )
    handle.close()
    return Proc(process, log, dict(env))


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


async def executor_cli(env: Mapping[str, str], *args: str) -> tuple[int, str, str]:
    """One `executor` command as an operator runs it: exit code, stdout, stderr."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "executor", *args, env={**os.environ, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace"), err.decode(errors="replace")


async def until_started(proc: Proc, within: float = 30) -> None:
    """Wait for the daemon's start-up checks to finish (`daemon.started`)."""

    async def started() -> bool:
        return "daemon.started" in proc.output()

    await eventually(started, within=within)


def daemon_env(redis_url: str, sim_url: str, names: Any, **extra: str) -> dict[str, str]:
    """The settings every e2e daemon needs: this test's Redis, simulator and streams."""
    return {
        "EXECUTOR_REDIS_URL": redis_url,
        "EXECUTOR_BYBIT_BASE_URL": sim_url,
        "EXECUTOR_STREAM": names.stream,
        "EXECUTOR_RESULTS_STREAM": names.results,
        "EXECUTOR_DEAD_LETTER_STREAM": names.dead,
        "EXECUTOR_BLOCK_MS": "100",
        **extra,
    }


def start_daemon(tmp: Path, env: Mapping[str, str], name: str = "daemon") -> Proc:
    base = {
        "EXECUTOR_PRIMARY_API_KEY": PRIMARY.api_key,
        "EXECUTOR_PRIMARY_API_SECRET": PRIMARY.secret,
        "EXECUTOR_LOG_FORMAT": "json",
        "EXECUTOR_METRICS_HOST": "127.0.0.1",
        "EXECUTOR_METRICS_PORT": str(free_port()),
    }
    return _spawn(["run"], {**base, **env}, tmp / f"{name}.log")


@contextmanager
def daemon(tmp: Path, env: Mapping[str, str], name: str = "daemon") -> Iterator[Proc]:
    proc = start_daemon(tmp, env, name)
    try:
        yield proc
    finally:
        proc.stop()


async def sim_get(url: str, path: str) -> Any:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"{url}{path}")
    response.raise_for_status()
    return response.json()


async def sim_post(url: str, path: str, body: Mapping[str, Any]) -> Any:
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.post(f"{url}{path}", json=body)
    response.raise_for_status()
    return response.json()


async def sim_orders(url: str) -> list[dict[str, Any]]:
    orders = await sim_get(url, "/sim/orders")
    assert isinstance(orders, list)
    return orders


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(proc: Proc) -> Samples:
    """The daemon's /metrics, as {(sample name, labels): value}."""
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"{proc.health_url}/metrics")
    response.raise_for_status()
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))
