"""BybitClient over httpx.MockTransport: what goes on the wire, and what comes back."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from executor import logs
from executor.bybit.client import (
    SAFETY_MARGIN_MS,
    Answer,
    ApiKey,
    BybitClient,
    RateLimit,
    parse_answer,
)
from executor.outcome import Failure, Reply, Verdict, classify, server_timestamp_ms
from tests.unit_helpers import DOC_ORDER

KEY_ID = "ABCDEFGHIJKLMNOPQR"
SECRET = "0123456789abcdefghijklmnopqrstuvwxyz"
KEY = ApiKey("primary", KEY_ID, SecretStr(SECRET))
BASE_URL = "https://sim.test"

# Published vectors (BYBIT_V5.md), timestamp 1700000000000, recv_window 5000.
DOC_TIMESTAMP_MS = 1700000000000
DOC_POST_PAYLOAD = (
    b'{"category":"linear","symbol":"BTCUSDT","side":"Buy","orderType":"Limit",'
    b'"qty":"0.001","price":"30000","timeInForce":"GTC","orderLinkId":"sig-test-001"}'
)
DOC_POST_SIGN = "facfedadb796e515d9841b722963ea3a40f3dba5895fd5b4d3910784feff510e"
DOC_GET_QUERY = b"category=linear&orderLinkId=sig-test-001&symbol=BTCUSDT"
DOC_GET_SIGN = "f4683ce49fb084efe6fe1b38d657df6f032b321e022d76063b410d2706c5b5a4"
DOC_GET_EMPTY_SIGN = "f8d28ceb78c1f475e769228eeee4c336825cf466c1f9ed32515a76d78fb45f4e"

Handler = Callable[[httpx.Request], httpx.Response]


class Wall:
    """The injected wall clock, in ms."""

    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Exchange:
    """Records every request; answers with ``respond`` (default: retCode 0)."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.respond: Handler = lambda request: envelope(0)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.respond(request)

    @property
    def last(self) -> httpx.Request:
        return self.requests[-1]


def envelope(
    code: int, msg: str = "OK", result: Any = None, headers: dict[str, str] | None = None
) -> httpx.Response:
    body = {"retCode": code, "retMsg": msg, "result": result or {}, "retExtInfo": {}, "time": 1}
    return httpx.Response(200, json=body, headers=headers)


def expected_sign(request: httpx.Request, payload: bytes) -> str:
    """Recompute the signature from what the exchange received, with plain hmac."""
    prefix = (
        request.headers["X-BAPI-TIMESTAMP"]
        + request.headers["X-BAPI-API-KEY"]
        + request.headers["X-BAPI-RECV-WINDOW"]
    )
    return hmac.new(SECRET.encode(), prefix.encode() + payload, hashlib.sha256).hexdigest()


@pytest.fixture
def exchange() -> Exchange:
    return Exchange()


MakeClient = Callable[..., BybitClient]


@pytest.fixture
async def make_client(exchange: Exchange) -> AsyncIterator[MakeClient]:
    opened: list[httpx.AsyncClient] = []

    def make(wall: Callable[[], float] | None = None, **kwargs: Any) -> BybitClient:
        wall = wall or Wall(1_700_000_000_200.0)
        http = httpx.AsyncClient(transport=httpx.MockTransport(exchange))
        opened.append(http)
        return BybitClient(http, kwargs.pop("base_url", BASE_URL), wall_ms=wall, **kwargs)

    yield make
    for http in opened:
        await http.aclose()


# --- signing what is sent --------------------------------------------------------------------


async def test_post_body_bytes_are_exactly_what_was_signed(
    exchange: Exchange, make_client: MakeClient
) -> None:
    client = make_client(Wall(1_700_000_123_456.7), recv_window_ms=7000)
    body = {"category": "spot", "symbol": "ETHUSDT", "side": "Sell", "qty": "0.5", "note": "é"}
    await client.create_order(KEY, body)

    request = exchange.last
    assert request.method == "POST"
    assert request.url == "https://sim.test/v5/order/create"
    sent = '{"category":"spot","symbol":"ETHUSDT","side":"Sell","qty":"0.5","note":"é"}'
    assert request.content == sent.encode()
    assert request.headers["Content-Type"] == "application/json"
    assert request.headers["X-BAPI-TIMESTAMP"] == "1700000123256"  # wall - 200 ms margin
    assert request.headers["X-BAPI-RECV-WINDOW"] == "7000"
    assert request.headers["X-BAPI-SIGN"] == expected_sign(request, request.content)


