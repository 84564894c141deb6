"""The circuit breaker on a fake clock."""

from __future__ import annotations

from executor.breaker import CircuitBreaker, State
from executor.outcome import Verdict


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock, **kwargs: float) -> tuple[CircuitBreaker, list[tuple[str, str, str]]]:
    changes: list[tuple[str, str, str]] = []
    settings = {"failures": 3, "ratio": 0.5, "window_s": 10.0, "min_calls": 6, "cooldown_s": 5.0}
    settings.update(kwargs)
    made = CircuitBreaker(
        clock=clock,
        on_change=lambda old, new, why: changes.append((old.value, new.value, why)),
        **settings,  # type: ignore[arg-type]
    )
    return made, changes


def test_opens_after_consecutive_failures_and_lets_nothing_through() -> None:
    clock = Clock()
    b, changes = breaker(clock)
    for _ in range(2):
        assert b.allow()
        b.record(Verdict.UNKNOWN)
    assert b.state is State.CLOSED
    b.record(Verdict.UNKNOWN)
    assert b.state is State.OPEN
    assert changes == [("closed", "open", "3 consecutive failures")]
    assert not b.allow()
    assert b.retry_after() == 5.0


def test_venue_rejections_and_key_errors_never_count_as_failures() -> None:
    clock = Clock()
    b, _ = breaker(clock)
    for verdict in [Verdict.REJECTED, Verdict.KEY_FAILURE, Verdict.RETRY, Verdict.IP_BAN] * 10:
        b.record(verdict)
    assert b.state is State.CLOSED


def test_a_success_resets_the_consecutive_count() -> None:
    clock = Clock()
    b, _ = breaker(clock, min_calls=100)
    for _ in range(10):
        b.record(Verdict.UNKNOWN)
        b.record(Verdict.UNKNOWN)
        b.record(Verdict.ACCEPTED)
    assert b.state is State.CLOSED


def test_opens_on_failure_ratio_over_the_window() -> None:
    clock = Clock()
    b, changes = breaker(clock, failures=100)
    for verdict in [Verdict.UNKNOWN, Verdict.ACCEPTED] * 2 + [Verdict.UNKNOWN]:
        b.record(verdict)
        clock.now += 1
    assert b.state is State.CLOSED  # 3 of 5: too few calls to judge
    b.record(Verdict.UNKNOWN)
    assert b.state is State.OPEN
    assert changes[-1][2] == "4 of 6 calls failed in 10s"


def test_old_calls_slide_out_of_the_window() -> None:
    clock = Clock()
    b, _ = breaker(clock, failures=100)
    for _ in range(5):
        b.record(Verdict.UNKNOWN)
    clock.now = 10.0  # all five are now outside the 10 s window
    b.record(Verdict.UNKNOWN)
    assert b.state is State.CLOSED


def test_half_open_lets_exactly_one_probe_and_closes_on_its_success() -> None:
    clock = Clock()
    b, changes = breaker(clock)
    for _ in range(3):
        b.record(Verdict.UNKNOWN)
    clock.now = 4.999
    assert not b.allow()
    clock.now = 5.0
    assert b.state is State.HALF_OPEN
    assert b.allow()
    assert not b.allow()  # one probe at a time
    b.record(Verdict.ACCEPTED)
    assert b.state is State.CLOSED
    assert b.allow() and b.allow()
    assert [c[1] for c in changes] == ["open", "half_open", "closed"]


def test_a_failed_probe_opens_it_again_for_a_full_cool_down() -> None:
    clock = Clock()
    b, _ = breaker(clock)
    for _ in range(3):
        b.record(Verdict.UNKNOWN)
    clock.now = 5.0
    assert b.allow()
    b.record(Verdict.UNKNOWN)
    assert b.state is State.OPEN
    assert b.retry_after() == 5.0
    assert b.opened_count == 2


def test_a_probe_that_says_nothing_frees_the_slot_for_another() -> None:
    clock = Clock()
    b, _ = breaker(clock)
    for _ in range(3):
        b.record(Verdict.UNKNOWN)
    clock.now = 5.0
    assert b.allow()
    b.record(Verdict.RETRY)  # e.g. a 10006: no news about the venue's health
    assert b.state is State.HALF_OPEN
    assert b.allow()


def test_health_of_replies_counts_transport_failures_and_ignores_held_requests() -> None:
    from executor.breaker import health
    from executor.outcome import Failure, Reply

    assert health(Reply(failure=Failure.NOT_SENT)) is False  # connection refused
    assert health(Reply(failure=Failure.NO_ANSWER)) is False
    assert health(Reply(failure=Failure.HELD)) is None
    assert health(Reply(status=502)) is False
    assert health(Reply(status=429)) is None
    assert health(Reply(status=200, ret_code=110007)) is True  # a venue rejection
    assert health(Reply(status=200, ret_code=10016)) is False


def test_failures_that_left_the_window_no_longer_count_toward_the_ratio() -> None:
    clock = Clock()
    b, changes = breaker(clock, failures=100, min_calls=6)
    for verdict in [Verdict.UNKNOWN, Verdict.ACCEPTED] * 2 + [Verdict.ACCEPTED]:
        b.record(verdict)  # 2 of 5: too few calls to judge
    clock.now += 11  # they all leave the 10 s window
    for verdict in [Verdict.ACCEPTED, Verdict.UNKNOWN] * 3:
        b.record(verdict)
    assert changes == [("closed", "open", "3 of 6 calls failed in 10s")]
