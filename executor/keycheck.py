"""`executor keys`: ask Bybit what each configured API key may do, before trading with it.

The rules are pure functions over one `GET /v5/user/query-api` result, so they
are tested on hand-written answers; the shell around them only asks the
exchange and prints.

What makes a key a PROBLEM (exit 1):

- ``readOnly`` is 1: every order would be refused with 10005.
- No order permission. A key can place orders when it holds at least one of
  ``ContractTrade: Order`` (linear/inverse on classic accounts),
  ``Derivatives: DerivativesTrade`` (linear/inverse/USDC contracts on unified
  accounts), ``Spot: SpotTrade`` or ``Options: OptionsTrade``. ``Position``
  alone is not enough: it sets leverage and TP/SL but places no order. These
  are the pairs the simulator's gateway checks, one per category.
- Any ``Wallet`` permission (``AccountTransfer``, ``SubMemberTransfer``,
  ``Withdraw``): a leaked order key must not be able to move funds out.
- Expired.

WARNINGS (exit 0): no IP allowlist (``ips`` is ``["*"]`` or empty, so the
secret works from anywhere and Bybit expires the key after 90 days); expiry
within ``EXPIRY_WARNING_DAYS``; no right to trade linear, the default signal
category.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from executor.bybit.client import Answer, ApiKey, BybitClient

QUERY_API = "/v5/user/query-api"
DAY_MS = 86_400_000
EXPIRY_WARNING_DAYS = 14
DEFAULT_CATEGORY = "linear"

# Any one (group, permission) pair lets a key place orders in that category.
ORDER_RIGHTS: Mapping[str, tuple[tuple[str, str], ...]] = {
    "linear": (("ContractTrade", "Order"), ("Derivatives", "DerivativesTrade")),
    "inverse": (("ContractTrade", "Order"), ("Derivatives", "DerivativesTrade")),
    "spot": (("Spot", "SpotTrade"),),
    "option": (("Options", "OptionsTrade"),),
}
DIFFERENT_ACCOUNTS = "keys belong to different accounts: failover could place a second order"


@dataclass(frozen=True)
class KeyReport:
    name: str
    fingerprint: str
    host: str
    user_id: int | None = None
    # None when the exchange did not answer, so nothing is known.
    read_only: bool | None = None
    permissions: dict[str, list[str]] = field(default_factory=dict)
    ips: list[str] = field(default_factory=list)
    days_to_expiry: float | None = None
    categories: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    warnings: tuple[str, ...] = ()


def build_report(
    name: str, fingerprint: str, host: str, result: Mapping[str, Any], *, now_ms: float
) -> KeyReport:
    """Judge one key from its query-api ``result``."""
    raw_perms = result.get("permissions")
    permissions = {
        str(group): [str(p) for p in perms]
        for group, perms in (raw_perms.items() if isinstance(raw_perms, Mapping) else ())
        if isinstance(perms, list) and perms
    }
    raw_ips = result.get("ips")
    ips = [str(ip) for ip in raw_ips] if isinstance(raw_ips, list) else []
    read_only = str(result.get("readOnly", "0")) == "1"
    days = days_to_expiry(result, now_ms)
    categories = tradable_categories(permissions)

    problems: list[str] = []
    warnings: list[str] = []
    if read_only:
        problems.append("read-only key: every order would be refused")
    elif not categories:
        problems.append(
            "no order permission: needs ContractTrade:Order, Derivatives:DerivativesTrade,"
            " Spot:SpotTrade or Options:OptionsTrade"
        )
    elif DEFAULT_CATEGORY not in categories:
        warnings.append(f"cannot trade {DEFAULT_CATEGORY}, the default signal category")
    if permissions.get("Wallet"):
        granted = ", ".join(permissions["Wallet"])
        problems.append(f"Wallet permission ({granted}): this key can move funds; remove it")
    if days is not None and days <= 0:
        problems.append(f"key expired ({result.get('expiredAt') or 'deadlineDay 0'})")
    elif days is not None and days < EXPIRY_WARNING_DAYS:
        warnings.append(f"key expires in {days:.1f} days")
    if not ips or "*" in ips:
        warnings.append("no IP allowlist: the secret works from any address")

    return KeyReport(
        name=name,
        fingerprint=fingerprint,
        host=host,
        user_id=_user_id(result.get("userID")),
        read_only=read_only,
        permissions=permissions,
        ips=ips,
        days_to_expiry=days,
        categories=categories,
        problems=tuple(problems),
        warnings=tuple(warnings),
    )


def _user_id(raw: object) -> int | None:
    # Bybit sends a number; some gateways and SDK fixtures carry it as a string.
    text = str(raw) if isinstance(raw, int | str) and not isinstance(raw, bool) else ""
    return int(text) if text.isdigit() else None


def refused_report(name: str, fingerprint: str, host: str, reason: str) -> KeyReport:
    return KeyReport(name=name, fingerprint=fingerprint, host=host, problems=(reason,))


def days_to_expiry(result: Mapping[str, Any], now_ms: float) -> float | None:
    """Days left, None for a key that never expires.

    ``expiredAt`` is exact; ``deadlineDay`` (whole days, negative for "never")
    is only used when ``expiredAt`` is missing or unreadable.
    """
    expired_at = result.get("expiredAt")
    if isinstance(expired_at, str) and expired_at:
        try:
            at_ms = datetime.fromisoformat(expired_at).timestamp() * 1000
        except ValueError:
            pass
        else:
            return (at_ms - now_ms) / DAY_MS
    deadline = result.get("deadlineDay")
    if isinstance(deadline, int | float) and deadline >= 0:
        return float(deadline)
    return None


def tradable_categories(permissions: Mapping[str, Sequence[str]]) -> tuple[str, ...]:
    return tuple(
        category
        for category, rights in ORDER_RIGHTS.items()
        if any(perm in permissions.get(group, ()) for group, perm in rights)
    )


def check_pair(reports: Sequence[KeyReport]) -> list[str]:
    """Problems across keys: failover is only safe inside one account (orderLinkId scope)."""
    accounts = {r.user_id for r in reports if r.user_id is not None}
    if len(accounts) <= 1:
        return []
    owners = ", ".join(f"{r.name}={r.user_id}" for r in reports if r.user_id is not None)
    return [f"{DIFFERENT_ACCOUNTS} ({owners})"]


def exit_code(reports: Iterable[KeyReport], pair_problems: Sequence[str]) -> int:
    return 1 if pair_problems or any(r.problems for r in reports) else 0


def render(reports: Sequence[KeyReport], pair_problems: Sequence[str]) -> str:
    lines: list[str] = []
    for r in reports:
        lines.append(f"{r.name}  {r.fingerprint}  on {r.host}")
        if r.read_only is not None:
            perms = "; ".join(f"{g}: {', '.join(p)}" for g, p in r.permissions.items())
            expiry = "never" if r.days_to_expiry is None else f"{r.days_to_expiry:.1f} days"
            rows = [
                ("userID", str(r.user_id) if r.user_id is not None else "?"),
                ("read-only", "yes" if r.read_only else "no"),
                ("permissions", perms or "none"),
                ("trades", ", ".join(r.categories) or "nothing"),
                ("IP allowlist", ", ".join(r.ips) or "none"),
                ("expires in", expiry),
            ]
            lines.extend(f"  {label:<13}{value}" for label, value in rows)
        lines.extend(f"  PROBLEM: {p}" for p in r.problems)
        lines.extend(f"  WARNING: {w}" for w in r.warnings)
        lines.append("")
    lines.extend(f"PROBLEM: {p}" for p in pair_problems)
    problems = sum(len(r.problems) for r in reports) + len(pair_problems)
    warnings = sum(len(r.warnings) for r in reports)
    verdict = "NOT READY" if problems else "OK"
    lines.append(f"{verdict}: {len(reports)} key(s), {problems} problem(s), {warnings} warning(s)")
    return "\n".join(lines)


def _refusal(answer: Answer) -> str:
    if answer.error:
        return f"query-api failed: {answer.error}"
    code = answer.reply.ret_code
    prefix = f"retCode {code}" if code is not None else f"HTTP {answer.reply.status}"
    return f"exchange refused the key: {prefix} {answer.ret_msg[:200]}"


async def inspect_keys(
    client: BybitClient,
    keys: Sequence[ApiKey],
    host: str,
    *,
    wall_ms: Callable[[], float] = lambda: time.time() * 1000,
) -> list[KeyReport]:
    reports = []
    for key in keys:
        answer = await client.get(key, QUERY_API, {})
        if answer.ok:
            reports.append(
                build_report(key.name, key.fingerprint, host, answer.result, now_ms=wall_ms())
            )
            continue
        # Refusals echo request text back; make sure a secret can never ride along.
        reason = _refusal(answer).replace(key.secret.get_secret_value(), "***")
        reports.append(refused_report(key.name, key.fingerprint, host, reason))
    return reports


async def run_keys_command(
    base_url: str,
    keys: Sequence[ApiKey],
    *,
    recv_window_ms: int = 5000,
    timeout_s: float = 10,
) -> int:
    """Check every key, print the report; 0 usable, 1 problems, 2 nothing configured."""
    if not keys:
        print(
            "executor keys: no API key configured (set EXECUTOR_PRIMARY_API_KEY"
            " and EXECUTOR_PRIMARY_API_SECRET)",
            file=sys.stderr,
        )
        return 2
    host = urlsplit(base_url).netloc or base_url
    async with httpx.AsyncClient(timeout=timeout_s) as http:
        client = BybitClient(http, base_url, recv_window_ms=recv_window_ms)
        # The signed call below reports an unreachable host or a clock error itself.
        with contextlib.suppress(ConnectionError, ValueError):
            await client.sync_time()
        reports = await inspect_keys(client, keys, host)
    pair_problems = check_pair(reports)
    print(render(reports, pair_problems))
    return exit_code(reports, pair_problems)
