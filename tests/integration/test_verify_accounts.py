"""Start-up key checks against the in-process simulator: transient venue
failures are retried; a key the venue refuses is not."""

from __future__ import annotations

from pydantic import SecretStr

from executor.app import VERIFY_TRIES, verify_accounts
from executor.bybit.client import ApiKey, BybitClient
from executor.bybit.sim_state import PRIMARY, SECONDARY
from executor.bybit.simulator import SimulatorServer
from executor.keys import KeyPool

QUERY_API = "/v5/user/query-api"


def pool() -> KeyPool:
    return KeyPool([
        ApiKey("primary", PRIMARY.api_key, SecretStr(PRIMARY.secret)),
        ApiKey("secondary", SECONDARY.api_key, SecretStr(SECONDARY.secret)),
    ])  # fmt: skip


async def test_a_few_503s_at_start_up_still_verify_both_keys(
    sim: SimulatorServer, bybit: BybitClient
) -> None:
    sim.state.knobs.update({"fail_next": 3})
    keys = pool()
    accounts = await verify_accounts(bybit, keys)
    assert accounts == {"primary": str(PRIMARY.user_id), "secondary": str(SECONDARY.user_id)}
    assert keys.same_account
    assert sim.state.stats.requests[QUERY_API] == 5  # 3 answered 503, then one per key
    assert VERIFY_TRIES > 3


async def test_an_exchange_that_keeps_failing_leaves_failover_off_without_stopping(
    sim: SimulatorServer, bybit: BybitClient
) -> None:
    sim.state.knobs.update({"error_rate": 1.0})
    keys = pool()
    assert await verify_accounts(bybit, keys) == {}
    assert not keys.same_account
    assert sim.state.stats.requests[QUERY_API] == 2 * VERIFY_TRIES


async def test_a_refused_key_is_asked_once(sim: SimulatorServer, bybit: BybitClient) -> None:
    sim.state.knobs.update({"revoked": [PRIMARY.api_key]})
    keys = pool()
    assert await verify_accounts(bybit, keys) == {"secondary": str(SECONDARY.user_id)}
    assert not keys.same_account
    assert sim.state.stats.requests[QUERY_API] == 2
