"""The key-check rules on hand-written `GET /v5/user/query-api` results."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from executor.bybit.client import ApiKey, BybitClient
from executor.keycheck import (
    DAY_MS,
    DIFFERENT_ACCOUNTS,
    KeyReport,
    build_report,
    check_pair,
    exit_code,
    inspect_keys,
    refused_report,
    render,
)

# 2024-01-01T00:00:00Z
NOW_MS = 1_704_067_200_000
SECRET = "very-secret-value-0001"


def query_api(**changes: Any) -> dict[str, Any]:
    """A trading key bound to one IP, shaped like Bybit's documented answer."""
    result: dict[str, Any] = {
        "id": "13770661",
        "note": "executor",
        "apiKey": "XXXXXXXXXXXXXXXXXX",
        "readOnly": 0,
        "secret": "",
        "permissions": {
            "ContractTrade": ["Order", "Position"],
            "Spot": ["SpotTrade"],
            "Wallet": [],
            "Options": ["OptionsTrade"],
            "Derivatives": [],
            "CopyTrading": [],
            "BlockTrade": [],
            "Exchange": [],
            "NFT": [],
            "Affiliate": [],
            "Earn": [],
        },
        "ips": ["203.0.113.7"],
        "type": 1,
        "deadlineDay": -1,
        "expiredAt": "",
        "createdAt": "2023-11-14T22:13:20Z",
        "unified": 0,
        "uta": 1,
        "userID": 24617703,
        "inviterID": 0,
        "vipLevel": "No VIP",
        "mktMakerLevel": "0",
        "affiliateID": 0,
        "rsaPublicKey": "",
        "isMaster": True,
        "parentUid": "0",
        "kycLevel": "LEVEL_DEFAULT",
        "kycRegion": "",
    }
    result.update(changes)
    return result


def perms(**groups: list[str]) -> dict[str, list[str]]:
    return {"ContractTrade": [], "Spot": [], "Wallet": [], "Derivatives": [], **groups}


def report(name: str = "primary", **changes: Any) -> KeyReport:
    return build_report(name, "XXXX…XX", "api.bybit.com", query_api(**changes), now_ms=NOW_MS)


