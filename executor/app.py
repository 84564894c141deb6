"""Composition root: builds the parts from settings, runs them, drains them."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import structlog
from redis.asyncio import Redis
from redis.exceptions import ResponseError

from executor import logs
from executor.breaker import CircuitBreaker, State
from executor.budget import SharedBudget, account_name, key_name
from executor.bybit.client import ApiKey, BybitClient
from executor.bybit.transport import AiohttpSender, HttpxSender, Sender
from executor.dedup import Dedup
from executor.health import Health, HealthServer
from executor.instruments import MarketData, Refusal, fit
from executor.intake import Intake
from executor.keycheck import days_to_expiry
from executor.keys import KeyPool
from executor.limiter import LocalBudget
from executor.metrics import Metrics
from executor.pipeline import REDIS_ERRORS, Job, Pipeline
from executor.resp import Lean
from executor.risk import RiskGate, RiskLimits
from executor.settings import ConfigError, Settings, load_settings
from executor.signals import OrderType, Signal
from executor.status import clear_presence, group_counts, write_presence
from executor.submitter import Prepare, Submitter

log = structlog.get_logger("executor")

HALT_POLL_S = 0.5  # the kill switch reaches every replica within a second
PRESENCE_EVERY_S = 1.0  # how often a replica refreshes its record for `executor status`
VERIFY_TRIES = 4  # start-up key checks retried through transient venue failures
UNVERIFIED_RECHECK_S = 30.0  # an unverified key is checked again this soon
STREAM_WATCH_S = 5.0  # how often the group's pending count and lag are read


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
    for name in ("primary_api_secret", "secondary_api_secret"):
        secret = getattr(settings, name)
        if secret is not None:
            values.append(secret.get_secret_value())
    values.extend(settings.publisher_secrets().values())
    password = urlsplit(settings.redis_url.get_secret_value()).password
    if password:
        values.append(unquote(password))
    return values


def configure_logging(settings: Settings) -> None:
    logs.configure(settings.log_level, settings.log_format, secret_values(settings))


def _log_key_event(event: str, key: ApiKey | None, reason: str) -> None:
    level = log.info if event in ("failback", "rotated") else log.error
    level(
        f"key.{event}",
        key=key.name if key else None,
        fingerprint=key.fingerprint if key else None,
        reason=reason,
    )


def _log_breaker(old: State, new: State, reason: str) -> None:
    level = log.error if new is State.OPEN else log.warning
    level("breaker.state", old=old.value, new=new.value, reason=reason)


@dataclass
class Halt:
    """The kill switch as this replica last saw it."""

    reason: str | None = None

    def __call__(self) -> str | None:
        return self.reason


async def verify_accounts(
    client: BybitClient,
    pool: KeyPool,
    expiry: Callable[[str, float | None], None] = lambda _key, _days: None,
) -> dict[str, str]:
    """Ask the exchange which account each key belongs to; allow failover only
    when all keys share one. Keys of different accounts are a configuration error.
    ``expiry`` hears each checked key's days to expiry (None: never expires)."""
    accounts: dict[str, str] = {}
    for key in pool.keys:
        for attempt in range(1, VERIFY_TRIES + 1):
            answer = await client.get(key, "/v5/user/query-api", {})
            if answer.ok or answer.reply.ret_code is not None or attempt == VERIFY_TRIES:
                break  # an answer from the venue; or give up for now
            await asyncio.sleep(max(0.25 * attempt, client.pause_s()))  # 5xx, timeout, held
        if answer.ok:
            accounts[key.name] = str(answer.result.get("userID", ""))
            expiry(key.name, days_to_expiry(answer.result, time.time() * 1000))
        else:
            reason = answer.ret_msg or answer.error
            log.warning(
                "key.unverified",
                key=key.name,
                fingerprint=key.fingerprint,
                ret_code=answer.reply.ret_code,
                reason=reason,
            )
    if len(set(accounts.values())) > 1:
        found = ", ".join(f"{name} key on {uid}" for name, uid in accounts.items())
        raise ConfigError(
            f"EXECUTOR_SECONDARY_API_KEY: the keys belong to different Bybit accounts ({found}); "
            "failover between them could place a second order"
        )
    pool.same_account = len(accounts) == len(pool.keys)
    return accounts


