"""The log redactor: secrets never reach a log line, whatever shape they arrive in."""

from __future__ import annotations

import json
import logging

import pytest

from executor.logs import REDACTED, Redactor, configure, debug_enabled

CANARY = "canary-secret-4f1d9a"


def redact(**event: object) -> dict[str, object]:
    return dict(Redactor([CANARY])(None, "info", dict(event)))


def test_known_secret_is_blanked_inside_any_text() -> None:
    assert redact(event="x", error=f"HTTP 401 for key with {CANARY} in it") == {
        "event": "x",
        "error": f"HTTP 401 for key with {REDACTED} in it",
    }


def test_secret_looking_fields_are_blanked_whatever_they_hold() -> None:
    out = redact(event="x", api_secret="anything", password="p", sign="abc", attempts=3)
    assert out == {
        "event": "x",
        "api_secret": REDACTED,
        "password": REDACTED,
        "sign": REDACTED,
        "attempts": 3,
    }


def test_lists_and_dicts_keep_their_shape_and_lose_their_secrets() -> None:
    out = redact(event="x", keys=["primary:SIMP…01", CANARY], ctx={"secret": "s", "n": CANARY})
    assert out["keys"] == ["primary:SIMP…01", REDACTED]
    assert out["ctx"] == {"secret": REDACTED, "n": REDACTED}


def test_password_in_a_url_is_blanked() -> None:
    out = redact(event="x", url="redis://user:hunter2@redis:6379/0")
    assert out["url"] == f"redis://user:{REDACTED}@redis:6379/0"


def test_objects_are_rendered_as_text_and_scrubbed() -> None:
    class Thing:
        def __str__(self) -> str:
            return f"thing({CANARY})"

    assert redact(event="x", thing=Thing())["thing"] == f"thing({REDACTED})"


def test_standard_library_records_are_rendered_as_json_and_redacted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure("info", "json", [CANARY])
    try:
        logging.getLogger("aiohttp.server").error("failed with %s", CANARY)
        logging.getLogger("httpx").info("HTTP Request: POST /v5/order/create")  # chatty: hidden
    finally:
        configure("info", "json")
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(e["logger"], e["level"], e["event"]) for e in lines] == [
        ("aiohttp.server", "error", f"failed with {REDACTED}")
    ]


def test_debug_level_lets_library_request_lines_through(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure("debug", "json", [CANARY])
    try:
        logging.getLogger("httpx").info("HTTP Request: GET /?k=%s", CANARY)
    finally:
        configure("info", "json")
    [line] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert line["event"] == f"HTTP Request: GET /?k={REDACTED}"


@pytest.mark.parametrize(
    ("level", "enabled"),
    [("debug", True), ("info", False), ("warning", False), ("error", False)],
)
def test_debug_enabled_follows_the_configured_level(level: str, enabled: bool) -> None:
    configure(level, "json")
    try:
        assert debug_enabled() is enabled
    finally:
        configure("info", "json")