def iso_in_days(days: float) -> str:
    return datetime.fromtimestamp((NOW_MS + days * DAY_MS) / 1000, UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def test_a_good_key_has_no_problems_and_no_warnings() -> None:
    good = report()
    assert good.problems == ()
    assert good.warnings == ()
    assert good.user_id == 24617703
    assert good.read_only is False
    assert good.days_to_expiry is None
    assert good.categories == ("linear", "inverse", "spot", "option")
    # Empty groups are not grants.
    assert "Wallet" not in good.permissions
    assert exit_code([good], []) == 0


def test_read_only_key_is_a_problem() -> None:
    found = report(readOnly=1)
    assert found.read_only is True
    assert found.problems == ("read-only key: every order would be refused",)
    assert exit_code([found], []) == 1


@pytest.mark.parametrize(
    "permissions",
    [
        perms(),
        perms(ContractTrade=["Position"]),
        perms(Exchange=["ExchangeHistory"], NFT=["NFTQueryProductList"]),
    ],
)
def test_no_order_permission_is_a_problem(permissions: dict[str, list[str]]) -> None:
    found = report(permissions=permissions)
    assert len(found.problems) == 1
    assert found.problems[0].startswith("no order permission")
    assert found.categories == ()


def test_unified_derivatives_trade_is_enough_for_linear() -> None:
    found = report(permissions=perms(Derivatives=["DerivativesTrade"]))
    assert found.problems == ()
    assert found.warnings == ()
    assert found.categories == ("linear", "inverse")


def test_spot_only_key_is_usable_but_warned_about_linear() -> None:
    found = report(permissions=perms(Spot=["SpotTrade"]))
    assert found.problems == ()
    assert found.warnings == ("cannot trade linear, the default signal category",)


def test_any_wallet_permission_is_a_problem() -> None:
    granted = perms(ContractTrade=["Order", "Position"], Wallet=["AccountTransfer"])
    found = report(permissions=granted)
    assert found.problems == (
        "Wallet permission (AccountTransfer): this key can move funds; remove it",
    )
    assert exit_code([found], []) == 1


def test_expired_key_is_a_problem() -> None:
    found = report(ips=["*"], expiredAt=iso_in_days(-1), deadlineDay=0)
    assert found.days_to_expiry == pytest.approx(-1)
    assert any(p.startswith("key expired") for p in found.problems)


def test_unrestricted_ips_is_a_warning_only() -> None:
    for ips in (["*"], []):
        found = report(ips=ips)
        assert found.problems == ()
        assert found.warnings == ("no IP allowlist: the secret works from any address",)
        assert exit_code([found], []) == 0


def test_expiry_within_fourteen_days_warns() -> None:
    soon = report(expiredAt=iso_in_days(10), deadlineDay=10)
    later = report(expiredAt=iso_in_days(20), deadlineDay=20)
    assert soon.problems == ()
    assert soon.warnings == ("key expires in 10.0 days",)
    assert later.days_to_expiry == pytest.approx(20)
    assert later.warnings == ()


def test_deadline_day_is_used_when_expired_at_is_missing() -> None:
    assert report(expiredAt="", deadlineDay=5).days_to_expiry == 5
    assert report(expiredAt="not a date", deadlineDay=30).days_to_expiry == 30
    assert report(expiredAt="", deadlineDay=-1).days_to_expiry is None


def test_keys_on_different_accounts_are_a_pair_problem() -> None:
    primary = report("primary")
    secondary = report("secondary", userID=99999999)
    found = check_pair([primary, secondary])
    assert found == [f"{DIFFERENT_ACCOUNTS} (primary=24617703, secondary=99999999)"]
    assert exit_code([primary, secondary], found) == 1


def test_keys_on_one_account_pass_the_pair_check() -> None:
    assert check_pair([report("primary"), report("secondary", userID="24617703")]) == []
    # A refused key proves nothing about accounts; its own problem already fails the run.
    refused = refused_report("secondary", "YYYY…YY", "api.bybit.com", "retCode 10003")
    assert check_pair([report("primary"), refused]) == []


def test_render_lists_every_field_and_never_the_secret() -> None:
    wallet = perms(ContractTrade=["Order"], Wallet=["AccountTransfer"])
    reports = [
        report("primary", secret=SECRET, ips=["*"]),
        report("secondary", userID=5, permissions=wallet, secret=SECRET),
        refused_report("third", "ZZZZ…ZZ", "api.bybit.com", "retCode 10003 API key is invalid."),
    ]
    pair = check_pair(reports)
    text = render(reports, pair)
    lines = text.splitlines()
    assert SECRET not in text
    assert "primary  XXXX…XX  on api.bybit.com" in lines
    assert "  userID       24617703" in lines
    assert "  read-only    no" in lines
    granted = "ContractTrade: Order, Position; Spot: SpotTrade; Options: OptionsTrade"
    assert f"  permissions  {granted}" in lines
    assert "  IP allowlist *" in lines
    assert "  expires in   never" in lines
    assert "  WARNING: no IP allowlist: the secret works from any address" in lines
    wallet_problem = "Wallet permission (AccountTransfer): this key can move funds; remove it"
    assert f"  PROBLEM: {wallet_problem}" in lines
    assert "  PROBLEM: retCode 10003 API key is invalid." in lines
    assert f"PROBLEM: {DIFFERENT_ACCOUNTS} (primary=24617703, secondary=5)" in lines
    assert lines[-1] == "NOT READY: 3 key(s), 3 problem(s), 1 warning(s)"
    assert exit_code(reports, pair) == 1


def test_render_of_good_keys_ends_ok() -> None:
    assert render([report()], []).splitlines()[-1] == "OK: 1 key(s), 0 problem(s), 0 warning(s)"


async def test_a_refusal_echoing_the_secret_is_scrubbed() -> None:
    key = ApiKey("primary", "ABCDEFGHIJKLMNOPQR", SecretStr(SECRET))

    def hostile(_request: httpx.Request) -> httpx.Response:
        body = {"retCode": 10004, "retMsg": f"error sign! origin_string[{SECRET}]", "result": {}}
        return httpx.Response(200, json=body)

    async with httpx.AsyncClient(transport=httpx.MockTransport(hostile)) as http:
        found = await inspect_keys(BybitClient(http, "https://api.bybit.com"), [key], "h")
    assert found[0].problems == (
        "exchange refused the key: retCode 10004 error sign! origin_string[***]",
    )
    assert SECRET not in render(found, [])
