"""Bybit V5 request authentication, in the order Bybit's gateway checks.

Missing auth headers (10001), timestamp window (10002), key (10003), key
expiry (33004), IP allowlist (10010), permission (10005), signature (10004).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Container, Mapping

from executor.bybit.signing import verify
from executor.bybit.sim_instruments import Rejection
from executor.bybit.sim_keys import SimKey
from executor.bybit.sim_types import SimRequest

DEFAULT_RECV_WINDOW_MS = 5000
FUTURE_TOLERANCE_MS = 1000


def authenticate(
    req: SimRequest,
    *,
    keys: Mapping[str, SimKey],
    revoked: Container[str],
    now_ms: int,
    trade_category: str | None,
) -> SimKey | Rejection:
    """The key a request is signed with, or Bybit's rejection.

    ``trade_category`` is None for read endpoints; for order endpoints it is the
    requested category ("" when absent), checked against the key's permissions.
    """
    api_key, ts_raw, sign = req.api_key or "", req.timestamp or "", req.sign or ""
    rw_raw = req.recv_window
    if not api_key:
        return (10001, "empty value: apiTimestamp[] apiKey[] apiSignature[]")
    if not ts_raw:
        return (10001, f"empty value: apiTimestamp[] apiKey[{api_key}]")
    if not sign:
        return (10001, f"empty value: apiTimestamp[{ts_raw}] apiKey[{api_key}] apiSignature[]")
    if not (ts_raw.isascii() and ts_raw.isdigit()):
        return (10001, "openapi params error! req_timestamp invalid")
    recv_window = DEFAULT_RECV_WINDOW_MS
    if rw_raw:
        if not (rw_raw.isascii() and rw_raw.isdigit()):
            return (10001, "openapi params error! recv_window invalid")
        recv_window = int(rw_raw)
    ts, now = int(ts_raw), now_ms
    if ts >= now + FUTURE_TOLERANCE_MS or ts < now - recv_window:
        return (
            10002,
            "invalid request, please check your server timestamp or recv_window param. "
            f"req_timestamp[{ts}],server_timestamp[{now}],recv_window[{recv_window}]",
        )
    key = keys.get(api_key)
    if key is None or api_key in revoked:
        return (10003, "API key is invalid.")
    if key.is_expired(now):
        return (33004, "Your api key has expired.")
    if not key.allows_ip(req.client_ip):
        return (10010, "Unmatched IP, please check your API key's bound IP addresses.")
    if trade_category is not None and not key.can_trade(trade_category):
        return (10005, "Permission denied, please check your API key permissions.")
    payload = req.body.decode("utf-8", "replace") if req.method == "POST" else req.query
    signed = sign.isascii() and _signature_ok(key.secret, ts_raw, api_key, rw_raw, payload, sign)
    if not signed:
        origin = f"{ts_raw}{api_key}{rw_raw or ''}{payload}"
        return (10004, f"error sign! origin_string[{origin}]")
    return key


def _signature_ok(
    secret: str, ts_raw: str, api_key: str, rw_raw: str | None, payload: str, signature: str
) -> bool:
    if rw_raw and str(int(rw_raw)) == rw_raw and str(int(ts_raw)) == ts_raw:
        return verify(secret, int(ts_raw), api_key, int(rw_raw), payload, signature)
    # Bybit signs the header text verbatim: no recv-window header adds nothing to the string.
    origin = f"{ts_raw}{api_key}{rw_raw or ''}{payload}"
    expected = hmac.new(secret.encode(), origin.encode(), hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, signature.lower())
