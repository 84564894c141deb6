"""One classification decides everything. Pure.

``classify`` maps what came back from the exchange (an HTTP status and a
retCode, or a transport failure) onto a closed set of verdicts. Retrying,
reconciling, failing over, acking and dead-lettering all read that answer.
Codes per the error-class table in BYBIT_V5.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum


class Verdict(StrEnum):
    ACCEPTED = "accepted"  # the exchange gave an orderId
    RETRY = "retry"  # rejected before processing: safe to re-sign and resend
    UNKNOWN = "unknown"  # may or may not have landed: look it up before any resend
    ALREADY_PLACED = "already_placed"  # the orderLinkId exists: an earlier attempt landed
    KEY_FAILURE = "key_failure"  # this key cannot trade: never retry on it
    REJECTED = "rejected"  # the venue said no, final
    IP_BAN = "ip_ban"  # stop all traffic for the ban window


class Failure(StrEnum):
    """Transport failures, split by whether any byte of the request left."""

    NOT_SENT = "not_sent"  # DNS, connect refused, pool timeout
    HELD = "held"  # never attempted: a local gate (breaker, IP ban) held it back
    NO_ANSWER = "no_answer"  # read timeout, reset or disconnect after sending


@dataclass(frozen=True, slots=True)
class Reply:
    status: int | None = None
    ret_code: int | None = None
    failure: Failure | None = None


RETRY_CODES = frozenset({10002, 10006, 170005, 170222})
UNKNOWN_CODES = frozenset({10000, 10016, 170001, 170007, 170032, 170146})
ALREADY_PLACED_CODES = frozenset({110072, 170141})
KEY_CODES = frozenset({10003, 10004, 10005, 10007, 10009, 10010, 33004, -2015})
IP_BAN_CODES = frozenset({10018})
RATE_LIMIT_CODE = 10006
TIMESTAMP_CODE = 10002


def classify(reply: Reply) -> Verdict:
    if reply.failure in (Failure.NOT_SENT, Failure.HELD):
        return Verdict.RETRY
    if reply.failure is Failure.NO_ANSWER:
        return Verdict.UNKNOWN
    status = reply.status
    if status == 403:
        return Verdict.IP_BAN
    if status == 429:
        return Verdict.RETRY
    if status is not None and status >= 500:
        return Verdict.UNKNOWN
    if status == 401:
        return Verdict.KEY_FAILURE
    code = reply.ret_code
    if code is None:
        # A 2xx/4xx without a readable envelope: we cannot know what happened.
        return Verdict.UNKNOWN if status is None or status < 400 else Verdict.REJECTED
    if code == 0:
        return Verdict.ACCEPTED
    if code in RETRY_CODES:
        return Verdict.RETRY
    if code in UNKNOWN_CODES:
        return Verdict.UNKNOWN
    if code in ALREADY_PLACED_CODES:
        return Verdict.ALREADY_PLACED
    if code in KEY_CODES:
        return Verdict.KEY_FAILURE
    if code in IP_BAN_CODES:
        return Verdict.IP_BAN
    return Verdict.REJECTED


_SERVER_TS = re.compile(r"server_timestamp\[(\d+)\]")


def server_timestamp_ms(ret_msg: str) -> int | None:
    """The server time Bybit puts in a 10002 message, if present."""
    match = _SERVER_TS.search(ret_msg)
    return int(match.group(1)) if match else None