@dataclass
class Daemon:
    """The running parts, built from settings."""

    settings: Settings
    redis: Redis
    http: Sender
    client: BybitClient
    pool: KeyPool | None
    breaker: CircuitBreaker
    halt: Halt
    pipeline: Pipeline
    metrics: Metrics
    budget: SharedBudget | LocalBudget | None = None
    batch_budget: SharedBudget | LocalBudget | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    started: bool = False

    async def run(self, stop: asyncio.Event, reload: asyncio.Event | None = None) -> None:
        s = self.settings
        self._watch_metrics()
        # Health first: probes get an answer (not ready: starting) during start-up checks.
        async with HealthServer(self._health(), s.metrics_host, s.metrics_port, self.metrics):
            if not await self._until_stopped(self._start_up(), stop):
                log.info("daemon.stopped_while_starting")
                return
            self._start(self._watch_halt, "halt-watch")
            self._start(self._presence, "presence")
            self._start(self._watch_stream, "stream-watch")
            if self.pool is not None and len(self.pool.keys) > 1 and s.failback_probe_s > 0:
                self._start(self._failback, "failback")
            if self.pool is not None:
                self._start(self._recheck_accounts, "key-check")
            if s.keep_warm_s > 0:
                self._start(self._keep_warm, "keep-warm")
            if reload is not None:
                self._start(lambda: self._reload_on(reload), "reload")
            try:
                await self.pipeline.run(stop, s.drain_timeout_s)
            finally:
                for task in self.tasks:
                    task.cancel()
                await asyncio.gather(*self.tasks, return_exceptions=True)
                with contextlib.suppress(*REDIS_ERRORS):
                    await clear_presence(self.redis, s.stream, s.consumer)

    @staticmethod
    async def _until_stopped(work: Awaitable[None], stop: asyncio.Event) -> bool:
        """Run ``work`` unless ``stop`` comes first; False when it was stopped."""
        task = asyncio.ensure_future(work)
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait([task, stopped], return_when=asyncio.FIRST_COMPLETED)
        stopped.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            return False
        task.result()  # a configuration error found at start-up stops the daemon
        return True

    async def _start_up(self) -> None:
        """Clock and key checks, before the first signal is read."""
        s = self.settings
        try:
            offset = await self.client.sync_time()
            log.info("clock.synced", offset_ms=round(offset, 1))
        except (ConnectionError, httpx.HTTPError) as exc:
            # Not fatal: a 10002 answer carries the server time and resyncs.
            log.warning("clock.unsynced", error=str(exc))
        if self.pool is not None:
            accounts = await verify_accounts(self.client, self.pool, self.metrics.set_key_expiry)
            log.info("keys.verified", accounts=accounts, failover=self.pool.same_account)
            if isinstance(self.budget, SharedBudget) and s.rate_limit_key is None and accounts:
                # Bybit counts per account: every replica and key of it shares one budget.
                self.budget.name = account_name(next(iter(accounts.values())))
                if isinstance(self.batch_budget, SharedBudget):
                    self.batch_budget.name = self.budget.name
        self.started = True
        log.info(
            "daemon.started",
            stream=s.stream,
            group=s.group,
            consumer=s.consumer,
            base_url=s.base_url,
            keys=[f"{k.name}:{k.fingerprint}" for k in api_keys(s)],
            queue_size=s.queue_size,
            rate_limit_per_s=str(s.rate_limit_per_s),
            rate_budget=self.budget.name if isinstance(self.budget, SharedBudget) else "local",
            dry_run=s.dry_run,
        )

    def _start(self, loop: Callable[[], Awaitable[None]], name: str) -> None:
        self.tasks.append(asyncio.create_task(loop(), name=name))  # type: ignore[arg-type]

    def _health(self) -> Health:
        def starting() -> str | None:
            return None if self.started else "starting: checking the clock and the API keys"

        def redis() -> str | None:
            return None if self.pipeline.redis_ok else "redis unreachable or group missing"

        def exchange() -> str | None:
            left = self.client.ban_remaining()
            if left > 0:
                return f"IP ban for {left:.0f}s more: {self.client.ban_reason}"
            if self.breaker.state is State.OPEN:
                return "circuit breaker open"
            return None

        def keys() -> str | None:
            if self.pool is None or self.settings.dry_run:
                return None
            usable = [k for k in self.pool.keys if k.name not in self.pool.failed()]
            return None if usable else "no usable API key"

        return Health({"start": starting, "redis": redis, "exchange": exchange, "keys": keys})

    def _watch_metrics(self) -> None:
        """Hand the metrics the state they read at scrape time."""
        pool, pipeline = self.pool, self.pipeline
        self.metrics.watch(
            queue_depth=pipeline.queue.qsize,
            queue_capacity=pipeline.queue.maxsize,
            circuit_state=lambda: self.breaker.state.value,
            clock_offset_s=lambda: self.client.offset_ms / 1000,
            halted=lambda: self.halt.reason is not None,
            redis_up=lambda: pipeline.redis_ok,
        )
        if pool is not None:
            self.metrics.set_keys([k.name for k in pool.keys], lambda: pool.active.name)

    async def _watch_stream(self) -> None:
        """The group's pending count and lag, for the metrics."""
        s = self.settings
        while True:
            with contextlib.suppress(*REDIS_ERRORS, ResponseError):
                pending, lag = await group_counts(self.redis, s.stream, s.group)
                self.metrics.set_stream(pending, lag)
            await asyncio.sleep(STREAM_WATCH_S)

    def state(self) -> dict[str, Any]:
        """What this replica is doing, for `executor status` (no secrets)."""
        pool = self.pool
        return {
            "breaker": self.breaker.state.value,
            "active_key": pool.active.name if pool else None,
            "fingerprint": pool.active.fingerprint if pool else None,
            "failed_keys": pool.failed() if pool else {},
            "failovers": pool.failovers if pool else 0,
            "queue_depth": self.pipeline.queue.qsize(),
            "queue_capacity": self.pipeline.queue.maxsize,
            "in_hand": self.pipeline.in_hand,
            "ban_s": round(self.client.ban_remaining(), 1),
            "halted": self.halt.reason,
            "dry_run": self.settings.dry_run,
            "base_url": self.settings.base_url,
        }

    async def _presence(self) -> None:
        s = self.settings
        while True:
            with contextlib.suppress(*REDIS_ERRORS):
                await write_presence(self.redis, s.stream, s.consumer, self.state())
            await asyncio.sleep(PRESENCE_EVERY_S)

    async def _watch_halt(self) -> None:
        key = self.settings.halt_key
        while True:
            try:
                value = await self.redis.get(key)
                reason = value.decode(errors="replace") if isinstance(value, bytes) else value
            except REDIS_ERRORS:
                reason = self.halt.reason  # unknown: keep what we last saw
            if reason != self.halt.reason:
                if reason is None:
                    log.warning("halt.cleared")
                else:
                    log.error("halt.set", reason=reason)
                self.halt.reason = reason
            await asyncio.sleep(HALT_POLL_S)

    async def _failback(self) -> None:
        """While on the secondary, probe the primary and go back once it works."""
        assert self.pool is not None
        while True:
            await asyncio.sleep(self.settings.failback_probe_s)
            primary = self.pool.primary
            if self.pool.active is primary or primary.name not in self.pool.failed():
                continue
            answer = await self.client.get(primary, "/v5/user/query-api", {})
            if answer.ok and not int(answer.result.get("readOnly", 0)):
                self.pool.recovered(primary.name)
            else:
                log.info(
                    "key.probe_failed",
                    key=primary.name,
                    ret_code=answer.reply.ret_code,
                    reason=answer.ret_msg or answer.error,
                )

    async def _keep_warm(self) -> None:
        """Through quiet spells, one public request (the server time) whenever
        nothing was sent for KEEP_WARM_S: the connection stays open, so the next
        order does not wait for a new TCP and TLS handshake, and the clock offset
        stays fresh. It costs nothing of the order budget."""
        every = self.settings.keep_warm_s
        while True:
            wait = every - self.client.idle_s()
            if wait <= 0:
                try:
                    await self.client.sync_time()
                except ConnectionError as exc:  # held (ban, breaker) or unanswered
                    log.info("exchange.keep_warm_failed", error=str(exc))
                wait = every
            await asyncio.sleep(wait)

    async def _recheck_accounts(self) -> None:
        """Check the keys' accounts every KEY_CHECK_INTERVAL_S, and soon while a
        key could not be checked (failover stays off until every key is)."""
        assert self.pool is not None
        every = self.settings.key_check_interval_s
        while True:
            if self.pool.same_account:
                if every <= 0:
                    return
                await asyncio.sleep(every)
            else:
                await asyncio.sleep(min(every, UNVERIFIED_RECHECK_S) or UNVERIFIED_RECHECK_S)
            await self._reverify()

    async def _reverify(self) -> None:
        """Check the keys' accounts while running: a mismatch disables failover
        instead of stopping the daemon."""
        assert self.pool is not None
        try:
            accounts = await verify_accounts(self.client, self.pool, self.metrics.set_key_expiry)
        except ConfigError as exc:
            self.pool.same_account = False
            log.error("keys.different_accounts", reason=str(exc))
            return
        log.info("keys.verified", accounts=accounts, failover=self.pool.same_account)

    async def _reload_on(self, reload: asyncio.Event) -> None:
        """SIGHUP: read the key files again and swap credentials; in-flight orders
        keep the key they started with, the next ones use the new one."""
        while True:
            await reload.wait()
            reload.clear()
            try:
                fresh = load_settings()
            except ConfigError as exc:
                log.error("keys.reload_failed", reason=str(exc))
                continue
            keys = api_keys(fresh)
            if self.pool is None or not keys:
                log.error("keys.reload_failed", reason="no API key in the reloaded settings")
                continue
            logs.configure(fresh.log_level, fresh.log_format, secret_values(fresh))
            self.pool.replace(keys)
            await self._reverify()
            log.info("keys.reloaded", keys=[f"{k.name}:{k.fingerprint}" for k in keys])


