"""Hooks the parts call at the moments worth measuring.

The parts depend on this small class, never on Prometheus: the base class
does nothing (the default, and what unit tests get), ``metrics.Metrics``
records. Every hook is cheap and never raises.
"""

from __future__ import annotations


class Observer:
    def exchange_request(self, endpoint: str, seconds: float) -> None:
        """A request reached the exchange (or failed on the way) after ``seconds``."""

    def order_answer(self, result: str, ret_code: int | None) -> None:
        """An order-create request was answered; ``result`` is its verdict."""

    def order_sent(self, since_entry_s: float) -> None:
        """A signal's first order request went out, ``since_entry_s`` after its
        stream entry was appended."""

    def token_wait(self, seconds: float) -> None:
        """An order waited this long for a rate-limit token."""

    def signal_outcome(self, outcome: str, strategy: str = "", source: str = "") -> None:
        """A signal ended with this status (accepted, invalid, duplicate...)."""

    def dead_letter(self, kind: str) -> None:
        """An entry went to the dead-letter stream (invalid, unauthenticated, replay)."""

    def key_event(self, event: str, key: str | None) -> None:
        """The key pool changed: failover, failback, exhausted, rotated."""

    def ip_ban(self) -> None:
        """The exchange answered 403 or an IP-ban code."""


NO_OBSERVER = Observer()
