"""Tiny helpers shared by tests of every level."""

from __future__ import annotations

import json
from typing import Any


def encode(signal: dict[str, Any]) -> bytes:
    return json.dumps(signal, separators=(",", ":")).encode()


# The order behind the published POST vector in BYBIT_V5.md.
DOC_ORDER = {
    "category": "linear",
    "symbol": "BTCUSDT",
    "side": "Buy",
    "orderType": "Limit",
    "qty": "0.001",
    "price": "30000",
    "timeInForce": "GTC",
    "orderLinkId": "sig-test-001",
}