def pre_send(settings: Settings, market: MarketData) -> Prepare:
    """Instrument rules, then risk limits, before a rate-limit token is spent."""
    gate = RiskGate(
        RiskLimits.parse(
            symbols=settings.risk_symbols,
            max_qty=settings.risk_max_qty,
            max_notional=settings.risk_max_notional,
            max_orders_per_minute=settings.risk_max_orders_per_minute,
        ),
        time.monotonic,
    )
    needs_price = settings.risk_max_notional is not None or settings.check_instruments

    async def prepare(signal: Signal) -> dict[str, Any] | str:
        category, symbol = signal.category.value, signal.symbol
        last = None
        if signal.order_type is OrderType.MARKET and needs_price:
            last = await market.last_price(category, symbol)
        if settings.check_instruments:
            instrument = await market.instrument(category, symbol)
            # Unknown or unreachable: the exchange applies its own rules.
            if instrument is not None:
                fitted = fit(signal, instrument, last)
                if isinstance(fitted, Refusal):
                    return fitted.reason
                if fitted.changed:
                    signal = signal.model_copy(update={"qty": fitted.qty})
        reason = gate.check(signal, last)
        return reason if reason is not None else signal.order_body()

    return prepare


def rate_budget(
    settings: Settings,
    redis: Redis | Lean,
    keys: list[ApiKey],
    clock: Callable[[], float],
    *,
    batches: bool = False,
) -> SharedBudget | LocalBudget:
    """The order budget: shared through Redis by every replica (named by the
    account once start-up has verified it), or paced by this process alone.
    ``batches``: the create-batch budget, counted per order, not paced."""
    rate, burst = settings.rate_limit_per_s, settings.rate_limit_burst
    margin_s = settings.rate_limit_margin_ms / 1000
    if not settings.rate_limit_shared:
        if batches:
            return LocalBudget.batches(rate, clock=clock, margin_s=margin_s)
        return LocalBudget.paced(rate, burst, clock=clock)
    name = settings.rate_limit_key or (key_name(keys[0].key) if keys else "unkeyed")
    if batches:
        return SharedBudget.batches(redis, name=name, rate=rate, margin_s=margin_s)
    return SharedBudget.on(redis, name=name, rate=rate, burst=burst, margin_s=margin_s)


