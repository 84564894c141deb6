"""What the exchange said, parsed. Pure: bytes and headers in, ``Answer`` out.

A create-batch answer is read order by order as well: its top-level retCode
can be 0 while single orders fail, and an order the answer does not clearly
account for is reported as unknown, never as accepted.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from executor.outcome import Reply


@dataclass(frozen=True)
class RateLimit:
    limit: int | None = None
    remaining: int | None = None
    reset_ms: int | None = None


@dataclass(frozen=True)
class Answer:
    reply: Reply
    ret_msg: str = ""
    result: Mapping[str, Any] = field(default_factory=dict)
    ext: Mapping[str, Any] = field(default_factory=dict)
    rate: RateLimit = field(default_factory=RateLimit)
    error: str = ""  # transport failure description, never containing secrets

    @property
    def ok(self) -> bool:
        return self.reply.ret_code == 0 and self.reply.failure is None


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def parse_answer(status: int, content: bytes, headers: Mapping[str, str]) -> Answer:
    rate = RateLimit(
        limit=_int(headers.get("X-Bapi-Limit")),
        remaining=_int(headers.get("X-Bapi-Limit-Status")),
        reset_ms=_int(headers.get("X-Bapi-Limit-Reset-Timestamp")),
    )
    try:
        envelope = orjson.loads(content) if content else None
    except orjson.JSONDecodeError:
        envelope = None
    if not isinstance(envelope, dict) or "retCode" not in envelope:
        text = content[:200].decode(errors="replace")
        return Answer(Reply(status=status), ret_msg=f"HTTP {status}: {text}", rate=rate)
    result = envelope.get("result")
    ext = envelope.get("retExtInfo")
    return Answer(
        Reply(status=status, ret_code=_int(str(envelope["retCode"]))),
        ret_msg=str(envelope.get("retMsg", "")),
        result=result if isinstance(result, dict) else {},
        ext=ext if isinstance(ext, dict) else {},
        rate=rate,
    )


@dataclass(frozen=True, slots=True)
class BatchItem:
    """One order of a create-batch. ``reply`` feeds ``classify`` like a single
    order's; ``code`` None means the answer does not say what became of it."""

    reply: Reply
    msg: str
    order_id: str
    order_link_id: str

    @property
    def code(self) -> int | None:
        return self.reply.ret_code


@dataclass(frozen=True, slots=True)
class BatchAnswer:
    answer: Answer
    items: tuple[BatchItem, ...]


def batch_items(answer: Answer, bodies: Sequence[Mapping[str, Any]]) -> tuple[BatchItem, ...]:
    """One item per order sent, in the order sent.

    ``result.list[i]`` and ``retExtInfo.list[i]`` belong to ``bodies[i]``; an
    orderLinkId in the result that differs from the one sent means the
    positions cannot be trusted, so that order is unknown.
    """
    links = [_text(body.get("orderLinkId")) for body in bodies]
    if not answer.ok:
        # The batch as a whole was refused, lost or garbled: every order shares its fate.
        msg = answer.ret_msg or answer.error
        return tuple(BatchItem(answer.reply, msg, "", link) for link in links)
    results = _rows(answer.result)
    codes = _rows(answer.ext)
    status = answer.reply.status
    return tuple(
        _item(status, link, _at(results, i), _at(codes, i)) for i, link in enumerate(links)
    )


def _item(
    status: int | None, sent: str, result: Mapping[str, Any] | None, ext: Mapping[str, Any] | None
) -> BatchItem:
    if result is None or ext is None:
        return _unknown(status, sent, "no result for this order in the answer")
    code = _int(str(ext.get("code")))
    if code is None:
        return _unknown(status, sent, f"unreadable code {ext.get('code')!r}")
    named = _text(result.get("orderLinkId"))
    if sent and named and named != sent:
        return _unknown(status, sent, f"the answer names orderLinkId {named!r} at this position")
    order_id = _text(result.get("orderId"))
    if code == 0 and not order_id:
        return _unknown(status, sent, "accepted without an orderId")
    return BatchItem(
        Reply(status=status, ret_code=code), _text(ext.get("msg")), order_id, sent or named
    )


def _unknown(status: int | None, link: str, why: str) -> BatchItem:
    return BatchItem(Reply(status=status), why, "", link)


def _rows(section: Mapping[str, Any]) -> list[Any]:
    rows = section.get("list")
    return rows if isinstance(rows, list) else []


def _at(rows: list[Any], index: int) -> Mapping[str, Any] | None:
    row = rows[index] if index < len(rows) else None
    return row if isinstance(row, dict) else None


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