async def test_post_signature_matches_published_vector(
    exchange: Exchange, make_client: MakeClient
) -> None:
    client = make_client(Wall(DOC_TIMESTAMP_MS + SAFETY_MARGIN_MS))
    await client.create_order(KEY, DOC_ORDER)

    request = exchange.last
    assert request.content == DOC_POST_PAYLOAD
    assert request.headers["X-BAPI-API-KEY"] == KEY_ID
    assert request.headers["X-BAPI-TIMESTAMP"] == "1700000000000"
    assert request.headers["X-BAPI-RECV-WINDOW"] == "5000"
    assert request.headers["X-BAPI-SIGN"] == DOC_POST_SIGN


async def test_get_query_signature_matches_published_vector(
    exchange: Exchange, make_client: MakeClient
) -> None:
    client = make_client(Wall(DOC_TIMESTAMP_MS + SAFETY_MARGIN_MS))
    params = {"category": "linear", "orderLinkId": "sig-test-001", "symbol": "BTCUSDT"}
    await client.get(KEY, "/v5/order/realtime", params)

    request = exchange.last
    assert request.method == "GET"
    assert request.url.path == "/v5/order/realtime"
    assert request.url.query == DOC_GET_QUERY
    assert request.content == b""
    assert request.headers["X-BAPI-SIGN"] == DOC_GET_SIGN


async def test_get_without_params_sends_no_query_and_matches_published_vector(
    exchange: Exchange, make_client: MakeClient
) -> None:
    client = make_client(Wall(DOC_TIMESTAMP_MS + SAFETY_MARGIN_MS))
    await client.get(KEY, "/v5/user/query-api", {})

    request = exchange.last
    assert str(request.url) == "https://sim.test/v5/user/query-api"
    assert request.headers["X-BAPI-SIGN"] == DOC_GET_EMPTY_SIGN


async def test_get_query_needing_escapes_is_signed_as_sent(
    exchange: Exchange, make_client: MakeClient
) -> None:
    client = make_client()
    await client.get(KEY, "/v5/order/history", {"cursor": "a/b=c&d", "symbol": "BTC USDT"})

    request = exchange.last
    assert request.url.query == b"cursor=a%2Fb%3Dc%26d&symbol=BTC+USDT"
    assert request.headers["X-BAPI-SIGN"] == expected_sign(request, request.url.query)


async def test_public_get_carries_no_auth_headers(
    exchange: Exchange, make_client: MakeClient
) -> None:
    await make_client().get(None, "/v5/market/instruments-info", {"category": "linear"})
    assert not [name for name in exchange.last.headers if name.lower().startswith("x-bapi")]


async def test_base_url_trailing_slash_is_dropped(
    exchange: Exchange, make_client: MakeClient
) -> None:
    await make_client(base_url="http://127.0.0.1:8999/").get(None, "/v5/market/time", {})
    assert str(exchange.last.url) == "http://127.0.0.1:8999/v5/market/time"


# --- clock -----------------------------------------------------------------------------------


async def test_sync_time_sets_offset_from_time_nano_at_round_trip_midpoint(
    exchange: Exchange, make_client: MakeClient
) -> None:
    wall = Wall(1000.0)

    def server_time(request: httpx.Request) -> httpx.Response:
        wall.now = 1100.0  # the round trip takes 100 ms
        return envelope(0, result={"timeSecond": "1700000000", "timeNano": "1700000000000000000"})

    exchange.respond = server_time
    client = make_client(wall)
    offset = await client.sync_time()

    assert offset == 1_700_000_000_000 - 1050
    assert client.offset_ms == offset
    assert exchange.last.url.path == "/v5/market/time"
    assert "X-BAPI-SIGN" not in exchange.last.headers
    # At wall 1100 the server reads 1700000000050; we stay 200 ms behind.
    assert client.timestamp_ms() == 1_700_000_000_050 - 200


async def test_sync_time_failure_raises_and_keeps_offset(
    exchange: Exchange, make_client: MakeClient
) -> None:
    exchange.respond = lambda request: httpx.Response(502, text="Bad Gateway")
    client = make_client()
    with pytest.raises(ConnectionError, match=r"^cannot read server time: HTTP 502: Bad Gateway$"):
        await client.sync_time()
    assert client.offset_ms == 0.0


async def test_sync_time_transport_failure_raises_connection_error(
    exchange: Exchange, make_client: MakeClient
) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    exchange.respond = refuse
    with pytest.raises(ConnectionError, match="ConnectError: connection refused"):
        await make_client().sync_time()


