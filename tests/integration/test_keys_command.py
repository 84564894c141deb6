"""`run_keys_command` against the simulator: exit codes and the lines a user reads."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from executor.bybit.client import ApiKey
from executor.bybit.sim_keys import (
    DAY_MS,
    OTHER_ACCOUNT,
    PRIMARY,
    READ_ONLY,
    SECONDARY,
    WALLET,
    SimKey,
)
from executor.bybit.simulator import SimConfig, SimulatorServer
from executor.keycheck import DIFFERENT_ACCOUNTS, run_keys_command

OPEN_KEY = SimKey(api_key="SIMOPENKEY00000001", secret="sim-open-secret-0001", user_id=1000001)
EXPIRED = SimKey(
    api_key="SIMEXPIREDKEY00001",
    secret="sim-expired-secret-0001",
    user_id=1000001,
    expires_at_ms=int(time.time() * 1000) - DAY_MS,
)
SOON = SimKey(
    api_key="SIMSOONKEY00000001",
    secret="sim-soon-secret-0001",
    user_id=1000001,
    ips=("127.0.0.1",),
    expires_at_ms=int(time.time() * 1000) + 5 * DAY_MS + DAY_MS // 2,
)
SECRETS = [
    k.secret
    for k in (PRIMARY, SECONDARY, READ_ONLY, WALLET, OTHER_ACCOUNT, OPEN_KEY, EXPIRED, SOON)
]


def api(name: str, key: SimKey, secret: str | None = None) -> ApiKey:
    return ApiKey(name, key.api_key, SecretStr(secret if secret is not None else key.secret))


@pytest.fixture
async def sim() -> AsyncIterator[SimulatorServer]:
    async with SimulatorServer(SimConfig(), host="127.0.0.1", port=0) as server:
        for key in (OPEN_KEY, EXPIRED, SOON):
            server.state.add_key(key)
        yield server


def output(capsys: pytest.CaptureFixture[str]) -> list[str]:
    captured = capsys.readouterr()
    text = captured.out + captured.err
    for secret in SECRETS:
        assert secret not in text
    return captured.out.splitlines()


async def test_primary_and_secondary_on_one_account_pass(
    sim: SimulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await run_keys_command(sim.url, [api("primary", PRIMARY), api("secondary", SECONDARY)])
    lines = output(capsys)
    assert code == 0
    assert f"primary  {api('primary', PRIMARY).fingerprint}  on 127.0.0.1:{sim.port}" in lines
    assert lines.count("  userID       1000001") == 2
    assert "  IP allowlist 127.0.0.1" in lines
    assert not [line for line in lines if "PROBLEM" in line or "WARNING" in line]
    assert lines[-1] == "OK: 2 key(s), 0 problem(s), 0 warning(s)"


async def test_wallet_permission_fails(
    sim: SimulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await run_keys_command(sim.url, [api("primary", WALLET), api("secondary", SECONDARY)])
    lines = output(capsys)
    assert code == 1
    assert (
        "  PROBLEM: Wallet permission (AccountTransfer, SubMemberTransfer):"
        " this key can move funds; remove it"
    ) in lines


async def test_read_only_key_fails(
    sim: SimulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await run_keys_command(sim.url, [api("primary", READ_ONLY)])
    lines = output(capsys)
    assert code == 1
    assert "  read-only    yes" in lines
    assert "  PROBLEM: read-only key: every order would be refused" in lines


async def test_keys_on_different_accounts_fail(
    sim: SimulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    keys = [api("primary", PRIMARY), api("secondary", OTHER_ACCOUNT)]
    code = await run_keys_command(sim.url, keys)
    lines = output(capsys)
    assert code == 1
    assert f"PROBLEM: {DIFFERENT_ACCOUNTS} (primary=1000001, secondary=2000002)" in lines
    # Each key alone is fine: only the pair is wrong.
    assert not [line for line in lines if line.startswith("  PROBLEM")]


async def test_wrong_secret_names_the_ret_code(
    sim: SimulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await run_keys_command(sim.url, [api("primary", PRIMARY, "not-the-secret")])
    lines = output(capsys)
    assert code == 1
    refused = [line for line in lines if line.startswith("  PROBLEM: exchange refused the key")]
    assert len(refused) == 1
    assert "retCode 10004 error sign!" in refused[0]


async def test_expired_key_is_refused_with_its_ret_code(
    sim: SimulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await run_keys_command(sim.url, [api("primary", EXPIRED)])
    lines = output(capsys)
    assert code == 1
    assert "  PROBLEM: exchange refused the key: retCode 33004 Your api key has expired." in lines


async def test_unrestricted_key_passes_with_a_warning(
    sim: SimulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await run_keys_command(sim.url, [api("primary", OPEN_KEY)])
    lines = output(capsys)
    assert code == 0
    assert "  IP allowlist *" in lines
    assert "  WARNING: no IP allowlist: the secret works from any address" in lines
    assert lines[-1] == "OK: 1 key(s), 0 problem(s), 1 warning(s)"


async def test_key_expiring_soon_passes_with_a_warning(
    sim: SimulatorServer, capsys: pytest.CaptureFixture[str]
) -> None:
    code = await run_keys_command(sim.url, [api("primary", SOON)])
    lines = output(capsys)
    assert code == 0
    assert "  WARNING: key expires in 5.5 days" in lines


async def test_unreachable_host_fails(capsys: pytest.CaptureFixture[str]) -> None:
    # Port 9 (discard) on loopback: nothing listens there in a test environment.
    code = await run_keys_command("http://127.0.0.1:9", [api("primary", PRIMARY)], timeout_s=2)
    lines = output(capsys)
    assert code == 1
    assert any(line.startswith("  PROBLEM: query-api failed: ConnectError") for line in lines)


async def test_no_keys_configured_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert await run_keys_command("http://127.0.0.1:9", []) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert len(captured.err.splitlines()) == 1
    assert "EXECUTOR_PRIMARY_API_KEY" in captured.err
