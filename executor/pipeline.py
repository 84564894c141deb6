"""The flow between Redis and the exchange: admit entries, queue them, submit.

Intake reads only while the bounded queue has room (backpressure); workers
take jobs, submit them, and write each terminal outcome with its ack. An entry
whose order could not be proven placed or absent is left pending, never acked.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import structlog
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from executor.dedup import Claim, Dedup
from executor.intake import KID_FIELD, SIG_FIELD, SIGNAL_FIELD, Entry, Intake
from executor.observe import NO_OBSERVER, Observer
from executor.riding import Rider
from executor.signals import InvalidSignal, Signal, authenticate, order_link_id, parse_signal
from executor.submitter import Outcome, Submitter, Unresolved

log = structlog.get_logger("executor")

REDIS_ERRORS = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)
MAX_BATCHES = 4  # create-batch requests in flight per category


@dataclass(frozen=True, slots=True)
class Job:
    entry: Entry
    signal: Signal
    maybe_sent: bool


class Pipeline:
    def __init__(
        self,
        intake: Intake,
        dedup: Dedup,
        submitter: Submitter,
        queue: asyncio.Queue[Job],
        *,
        signal_secrets: Mapping[str, str] | None = None,
        workers: int = 16,
        read_count: int = 100,
        block_ms: int = 1000,
        claim_idle_ms: int = 60_000,
        wall_ms: Callable[[], float] = lambda: time.time() * 1000,
        observer: Observer = NO_OBSERVER,
    ) -> None:
        self._observer = observer
        self.intake = intake
        self.dedup = dedup
        self.submitter = submitter
        self.queue = queue
        self._secrets = dict(signal_secrets or {})
        self._workers = workers
        self._read_count = read_count
        self._block_ms = block_ms
        self._claim_idle_ms = claim_idle_ms
        self._wall_ms = wall_ms
        # Entries queued or being worked on: a re-read of pending entries skips them.
        self._in_hand: set[str] = set()
        self._busy = 0
        self._idle: set[asyncio.Task[None]] = set()
        self._closing = False
        self._batches: dict[str, int] = {}  # create-batch requests in flight, per category
        self.redis_ok = False

    async def run(self, stop: asyncio.Event, drain_timeout_s: float = 20.0) -> None:
        reader = asyncio.create_task(self.intake_loop(), name="intake")
        keepers = [
            asyncio.create_task(self.heartbeat_loop(), name="heartbeat"),
            asyncio.create_task(self.claim_loop(), name="claim"),
        ]
        workers = [
            asyncio.create_task(self.worker(), name=f"worker-{i}") for i in range(self._workers)
        ]
        stopped = asyncio.create_task(stop.wait())
        await asyncio.wait([stopped, reader], return_when=asyncio.FIRST_COMPLETED)
        if reader.done() and not reader.cancelled() and reader.exception():
            stopped.cancel()
            for task in workers:
                task.cancel()
            raise reader.exception()  # type: ignore[misc]
        log.info("daemon.draining", in_flight=self._busy, queued=self.queue.qsize())
        # The loops also watch this flag, so shutdown never depends on a
        # cancellation reaching them through library code that may absorb it.
        self._closing = True
        reader.cancel()
        for task in keepers:
            task.cancel()
        # Idle workers are parked on queue.get(); waking them with the closing
        # flag set makes them return without taking new work.
        for task in list(self._idle):
            task.cancel()
        _done, late = await asyncio.wait(workers, timeout=drain_timeout_s)
        for task in late:
            task.cancel()
        # Bounded: a task that swallowed its cancellation must not hold the exit.
        _finished, stuck = await asyncio.wait([reader, *keepers, *workers], timeout=5.0)
        if stuck:
            log.error("daemon.stuck_tasks", tasks=sorted(t.get_name() for t in stuck))
        left = await self._release_queued()
        log.info("daemon.drained", abandoned=len(late), left_pending=left)

    async def _release_queued(self) -> int:
        """Jobs still queued were not sent in this run: drop the in-flight claims
        of those no earlier run may have sent, so the next run sends them without
        a lookup. They all stay pending in the stream."""
        left = 0
        while not self.queue.empty():
            job = self.queue.get_nowait()
            left += 1
            if job.maybe_sent:
                continue
            try:
                await self.dedup.release(job.signal.id, job.entry.id)
            except REDIS_ERRORS:
                return left + self.queue.qsize()  # a lookup on redelivery covers it
        return left

    async def intake_loop(self) -> None:
        failures = 0
        # The next read, asked for while this one's entries are claimed: entries
        # that come during the claim's round trip are not kept waiting for it.
        ahead: asyncio.Task[list[Entry]] | None = None
        try:
            while not self._closing:
                try:
                    if not self.redis_ok:
                        await self.intake.ensure_group()
                        self.redis_ok = True
                        if failures:
                            log.info("redis.reconnected", after_failures=failures)
                        failures = 0
                    if ahead is not None:
                        entries, ahead = await ahead, None
                    else:
                        # At least one: with the queue full, the read waits for room.
                        entries = await self.intake.read(max(1, self._room()), self._block_ms)
                    room = self._room(len(entries))
                    if entries and self.intake.reading_new and room > 0:
                        ahead = asyncio.create_task(self.intake.read(room, self._block_ms))
                    await self.admit_many(entries)
                except (*REDIS_ERRORS, ResponseError) as exc:
                    _drop(ahead)
                    ahead = None
                    # NOGROUP: Redis lost the group (restarted without persistence),
                    # recreated once it answers again.
                    if isinstance(exc, ResponseError) and "NOGROUP" not in str(exc):
                        raise
                    failures += 1
                    await self._redis_down(exc, failures)
        finally:
            # Entries a dropped read took stay pending: the next read of this
            # consumer's own pending entries (or a restart) brings them back.
            _drop(ahead)

    def _room(self, reading: int = 0) -> int:
        """How many entries to read: what the queue has room for, besides ``reading``
        entries being admitted."""
        return min(self._read_count, self.queue.maxsize - self.queue.qsize() - reading)

    async def heartbeat_loop(self) -> None:
        """Keep entries in hand from looking abandoned to other replicas."""
        while not self._closing:
            await asyncio.sleep(self._tick_s)
            if self.redis_ok and self._in_hand:
                try:
                    await self.intake.touch(sorted(self._in_hand))
                except REDIS_ERRORS as exc:
                    log.warning("redis.unavailable", error=type(exc).__name__, during="heartbeat")

    async def claim_loop(self) -> None:
        """Adopt entries left idle for ``claim_idle_ms``: their consumer died, or
        this one could not resolve them. The dedup record of each decides
        between reconcile and send."""
        while not self._closing:
            await asyncio.sleep(self._tick_s)
            free = self.queue.maxsize - self.queue.qsize()
            if not self.redis_ok or free <= 0:
                continue
            try:
                claimed = await self.intake.claim_stale(self._claim_idle_ms, min(free, 100))
                for entry in claimed:
                    if entry.id not in self._in_hand:
                        log.info("signal.claimed", entry_id=entry.id)
                await self.admit_many(claimed)
            except REDIS_ERRORS as exc:
                log.warning("redis.unavailable", error=type(exc).__name__, during="claim")
            except ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                self.redis_ok = False

    @property
    def in_hand(self) -> int:
        """Entries queued or being worked on."""
        return len(self._in_hand)

    @property
    def _tick_s(self) -> float:
        return max(0.2, self._claim_idle_ms / 4000)

    async def _redis_down(self, exc: Exception, failures: int) -> None:
        self.redis_ok = False
        self.intake.restart_pending()
        delay = min(5.0, 0.1 * 2 ** min(failures, 6))
        log.warning("redis.unavailable", error=type(exc).__name__, retry_in_s=delay)
        await asyncio.sleep(delay)

    async def admit(self, entry: Entry) -> None:
        await self.admit_many([entry])

    async def admit_many(self, entries: Sequence[Entry]) -> None:
        """Validate and authenticate each entry, claim the signal ids of the valid
        ones in one round trip, then queue them in order (may wait: backpressure).

        An entry already in hand (queued, or being worked on) is skipped: the
        intake and the claim loop may both come across it.
        """
        fresh = [entry for entry in entries if entry.id not in self._in_hand]
        self._in_hand.update(entry.id for entry in fresh)
        queued: set[str] = set()
        try:
            valid: list[tuple[Entry, Signal]] = []
            for entry in fresh:
                signal = await self._validate(entry)
                if signal is not None:
                    valid.append((entry, signal))
            claims = await self.dedup.claim_many(
                [(s.id, entry.id) for entry, s in valid], self._ahead(valid)
            )
            for (entry, signal), claim in zip(valid, claims, strict=True):
                if claim is Claim.DUPLICATE:
                    outcome = Outcome(status="duplicate", ret_msg="signal id already handled")
                    if await self.intake.finish(entry, self._result(entry, signal, outcome)):
                        self._log_outcome(entry, signal, outcome)
                elif claim is Claim.FINISHED:
                    await self.intake.redis.xack(self.intake.stream, self.intake.group, entry.id)
                else:
                    await self.queue.put(Job(entry, signal, maybe_sent=claim is Claim.RESUMED))
                    queued.add(entry.id)
        finally:
            for entry in fresh:
                if entry.id not in queued:
                    self._in_hand.discard(entry.id)

    def _ahead(self, valid: Sequence[tuple[Entry, Signal]]) -> Rider | None:
        """When idle workers will send these signals alone at once (one category,
        nothing queued), their budget grants, to ask for with their claims."""
        if not valid or not self.queue.empty() or len(self._idle) < len(valid):
            return None
        category = valid[0][1].category.value
        if any(signal.category.value != category for _, signal in valid):
            return None
        return self.submitter.ahead(category, len(valid))

    async def _validate(self, entry: Entry) -> Signal | None:
        """The entry's signal, or None once it has been dead-lettered."""
        raw = entry.fields.get(SIGNAL_FIELD)
        try:
            if raw is None:
                raise InvalidSignal("missing field 'signal'")
            if self._secrets:
                authenticate(
                    self._secrets, raw, entry.fields.get(SIG_FIELD), entry.fields.get(KID_FIELD)
                )
            signal = parse_signal(raw, default_ts_ms=entry.stream_ms)
            if self._secrets and self._wall_ms() >= signal.deadline_ms:
                # A correctly signed signal past its TTL may be a recording replayed.
                raise InvalidSignal("signal past its ts + ttl_ms: refused", kind="replay")
        except InvalidSignal as exc:
            await self._reject(entry, raw, exc)
            return None
        return signal

    async def _reject(self, entry: Entry, raw: bytes | None, exc: InvalidSignal) -> None:
        signal_id = _loose_id(raw)
        result = {
            "id": signal_id,
            "status": "invalid",
            "order_link_id": order_link_id(signal_id) if signal_id else "",
            "order_id": "",
            "ret_code": "",
            "ret_msg": exc.reason,
            "key": "",
            "attempts": 0,
            "latency_ms": self._latency(entry),
            "entry_id": entry.id,
        }
        if await self.intake.dead_letter(entry, exc.reason, exc.kind, result):
            self._observer.dead_letter(exc.kind)
            self._observer.signal_outcome("invalid")
        log.warning(
            "signal.invalid", id=signal_id, entry_id=entry.id, reason=exc.reason, kind=exc.kind
        )

    async def worker(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        while not self._closing:
            self._idle.add(task)
            try:
                job = await self.queue.get()
            finally:
                self._idle.discard(task)
            batch, alone = self._take_more(job)
            jobs = batch + alone
            self._busy += len(jobs)
            try:
                if batch or len(alone) > 1:
                    await asyncio.gather(
                        *([self._work_batch(batch)] if batch else []), *map(self._work, alone)
                    )
                else:
                    await self._work(job)  # no task of its own: one less loop turn
            finally:
                self._busy -= len(jobs)
                for done in jobs:
                    self._in_hand.discard(done.entry.id)
                    self.queue.task_done()

    def _take_more(self, job: Job) -> tuple[list[Job], list[Job]]:
        """``job`` and, when more of its category are queued than idle workers can
        take at once, those too: (orders for one create-batch, orders to send alone).
        While every queued job has a worker, each goes alone: nothing waits for a
        batch to fill.

        Jobs taken that cannot join (another category, possibly sent before)
        are sent alone by this worker. At most ``MAX_BATCHES`` batches per
        category are in flight, so the single-order budget keeps its own share.
        """
        category = job.signal.category.value
        size = self.submitter.batch_size(category)
        if (
            size < 2
            or job.maybe_sent
            or self.queue.qsize() <= len(self._idle)  # each has an idle worker: no waiting
            or self._batches.get(category, 0) >= MAX_BATCHES
        ):
            return [], [job]
        batch, alone = [job], []
        while len(batch) < size and not self.queue.empty():
            more = self.queue.get_nowait()
            if more.maybe_sent or more.signal.category.value != category:
                alone.append(more)
            else:
                batch.append(more)
        return batch, alone

    async def _work_batch(self, jobs: list[Job]) -> None:
        category = jobs[0].signal.category.value
        self._batches[category] = self._batches.get(category, 0) + 1
        try:
            outcomes = await self.submitter.submit_batch(
                [job.signal for job in jobs], [job.entry.stream_ms for job in jobs]
            )
        finally:
            self._batches[category] -= 1
        await asyncio.gather(*map(self._record, jobs, outcomes))

    async def _work(self, job: Job) -> None:
        try:
            outcome: Outcome | Unresolved = await self.submitter.submit(
                job.signal, maybe_sent=job.maybe_sent, received_ms=job.entry.stream_ms
            )
        except Unresolved as exc:
            outcome = exc
        await self._record(job, outcome)

    async def _record(self, job: Job, outcome: Outcome | Unresolved) -> None:
        """Write a terminal outcome with its ack; an unresolved one stays pending."""
        if isinstance(outcome, Unresolved):
            log.error(
                "order.unresolved", id=job.signal.id, entry_id=job.entry.id, reason=str(outcome)
            )
            return
        done = self.dedup.done(job.signal.id, job.entry.id, outcome.status)
        result = self._result(job.entry, job.signal, outcome)
        failures = 0
        while True:
            try:
                if not await self.intake.finish(job.entry, result, done):
                    log.info("signal.finished_elsewhere", id=job.signal.id, entry_id=job.entry.id)
                    return
                break
            except REDIS_ERRORS as exc:
                # The order is placed; only its record is missing. Keep trying:
                # if the process dies now, the redelivery reconciles by lookup.
                failures += 1
                await self._redis_down(exc, failures)
        self._log_outcome(job.entry, job.signal, outcome)

    def _latency(self, entry: Entry) -> int:
        return max(0, int(self._wall_ms()) - entry.stream_ms)

    def _result(self, entry: Entry, signal: Signal, outcome: Outcome) -> dict[str, Any]:
        return {
            "id": signal.id,
            "status": outcome.status,
            "order_link_id": signal.order_link_id,
            "order_id": outcome.order_id,
            "ret_code": "" if outcome.ret_code is None else outcome.ret_code,
            "ret_msg": outcome.ret_msg,
            "key": outcome.key,
            "attempts": outcome.attempts,
            "latency_ms": self._latency(entry),
            "entry_id": entry.id,
            "symbol": signal.symbol,
            "strategy": signal.strategy or "",
            "source": signal.source or "",
        }

    def _log_outcome(self, entry: Entry, signal: Signal, outcome: Outcome) -> None:
        self._observer.signal_outcome(outcome.status, signal.strategy or "", signal.source or "")
        log.info(
            f"order.{outcome.status}",
            id=signal.id,
            order_link_id=signal.order_link_id,
            outcome=outcome.status,
            order_id=outcome.order_id,
            ret_code=outcome.ret_code,
            ret_msg=outcome.ret_msg or None,
            key=outcome.key or None,
            attempts=outcome.attempts,
            latency_ms=self._latency(entry),
            strategy=signal.strategy,
        )


def _drop(task: asyncio.Task[Any] | None) -> None:
    """Cancel a read asked for ahead; its error, if it had one, is not news."""
    if task is not None:
        task.cancel()
        if task.done() and not task.cancelled():
            task.exception()


def _loose_id(raw: bytes | None) -> str:
    """The id of an invalid signal, when one can be read, for its results entry."""
    if raw is None or len(raw) > 1 << 16:
        return ""
    try:
        obj = json.loads(raw)
    except ValueError:
        return ""
    value = obj.get("id") if isinstance(obj, dict) else None
    return value[:64] if isinstance(value, str) else ""