async def test_resync_from_10002_message_moves_the_signing_timestamp(
    exchange: Exchange, make_client: MakeClient
) -> None:
    message = (
        "invalid request, please check your server timestamp or recv_window param. "
        "req_timestamp[1700000003000],server_timestamp[1700000000000],recv_window[5000]"
    )
    client = make_client(Wall(1_700_000_003_200.0))  # our clock is 3.2 s ahead
    server_ms = server_timestamp_ms(message)
    assert server_ms is not None
    client.resync_from(server_ms)

    assert client.offset_ms == -3200.0
    await client.create_order(KEY, DOC_ORDER)
    assert exchange.last.headers["X-BAPI-TIMESTAMP"] == "1699999999800"


# --- answers ---------------------------------------------------------------------------------


async def test_accepted_order_answer(exchange: Exchange, make_client: MakeClient) -> None:
    exchange.respond = lambda request: envelope(
        0, result={"orderId": "1321003749386327552", "orderLinkId": "sig-test-001"}
    )
    answer = await make_client().create_order(KEY, DOC_ORDER)
    assert answer.ok is True
    assert answer.reply == Reply(status=200, ret_code=0)
    assert answer.result == {"orderId": "1321003749386327552", "orderLinkId": "sig-test-001"}
    assert classify(answer.reply) is Verdict.ACCEPTED


async def test_rate_limit_headers_are_parsed(exchange: Exchange, make_client: MakeClient) -> None:
    exchange.respond = lambda request: envelope(
        10006,
        "Too many visits!",
        headers={
            "X-Bapi-Limit": "10",
            "X-Bapi-Limit-Status": "0",
            "X-Bapi-Limit-Reset-Timestamp": "1700000001000",
        },
    )
    answer = await make_client().create_order(KEY, DOC_ORDER)
    assert answer.rate == RateLimit(limit=10, remaining=0, reset_ms=1700000001000)
    assert answer.reply == Reply(status=200, ret_code=10006)
    assert answer.ret_msg == "Too many visits!"
    assert answer.ok is False
    assert classify(answer.reply) is Verdict.RETRY


async def test_missing_or_garbled_rate_limit_headers_are_none(
    exchange: Exchange, make_client: MakeClient
) -> None:
    exchange.respond = lambda request: envelope(0, headers={"X-Bapi-Limit": "ten"})
    answer = await make_client().create_order(KEY, DOC_ORDER)
    assert answer.rate == RateLimit(limit=None, remaining=None, reset_ms=None)


async def test_non_json_502_is_status_without_ret_code(
    exchange: Exchange, make_client: MakeClient
) -> None:
    exchange.respond = lambda request: httpx.Response(502, text="<html>Bad Gateway</html>")
    answer = await make_client().create_order(KEY, DOC_ORDER)
    assert answer.reply == Reply(status=502, ret_code=None, failure=None)
    assert answer.ret_msg == "HTTP 502: <html>Bad Gateway</html>"
    assert answer.ok is False
    assert classify(answer.reply) is Verdict.UNKNOWN


def test_parse_answer_of_json_without_envelope_keeps_status_and_text() -> None:
    answer = parse_answer(404, b'{"error":"not found"}', {})
    assert answer.reply == Reply(status=404)
    assert answer.ret_msg == 'HTTP 404: {"error":"not found"}'
    assert classify(answer.reply) is Verdict.REJECTED


def test_parse_answer_of_empty_body() -> None:
    answer = parse_answer(401, b"", {})
    assert answer == Answer(Reply(status=401), ret_msg="HTTP 401: ")
    assert classify(answer.reply) is Verdict.KEY_FAILURE


def test_parse_answer_truncates_long_error_text_to_200_bytes() -> None:
    answer = parse_answer(503, b"x" * 5000, {})
    assert answer.ret_msg == "HTTP 503: " + "x" * 200


def test_parse_answer_ignores_non_object_result_and_ext() -> None:
    content = json.dumps(
        {"retCode": 110072, "retMsg": "OrderLinkedID is duplicate", "result": [], "retExtInfo": 5}
    ).encode()
    answer = parse_answer(200, content, {})
    assert answer.reply == Reply(status=200, ret_code=110072)
    assert (answer.result, answer.ext) == ({}, {})
    assert classify(answer.reply) is Verdict.ALREADY_PLACED


def test_parse_answer_keeps_batch_ext_info() -> None:
    ext = {"list": [{"code": 0, "msg": "OK"}, {"code": 10001, "msg": "params error"}]}
    content = json.dumps({"retCode": 0, "retMsg": "OK", "result": {}, "retExtInfo": ext}).encode()
    assert parse_answer(200, content, {}).ext == ext


