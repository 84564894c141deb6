"""structlog set-up: JSON lines off a terminal, console on one, secrets redacted."""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any

import structlog

REDACTED = "***"
_SECRET_NAMES = re.compile(r"secret|password|passwd|token|api_key|apikey|sign|authorization", re.I)
_URL_PASSWORD = re.compile(r"(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]+@", re.I)


class Redactor:
    """A processor that blanks known secret values and secret-looking fields."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets = sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True)

    def scrub(self, text: str) -> str:
        for secret in self._secrets:
            text = text.replace(secret, REDACTED)
        return _URL_PASSWORD.sub(rf"\g<scheme>\g<user>:{REDACTED}@", text)

    def clean(self, value: Any) -> Any:
        if value is None or isinstance(value, bool | int | float):
            return value
        if isinstance(value, str):
            return self.scrub(value)
        if isinstance(value, list | tuple):
            return [self.clean(item) for item in value]
        if isinstance(value, dict):
            return {
                key: REDACTED if _SECRET_NAMES.search(str(key)) else self.clean(item)
                for key, item in value.items()
            }
        return self.scrub(str(value))

    def __call__(
        self, _logger: Any, _name: str, event: MutableMapping[str, Any]
    ) -> MutableMapping[str, Any]:
        for field, value in list(event.items()):
            if _SECRET_NAMES.search(field) and field != "event":
                event[field] = REDACTED
            else:
                event[field] = self.clean(value)
        return event


# make_filtering_bound_logger hands out one class per level, so identity tells the level.
_ABOVE_DEBUG = frozenset(
    structlog.make_filtering_bound_logger(level)
    for level in (logging.INFO, logging.WARNING, logging.ERROR, logging.CRITICAL)
)


def debug_enabled() -> bool:
    """Whether a debug event would be printed: a hot path skips building its
    fields when not (a filtered call still evaluates them)."""
    return structlog.get_config()["wrapper_class"] not in _ABOVE_DEBUG


# Libraries that log every request at INFO; heard only at debug level.
_CHATTY = ("httpx", "httpcore", "aiohttp.access", "hpack")


class _Handler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stdout`` is at the time of the record; marks the
    handler this module installed, so a reconfigure replaces only it."""

    @property
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass


def configure(level: str = "info", fmt: str | None = None, secrets: Iterable[str] = ()) -> None:
    """structlog for our events, and the standard library's records (httpx,
    aiohttp, asyncio...) through the same redaction and rendering."""
    fmt = fmt or ("console" if sys.stdout.isatty() else "json")
    renderer: Any = (
        structlog.dev.ConsoleRenderer(colors=sys.stdout.isatty())
        if fmt == "console"
        else structlog.processors.JSONRenderer()
    )
    redactor = Redactor(secrets)
    numeric = logging.getLevelNamesMapping()[level.upper()]
    stamp = structlog.processors.TimeStamper(fmt="iso", utc=True)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            stamp,
            structlog.processors.format_exc_info,
            redactor,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(),  # sys.stdout as it is at each call
        cache_logger_on_first_use=False,
    )
    handler = _Handler()
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.stdlib.add_log_level,
                stamp,
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                redactor,
                renderer,
            ],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in _CHATTY:
        logging.getLogger(name).setLevel(numeric if numeric <= logging.DEBUG else logging.WARNING)
