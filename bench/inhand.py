"""Client libraries with the order already in hand: run ``bench.clients`` as a
process against the simulator and read its send times and the arrivals."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import Any

from bench.harness import Lab, SimAdmin
from bench.pipelines import fill
from bench.plan import Plan
from bench.results import Contender, Phase, Throughput
from bench.stats import steady_rate
from executor.bybit.sim_state import PRIMARY

WARMUP = 20


async def run_client(
    lab: Lab,
    name: str,
    sim_url: str,
    plan: dict[str, Any],
    *,
    api_key: str = PRIMARY.api_key,
    secret: str = PRIMARY.secret,
    within_s: float = 300,
) -> dict[str, Any]:
    """Run one ``bench.clients`` process to its end; its JSON report."""
    out = lab.workdir / f"{plan['prefix']}.json"
    args = ["-m", "bench.clients", "--client", name, "--base-url", sim_url,
            "--api-key", api_key, "--secret", secret, "--plan", json.dumps(plan),
            "--out", str(out)]  # fmt: skip
    proc = lab.start(f"client-{plan['prefix']}", args)
    deadline = time.monotonic() + within_s
    try:
        while proc.alive():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} still running after {within_s:.0f}s:\n{proc.tail()}")
            await asyncio.sleep(0.1)
    finally:
        await lab.stop_async(proc)
    if proc.process.returncode != 0 or not out.exists():
        raise RuntimeError(f"{name} failed ({proc.process.returncode}):\n{proc.tail()}")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def client_plan(prefix: str, plan: Plan) -> dict[str, Any]:
    phases: list[dict[str, Any]] = [
        {
            "name": r.tag,
            "kind": "rate",
            "rate": r.rate,
            "n": r.n,
            "lead": r.lead,
            "seconds": r.seconds + 2,
        }
        for r in plan.client_rates
    ]
    phases.append(
        {
            "name": "t",
            "kind": "pool",
            "n": plan.client_throughput,
            "concurrency": plan.concurrency,
            "seconds": plan.client_throughput_s,
        }
    )
    return {"prefix": prefix, "warmup": WARMUP, "phases": phases}


async def run_in_hand(name: str, lab: Lab, sim: SimAdmin, plan: Plan, nonce: str) -> Contender:
    await sim.reset()
    report = await run_client(lab, name, sim.url, client_plan(f"{_tag(name)}{nonce}", plan))
    arrivals = await sim.arrivals()
    phases = [_phase(r.name, r.rate, report["phases"][r.tag], arrivals) for r in plan.client_rates]
    pool = report["phases"]["t"]
    stamps: dict[str, int] = pool["stamps"]
    mine = [arrivals[i] for i in stamps if i in arrivals]
    throughput = None
    if len(mine) >= 10:
        throughput = Throughput(
            orders=len(mine),
            seconds=(max(mine) - min(stamps.values())) / 1e9,
            per_s=steady_rate(mine),
            cpu_us=pool["cpu_s"] / len(stamps) * 1e6,
            cores={name: pool["cpu_s"] / pool["wall_s"]},
        )
    phases.append(_phase("throughput", None, pool, arrivals))
    return Contender(name, "in hand", phases, throughput, report["peak_rss_kb"] / 1024)


def _tag(name: str) -> str:
    return {"httpx": "h", "httpx-aiohttp": "ha", "pybit": "p", "ccxt": "c", "ccxt-throttle": "ct"}[
        name
    ]


def _phase(
    name: str, target: float | None, report: Mapping[str, Any], arrivals: Mapping[str, int]
) -> Phase:
    stamps: dict[str, int] = report["stamps"]
    sent, wall = len(stamps), float(report["wall_s"])
    phase = Phase(
        name=name,
        target_rate=target,
        sent_rate=sent / wall if wall > 0 else 0.0,
        sent=sent,
        arrived=0,
        arrived_rate=0.0,
        latency=None,
        cpu_us=report["cpu_s"] / sent * 1e6 if sent else None,
        errors=dict(report.get("errors", {})),
    )
    fill(phase, [stamps], arrivals)
    return phase