def http_client(settings: Settings) -> Sender:
    """The exchange's sender: aiohttp's connection pool, or httpx's client when
    HTTP_TRANSPORT says so."""
    headers = {"User-Agent": "executor"}
    if settings.http_transport == "httpx":
        timeout = httpx.Timeout(settings.request_timeout_s, connect=5.0)
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=32)
        return HttpxSender(httpx.AsyncClient(timeout=timeout, limits=limits, headers=headers))
    return AiohttpSender(
        timeout_s=settings.request_timeout_s,
        connect_timeout_s=5.0,
        max_connections=64,
        # Kept open past KEEP_WARM_S, so the keep-warm request finds it still there.
        keepalive_s=max(30.0, settings.keep_warm_s + 10),
        headers=headers,
    )


@contextlib.asynccontextmanager
async def build(settings: Settings, **submitter_options: Any) -> AsyncIterator[Daemon]:
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
    # The calls in front of and behind every order go on lean connections: the
    # blocking read on one, the claims, grants and acks on the other.
    url = settings.redis_url.get_secret_value()
    reads, hot = Lean(url), Lean(url)
    http = http_client(settings)
    metrics = Metrics()
    try:
        breaker = CircuitBreaker(
            clock=time.monotonic,
            failures=settings.breaker_failures,
            ratio=settings.breaker_failure_ratio,
            window_s=settings.breaker_window_s,
            min_calls=settings.breaker_min_calls,
            cooldown_s=settings.breaker_cooldown_s,
            on_change=_log_breaker,
        )
        client = BybitClient(
            http,
            settings.base_url,
            recv_window_ms=settings.recv_window_ms,
            ban_s=settings.ip_ban_s,
            breaker=breaker,
            observer=metrics,
        )

        def key_event(event: str, key: ApiKey | None, reason: str) -> None:
            _log_key_event(event, key, reason)
            metrics.key_event(event, key.name if key else None)

        pool = KeyPool(keys, key_event) if keys else None
        market = MarketData(client, refresh_s=settings.instruments_refresh_s)
        submitter_options.setdefault("prepare", pre_send(settings, market))
        halt = Halt()
        budget = rate_budget(settings, hot, keys, loop.time)
        batches = rate_budget(settings, hot, keys, loop.time, batches=True)
        submitter = Submitter(
            client,
            pool if pool is not None else [],
            budget,
            max_attempts=settings.max_attempts,
            dry_run=settings.dry_run,
            halted=halt,
            observer=metrics,
            batches=batches if settings.batch_orders else None,
            batch_size=settings.batch_size,
            **submitter_options,
        )
        intake = Intake(
            redis,
            settings.stream,
            settings.group,
            settings.consumer,
            settings.results_stream,
            settings.dead_letter_stream,
            settings.results_maxlen,
            reader=reads,
            hot=hot,
        )
        dedup = Dedup(
            redis, prefix=f"executor:{settings.stream}", ttl_s=settings.dedup_ttl_s, hot=hot
        )
        queue: asyncio.Queue[Job] = asyncio.Queue(maxsize=settings.queue_size)
        pipeline = Pipeline(
            intake,
            dedup,
            submitter,
            queue,
            signal_secrets=settings.publisher_secrets(),
            workers=settings.workers,
            read_count=settings.read_count,
            block_ms=settings.block_ms,
            claim_idle_ms=settings.claim_idle_ms,
            observer=metrics,
        )
        yield Daemon(
            settings,
            redis,
            http,
            client,
            pool,
            breaker,
            halt,
            pipeline,
            metrics,
            budget=budget,
            batch_budget=batches,
        )
    finally:
        await http.aclose()
        await reads.aclose()
        await hot.aclose()
        await redis.aclose()


async def run_daemon(
    settings: Settings, stop: asyncio.Event, reload: asyncio.Event | None = None
) -> None:
    async with build(settings) as daemon:
        await daemon.run(stop, reload)
    log.info("daemon.stopped")


async def set_halt(settings: Settings, reason: str | None) -> None:
    """`executor halt` / `executor resume`: the kill switch shared by every replica."""
    redis = Redis.from_url(settings.redis_url.get_secret_value())
    try:
        if reason is None:
            await redis.delete(settings.halt_key)
        else:
            await redis.set(settings.halt_key, reason)
    finally:
        await redis.aclose()
