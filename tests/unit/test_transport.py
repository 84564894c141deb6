"""HttpxSender: httpx's answers and errors in the sender's terms."""

from __future__ import annotations

import httpx
import pytest

from executor.bybit.transport import HttpxSender, NoAnswer, NotSent, TransportError


async def test_an_answer_keeps_status_body_and_case_insensitive_headers() -> None:
    def exchange(request: httpx.Request) -> httpx.Response:
        assert (request.method, request.content) == ("POST", b"{}")
        assert request.headers["x-bapi-sign"] == "abc"
        return httpx.Response(429, content=b"slow down", headers={"X-Bapi-Limit": "10"})

    sender = HttpxSender(httpx.AsyncClient(transport=httpx.MockTransport(exchange)))
    response = await sender.request("POST", "https://sim.test/x", b"{}", {"X-BAPI-SIGN": "abc"})
    await sender.aclose()
    assert (response.status, response.content) == (429, b"slow down")
    assert response.headers["x-bapi-limit"] == "10"


@pytest.mark.parametrize(
    ("error", "mapped"),
    [
        pytest.param(httpx.ConnectError, NotSent, id="connect-error"),
        pytest.param(httpx.ConnectTimeout, NotSent, id="connect-timeout"),
        pytest.param(httpx.PoolTimeout, NotSent, id="pool-timeout"),
        pytest.param(httpx.ReadTimeout, NoAnswer, id="read-timeout"),
        pytest.param(httpx.WriteError, NoAnswer, id="write-error"),
        pytest.param(httpx.RemoteProtocolError, NoAnswer, id="remote-protocol-error"),
        pytest.param(httpx.TooManyRedirects, NoAnswer, id="not-a-transport-error"),
    ],
)
async def test_errors_say_whether_the_request_may_have_left(
    error: type[httpx.HTTPError], mapped: type[TransportError]
) -> None:
    def exchange(request: httpx.Request) -> httpx.Response:
        raise error("boom", request=request)

    async with httpx.AsyncClient(transport=httpx.MockTransport(exchange)) as http:
        with pytest.raises(mapped, match=rf"^{error.__name__}: boom$") as caught:
            await HttpxSender(http).request("GET", "https://sim.test/x", b"", {})
    assert isinstance(caught.value.__cause__, error)
