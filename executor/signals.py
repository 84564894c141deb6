"""Signals: parsing, validation, publisher HMAC and orderLinkId derivation. Pure.

A signal arrives as the exact bytes of one JSON object. Numbers are parsed as
``Decimal`` straight from their text, so a quantity never passes through float.
Anything wrong raises ``InvalidSignal`` with a short reason for the dead-letter
stream.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Mapping
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    model_validator,
)

MAX_SIGNAL_BYTES = 64 * 1024
DEFAULT_TTL_MS = 30_000
MAX_TTL_MS = 24 * 3600 * 1000
ORDER_LINK_ID = re.compile(r"[A-Za-z0-9_-]{1,36}")
SYMBOL = r"^[A-Z0-9]{2,32}$"


class InvalidSignal(ValueError):
    """The entry cannot become an order; ``reason`` goes to the dead-letter stream."""

    def __init__(self, reason: str, kind: str = "invalid") -> None:
        super().__init__(reason)
        self.reason = reason
        self.kind = kind


class Side(StrEnum):
    BUY = "Buy"
    SELL = "Sell"


class OrderType(StrEnum):
    MARKET = "Market"
    LIMIT = "Limit"


class Category(StrEnum):
    LINEAR = "linear"
    INVERSE = "inverse"
    SPOT = "spot"
    OPTION = "option"


class MarketUnit(StrEnum):
    BASE = "baseCoin"
    QUOTE = "quoteCoin"


class TimeInForce(StrEnum):
    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"
    POST_ONLY = "PostOnly"


def _canonical(choices: type[StrEnum]) -> BeforeValidator:
    """Accept any letter case and map it onto the exchange's spelling."""
    by_lower = {member.value.lower(): member.value for member in choices}

    def pick(value: object) -> object:
        if isinstance(value, str):
            return by_lower.get(value.strip().lower(), value)
        return value

    return BeforeValidator(pick)


_DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
# Far beyond any real quantity or price, yet small enough that rendering the
# number for the exchange can never blow up.
MAX_EXPONENT = 30


def _decimal(value: object) -> Decimal:
    # bool is an int subclass: "qty": true must not become 1.
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise ValueError("must be a decimal number or string")
    if isinstance(value, str):
        value = value.strip()
        # Decimal() also takes "1_000" and non-ASCII digits; a publisher's typo
        # must not become a quantity.
        if value.lstrip("+-").lower() in {"nan", "snan", "inf", "infinity"}:
            raise ValueError("must be finite")
        if not _DECIMAL_TEXT.fullmatch(value):
            raise ValueError("must be a decimal number")
    number = Decimal(value)
    if not number.is_finite():
        raise ValueError("must be finite")
    if number <= 0:
        raise ValueError("must be greater than 0")
    if abs(number.adjusted()) > MAX_EXPONENT or len(number.as_tuple().digits) > 2 * MAX_EXPONENT:
        raise ValueError("is out of range")
    return number


def _no_bool(value: object) -> object:
    if isinstance(value, bool):
        raise ValueError("Input should be 0, 1 or 2")
    return value


PositiveDecimal = Annotated[Decimal, BeforeValidator(_decimal)]


