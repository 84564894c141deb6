"""Signal parsing, validation, publisher HMAC and orderLinkId derivation."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from executor.signals import (
    MAX_SIGNAL_BYTES,
    InvalidSignal,
    Signal,
    check_signature,
    order_link_id,
    parse_signal,
    sign_signal,
)

FUZZ = settings(max_examples=200, deadline=None, database=None)

TS = 1700000000000
BASE: dict[str, Any] = {
    "id": "sig-001",
    "symbol": "BTCUSDT",
    "side": "Buy",
    "order_type": "Market",
    "qty": "0.1",
    "ts": TS,
}
BASE_RAW = (
    b'{"id":"sig-001","symbol":"BTCUSDT","side":"Buy","order_type":"Market",'
    b'"qty":"0.1","ts":1700000000000}'
)
# openssl dgst -sha256 -hmac publisher-secret over BASE_RAW
BASE_SIG = "e86b4315ab584e875d6fe59c8afb31201ab4f6409d02d6a4fc8dbe0f6b92c4fb"
PUBLISHER_SECRET = "publisher-secret"

REQUIRED = ("id", "symbol", "side", "order_type", "qty", "ts")
LINK_ID = re.compile(r"[A-Za-z0-9_-]{36}")


def signal_bytes(**changes: Any) -> bytes:
    data = {**BASE, **changes}
    return json.dumps(data).encode()


def refusal(raw: bytes | str, **kwargs: Any) -> InvalidSignal:
    with pytest.raises(InvalidSignal) as info:
        parse_signal(raw, **kwargs)
    return info.value


# --- valid signals ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given_fields", "expected_body"),
    [
        pytest.param(
            {"category": "LINEAR", "side": "buy", "order_type": "market"},
            {
                "category": "linear",
                "symbol": "BTCUSDT",
                "side": "Buy",
                "orderType": "Market",
                "qty": "0.1",
                "orderLinkId": "sig-001",
            },
            id="linear-buy-market",
        ),
        pytest.param(
            {"category": "Inverse", "side": "SELL", "order_type": "limit", "price": "30000"},
            {
                "category": "inverse",
                "symbol": "BTCUSDT",
                "side": "Sell",
                "orderType": "Limit",
                "qty": "0.1",
                "price": "30000",
                "orderLinkId": "sig-001",
            },
            id="inverse-sell-limit",
        ),
        pytest.param(
            {"category": " spot ", "side": "bUy", "order_type": "LIMIT", "price": "0.5"},
            {
                "category": "spot",
                "symbol": "BTCUSDT",
                "side": "Buy",
                "orderType": "Limit",
                "qty": "0.1",
                "price": "0.5",
                "orderLinkId": "sig-001",
            },
            id="spot-buy-limit",
        ),
        pytest.param(
            {"category": "OPTION", "side": "sell", "order_type": "Market"},
            {
                "category": "option",
                "symbol": "BTCUSDT",
                "side": "Sell",
                "orderType": "Market",
                "qty": "0.1",
                "orderLinkId": "sig-001",
            },
            id="option-sell-market",
        ),
    ],
)
def test_valid_signal_becomes_exchange_spelling(
    given_fields: dict[str, Any], expected_body: dict[str, Any]
) -> None:
    signal = parse_signal(signal_bytes(**given_fields))
    assert signal.order_body() == expected_body


def test_category_defaults_to_linear() -> None:
    assert parse_signal(BASE_RAW).order_body()["category"] == "linear"


def test_lowercase_symbol_is_upper_cased() -> None:
    assert parse_signal(signal_bytes(symbol="ethusdt")).symbol == "ETHUSDT"


def test_order_body_with_every_optional_field_in_fixed_key_order() -> None:
    signal = parse_signal(
        signal_bytes(
            order_type="Limit",
            price="30000.5",
            time_in_force="postonly",
            reduce_only=True,
            position_idx=2,
            take_profit="31000",
            stop_loss="29000.25",
            strategy="breakout",
            source="tv",
        )
    )
    body = signal.order_body()
    assert list(body.items()) == [
        ("category", "linear"),
        ("symbol", "BTCUSDT"),
        ("side", "Buy"),
        ("orderType", "Limit"),
        ("qty", "0.1"),
        ("price", "30000.5"),
        ("timeInForce", "PostOnly"),
        ("orderLinkId", "sig-001"),
        ("reduceOnly", True),
        ("positionIdx", 2),
        ("takeProfit", "31000"),
        ("stopLoss", "29000.25"),
    ]
    assert (signal.strategy, signal.source) == ("breakout", "tv")


def test_market_order_with_price_does_not_send_the_price() -> None:
    body = parse_signal(signal_bytes(price="30000")).order_body()
    assert "price" not in body


def test_signal_is_frozen() -> None:
    signal = parse_signal(BASE_RAW)
    with pytest.raises(ValueError, match="frozen"):
        signal.qty = Decimal(5)  # type: ignore[misc]


def test_str_input_parses_like_bytes() -> None:
    assert parse_signal(BASE_RAW.decode()) == parse_signal(BASE_RAW)


# --- Decimal exactness -----------------------------------------------------------------------


def test_json_number_qty_stays_exact_decimal() -> None:
    signal = parse_signal(BASE_RAW.replace(b'"qty":"0.1"', b'"qty":0.1'))
    assert type(signal.qty) is Decimal
    assert str(signal.qty) == "0.1"
    assert signal.order_body()["qty"] == "0.1"


@pytest.mark.parametrize(
    ("qty_json", "decimal", "rendered"),
    [
        pytest.param("1e-8", Decimal("0.00000001"), "0.00000001", id="number-1e-8"),
        pytest.param('"1e-8"', Decimal("0.00000001"), "0.00000001", id="string-1e-8"),
        pytest.param("1e-3", Decimal("0.001"), "0.001", id="number-1e-3"),
        pytest.param('"1E-3"', Decimal("0.001"), "0.001", id="string-1E-3"),
        pytest.param("3e4", Decimal(30000), "30000", id="number-3e4"),
        pytest.param("5", Decimal(5), "5", id="integer"),
        pytest.param('" 0.25 "', Decimal("0.25"), "0.25", id="padded-string"),
        pytest.param(
            "0.30000000000000004",
            Decimal("0.30000000000000004"),
            "0.30000000000000004",
            id="float-noise-kept-verbatim",
        ),
    ],
)
def test_qty_is_decimal_and_rendered_plain(qty_json: str, decimal: Decimal, rendered: str) -> None:
    raw = BASE_RAW.replace(b'"qty":"0.1"', f'"qty":{qty_json}'.encode())
    signal = parse_signal(raw)
    assert type(signal.qty) is Decimal
    assert signal.qty == decimal
    assert signal.order_body()["qty"] == rendered


def test_price_number_is_decimal_and_rendered_plain() -> None:
    raw = BASE_RAW.replace(b'"Market"', b'"Limit","price":2.5e1')
    signal = parse_signal(raw)
    assert signal.price == Decimal(25)
    assert signal.order_body()["price"] == "25"


# --- Limit, ts, ttl, deadline ----------------------------------------------------------------


def test_limit_without_price_is_refused() -> None:
    error = refusal(signal_bytes(order_type="Limit"))
    assert error.reason == "price is required for a Limit order"
    assert error.kind == "invalid"


def test_missing_ts_takes_default_ts_ms() -> None:
    raw = json.dumps({k: v for k, v in BASE.items() if k != "ts"})
    assert parse_signal(raw, default_ts_ms=1234).ts == 1234


def test_given_ts_wins_over_default_ts_ms() -> None:
    assert parse_signal(BASE_RAW, default_ts_ms=1234).ts == TS


def test_missing_ts_without_default_is_refused() -> None:
    raw = json.dumps({k: v for k, v in BASE.items() if k != "ts"})
    assert refusal(raw).reason == "ts: required"


def test_ttl_defaults_to_30s_and_sets_deadline() -> None:
    signal = parse_signal(BASE_RAW)
    assert signal.ttl_ms == 30_000
    assert signal.deadline_ms == TS + 30_000


@pytest.mark.parametrize("ttl_ms", [1, 5_000, 86_400_000])
def test_ttl_within_bounds_is_accepted(ttl_ms: int) -> None:
    signal = parse_signal(signal_bytes(ttl_ms=ttl_ms))
    assert signal.deadline_ms == TS + ttl_ms


@pytest.mark.parametrize(
    ("ttl_ms", "reason"),
    [
        (0, "ttl_ms: Input should be greater than or equal to 1"),
        (-5, "ttl_ms: Input should be greater than or equal to 1"),
        (86_400_001, "ttl_ms: Input should be less than or equal to 86400000"),
    ],
)
def test_ttl_out_of_bounds_is_refused(ttl_ms: int, reason: str) -> None:
    assert refusal(signal_bytes(ttl_ms=ttl_ms)).reason == reason


# --- orderLinkId -----------------------------------------------------------------------------


@pytest.mark.parametrize("signal_id", ["a", "sig-001", "A_b-9", "x" * 36])
def test_bybit_compatible_id_is_the_order_link_id(signal_id: str) -> None:
    assert order_link_id(signal_id) == signal_id
    assert parse_signal(signal_bytes(id=signal_id)).order_body()["orderLinkId"] == signal_id


@pytest.mark.parametrize(
    "signal_id",
    ["x" * 37, "sig 001", "a/b", "sig.001", "ордер-1", "sig-001\n", "x" * 64, "emoji-🚀"],
)
def test_other_id_becomes_stable_36_char_digest(signal_id: str) -> None:
    link = order_link_id(signal_id)
    assert LINK_ID.fullmatch(link)
    assert link != signal_id
    assert order_link_id(signal_id) == link


def test_signal_order_link_id_is_the_digest_of_its_id() -> None:
    signal = parse_signal(signal_bytes(id="tv:alert/42"))
    assert signal.order_link_id == order_link_id("tv:alert/42")
    assert signal.order_body()["orderLinkId"] == order_link_id("tv:alert/42")


def test_different_ids_get_different_digests() -> None:
    ids = [f"alert/{n}" for n in range(2000)] + ["a b", "a  b", "a/b", "a\\b"]
    assert len({order_link_id(i) for i in ids}) == len(ids)


@FUZZ
@given(st.text(min_size=1, max_size=80))
def test_any_id_gives_a_bybit_valid_order_link_id(signal_id: str) -> None:
    link = order_link_id(signal_id)
    assert re.fullmatch(r"[A-Za-z0-9_-]{1,36}", link)
    assert order_link_id(signal_id) == link


@FUZZ
@given(st.text(min_size=1, max_size=64), st.text(min_size=1, max_size=64))
def test_distinct_ids_never_share_an_order_link_id(first: str, second: str) -> None:
    if first != second:
        assert order_link_id(first) != order_link_id(second)


# --- publisher HMAC --------------------------------------------------------------------------


def test_sign_signal_matches_openssl_known_answer() -> None:
    assert sign_signal(PUBLISHER_SECRET, BASE_RAW) == BASE_SIG


@pytest.mark.parametrize(
    "signature",
    [BASE_SIG, BASE_SIG.encode(), BASE_SIG.upper(), f" {BASE_SIG}\n"],
    ids=["str", "bytes", "uppercase", "padded"],
)
def test_signature_over_exact_bytes_is_accepted(signature: str | bytes) -> None:
    check_signature(PUBLISHER_SECRET, BASE_RAW, signature)  # does not raise


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(BASE_RAW.replace(b'"0.1"', b'"0.2"'), id="one-byte-changed"),
        pytest.param(BASE_RAW.replace(b'","', b'", "', 1), id="whitespace-added"),
        pytest.param(BASE_RAW + b"\n", id="trailing-newline"),
        pytest.param(json.dumps(BASE).encode(), id="same-dict-reserialised"),
    ],
)
def test_signature_fails_for_other_bytes(raw: bytes) -> None:
    with pytest.raises(InvalidSignal) as info:
        check_signature(PUBLISHER_SECRET, raw, BASE_SIG)
    assert (info.value.reason, info.value.kind) == ("bad signature", "unauthenticated")


def test_signature_with_other_secret_fails() -> None:
    with pytest.raises(InvalidSignal) as info:
        check_signature("other-secret", BASE_RAW, BASE_SIG)
    assert (info.value.reason, info.value.kind) == ("bad signature", "unauthenticated")


def test_unsigned_signal_is_unauthenticated() -> None:
    with pytest.raises(InvalidSignal) as info:
        check_signature(PUBLISHER_SECRET, BASE_RAW, None)
    assert (info.value.reason, info.value.kind) == ("unsigned signal", "unauthenticated")


@pytest.mark.parametrize("signature", [b"\xff" * 64, "é" * 64], ids=["bytes-0xff", "non-ascii-str"])
def test_non_ascii_signature_is_unauthenticated(signature: str | bytes) -> None:
    with pytest.raises(InvalidSignal) as info:
        check_signature(PUBLISHER_SECRET, BASE_RAW, signature)
    assert (info.value.reason, info.value.kind) == ("bad signature", "unauthenticated")


# --- bad inputs ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        pytest.param(b"", "not valid JSON: Expecting value: line 1 column 1 (char 0)", id="empty"),
        pytest.param(b"[1]", "signal must be a JSON object", id="array"),
        pytest.param(b"null", "signal must be a JSON object", id="null"),
        pytest.param(b'"x"', "signal must be a JSON object", id="string"),
        pytest.param(
            BASE_RAW.replace(b'"0.1"', b"NaN"), "not valid JSON: NaN is not a number", id="bare-NaN"
        ),
        pytest.param(
            BASE_RAW.replace(b'"0.1"', b"Infinity"),
            "not valid JSON: Infinity is not a number",
            id="bare-Infinity",
        ),
        pytest.param(b"[" * 100_000, None, id="deep-nesting"),
    ],
)
def test_malformed_payload_is_refused(raw: bytes, reason: str | None) -> None:
    error = refusal(raw)
    assert error.kind == "invalid"
    if reason is not None:
        assert error.reason == reason
    else:
        assert error.reason


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"qty": "0"}, "qty: must be greater than 0"),
        ({"qty": "-1"}, "qty: must be greater than 0"),
        ({"qty": "abc"}, "qty: must be a decimal number"),
        ({"qty": True}, "qty: must be a decimal number or string"),
        ({"qty": None}, "qty: must be a decimal number or string"),
        ({"qty": "NaN"}, "qty: must be finite"),
        ({"qty": "-Infinity"}, "qty: must be finite"),
        ({"side": "long"}, "side: Input should be 'Buy' or 'Sell'"),
        ({"order_type": "stop"}, "order_type: Input should be 'Market' or 'Limit'"),
        (
            {"category": "futures"},
            "category: Input should be 'linear', 'inverse', 'spot' or 'option'",
        ),
        ({"reduce_only": "true"}, "reduce_only: Input should be a valid boolean"),
        ({"position_idx": 3}, "position_idx: Input should be 0, 1 or 2"),
        ({"reduceOnly": True}, "reduceOnly: unknown field"),
        ({"id": ""}, "id: String should have at least 1 character"),
        ({"symbol": "BTC/USDT"}, "symbol: String should match pattern '^[A-Z0-9]{2,32}$'"),
    ],
)
def test_bad_field_is_refused_with_reason_naming_it(changes: dict[str, Any], reason: str) -> None:
    error = refusal(signal_bytes(**changes))
    assert error.reason == reason
    assert error.kind == "invalid"


@pytest.mark.parametrize("field", ["position_idx", "ts", "ttl_ms"])
def test_boolean_for_integer_field_is_refused(field: str) -> None:
    error = refusal(signal_bytes(**{field: True}))
    assert error.reason.startswith(f"{field}: ")


@pytest.mark.parametrize("qty", ["1e999999999999", "1e-999999999999", "1e99999999"])
def test_qty_with_absurd_exponent_is_refused(qty: str) -> None:
    error = refusal(signal_bytes(qty=qty))
    assert error.reason.startswith("qty: ")


def test_str_with_lone_surrogate_is_refused() -> None:
    assert refusal('{"id":"\ud800"}').reason


def test_payload_of_exactly_max_size_is_accepted() -> None:
    raw = BASE_RAW + b" " * (MAX_SIGNAL_BYTES - len(BASE_RAW))
    assert len(raw) == MAX_SIGNAL_BYTES
    assert parse_signal(raw).id == "sig-001"


@pytest.mark.parametrize("size", [MAX_SIGNAL_BYTES + 1, 1024 * 1024])
def test_oversize_payload_is_refused_before_parsing(size: int) -> None:
    raw = BASE_RAW + b" " * (size - len(BASE_RAW))
    assert refusal(raw).reason == f"signal too large ({size} bytes > {MAX_SIGNAL_BYTES})"


# --- generated bad inputs --------------------------------------------------------------------


def parse_or_refuse(raw: bytes | str) -> None:
    """Either a Signal or InvalidSignal with a reason; anything else fails the test."""
    try:
        parse_signal(raw)
    except InvalidSignal as error:
        assert error.reason
        assert error.kind == "invalid"


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes_raise_only_invalid_signal(raw: bytes) -> None:
    parse_or_refuse(raw)


@FUZZ
@given(st.text(max_size=2048))
def test_random_text_raises_only_invalid_signal(raw: str) -> None:
    parse_or_refuse(raw)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@FUZZ
@given(st.dictionaries(st.sampled_from([*BASE, "price", "category", "x"]), json_values))
def test_random_json_objects_raise_only_invalid_signal(obj: dict[str, Any]) -> None:
    parse_or_refuse(json.dumps(obj))


@FUZZ
@given(st.sampled_from(REQUIRED))
def test_missing_required_field_is_named(field: str) -> None:
    raw = json.dumps({k: v for k, v in BASE.items() if k != field})
    assert refusal(raw).reason == f"{field}: required"


def _not_a_decimal(text: str) -> bool:
    try:
        Decimal(text)
    except ArithmeticError:
        return True
    return False


bad_qty = st.one_of(
    st.decimals(max_value=0, allow_nan=False).map(str),
    st.integers(max_value=0),
    st.text(max_size=20).filter(_not_a_decimal),
    st.booleans(),
    st.sampled_from(["NaN", "nan", "sNaN", "Infinity", "-Infinity", "inf", "-inf", " "]),
    st.none(),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@FUZZ
@given(bad_qty)
def test_bad_qty_is_refused_naming_qty(qty: Any) -> None:
    assert refusal(signal_bytes(qty=qty)).reason.startswith("qty: ")


def _not_one_of(*choices: str) -> Any:
    allowed = {c.lower() for c in choices}
    return st.one_of(
        st.text(max_size=12).filter(lambda t: t.strip().lower() not in allowed),
        st.integers(),
        st.none(),
        st.booleans(),
    )


@FUZZ
@given(
    st.one_of(
        st.tuples(st.just("side"), _not_one_of("Buy", "Sell")),
        st.tuples(st.just("order_type"), _not_one_of("Market", "Limit")),
        st.tuples(st.just("category"), _not_one_of("linear", "inverse", "spot", "option")),
    )
)
def test_unknown_enum_value_is_refused_naming_field(field_value: tuple[str, Any]) -> None:
    field, value = field_value
    assert refusal(signal_bytes(**{field: value})).reason.startswith(f"{field}: ")


@FUZZ
@given(
    st.text(min_size=1, max_size=30).filter(lambda k: k not in Signal.model_fields),
    json_values,
)
def test_unknown_field_is_refused_by_name(key: str, value: Any) -> None:
    raw = json.dumps({**BASE, key: value})
    assert refusal(raw).reason == f"{key}: unknown field"


@FUZZ
@given(st.integers(min_value=MAX_SIGNAL_BYTES + 1, max_value=4 * MAX_SIGNAL_BYTES))
def test_any_oversize_payload_is_refused(size: int) -> None:
    raw = b'{"strategy":"' + b"x" * (size - 15) + b'"}'
    assert len(raw) == size
    assert refusal(raw).reason == f"signal too large ({size} bytes > {MAX_SIGNAL_BYTES})"


valid_qty = st.decimals(
    min_value=Decimal("0.00000001"),
    max_value=Decimal(10) ** 9,
    allow_nan=False,
    allow_infinity=False,
    places=8,
)


@FUZZ
@given(valid_qty, st.booleans())
def test_valid_qty_round_trips_exactly_into_order_body(qty: Decimal, as_number: bool) -> None:
    text = str(qty)
    literal = text if as_number else json.dumps(text)
    raw = BASE_RAW.replace(b'"0.1"', literal.encode())
    body = parse_signal(raw).order_body()
    assert Decimal(body["qty"]) == qty
    assert re.fullmatch(r"\d+(\.\d+)?", body["qty"])
