"""Prometheus metrics: every metric defined once, here, with bounded labels.

Counters and histograms are fed by the ``Observer`` hooks; gauges that
describe state (queue depth, breaker, active key, clock offset...) are read
when Prometheus scrapes, from callables the daemon hands over.
"""

from __future__ import annotations

import contextlib
import platform
from collections.abc import Callable, Iterable

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

from executor import __version__
from executor.observe import Observer

CONTENT_TYPE = CONTENT_TYPE_LATEST
# No *_created series: they double the output and no panel uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Loopback to a venue across the world: 1 ms to 10 s.
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)  # fmt: skip
WAIT_BUCKETS = (0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

SIGNAL_OUTCOMES = ("accepted", "rejected", "invalid", "duplicate", "expired", "halted", "failed")
DEAD_LETTER_KINDS = ("invalid", "unauthenticated", "replay")
BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}


MAX_LABEL_VALUES = 50  # distinct strategies (and sources) with their own series


def _bounded(value: str, allowed: Iterable[str]) -> str:
    return value if value in allowed else "other"


class LabelGuard:
    """Publisher-chosen label values, capped: the first ``limit`` distinct values
    keep their name, later ones are counted as "other"."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._seen: set[str] = set()

    def __call__(self, value: str) -> str:
        if value in self._seen or not value:
            return value
        if len(self._seen) >= self._limit:
            return "other"
        self._seen.add(value)
        return value


class Metrics(Observer):
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        # process_* (CPU, memory, open files) and python_info, as any exporter has.
        ProcessCollector(registry=r)
        PlatformCollector(registry=r)
        self.signals = Counter(
            "executor_signals_total",
            "Signals finished, by outcome and the signal's strategy and source.",
            ["outcome", "strategy", "source"],
            registry=r,
        )
        self._strategies = LabelGuard(MAX_LABEL_VALUES)
        self._sources = LabelGuard(MAX_LABEL_VALUES)
        self.orders = Counter(
            "executor_orders_total",
            "Order-create requests answered, by verdict and Bybit retCode.",
            ["result", "ret_code"],
            registry=r,
        )
        self.signal_to_send = Histogram(
            "executor_signal_to_send_seconds",
            "From the signal's stream entry to its first order request going out.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.request_seconds = Histogram(
            "executor_exchange_request_seconds",
            "Exchange request round trips, by endpoint.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rate_limit_wait = Histogram(
            "executor_rate_limit_wait_seconds",
            "Time an order waited for a rate-limit token.",
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.failovers = Counter(
            "executor_key_failovers_total", "Moves from a refused key to the next.", registry=r
        )
        self.dead_letters = Counter(
            "executor_dead_letters_total",
            "Entries sent to the dead-letter stream, by reason.",
            ["reason"],
            registry=r,
        )
        self.ip_bans = Counter(
            "executor_ip_bans_total", "403 or IP-ban answers from the exchange.", registry=r
        )
        self.queue_depth = Gauge(
            "executor_queue_depth", "Signals admitted and waiting for a worker.", registry=r
        )
        self.queue_capacity = Gauge(
            "executor_queue_capacity", "Size of the bounded in-process queue.", registry=r
        )
        self.circuit_state = Gauge(
            "executor_circuit_state",
            "Circuit breaker: 0 closed, 1 half-open, 2 open.",
            registry=r,
        )
        self.active_key = Gauge(
            "executor_active_key",
            "1 for the API key orders go out on, 0 for the others.",
            ["key"],
            registry=r,
        )
        # Seconds, Prometheus's base unit (dashboards divide by 86400 for days).
        self.key_expiry = Gauge(
            "executor_api_key_expiry_seconds",
            "Time until the API key expires (absent: never expires, or not checked yet).",
            ["key"],
            registry=r,
        )
        self.stream_pending = Gauge(
            "executor_stream_pending",
            "Entries read by the group and not yet finished (all consumers).",
            registry=r,
        )
        self.stream_lag = Gauge(
            "executor_stream_lag", "Entries in the stream not yet read by the group.", registry=r
        )
        self.clock_offset = Gauge(
            "executor_clock_offset_seconds",
            "Exchange clock minus this host's clock, as last measured.",
            registry=r,
        )
        self.halted = Gauge(
            "executor_halted", "1 while the kill switch stops submission.", registry=r
        )
        self.redis_up = Gauge(
            "executor_redis_up", "1 while Redis is reachable and the group exists.", registry=r
        )
        self.build_info = Gauge(
            "executor_build_info",
            "Always 1; the labels say what is running.",
            ["version", "python"],
            registry=r,
        )
        self.build_info.labels(__version__, platform.python_version()).set(1)
        for outcome in SIGNAL_OUTCOMES:  # every series exists from the start, at 0
            self.signals.labels(outcome, "", "")
        for kind in DEAD_LETTER_KINDS:
            self.dead_letters.labels(kind)

    # ---- state read at scrape time --------------------------------------------------

    def watch(
        self,
        *,
        queue_depth: Callable[[], float],
        queue_capacity: float,
        circuit_state: Callable[[], str],
        clock_offset_s: Callable[[], float],
        halted: Callable[[], bool],
        redis_up: Callable[[], bool],
    ) -> None:
        self.queue_depth.set_function(queue_depth)
        self.queue_capacity.set(queue_capacity)
        self.circuit_state.set_function(lambda: BREAKER_STATES.get(circuit_state(), 2))
        self.clock_offset.set_function(clock_offset_s)
        self.halted.set_function(lambda: 1 if halted() else 0)
        self.redis_up.set_function(lambda: 1 if redis_up() else 0)

    def set_keys(self, names: Iterable[str], active: Callable[[], str | None]) -> None:
        for name in names:
            self.active_key.labels(name).set_function(_is_active(active, name))

    def set_stream(self, pending: int, lag: int | None) -> None:
        self.stream_pending.set(pending)
        if lag is not None:
            self.stream_lag.set(lag)

    def set_key_expiry(self, key: str, days: float | None) -> None:
        if days is not None:
            self.key_expiry.labels(key).set(round(days * 86_400))
            return
        with contextlib.suppress(KeyError):  # never expires: no series
            self.key_expiry.remove(key)

    def render(self) -> bytes:
        return generate_latest(self.registry)

    # ---- Observer hooks ---------------------------------------------------------------

    def exchange_request(self, endpoint: str, seconds: float) -> None:
        self.request_seconds.labels(endpoint).observe(seconds)

    def order_answer(self, result: str, ret_code: int | None) -> None:
        self.orders.labels(result, "" if ret_code is None else str(ret_code)).inc()

    def order_sent(self, since_entry_s: float) -> None:
        self.signal_to_send.observe(max(0.0, since_entry_s))

    def token_wait(self, seconds: float) -> None:
        self.rate_limit_wait.observe(seconds)

    def signal_outcome(self, outcome: str, strategy: str = "", source: str = "") -> None:
        self.signals.labels(
            _bounded(outcome, SIGNAL_OUTCOMES), self._strategies(strategy), self._sources(source)
        ).inc()

    def dead_letter(self, kind: str) -> None:
        self.dead_letters.labels(_bounded(kind, DEAD_LETTER_KINDS)).inc()

    def key_event(self, event: str, key: str | None) -> None:
        if event == "failover":
            self.failovers.inc()

    def ip_ban(self) -> None:
        self.ip_bans.inc()


def _is_active(active: Callable[[], str | None], name: str) -> Callable[[], float]:
    return lambda: 1.0 if active() == name else 0.0