class Signal(BaseModel):
    """One trade signal, as published. Unknown fields are refused, so a typo in
    ``reduce_only`` cannot silently open a position."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=64)
    symbol: Annotated[
        str, BeforeValidator(lambda v: v.strip().upper() if isinstance(v, str) else v)
    ] = Field(pattern=SYMBOL)
    side: Annotated[Side, _canonical(Side)]
    order_type: Annotated[OrderType, _canonical(OrderType)]
    qty: PositiveDecimal
    price: PositiveDecimal | None = None
    category: Annotated[Category, _canonical(Category)] = Category.LINEAR
    time_in_force: Annotated[TimeInForce, _canonical(TimeInForce)] | None = None
    reduce_only: StrictBool | None = None
    take_profit: PositiveDecimal | None = None
    stop_loss: PositiveDecimal | None = None
    market_unit: Annotated[MarketUnit, _canonical(MarketUnit)] | None = None
    position_idx: Annotated[Literal[0, 1, 2], BeforeValidator(_no_bool)] | None = None
    ts: StrictInt = Field(ge=0, le=10**14)
    ttl_ms: StrictInt = Field(DEFAULT_TTL_MS, ge=1, le=MAX_TTL_MS)
    strategy: str | None = Field(None, max_length=64)
    source: str | None = Field(None, max_length=64)

    @model_validator(mode="after")
    def _limit_needs_price(self) -> Signal:
        if self.order_type is OrderType.LIMIT and self.price is None:
            raise ValueError("price is required for a Limit order")
        return self

    @property
    def order_link_id(self) -> str:
        return order_link_id(self.id)

    @property
    def deadline_ms(self) -> int:
        return self.ts + self.ttl_ms

    def order_body(self) -> dict[str, Any]:
        """The /v5/order/create body, in a fixed key order (it is signed as sent)."""
        body: dict[str, Any] = {
            "category": self.category.value,
            "symbol": self.symbol,
            "side": self.side.value,
            "orderType": self.order_type.value,
            "qty": format(self.qty, "f"),
        }
        if self.price is not None and self.order_type is OrderType.LIMIT:
            body["price"] = format(self.price, "f")
        if self.time_in_force is not None:
            body["timeInForce"] = self.time_in_force.value
        if self.category is Category.SPOT and self.order_type is OrderType.MARKET:
            # Bybit reads a spot market buy's qty in quote coin unless told
            # otherwise; qty means base coin everywhere else, so say so.
            body["marketUnit"] = (self.market_unit or MarketUnit.BASE).value
        body["orderLinkId"] = self.order_link_id
        if self.reduce_only is not None:
            body["reduceOnly"] = self.reduce_only
        if self.position_idx is not None:
            body["positionIdx"] = self.position_idx
        if self.take_profit is not None:
            body["takeProfit"] = format(self.take_profit, "f")
        if self.stop_loss is not None:
            body["stopLoss"] = format(self.stop_loss, "f")
        return body


def order_link_id(signal_id: str) -> str:
    """The signal id itself when Bybit accepts it, else a stable 36-char digest.

    Deterministic on purpose: a resend of the same signal carries the same
    orderLinkId, so the exchange refuses a second order (110072).
    """
    if ORDER_LINK_ID.fullmatch(signal_id):
        return signal_id
    return "h-" + hashlib.sha256(signal_id.encode()).hexdigest()[:34]


def sign_signal(secret: str, raw: bytes) -> str:
    """The publisher signature: lowercase hex HMAC-SHA256 over the exact bytes."""
    return hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()


def check_signature(secret: str, raw: bytes, signature: bytes | str | None) -> None:
    if signature is None:
        raise InvalidSignal("unsigned signal", kind="unauthenticated")
    given = signature.encode() if isinstance(signature, str) else signature
    expected = sign_signal(secret, raw).encode()
    # Bytes compare: a non-ASCII signature is simply wrong, never an exception.
    if not hmac.compare_digest(expected, given.strip().lower()):
        raise InvalidSignal("bad signature", kind="unauthenticated")


def authenticate(
    secrets: Mapping[str, str], raw: bytes, signature: bytes | None, kid: bytes | None
) -> None:
    """Check a publisher's signature. With a key id, only that key's secret may
    sign; without one, any configured secret may (so two can overlap during a
    rotation)."""
    if signature is None:
        raise InvalidSignal("unsigned signal", kind="unauthenticated")
    if kid:
        secret = secrets.get(kid.decode(errors="replace"))
        if secret is None:
            raise InvalidSignal("unknown signing key id", kind="unauthenticated")
        check_signature(secret, raw, signature)
        return
    for secret in secrets.values():
        try:
            check_signature(secret, raw, signature)
        except InvalidSignal:
            continue
        return
    raise InvalidSignal("bad signature", kind="unauthenticated")


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number")


def parse_signal(raw: bytes | str, *, default_ts_ms: int | None = None) -> Signal:
    """Parse and validate one signal; raise InvalidSignal with a short reason."""
    try:
        data = raw.encode() if isinstance(raw, str) else raw
    except UnicodeEncodeError:
        raise InvalidSignal("signal is not valid UTF-8 text") from None
    if len(data) > MAX_SIGNAL_BYTES:
        raise InvalidSignal(f"signal too large ({len(data)} bytes > {MAX_SIGNAL_BYTES})")
    try:
        obj = json.loads(data, parse_float=Decimal, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        raise InvalidSignal(f"not valid JSON: {_short(str(exc))}") from None
    if not isinstance(obj, dict):
        raise InvalidSignal("signal must be a JSON object")
    if "ts" not in obj and default_ts_ms is not None:
        obj["ts"] = default_ts_ms
    try:
        return Signal.model_validate(obj)
    except ValidationError as exc:
        raise InvalidSignal(_reason(exc)) from None


def _reason(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors(include_url=False)[:5]:
        where = ".".join(str(p) for p in error["loc"])
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            message = "unknown field"
        elif error["type"] == "missing":
            message = "required"
        parts.append(f"{where}: {message}" if where else message)
    return _short("; ".join(parts))


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."