@pytest.mark.parametrize(
    ("error", "failure"),
    [
        pytest.param(httpx.ConnectError, Failure.NOT_SENT, id="connect-error"),
        pytest.param(httpx.ConnectTimeout, Failure.NOT_SENT, id="connect-timeout"),
        pytest.param(httpx.PoolTimeout, Failure.NOT_SENT, id="pool-timeout"),
        pytest.param(httpx.ReadTimeout, Failure.NO_ANSWER, id="read-timeout"),
        pytest.param(httpx.RemoteProtocolError, Failure.NO_ANSWER, id="remote-protocol-error"),
        pytest.param(httpx.ReadError, Failure.NO_ANSWER, id="read-error"),
        pytest.param(httpx.WriteTimeout, Failure.NO_ANSWER, id="write-timeout"),
    ],
)
async def test_transport_error_becomes_failure_not_exception(
    exchange: Exchange, make_client: MakeClient, error: type[httpx.TransportError], failure: Failure
) -> None:
    def broken(request: httpx.Request) -> httpx.Response:
        raise error("boom", request=request)

    exchange.respond = broken
    answer = await make_client().create_order(KEY, DOC_ORDER)
    assert answer.reply == Reply(failure=failure)
    assert answer.error == f"{error.__name__}: boom"
    assert answer.ok is False
    expected = Verdict.RETRY if failure is Failure.NOT_SENT else Verdict.UNKNOWN
    assert classify(answer.reply) is expected


# --- get_order -------------------------------------------------------------------------------


def order_list(*orders: dict[str, str]) -> dict[str, Any]:
    return {"list": list(orders), "nextPageCursor": "", "category": "linear"}


async def test_get_order_asks_history_when_realtime_list_is_empty(
    exchange: Exchange, make_client: MakeClient
) -> None:
    found = {"orderId": "111", "orderLinkId": "sig-001", "orderStatus": "Filled"}

    def lookup(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/v5/order/realtime":
            return envelope(0, result=order_list())
        return envelope(0, result=order_list(found))

    exchange.respond = lookup
    answer = await make_client().get_order(KEY, "linear", "sig-001")

    assert [r.url.path for r in exchange.requests] == ["/v5/order/realtime", "/v5/order/history"]
    assert {r.url.query for r in exchange.requests} == {b"category=linear&orderLinkId=sig-001"}
    assert answer.result["list"] == [found]


async def test_get_order_stops_at_realtime_when_it_has_the_order(
    exchange: Exchange, make_client: MakeClient
) -> None:
    found = {"orderId": "222", "orderLinkId": "sig-002", "orderStatus": "New"}
    exchange.respond = lambda request: envelope(0, result=order_list(found))
    answer = await make_client().get_order(KEY, "spot", "sig-002")

    assert [r.url.path for r in exchange.requests] == ["/v5/order/realtime"]
    assert exchange.last.url.query == b"category=spot&orderLinkId=sig-002"
    assert answer.result["list"] == [found]


async def test_get_order_does_not_ask_history_when_realtime_fails(
    exchange: Exchange, make_client: MakeClient
) -> None:
    exchange.respond = lambda request: envelope(10016, "Internal system error")
    answer = await make_client().get_order(KEY, "linear", "sig-003")

    assert [r.url.path for r in exchange.requests] == ["/v5/order/realtime"]
    assert answer.reply == Reply(status=200, ret_code=10016)


# --- ApiKey ----------------------------------------------------------------------------------


def test_api_key_repr_and_str_never_show_the_secret() -> None:
    assert SECRET not in repr(KEY)
    assert SECRET not in str(KEY)
    assert SECRET not in f"{KEY!r} {KEY}"


def test_api_key_fingerprint_shows_only_the_ends_of_the_key() -> None:
    assert KEY.fingerprint == "ABCD…QR"
    assert SECRET not in KEY.fingerprint


def test_short_api_key_fingerprint_shows_nothing() -> None:
    assert ApiKey("secondary", "SHORTKEY", SecretStr(SECRET)).fingerprint == "…"


# --- the request log line --------------------------------------------------------------------


@pytest.mark.parametrize(("level", "lines"), [("debug", 1), ("info", 0)])
async def test_request_line_is_logged_at_debug_only(
    make_client: MakeClient, capsys: pytest.CaptureFixture[str], level: str, lines: int
) -> None:
    logs.configure(level, "json")
    try:
        await make_client().create_order(KEY, DOC_ORDER)
    finally:
        logs.configure("info", "json")
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    found = [e for e in events if e["event"] == "exchange.request"]
    assert len(found) == lines
    if found:
        assert {k: found[0][k] for k in ("method", "path", "key", "http_status", "ret_code")} == {
            "method": "POST",
            "path": "/v5/order/create",
            "key": "primary",
            "http_status": 200,
            "ret_code": 0,
        }
