"""Request signing against the published known-answer vectors in BYBIT_V5.md.

Every expected hex string below is copied from the doc; none is computed by
the code under test.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from executor.bybit.signing import auth_headers, compact_json, sign, verify
from tests.unit_helpers import DOC_ORDER

KEY = "ABCDEFGHIJKLMNOPQR"
SECRET = "0123456789abcdefghijklmnopqrstuvwxyz"
TIMESTAMP_MS = 1700000000000
RECV_WINDOW_MS = 5000

GET_QUERY = "category=linear&orderLinkId=sig-test-001&symbol=BTCUSDT"
GET_QUERY_SIGN = "f4683ce49fb084efe6fe1b38d657df6f032b321e022d76063b410d2706c5b5a4"
GET_EMPTY_SIGN = "f8d28ceb78c1f475e769228eeee4c336825cf466c1f9ed32515a76d78fb45f4e"
POST_COMPACT = (
    '{"category":"linear","symbol":"BTCUSDT","side":"Buy","orderType":"Limit",'
    '"qty":"0.001","price":"30000","timeInForce":"GTC","orderLinkId":"sig-test-001"}'
)
POST_COMPACT_SIGN = "facfedadb796e515d9841b722963ea3a40f3dba5895fd5b4d3910784feff510e"
POST_SPACED = (
    '{"category": "linear", "symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit", '
    '"qty": "0.001", "price": "30000", "timeInForce": "GTC", "orderLinkId": "sig-test-001"}'
)
POST_SPACED_SIGN = "6ea71a957505e995eb5810179873325704bcc771f739c9dfad0fa0fc008f6159"


@pytest.mark.parametrize(
    ("payload", "expected"),
    [
        pytest.param(GET_QUERY, GET_QUERY_SIGN, id="get-order-realtime-query"),
        pytest.param("", GET_EMPTY_SIGN, id="get-no-params"),
        pytest.param(POST_COMPACT, POST_COMPACT_SIGN, id="post-compact-json"),
        pytest.param(POST_SPACED, POST_SPACED_SIGN, id="post-json-dumps-default-separators"),
    ],
)
def test_sign_matches_published_known_answer(payload: str, expected: str) -> None:
    assert sign(SECRET, TIMESTAMP_MS, KEY, RECV_WINDOW_MS, payload) == expected


def test_compact_json_of_doc_dict_is_exactly_the_doc_payload() -> None:
    assert compact_json(DOC_ORDER) == POST_COMPACT.encode()


def test_signing_compact_json_of_doc_dict_gives_published_post_vector() -> None:
    payload = compact_json(DOC_ORDER).decode()
    assert sign(SECRET, TIMESTAMP_MS, KEY, RECV_WINDOW_MS, payload) == POST_COMPACT_SIGN


def test_compact_json_keeps_key_order_and_non_ascii_as_utf8() -> None:
    body = {"z": "1", "a": "é"}
    assert compact_json(body) == '{"z":"1","a":"é"}'.encode()


def test_same_dict_with_different_whitespace_signs_differently() -> None:
    compact = sign(SECRET, TIMESTAMP_MS, KEY, RECV_WINDOW_MS, POST_COMPACT)
    spaced = sign(SECRET, TIMESTAMP_MS, KEY, RECV_WINDOW_MS, POST_SPACED)
    assert compact != spaced


def test_verify_accepts_published_signature() -> None:
    assert verify(SECRET, TIMESTAMP_MS, KEY, RECV_WINDOW_MS, GET_QUERY, GET_QUERY_SIGN) is True


def test_verify_accepts_uppercase_hex_of_published_signature() -> None:
    upper = GET_QUERY_SIGN.upper()
    assert verify(SECRET, TIMESTAMP_MS, KEY, RECV_WINDOW_MS, GET_QUERY, upper) is True


@pytest.mark.parametrize(
    ("secret", "timestamp_ms", "payload", "signature"),
    [
        pytest.param(
            SECRET, TIMESTAMP_MS, GET_QUERY, GET_EMPTY_SIGN, id="signature-of-other-payload"
        ),
        pytest.param(
            SECRET, TIMESTAMP_MS + 1, GET_QUERY, GET_QUERY_SIGN, id="timestamp-off-by-1ms"
        ),
        pytest.param(SECRET + "x", TIMESTAMP_MS, GET_QUERY, GET_QUERY_SIGN, id="wrong-secret"),
        pytest.param(
            SECRET, TIMESTAMP_MS, GET_QUERY + "&x=1", GET_QUERY_SIGN, id="payload-with-extra-param"
        ),
        pytest.param(
            SECRET, TIMESTAMP_MS, GET_QUERY, GET_QUERY_SIGN[:-1] + "5", id="last-hex-digit-flipped"
        ),
        pytest.param(SECRET, TIMESTAMP_MS, GET_QUERY, "", id="empty-signature"),
    ],
)
def test_verify_rejects_wrong_signature(
    secret: str, timestamp_ms: int, payload: str, signature: str
) -> None:
    assert verify(secret, timestamp_ms, KEY, RECV_WINDOW_MS, payload, signature) is False


def test_auth_headers_carry_key_timestamp_window_and_published_signature() -> None:
    headers = auth_headers(KEY, SECRET, TIMESTAMP_MS, RECV_WINDOW_MS, POST_COMPACT)
    assert headers == {
        "X-BAPI-API-KEY": "ABCDEFGHIJKLMNOPQR",
        "X-BAPI-TIMESTAMP": "1700000000000",
        "X-BAPI-RECV-WINDOW": "5000",
        "X-BAPI-SIGN": POST_COMPACT_SIGN,
        "X-BAPI-SIGN-TYPE": "2",
    }


def test_auth_headers_never_contain_the_secret() -> None:
    headers = auth_headers(KEY, SECRET, TIMESTAMP_MS, RECV_WINDOW_MS, GET_QUERY)
    assert all(SECRET not in value for value in headers.values())


# What an order body can hold: text (money included), 64-bit integers, booleans, nesting.
_SCALARS = (
    st.text() | st.integers(min_value=-(2**63), max_value=2**64 - 1) | st.booleans() | st.none()
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(), _VALUES, max_size=8))
def test_compact_json_is_byte_for_byte_the_standard_librarys(body: dict[str, object]) -> None:
    expected = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    assert compact_json(body) == expected


def test_compact_json_keeps_escapes_and_non_ascii_as_the_standard_library_does() -> None:
    body = {"note": 'q"\\/\n\t\x00\x1f\x7f é 中 😀 \u2028', "n": 2**63, "ok": True, "x": None}
    expected = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    assert compact_json(body) == expected
