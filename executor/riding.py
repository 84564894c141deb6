"""Two Lua scripts run as one: a second call rides in the first one's round trip.

The dedup claim in front of an order and the budget grant it needs are two
scripts of two modules; when both are due at once, ``riding`` joins them so
that they cost one round trip, and a ``Rider`` carries the second one's call.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Rider:
    """Another script's call, sent in the same round trip as a first script's
    (``riding``); ``done`` receives its reply."""

    script: str
    keys: list[str]
    args: list[Any]
    done: Callable[[list[Any]], None]


def riding(first: str, second: str) -> str:
    """One script that runs ``first`` and then ``second``, each on its own KEYS
    and ARGV. Call it with KEYS: the first's, then the second's; ARGV: how many
    of the keys are the first's, how many of the rest of ARGV are, the first's
    ARGV, then the second's. Reply: {the first's reply, the second's}."""
    return f"""
local function first(KEYS, ARGV)
{first}
end
local function second(KEYS, ARGV)
{second}
end
local nk, na = tonumber(ARGV[1]), tonumber(ARGV[2])
local k1, a1, k2, a2 = {{}}, {{}}, {{}}, {{}}
for i = 1, #KEYS do
  if i <= nk then k1[#k1 + 1] = KEYS[i] else k2[#k2 + 1] = KEYS[i] end
end
for i = 3, #ARGV do
  if i <= na + 2 then a1[#a1 + 1] = ARGV[i] else a2[#a2 + 1] = ARGV[i] end
end
return {{first(k1, a1), second(k2, a2)}}
"""
