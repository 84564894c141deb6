"""The dashboard and the alert rules against the daemon's real metrics.

Every metric they name exists in a running daemon's /metrics; every dashboard
query parses; and a real Prometheus scraping a daemon through a short run
answers the dashboard's main queries with data.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from redis.asyncio import Redis

from executor.bybit.sim_state import PRIMARY
from executor.publish import publish
from executor.redis_server import free_port, wait_for_port
from tests.conftest import Names
from tests.e2e.procs import Proc, daemon_env, sim_post, simulator, start_daemon
from tests.e2e.test_chaos import wait_results
from tests.integration.helpers import eventually, signal

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "executor.json"
ALERTS = ROOT / "deploy" / "prometheus" / "alerts.yml"
METRIC = re.compile(r"\b((?:executor|process|python)_[a-zA-Z0-9_]+|up)\b")
# Names that are PromQL functions or keywords, not metrics, when matched bare.
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")


@dataclass(frozen=True)
class Query:
    where: str  # "panel <title>" or "alert <name>"
    expr: str


def dashboard_queries() -> list[Query]:
    board = json.loads(DASHBOARD.read_text())
    queries = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            walk(panel.get("panels", []))
            for target in panel.get("targets", []):
                if target.get("expr"):
                    queries.append(Query(f"panel {panel.get('title')}", target["expr"]))

    walk(board["panels"])
    for variable in board.get("templating", {}).get("list", []):
        query = variable.get("query")
        text = query.get("query") if isinstance(query, dict) else query
        if isinstance(text, str) and "executor_" in text:
            queries.append(Query(f"variable {variable.get('name')}", text))
    return queries


def alert_queries() -> list[Query]:
    rules = yaml.safe_load(ALERTS.read_text())
    return [
        Query(f"alert {rule.get('alert') or rule.get('record')}", rule["expr"])
        for group in rules["groups"]
        for rule in group["rules"]
    ]


def runnable(expr: str) -> str:
    """A dashboard query as Prometheus itself would get it from Grafana."""
    return expr.replace("$__rate_interval", "1m").replace("$instance", ".*")


def names_in(expr: str) -> set[str]:
    # label_values(metric, label) in a template variable names a metric too.
    without_strings = re.sub(r'"[^"]*"', '""', expr)
    return set(METRIC.findall(without_strings))


def exposed(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            name, kind = line.split()[2:4]
            names.add(name)
            if kind == "counter":
                names.add(f"{name}_total")
            if kind == "histogram":
                names.update(name + suffix for suffix in HISTOGRAM_SUFFIXES)
        elif line and not line.startswith("#"):
            names.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return names


@contextmanager
def running_prometheus(tmp: Path, target: str) -> Iterator[str]:
    binary = shutil.which("prometheus")
    assert binary is not None, (
        "prometheus (Debian package prometheus) is installed by tasks.py test"
    )
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "executor", "static_configs": [{"targets": [target]}]}],
    }
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    args = [
        binary,
        f"--config.file={tmp / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    with (tmp / "prometheus.log").open("wb") as log:
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, timeout=30, process=process)
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@asynccontextmanager
async def busy_daemon(
    tmp: Path, redis: Redis, redis_url: str, names: Names, fleet: list[Proc]
) -> AsyncIterator[Proc]:
    """A daemon against the simulator that has accepted, refused and dead-lettered signals."""
    with simulator(tmp) as (_sim, url):
        # A secondary key that expires in 30 days, so the expiry panel has a series.
        expiring = {
            "api_key": "SIMEXPIRINGKEY0002",
            "secret": "sim-expiring-secret-02",
            "user_id": PRIMARY.user_id,
            "expires_at_ms": int(time.time() * 1000) + 30 * 86_400_000,
        }
        await sim_post(url, "/sim/keys", expiring)
        env = daemon_env(
            redis_url,
            url,
            names,
            EXECUTOR_RATE_LIMIT_PER_S="50",
            EXECUTOR_SECONDARY_API_KEY=expiring["api_key"],
            EXECUTOR_SECONDARY_API_SECRET=expiring["secret"],
        )
        proc = start_daemon(tmp, env)
        fleet.append(proc)
        good = [signal(f"o-{i}", id=f"o-{i}", strategy="trend") for i in range(20)]
        bad = [b"not json", signal("neg", qty="-1"), signal("off", symbol="NOPEUSDT")]
        await publish(redis, names.stream, [*good, *bad, good[0]])
        await wait_results(redis, names, len(good) + len(bad) + 1)
        yield proc


async def test_every_metric_named_by_the_dashboard_and_alerts_is_exposed_and_queries_parse(
    tmp_path: Path, redis: Redis, redis_url: str, names: Names, fleet: list[Proc]
) -> None:
    async with (
        busy_daemon(tmp_path, redis, redis_url, names, fleet) as proc,
        httpx.AsyncClient() as client,
    ):
        text = (await client.get(f"{proc.health_url}/metrics")).text
    available = exposed(text) | {"up"}
    queries = dashboard_queries() + alert_queries()
    assert len(queries) > 20
    missing = {
        f"{q.where}: {name}" for q in queries for name in names_in(q.expr) if name not in available
    }
    assert missing == set()

    # promtool parses every query, as it parses recording rules.
    rules = {"groups": [{"name": "dashboard", "rules": [
        {"record": f"dashboard:query_{n}", "expr": runnable(q.expr)}
        for n, q in enumerate(dashboard_queries())
        if not q.where.startswith("variable")  # label_values() is Grafana's, not PromQL
    ]}]}  # fmt: skip
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    promtool = shutil.which("promtool")
    assert promtool is not None, (
        "promtool (Debian package prometheus) is installed by tasks.py test"
    )
    check = await asyncio.create_subprocess_exec(
        promtool, "check", "rules", str(path), stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )  # fmt: skip
    out, _ = await check.communicate()
    assert check.returncode == 0, out.decode()


async def test_a_real_prometheus_answers_the_dashboards_main_queries(
    tmp_path: Path, redis: Redis, redis_url: str, names: Names, fleet: list[Proc]
) -> None:
    async with busy_daemon(tmp_path, redis, redis_url, names, fleet) as proc:
        target = proc.health_url.removeprefix("http://")
        with running_prometheus(tmp_path, target) as prom:
            async with httpx.AsyncClient(base_url=prom, timeout=10) as api:

                async def query(expr: str) -> list[dict[str, Any]]:
                    answer = (await api.get("/api/v1/query", params={"query": expr})).json()
                    assert answer["status"] == "success", (expr, answer)
                    result: list[dict[str, Any]] = answer["data"]["result"]
                    return result

                async def scraped_twice() -> bool:  # rate() needs two samples
                    samples = await query('count_over_time(up{job="executor"}[1m])')
                    return bool(samples) and float(samples[0]["value"][1]) >= 2

                await eventually(scraped_twice, within=30)
                # More traffic inside the window that rate() looks at.
                await publish(redis, names.stream, [signal(f"p-{i}") for i in range(10)])
                await wait_results(redis, names, 34)

                async def counted() -> bool:
                    total = await query('sum(executor_signals_total{outcome="accepted"})')
                    return bool(total) and float(total[0]["value"][1]) >= 30

                await eventually(counted, within=15)
                panels = [q for q in dashboard_queries() if not q.where.startswith("variable")]
                answers = {q: await query(runnable(q.expr)) for q in panels}
    empty = sorted({q.where for q, result in answers.items() if not result})
    assert empty == [], f"dashboard panels with no data from a real Prometheus: {empty}"
