"""Bybit V5 request signing (HMAC keys). Pure: no I/O, no clock.

The string to sign is ``timestamp + api_key + recv_window + payload`` where the
payload is the exact query string of a GET or the exact body bytes of a POST.
Callers serialise once, sign those bytes and send those same bytes.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from typing import Any

import orjson

HEADER_KEY = "X-BAPI-API-KEY"
HEADER_TIMESTAMP = "X-BAPI-TIMESTAMP"
HEADER_RECV_WINDOW = "X-BAPI-RECV-WINDOW"
HEADER_SIGN = "X-BAPI-SIGN"
HEADER_SIGN_TYPE = "X-BAPI-SIGN-TYPE"


def sign(secret: str, timestamp_ms: int, api_key: str, recv_window_ms: int, payload: str) -> str:
    """Lowercase hex HMAC-SHA256 over Bybit's string to sign."""
    message = f"{timestamp_ms}{api_key}{recv_window_ms}{payload}"
    return hmac.digest(secret.encode(), message.encode(), "sha256").hex()


def auth_headers(
    api_key: str, secret: str, timestamp_ms: int, recv_window_ms: int, payload: str
) -> dict[str, str]:
    return {
        HEADER_KEY: api_key,
        HEADER_TIMESTAMP: str(timestamp_ms),
        HEADER_RECV_WINDOW: str(recv_window_ms),
        HEADER_SIGN: sign(secret, timestamp_ms, api_key, recv_window_ms, payload),
        HEADER_SIGN_TYPE: "2",
    }


def compact_json(body: Mapping[str, Any]) -> bytes:
    """The one serialisation of a POST body: compact, key order preserved, UTF-8.

    Byte for byte what ``json.dumps(separators=(",", ":"), ensure_ascii=False)``
    gives for the strings, integers and booleans an order holds (money is a
    string, never a float), in a small fraction of the time.
    """
    return orjson.dumps(body)


def verify(
    secret: str, timestamp_ms: int, api_key: str, recv_window_ms: int, payload: str, signature: str
) -> bool:
    expected = sign(secret, timestamp_ms, api_key, recv_window_ms, payload)
    return hmac.compare_digest(expected, signature.lower())
