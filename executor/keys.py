"""The API key pool: which key trades now, failover and failback. Pure.

Failover moves to the next key when the active one is refused (10003, 10004,
10005, 10007, 10010, 33004...). It is allowed only between keys verified to
belong to one Bybit account: orderLinkId uniqueness is per account, so a
failover across accounts could place a second order.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from executor.bybit.client import ApiKey

# (event, key now active, reason): "failover", "failback", "exhausted", "rotated"
KeyListener = Callable[[str, ApiKey | None, str], None]


class KeyPool:
    def __init__(self, keys: Sequence[ApiKey], on_change: KeyListener | None = None) -> None:
        if not keys:
            raise ValueError("at least one key is needed")
        self._keys = list(keys)
        self._active = 0
        self._failed: dict[str, str] = {}
        self._on_change = on_change
        self.failovers = 0
        # Only after the exchange confirmed one account for every key.
        self.same_account = len(self._keys) == 1

    @property
    def keys(self) -> list[ApiKey]:
        return list(self._keys)

    @property
    def active(self) -> ApiKey:
        return self._keys[self._active]

    @property
    def primary(self) -> ApiKey:
        return self._keys[0]

    def failed(self) -> dict[str, str]:
        return dict(self._failed)

    def fail(self, key: ApiKey, reason: str) -> ApiKey | None:
        """``key`` was refused: the key to retry with, or None when none is left."""
        self._failed[key.name] = reason
        if key.name != self.active.name:
            # Another order already moved the pool on.
            return None if self.active.name in self._failed else self.active
        if not self.same_account:
            self._notify("exhausted", None, f"{key.name} refused ({reason}); failover not allowed")
            return None
        for index, candidate in enumerate(self._keys):
            if candidate.name not in self._failed:
                self._active = index
                self.failovers += 1
                self._notify("failover", candidate, f"{key.name} refused: {reason}")
                return candidate
        self._notify("exhausted", None, f"every key refused; last: {reason}")
        return None

    def recovered(self, name: str) -> None:
        """A probe found ``name`` usable again; go back to the primary if it is."""
        self._failed.pop(name, None)
        if name == self.primary.name and self._active != 0:
            self._active = 0
            self._notify("failback", self.primary, "primary key usable again")

    def replace(self, keys: Sequence[ApiKey]) -> None:
        """New credentials (rotation): same roles, refusals forgotten, primary first."""
        if not keys:
            raise ValueError("at least one key is needed")
        self._keys = list(keys)
        self._failed.clear()
        self._active = 0
        self.same_account = len(self._keys) == 1
        self._notify("rotated", self.active, "credentials reloaded")

    def _notify(self, event: str, key: ApiKey | None, reason: str) -> None:
        if self._on_change is not None:
            self._on_change(event, key, reason)
