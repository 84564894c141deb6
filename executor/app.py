"""Composition root: builds the parts from settings, runs them, drains them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import httpx
import structlog
from redis.asyncio import Redis

from executor import logs
from executor.bybit.client import ApiKey, BybitClient
from executor.dedup import Dedup
from executor.health import Health, HealthServer
from executor.intake import Intake
from executor.limiter import TokenBucket
from executor.pipeline import Job, Pipeline
from executor.settings import ConfigError, Settings
from executor.submitter import Submitter

log = structlog.get_logger("executor")


def api_keys(settings: Settings) -> list[ApiKey]:
    keys = []
    for role in ("primary", "secondary"):
        key = getattr(settings, f"{role}_api_key")
        secret = getattr(settings, f"{role}_api_secret")
        if key is not None and secret is not None:
            keys.append(ApiKey(role, key.get_secret_value(), secret))
    return keys


def secret_values(settings: Settings) -> list[str]:
    """Every configured secret, for the log redactor."""
    values = []
    for name in ("primary_api_secret", "secondary_api_secret", "signal_secret"):
        secret = getattr(settings, name)
        if secret is not None:
            values.append(secret.get_secret_value())
    password = urlsplit(settings.redis_url.get_secret_value()).password
    if password:
        values.append(unquote(password))
    return values


def configure_logging(settings: Settings) -> None:
    logs.configure(settings.log_level, settings.log_format, secret_values(settings))


@dataclass
class Daemon:
    """The running parts, built from settings."""

    settings: Settings
    redis: Redis
    http: httpx.AsyncClient
    client: BybitClient
    pipeline: Pipeline

    async def run(self, stop: asyncio.Event) -> None:
        s = self.settings
        try:
            offset = await self.client.sync_time()
            log.info("clock.synced", offset_ms=round(offset, 1))
        except (ConnectionError, httpx.HTTPError) as exc:
            # Not fatal: a 10002 answer carries the server time and resyncs.
            log.warning("clock.unsynced", error=str(exc))
        log.info(
            "daemon.started",
            stream=s.stream,
            group=s.group,
            consumer=s.consumer,
            base_url=s.base_url,
            keys=[f"{k.name}:{k.fingerprint}" for k in api_keys(s)],
            queue_size=s.queue_size,
            rate_limit_per_s=str(s.rate_limit_per_s),
            dry_run=s.dry_run,
        )
        health = Health(
            {
                "redis": lambda: (
                    None if self.pipeline.redis_ok else "redis unreachable or group missing"
                ),
                "exchange": lambda: (
                    f"IP ban for {self.client.ban_remaining():.0f}s more: {self.client.ban_reason}"
                    if self.client.ban_remaining() > 0
                    else None
                ),
            }
        )
        async with HealthServer(health, s.metrics_host, s.metrics_port):
            await self.pipeline.run(stop, s.drain_timeout_s)


@contextlib.asynccontextmanager
async def build(settings: Settings) -> AsyncIterator[Daemon]:
    keys = api_keys(settings)
    if not keys and not settings.dry_run:
        raise ConfigError(
            "EXECUTOR_PRIMARY_API_KEY: required (with EXECUTOR_PRIMARY_API_SECRET) "
            "unless EXECUTOR_DRY_RUN=true"
        )
    loop = asyncio.get_running_loop()
    redis = Redis.from_url(
        settings.redis_url.get_secret_value(),
        decode_responses=False,
        health_check_interval=15,
        socket_connect_timeout=5,
        retry_on_timeout=False,
    )
    http = httpx.AsyncClient(
        timeout=httpx.Timeout(settings.request_timeout_s, connect=5.0),
        limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        headers={"User-Agent": "executor"},
    )
    try:
        client = BybitClient(
            http,
            settings.base_url,
            recv_window_ms=settings.recv_window_ms,
            ban_s=settings.ip_ban_s,
        )
        limiter = TokenBucket(settings.rate_limit_per_s, settings.rate_limit_burst, clock=loop.time)
        submitter = Submitter(
            client,
            keys,
            limiter,
            max_attempts=settings.max_attempts,
            dry_run=settings.dry_run,
        )
        intake = Intake(
            redis,
            settings.stream,
            settings.group,
            settings.consumer,
            settings.results_stream,
            settings.dead_letter_stream,
            settings.results_maxlen,
        )
        dedup = Dedup(redis, prefix=f"executor:{settings.stream}", ttl_s=settings.dedup_ttl_s)
        queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=settings.queue_size)
        pipeline = Pipeline(
            intake,
            dedup,
            submitter,
            queue,
            signal_secret=(
                settings.signal_secret.get_secret_value() if settings.signal_secret else None
            ),
            workers=settings.workers,
            read_count=settings.read_count,
            block_ms=settings.block_ms,
            claim_idle_ms=settings.claim_idle_ms,
        )
        yield Daemon(settings, redis, http, client, pipeline)
    finally:
        await http.aclose()
        await redis.aclose()


async def run_daemon(settings: Settings, stop: asyncio.Event) -> None:
    async with build(settings) as daemon:
        await daemon.run(stop)
    log.info("daemon.stopped")
