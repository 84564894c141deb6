"""API keys known to the simulator and the `GET /v5/user/query-api` view of them."""

from __future__ import annotations

import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DAY_MS = 86_400_000

# Permission groups as `query-api` lists them; a group with an empty list is "not granted".
PERMISSION_GROUPS = (
    "ContractTrade",
    "Spot",
    "Wallet",
    "Options",
    "Derivatives",
    "CopyTrading",
    "BlockTrade",
    "Exchange",
    "NFT",
    "Affiliate",
    "Earn",
)

TRADING_PERMISSIONS: Mapping[str, tuple[str, ...]] = {
    "ContractTrade": ("Order", "Position"),
    "Spot": ("SpotTrade",),
    "Derivatives": ("DerivativesTrade",),
    "Options": ("OptionsTrade",),
}

WALLET_PERMISSIONS: Mapping[str, tuple[str, ...]] = {
    **TRADING_PERMISSIONS,
    "Wallet": ("AccountTransfer", "SubMemberTransfer"),
}

# What an order in a category needs: any one (group, permission) pair of its list.
_TRADE_NEEDS: Mapping[str, tuple[tuple[str, str], ...]] = {
    "linear": (("ContractTrade", "Order"), ("Derivatives", "DerivativesTrade")),
    "inverse": (("ContractTrade", "Order"), ("Derivatives", "DerivativesTrade")),
    "spot": (("Spot", "SpotTrade"),),
    "option": (("Options", "OptionsTrade"),),
}


@dataclass(frozen=True)
class SimKey:
    api_key: str
    secret: str
    user_id: int
    read_only: bool = False
    permissions: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: TRADING_PERMISSIONS)
    ips: tuple[str, ...] = ("*",)
    # Absolute expiry (epoch ms); None never expires, like a key bound to IPs.
    expires_at_ms: int | None = None
    note: str = ""
    created_at_ms: int = 1_700_000_000_000

    def allows_ip(self, ip: str | None) -> bool:
        return "*" in self.ips or (ip is not None and ip in self.ips)

    def can_trade(self, category: str | None) -> bool:
        if self.read_only:
            return False
        needs = _TRADE_NEEDS.get(category or "")
        if needs is None:
            # Unknown category: the venue rejects it later; any trading right lets it through here.
            needs = tuple(pair for pairs in _TRADE_NEEDS.values() for pair in pairs)
        return any(perm in self.permissions.get(group, ()) for group, perm in needs)

    def is_expired(self, now_ms: int) -> bool:
        return self.expires_at_ms is not None and now_ms >= self.expires_at_ms


PRIMARY = SimKey(
    api_key="SIMPRIMARYKEY00001",
    secret="sim-primary-secret-0001",
    user_id=1000001,
    ips=("127.0.0.1",),
    note="sim primary",
)
SECONDARY = SimKey(
    api_key="SIMSECONDARYKEY001",
    secret="sim-secondary-secret-0001",
    user_id=1000001,
    ips=("127.0.0.1",),
    note="sim secondary",
)
READ_ONLY = SimKey(
    api_key="SIMREADONLYKEY0001",
    secret="sim-readonly-secret-0001",
    user_id=1000001,
    read_only=True,
    ips=("127.0.0.1",),
    note="sim read-only",
)
WALLET = SimKey(
    api_key="SIMWALLETKEY000001",
    secret="sim-wallet-secret-0001",
    user_id=1000001,
    permissions=WALLET_PERMISSIONS,
    ips=("127.0.0.1",),
    note="sim wallet",
)
OTHER_ACCOUNT = SimKey(
    api_key="SIMOTHERACCOUNT001",
    secret="sim-other-secret-0001",
    user_id=2000002,
    ips=("127.0.0.1",),
    note="sim other account",
)
DEMO_KEYS: tuple[SimKey, ...] = (PRIMARY, SECONDARY, READ_ONLY, WALLET, OTHER_ACCOUNT)


def parse_key_spec(spec: str, default_user_id: int = PRIMARY.user_id) -> SimKey:
    """`API_KEY:SECRET[:USER_ID]` as given to `--key`: a trading key usable from any IP."""
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not parts[0] or not parts[1]:
        raise ValueError(f"expected API_KEY:SECRET[:USER_ID], got {spec!r}")
    user_id = int(parts[2]) if len(parts) == 3 else default_user_id
    return SimKey(api_key=parts[0], secret=parts[1], user_id=user_id, note="added")


def key_from_json(data: Mapping[str, Any]) -> SimKey:
    """The admin API's `POST /sim/keys` body."""
    permissions = data.get("permissions")
    expires = data.get("expires_at_ms")
    return SimKey(
        api_key=str(data["api_key"]),
        secret=str(data["secret"]),
        user_id=int(data.get("user_id", PRIMARY.user_id)),
        read_only=bool(data.get("read_only", False)),
        permissions=(
            {str(g): tuple(str(p) for p in perms) for g, perms in permissions.items()}
            if isinstance(permissions, Mapping)
            else TRADING_PERMISSIONS
        ),
        ips=tuple(str(ip) for ip in data.get("ips", ("*",))),
        expires_at_ms=int(expires) if expires is not None else None,
        note=str(data.get("note", "added")),
    )


def _iso(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def query_api_view(key: SimKey, now_ms: int) -> dict[str, Any]:
    if key.expires_at_ms is None:
        deadline_day, expired_at = -1, ""
    else:
        deadline_day = max(0, (key.expires_at_ms - now_ms) // DAY_MS)
        expired_at = _iso(key.expires_at_ms)
    return {
        "id": str(zlib.crc32(key.api_key.encode()) % 100_000_000),
        "note": key.note,
        "apiKey": key.api_key,
        "readOnly": 1 if key.read_only else 0,
        "secret": "",
        "permissions": {g: list(key.permissions.get(g, ())) for g in PERMISSION_GROUPS},
        "ips": list(key.ips),
        "type": 1,
        "deadlineDay": deadline_day,
        "expiredAt": expired_at,
        "createdAt": _iso(key.created_at_ms),
        "unified": 0,
        "uta": 1,
        "userID": key.user_id,
        "inviterID": 0,
        "vipLevel": "No VIP",
        "mktMakerLevel": "0",
        "affiliateID": 0,
        "rsaPublicKey": "",
        "isMaster": True,
        "parentUid": "0",
        "kycLevel": "LEVEL_1",
        "kycRegion": "",
    }
