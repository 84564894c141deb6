"""The key pool: failover, failback, rotation."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from executor.bybit.client import ApiKey
from executor.keys import KeyPool

PRIMARY = ApiKey("primary", "PRIMARYKEY0001", SecretStr("p-secret"))
SECONDARY = ApiKey("secondary", "SECONDARYKEY01", SecretStr("s-secret"))


def pool(*keys: ApiKey, same_account: bool = True) -> tuple[KeyPool, list[tuple[str, str]]]:
    events: list[tuple[str, str]] = []
    made = KeyPool(keys, lambda event, key, _why: events.append((event, key.name if key else "")))
    made.same_account = same_account
    return made, events


def test_refused_primary_fails_over_to_the_secondary_once() -> None:
    keys, events = pool(PRIMARY, SECONDARY)
    assert keys.active is PRIMARY
    assert keys.fail(PRIMARY, "10003 API key is invalid.") is SECONDARY
    assert keys.active is SECONDARY
    # A second order still holding the old key is pointed at the new one, no new event.
    assert keys.fail(PRIMARY, "10003") is SECONDARY
    assert events == [("failover", "secondary")]
    assert keys.failovers == 1


def test_no_failover_between_keys_not_proven_to_share_an_account() -> None:
    keys, events = pool(PRIMARY, SECONDARY, same_account=False)
    assert keys.fail(PRIMARY, "10004") is None
    assert keys.active is PRIMARY
    assert events == [("exhausted", "")]


def test_every_key_refused_leaves_nothing() -> None:
    keys, events = pool(PRIMARY, SECONDARY)
    keys.fail(PRIMARY, "10003")
    assert keys.fail(SECONDARY, "10005") is None
    assert events == [("failover", "secondary"), ("exhausted", "")]


def test_primary_recovering_fails_back() -> None:
    keys, events = pool(PRIMARY, SECONDARY)
    keys.fail(PRIMARY, "10003")
    keys.recovered("primary")
    assert keys.active is PRIMARY
    assert keys.failed() == {}
    assert events[-1] == ("failback", "primary")


def test_rotation_replaces_credentials_and_forgets_refusals() -> None:
    keys, events = pool(PRIMARY, SECONDARY)
    keys.fail(PRIMARY, "10003")
    rotated = ApiKey("primary", "PRIMARYKEY0002", SecretStr("p-secret-2"))
    keys.replace([rotated, SECONDARY])
    assert keys.active is rotated
    assert keys.failed() == {}
    assert keys.same_account is False  # to be confirmed again for the new key
    assert events[-1] == ("rotated", "primary")


def test_an_empty_pool_is_refused() -> None:
    with pytest.raises(ValueError):
        KeyPool([])
