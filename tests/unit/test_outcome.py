"""The one classification: every row of BYBIT_V5.md's error-class table."""

from __future__ import annotations

import pytest

from executor.outcome import Failure, Reply, Verdict, classify, server_timestamp_ms


def _code(code: int) -> Reply:
    """A business answer: HTTP 200 with this retCode."""
    return Reply(status=200, ret_code=code)


def _http(status: int) -> Reply:
    """An HTTP status without a readable envelope."""
    return Reply(status=status)


def _cases(verdict: Verdict, replies: dict[str, Reply]) -> list[object]:
    return [pytest.param(reply, verdict, id=name) for name, reply in replies.items()]


RETRY = _cases(
    Verdict.RETRY,
    {
        "10002-timestamp": _code(10002),
        "10006-too-many-visits": _code(10006),
        "170005": _code(170005),
        "170222": _code(170222),
        "http-429": _http(429),
        "transport-not-sent": Reply(failure=Failure.NOT_SENT),
    },
)
UNKNOWN = _cases(
    Verdict.UNKNOWN,
    {
        "transport-no-answer": Reply(failure=Failure.NO_ANSWER),
        "http-500": _http(500),
        "http-502": _http(502),
        "http-503": _http(503),
        "http-504": _http(504),
        "10000": _code(10000),
        "10016": _code(10016),
        "170001": _code(170001),
        "170007": _code(170007),
        "170032": _code(170032),
        "170146": _code(170146),
    },
)
ALREADY_PLACED = _cases(
    Verdict.ALREADY_PLACED, {"110072": _code(110072), "170141-spot": _code(170141)}
)
KEY_FAILURE = _cases(
    Verdict.KEY_FAILURE,
    {
        "10003": _code(10003),
        "10004": _code(10004),
        "10005": _code(10005),
        "10007": _code(10007),
        "10009": _code(10009),
        "10010": _code(10010),
        "33004": _code(33004),
        "-2015-spot": _code(-2015),
        "http-401": _http(401),
    },
)
REJECTED = _cases(
    Verdict.REJECTED,
    {
        str(code): _code(code)
        for code in (
            10001,
            10024,
            10027,
            110003,
            110007,
            110017,
            110020,
            110094,
            170131,
            170136,
            170140,
        )
    },
)
IP_BAN = _cases(Verdict.IP_BAN, {"http-403": _http(403), "10018": _code(10018)})
ACCEPTED = _cases(Verdict.ACCEPTED, {"0": _code(0)})


@pytest.mark.parametrize(
    ("reply", "verdict"),
    RETRY + UNKNOWN + ALREADY_PLACED + KEY_FAILURE + REJECTED + IP_BAN + ACCEPTED,
)
def test_classify_follows_error_class_table(reply: Reply, verdict: Verdict) -> None:
    assert classify(reply) is verdict


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (403, Verdict.IP_BAN),
        (429, Verdict.RETRY),
        (503, Verdict.UNKNOWN),
        (401, Verdict.KEY_FAILURE),
    ],
)
def test_http_status_decides_even_when_envelope_says_ok(status: int, verdict: Verdict) -> None:
    assert classify(Reply(status=status, ret_code=0)) is verdict


def test_transport_failure_wins_over_any_status() -> None:
    assert classify(Reply(status=200, ret_code=0, failure=Failure.NO_ANSWER)) is Verdict.UNKNOWN


def test_ok_status_without_readable_envelope_is_unknown() -> None:
    assert classify(Reply(status=200)) is Verdict.UNKNOWN


def test_http_404_without_envelope_is_final_rejection() -> None:
    assert classify(Reply(status=404)) is Verdict.REJECTED


def test_unlisted_business_code_is_final_rejection() -> None:
    assert classify(_code(123456)) is Verdict.REJECTED


def test_verdict_and_failure_values_are_stable_strings() -> None:
    assert [v.value for v in Verdict] == [
        "accepted",
        "retry",
        "unknown",
        "already_placed",
        "key_failure",
        "rejected",
        "ip_ban",
    ]
    assert [f.value for f in Failure] == ["not_sent", "held", "no_answer"]


def test_a_request_held_back_by_a_local_gate_is_safe_to_send_later() -> None:
    assert classify(Reply(failure=Failure.HELD)) is Verdict.RETRY


def test_server_timestamp_parsed_from_realistic_10002_message() -> None:
    message = (
        "invalid request, please check your server timestamp or recv_window param. "
        "req_timestamp[1700000003000],server_timestamp[1700000000000],recv_window[5000]"
    )
    assert server_timestamp_ms(message) == 1700000000000


@pytest.mark.parametrize(
    "message",
    [
        pytest.param("Too many visits!", id="other-message"),
        pytest.param("", id="empty"),
        pytest.param("server_timestamp[]", id="empty-brackets"),
        pytest.param("server_timestamp[abc]", id="not-a-number"),
    ],
)
def test_server_timestamp_absent_gives_none(message: str) -> None:
    assert server_timestamp_ms(message) is None
