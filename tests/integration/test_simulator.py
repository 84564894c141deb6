"""The simulator over real HTTP on 127.0.0.1: signed requests, faults and the admin API."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import httpx
import pytest

from executor.bybit.signing import auth_headers, compact_json
from executor.bybit.sim_state import OTHER_ACCOUNT, PRIMARY, SECONDARY, SimKey
from executor.bybit.simulator import SimConfig, SimulatorServer

T0 = 1_700_000_000_000
REPO_ROOT = Path(__file__).resolve().parents[2]


class FrozenClock:
    """Server and client read the same clock, which moves only when a test moves it."""

    def __init__(self, ms: int = T0) -> None:
        self.ms = ms

    def __call__(self) -> float:
        return float(self.ms)


def wall_ms() -> int:
    return int(time.time() * 1000)


def order(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "category": "linear",
        "symbol": "BTCUSDT",
        "side": "Buy",
        "orderType": "Limit",
        "qty": "0.001",
        "price": "60000",
        "timeInForce": "GTC",
    }
    body.update(fields)
    return body


async def signed_post(
    client: httpx.AsyncClient,
    path: str,
    body: Mapping[str, Any],
    *,
    key: SimKey = PRIMARY,
    secret: str | None = None,
    ts: int | None = None,
) -> httpx.Response:
    raw = compact_json(body)
    stamp = wall_ms() if ts is None else ts
    headers = auth_headers(key.api_key, secret or key.secret, stamp, 5000, raw.decode())
    headers["Content-Type"] = "application/json"
    return await client.post(path, content=raw, headers=headers)


async def signed_get(
    client: httpx.AsyncClient,
    path: str,
    query: str,
    *,
    key: SimKey = PRIMARY,
    ts: int | None = None,
) -> httpx.Response:
    stamp = wall_ms() if ts is None else ts
    headers = auth_headers(key.api_key, key.secret, stamp, 5000, query)
    return await client.get(f"{path}?{query}" if query else path, headers=headers)


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(SimConfig(), host="127.0.0.1", port=0) as server:
        yield server


@pytest.fixture
async def client(sim: SimulatorServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=sim.url, timeout=5.0) as http:
        yield http


@pytest.fixture
def frozen() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
async def frozen_client(frozen: FrozenClock) -> AsyncIterator[httpx.AsyncClient]:
    async with (
        SimulatorServer(SimConfig(), clock=frozen) as server,
        httpx.AsyncClient(base_url=server.url, timeout=5.0) as http,
    ):
        yield http


async def test_signed_order_is_accepted_and_visible_in_realtime_and_history(
    sim: SimulatorServer, client: httpx.AsyncClient
) -> None:
    before = time.monotonic_ns()
    answer = await signed_post(client, "/v5/order/create", order(orderLinkId="it-1"))
    after = time.monotonic_ns()
    assert answer.status_code == 200
    body = answer.json()
    assert (body["retCode"], body["retMsg"]) == (0, "OK")
    assert set(body) == {"retCode", "retMsg", "result", "retExtInfo", "time"}
    order_id = body["result"]["orderId"]
    assert body["result"]["orderLinkId"] == "it-1"
    (placed,) = sim.state.orders
    assert placed.order_id == order_id and placed.api_key == PRIMARY.api_key
    assert before <= placed.received_ns <= after

    query = "category=linear&orderLinkId=it-1"
    for path in ("/v5/order/realtime", "/v5/order/history"):
        listed = (await signed_get(client, path, query)).json()["result"]["list"]
        assert [(o["orderId"], o["orderStatus"], o["price"]) for o in listed] == [
            (order_id, "New", "60000")
        ]
    unknown = await signed_get(client, "/v5/order/realtime", "category=linear&orderLinkId=nope")
    assert unknown.json()["result"]["list"] == []


async def test_get_is_verified_against_the_raw_query_string(client: httpx.AsyncClient) -> None:
    await signed_post(client, "/v5/order/create", order(orderLinkId="a-b"))
    # %2D decodes to "-": the signature covers the bytes as sent, the lookup the decoded value.
    answer = await signed_get(client, "/v5/order/realtime", "category=linear&orderLinkId=a%2Db")
    assert answer.json()["retCode"] == 0
    assert [o["orderLinkId"] for o in answer.json()["result"]["list"]] == ["a-b"]


async def test_wrong_secret_is_10004(sim: SimulatorServer, client: httpx.AsyncClient) -> None:
    answer = await signed_post(client, "/v5/order/create", order(), secret="wrong-secret")
    body = answer.json()
    assert answer.status_code == 200
    assert body["retCode"] == 10004
    assert body["retMsg"].startswith("error sign! origin_string[")
    assert PRIMARY.secret not in answer.text
    assert sim.state.orders == []


async def test_unknown_and_revoked_keys_are_10003(
    sim: SimulatorServer, client: httpx.AsyncClient
) -> None:
    stranger = SimKey(api_key="UNKNOWNKEY00000001", secret="x", user_id=1)
    answer = await signed_post(client, "/v5/order/create", order(), key=stranger)
    assert answer.json()["retCode"] == 10003
    revoked = await client.post("/sim/keys/revoke", json={"api_key": SECONDARY.api_key})
    assert revoked.json() == {"revoked": [SECONDARY.api_key]}
    answer = await signed_post(client, "/v5/order/create", order(), key=SECONDARY)
    assert (answer.json()["retCode"], answer.json()["retMsg"]) == (10003, "API key is invalid.")
    await client.post("/sim/keys/restore", json={"api_key": SECONDARY.api_key})
    answer = await signed_post(client, "/v5/order/create", order(), key=SECONDARY)
    assert answer.json()["retCode"] == 0
    assert [o.api_key for o in sim.state.orders] == [SECONDARY.api_key]


async def test_skewed_timestamp_is_10002_and_the_server_time_in_it_fixes_the_next_try() -> None:
    async with (
        SimulatorServer(SimConfig(clock_offset_ms=-30_000)) as server,
        httpx.AsyncClient(base_url=server.url) as http,
    ):
        answer = await signed_post(http, "/v5/order/create", order(orderLinkId="skew"))
        body = answer.json()
        assert body["retCode"] == 10002
        match = re.search(r"server_timestamp\[(\d+)\]", body["retMsg"])
        assert match is not None
        server_ms = int(match.group(1))
        assert abs(server_ms - (wall_ms() - 30_000)) < 2_000
        retry = await signed_post(http, "/v5/order/create", order(orderLinkId="skew"), ts=server_ms)
        assert retry.json()["retCode"] == 0
        assert [o.order_link_id for o in server.state.orders] == ["skew"]


async def test_market_time_reports_the_server_clock(frozen_client: httpx.AsyncClient) -> None:
    result = (await frozen_client.get("/v5/market/time")).json()["result"]
    assert result == {"timeSecond": str(T0 // 1000), "timeNano": str(T0 * 1_000_000)}


async def test_eleventh_order_in_a_second_is_10006_with_limit_headers(
    frozen: FrozenClock, frozen_client: httpx.AsyncClient
) -> None:
    statuses = []
    for i in range(10):
        answer = await signed_post(frozen_client, "/v5/order/create", order(), ts=frozen.ms)
        assert answer.json()["retCode"] == 0, i
        assert answer.headers["X-Bapi-Limit"] == "10"
        statuses.append(int(answer.headers["X-Bapi-Limit-Status"]))
    assert statuses == list(range(9, -1, -1))
    refused = await signed_post(frozen_client, "/v5/order/create", order(), ts=frozen.ms)
    assert refused.status_code == 200
    assert (refused.json()["retCode"], refused.json()["retMsg"]) == (10006, "Too many visits!")
    assert refused.headers["X-Bapi-Limit-Status"] == "0"
    assert refused.headers["X-Bapi-Limit-Reset-Timestamp"] == str(T0 + 1000)
    frozen.ms += 1000
    again = await signed_post(frozen_client, "/v5/order/create", order(), ts=frozen.ms)
    assert again.json()["retCode"] == 0
    orders = (await frozen_client.get("/sim/orders")).json()
    assert len(orders) == 11
    stats = (await frozen_client.get("/sim/stats")).json()
    assert stats["rate_limited"] == 1
    assert stats["ret_codes"] == {"0": 11, "10006": 1}


async def test_order_limit_lowered_at_run_time_takes_effect(
    frozen: FrozenClock, frozen_client: httpx.AsyncClient
) -> None:
    knobs = (await frozen_client.post("/sim/faults", json={"order_limit": 2})).json()
    assert knobs["order_limit"] == 2
    codes = []
    for _ in range(3):
        answer = await signed_post(frozen_client, "/v5/order/create", order(), ts=frozen.ms)
        codes.append(answer.json()["retCode"])
    assert codes == [0, 0, 10006]
    assert answer.headers["X-Bapi-Limit"] == "2"


async def test_error_rate_one_answers_5xx_and_records_nothing(client: httpx.AsyncClient) -> None:
    await client.post("/sim/faults", json={"error_rate": 1.0})
    answer = await signed_post(client, "/v5/order/create", order(orderLinkId="e1"))
    assert answer.status_code in (502, 503)
    assert "Bad Gateway" in answer.text or "Unavailable" in answer.text
    public = await client.get("/v5/market/time")
    assert public.status_code in (502, 503)
    assert (await client.get("/sim/orders")).json() == []
    stats = (await client.get("/sim/stats")).json()
    assert stats["faults"] == {"error": 2}
    assert sum(stats["http_status"].values()) == 2


async def test_lose_rate_one_records_the_order_but_the_client_sees_a_disconnect(
    sim: SimulatorServer, client: httpx.AsyncClient
) -> None:
    sim.state.set_faults(lose_rate=1.0)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        await signed_post(client, "/v5/order/create", order(orderLinkId="lost-1"))
    orders = (await client.get("/sim/orders")).json()
    assert [o["orderLinkId"] for o in orders] == ["lost-1"]
    sim.state.set_faults(lose_rate=0.0)
    retry = await signed_post(client, "/v5/order/create", order(orderLinkId="lost-1"))
    assert retry.json()["retCode"] == 110072
    assert (await client.get("/sim/stats")).json()["faults"] == {"lose": 1}


async def test_latency_delays_the_answer(client: httpx.AsyncClient) -> None:
    await client.post("/sim/faults", json={"latency_ms": 150})
    started = time.monotonic()
    answer = await client.get("/v5/market/time")
    assert answer.status_code == 200
    assert time.monotonic() - started >= 0.15


async def test_forced_ip_ban_answers_403_to_the_api_but_not_the_admin_api(
    client: httpx.AsyncClient,
) -> None:
    await client.post("/sim/faults", json={"ip_ban": True})
    answer = await client.get("/v5/market/time")
    assert (answer.status_code, answer.text) == (403, "access too frequent")
    assert (await client.get("/sim/faults")).json()["ip_ban"] is True
    await client.post("/sim/faults", json={"ip_ban": False})
    assert (await client.get("/v5/market/time")).status_code == 200


async def test_create_batch_reports_each_order(
    sim: SimulatorServer, client: httpx.AsyncClient
) -> None:
    await signed_post(client, "/v5/order/create", order(orderLinkId="b-dup"))
    items = [
        {"symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit", "qty": "0.001",
         "price": "60000", "orderLinkId": "b-ok"},
        {"symbol": "BTCUSDT", "side": "Buy", "orderType": "Limit", "qty": "0.0015",
         "price": "60000", "orderLinkId": "b-bad-qty"},
        {"symbol": "BTCUSDT", "side": "Sell", "orderType": "Market", "qty": "0.001",
         "orderLinkId": "b-dup"},
    ]  # fmt: skip
    answer = await signed_post(
        client, "/v5/order/create-batch", {"category": "linear", "request": items}
    )
    body = answer.json()
    assert body["retCode"] == 0
    assert [(e["code"], e["msg"]) for e in body["retExtInfo"]["list"]] == [
        (0, "OK"),
        (10001, "Qty invalid"),
        (110072, "OrderLinkedID is duplicate"),
    ]
    listed = body["result"]["list"]
    assert [e["orderLinkId"] for e in listed] == ["b-ok", "b-bad-qty", "b-dup"]
    assert listed[0]["orderId"] and listed[0]["category"] == "linear"
    assert listed[1]["orderId"] == "" and listed[2]["orderId"] == ""
    assert [o.order_link_id for o in sim.state.orders] == ["b-dup", "b-ok"]
    assert answer.headers["X-Bapi-Limit-Status"] == "7"


async def test_query_api_describes_the_key(client: httpx.AsyncClient) -> None:
    answer = await signed_get(client, "/v5/user/query-api", "")
    result = answer.json()["result"]
    expected = {
        "id", "note", "apiKey", "readOnly", "secret", "permissions", "ips", "type",
        "deadlineDay", "expiredAt", "createdAt", "unified", "uta", "userID", "inviterID",
        "vipLevel", "mktMakerLevel", "affiliateID", "rsaPublicKey", "isMaster", "parentUid",
        "kycLevel", "kycRegion",
    }  # fmt: skip
    assert set(result) == expected
    assert (result["apiKey"], result["readOnly"], result["secret"]) == (PRIMARY.api_key, 0, "")
    assert result["userID"] == PRIMARY.user_id
    assert result["ips"] == ["127.0.0.1"]
    for group in ("ContractTrade", "Spot", "Wallet", "Options", "Derivatives", "Exchange", "NFT"):
        assert isinstance(result["permissions"][group], list)
    assert result["permissions"]["Spot"] == ["SpotTrade"]
    assert int(answer.headers["X-Bapi-Limit"]) == 10


async def test_public_market_endpoints(client: httpx.AsyncClient) -> None:
    info = (await client.get("/v5/market/instruments-info?category=linear&symbol=ETHUSDT")).json()
    (eth,) = info["result"]["list"]
    assert eth["lotSizeFilter"]["qtyStep"] == "0.01"
    assert eth["lotSizeFilter"]["minNotionalValue"] == "5"
    assert eth["priceFilter"]["tickSize"] == "0.01"
    spot = (await client.get("/v5/market/instruments-info?category=spot")).json()["result"]
    assert {row["symbol"] for row in spot["list"]} == {"BTCUSDT", "ETHUSDT"}
    assert "basePrecision" in spot["list"][0]["lotSizeFilter"]
    ticker = (await client.get("/v5/market/tickers?category=linear&symbol=SOLUSDT")).json()
    assert ticker["result"]["list"][0]["lastPrice"] == "150.000"
    bad = (await client.get("/v5/market/tickers?category=nope")).json()
    assert (bad["retCode"], bad["retMsg"]) == (10001, "Illegal category")


async def test_admin_api_adds_keys_sets_prices_and_resets(
    sim: SimulatorServer, client: httpx.AsyncClient
) -> None:
    added = await client.post(
        "/sim/keys", json={"api_key": "ADDEDKEY0000000001", "secret": "added", "user_id": 77}
    )
    assert added.json() == {"api_key": "ADDEDKEY0000000001", "user_id": 77}
    new_key = SimKey(api_key="ADDEDKEY0000000001", secret="added", user_id=77)
    answer = await signed_post(client, "/v5/order/create", order(orderLinkId="k1"), key=new_key)
    assert answer.json()["retCode"] == 0

    priced = await client.post("/sim/prices", json={"symbol": "BTCUSDT", "price": "70000.5"})
    assert priced.status_code == 200
    ticker = (await client.get("/v5/market/tickers?category=linear&symbol=BTCUSDT")).json()
    assert ticker["result"]["list"][0]["lastPrice"] == "70000.5"
    assert (
        await client.post("/sim/prices", json={"symbol": "NOPE", "price": "1"})
    ).status_code == (400)
    bad_knob = await client.post("/sim/faults", json={"error_rate": 3})
    assert bad_knob.status_code == 400 and "error_rate" in bad_knob.json()["error"]

    orders = (await client.get("/sim/orders")).json()
    assert [(o["userId"], o["orderLinkId"]) for o in orders] == [(77, "k1")]
    assert isinstance(orders[0]["received_ns"], int)
    stats = (await client.get("/sim/stats")).json()
    assert stats["requests"]["/v5/order/create"] == 1
    assert stats["http_status"] == {"200": 2}

    assert (await client.post("/sim/reset")).json() == {"reset": True}
    assert (await client.get("/sim/orders")).json() == []
    assert sim.state.stats.snapshot()["requests"] == {}
    # Keys and prices survive a reset; orders (and their link ids) do not.
    again = await signed_post(client, "/v5/order/create", order(orderLinkId="k1"), key=new_key)
    assert again.json()["retCode"] == 0


async def test_accounts_do_not_share_order_link_ids(client: httpx.AsyncClient) -> None:
    first = await signed_post(client, "/v5/order/create", order(orderLinkId="shared"))
    other = await signed_post(
        client, "/v5/order/create", order(orderLinkId="shared"), key=OTHER_ACCOUNT
    )
    again = await signed_post(
        client, "/v5/order/create", order(orderLinkId="shared"), key=SECONDARY
    )
    assert [r.json()["retCode"] for r in (first, other, again)] == [0, 0, 110072]


CLI_MAIN = (
    "import argparse, sys\n"
    "from executor.bybit import sim_cli\n"
    "parser = argparse.ArgumentParser()\n"
    "sim_cli.add_arguments(parser)\n"
    "sys.exit(sim_cli.run(parser.parse_args(sys.argv[1:])))\n"
)


async def test_cli_prints_its_url_serves_and_exits_0_on_sigterm() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        CLI_MAIN,
        "--port",
        "0",
        "--order-limit",
        "unlimited",
        "--key",
        "CLIKEY000000000001:cli-secret:5005",
        "--price",
        "ETHUSDT=2500.00",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=REPO_ROOT,
    )
    try:
        assert process.stdout is not None
        line = (await asyncio.wait_for(process.stdout.readline(), timeout=30)).decode()
        match = re.fullmatch(r"simulator listening on (http://127\.0\.0\.1:(\d+))\n", line)
        assert match is not None, line
        assert int(match.group(2)) > 0
        async with httpx.AsyncClient(base_url=match.group(1)) as http:
            cli_key = SimKey(api_key="CLIKEY000000000001", secret="cli-secret", user_id=5005)
            placed = await signed_post(http, "/v5/order/create", order(), key=cli_key)
            assert placed.json()["retCode"] == 0
            ticker = await http.get("/v5/market/tickers?category=linear&symbol=ETHUSDT")
            assert ticker.json()["result"]["list"][0]["lastPrice"] == "2500.00"
            knobs = (await http.get("/sim/faults")).json()
            assert knobs["order_limit"] == "unlimited"
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), timeout=30) == 0
        rest = await process.stdout.read()
        assert rest == b""
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
