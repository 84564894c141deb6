"""Tiny helpers shared by tests of every level."""

from __future__ import annotations

import json
from typing import Any


def encode(signal: dict[str, Any]) -> bytes:
    return json.dumps(signal, separators=(",", ":")).encode()
