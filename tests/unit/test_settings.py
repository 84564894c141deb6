"""Settings: defaults, one-line errors naming the variable, secrets kept secret."""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import pytest
from pydantic import SecretStr

import executor.settings as settings_module
from executor.settings import BYBIT_HOSTS, ConfigError, load_settings

SECRET = "S3CRET-do-not-print-7f1e"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No EXECUTOR_* variable, no .env and no secrets dir but what a test sets."""
    for name in list(os.environ):
        if name.upper().startswith("EXECUTOR_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(settings_module, "SECRETS_DIR", tmp_path / "no-such-secrets-dir")
    return tmp_path


def config_error(monkeypatch: pytest.MonkeyPatch, **env: str) -> str:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    return str(info.value)


def test_defaults_use_testnet_never_mainnet() -> None:
    settings = load_settings()
    assert settings.bybit_env == "testnet"
    assert settings.base_url == "https://api-testnet.bybit.com"
    assert "api.bybit.com" not in settings.base_url


def test_defaults_match_the_operator_contract() -> None:
    settings = load_settings()
    assert settings.queue_size == 1000
    assert settings.rate_limit_per_s == Decimal(10)
    assert settings.recv_window_ms == 5000
    assert settings.metrics_port == 9464
    assert settings.redis_url.get_secret_value() == "redis://localhost:6379/0"
    assert (settings.stream, settings.group) == ("signals", "executor")
    assert (settings.results_stream, settings.dead_letter_stream) == (
        "signals:results",
        "signals:dead",
    )
    assert settings.dry_run is False
    assert settings.primary_api_key is None
    assert settings.signal_secret is None


def test_default_consumer_is_hostname_dash_pid() -> None:
    assert load_settings().consumer.endswith(f"-{os.getpid()}")


@pytest.mark.parametrize(
    ("env", "host"),
    [
        ("mainnet", "https://api.bybit.com"),
        ("demo", "https://api-demo.bybit.com"),
        ("eu", "https://api.bybit.eu"),
        ("TestNet", "https://api-testnet.bybit.com"),
        (" nl ", "https://api.bybit.nl"),
    ],
)
def test_bybit_env_picks_its_host(monkeypatch: pytest.MonkeyPatch, env: str, host: str) -> None:
    monkeypatch.setenv("EXECUTOR_BYBIT_ENV", env)
    assert load_settings().base_url == host


def test_hosts_table_matches_bybit_doc() -> None:
    assert BYBIT_HOSTS["mainnet"] == "https://api.bybit.com"
    assert BYBIT_HOSTS["testnet"] == "https://api-testnet.bybit.com"
    assert BYBIT_HOSTS["demo"] == "https://api-demo.bybit.com"


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8999/", "http://127.0.0.1:8999"),
        ("https://proxy.internal/bybit//", "https://proxy.internal/bybit"),
        ("http://sim:8080", "http://sim:8080"),
    ],
)
def test_base_url_overrides_host_without_trailing_slash(
    monkeypatch: pytest.MonkeyPatch, url: str, expected: str
) -> None:
    monkeypatch.setenv("EXECUTOR_BYBIT_ENV", "mainnet")
    monkeypatch.setenv("EXECUTOR_BYBIT_BASE_URL", url)
    assert load_settings().base_url == expected


@pytest.mark.parametrize(
    ("env", "message"),
    [
        pytest.param(
            {"EXECUTOR_QUEUE_SIZE": "0"},
            "EXECUTOR_QUEUE_SIZE: Input should be greater than or equal to 1 (got '0')",
            id="queue-size-zero",
        ),
        pytest.param(
            {"EXECUTOR_QUEUE_SIZE": "ten"},
            "EXECUTOR_QUEUE_SIZE: Input should be a valid integer, unable to parse string as an "
            "integer (got 'ten')",
            id="queue-size-not-integer",
        ),
        pytest.param(
            {"EXECUTOR_BYBIT_ENV": "moon"},
            "EXECUTOR_BYBIT_ENV: Input should be 'mainnet', 'testnet', 'demo', 'eu', 'nl', 'tr', "
            "'kz', 'ge', 'ae' or 'id' (got 'moon')",
            id="unknown-bybit-env",
        ),
        pytest.param(
            {"EXECUTOR_BYBIT_BASE_URL": "ftp://sim:21"},
            "EXECUTOR_BYBIT_BASE_URL: must start with http:// or https:// (got 'ftp://sim:21')",
            id="base-url-scheme",
        ),
        pytest.param(
            {"EXECUTOR_REDIS_URL": "http://localhost:6379"},
            "EXECUTOR_REDIS_URL: must start with redis://, rediss:// or unix://",
            id="redis-url-scheme",
        ),
        pytest.param(
            {"EXECUTOR_PRIMARY_API_KEY": "KEY123456789"},
            "EXECUTOR_PRIMARY_API_SECRET is required too",
            id="primary-key-without-secret",
        ),
        pytest.param(
            {"EXECUTOR_SECONDARY_API_SECRET": SECRET},
            "EXECUTOR_SECONDARY_API_KEY is required too",
            id="secondary-secret-without-key",
        ),
        pytest.param(
            {"EXECUTOR_RATE_LIMIT_PER_S": "0"},
            "EXECUTOR_RATE_LIMIT_PER_S: Input should be greater than 0 (got '0')",
            id="rate-zero",
        ),
    ],
)
def test_bad_value_gives_one_line_error_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, env: dict[str, str], message: str
) -> None:
    error = config_error(monkeypatch, **env)
    assert error == message
    assert "\n" not in error


def test_two_bad_values_are_both_named_on_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    error = config_error(monkeypatch, EXECUTOR_QUEUE_SIZE="0", EXECUTOR_METRICS_PORT="70000")
    assert "\n" not in error
    assert "EXECUTOR_QUEUE_SIZE:" in error
    assert "EXECUTOR_METRICS_PORT:" in error


@pytest.mark.parametrize(
    "bad",
    [
        pytest.param({"EXECUTOR_QUEUE_SIZE": "0"}, id="bad-queue-size"),
        pytest.param({"EXECUTOR_BYBIT_ENV": "moon"}, id="bad-env"),
        pytest.param(
            {"EXECUTOR_REDIS_URL": f"http://user:{SECRET}@redis:6379"}, id="bad-redis-url"
        ),
        pytest.param({"EXECUTOR_SECONDARY_API_KEY": SECRET}, id="secondary-key-alone"),
    ],
)
def test_secrets_never_appear_in_the_error(
    monkeypatch: pytest.MonkeyPatch, bad: dict[str, str]
) -> None:
    error = config_error(
        monkeypatch,
        EXECUTOR_PRIMARY_API_KEY="KEY123456789",
        EXECUTOR_PRIMARY_API_SECRET=SECRET,
        EXECUTOR_SIGNAL_SECRET=SECRET,
        **bad,
    )
    assert error.startswith("EXECUTOR_")
    assert SECRET not in error


def test_env_file_in_cwd_is_read(clean_environment: Path) -> None:
    (clean_environment / ".env").write_text(
        "EXECUTOR_QUEUE_SIZE=7\nEXECUTOR_BYBIT_ENV=demo\nEXECUTOR_PRIMARY_API_KEY=KEY123456789\n"
        f"EXECUTOR_PRIMARY_API_SECRET={SECRET}\n"
    )
    settings = load_settings()
    assert settings.queue_size == 7
    assert settings.base_url == "https://api-demo.bybit.com"
    assert settings.primary_api_secret is not None
    assert settings.primary_api_secret.get_secret_value() == SECRET


def test_empty_variables_mean_not_set(
    clean_environment: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (clean_environment / ".env").write_text(
        "EXECUTOR_PRIMARY_API_KEY=KEY123456789\n"
        f"EXECUTOR_PRIMARY_API_SECRET={SECRET}\n"
        "EXECUTOR_SECONDARY_API_KEY=\nEXECUTOR_SECONDARY_API_SECRET=\n"
    )
    monkeypatch.setenv("EXECUTOR_QUEUE_SIZE", "")
    settings = load_settings()
    assert settings.secondary_api_key is None and settings.secondary_api_secret is None
    assert settings.queue_size == 1000


def test_environment_wins_over_env_file(
    monkeypatch: pytest.MonkeyPatch, clean_environment: Path
) -> None:
    (clean_environment / ".env").write_text("EXECUTOR_QUEUE_SIZE=7\n")
    monkeypatch.setenv("EXECUTOR_QUEUE_SIZE", "9")
    assert load_settings().queue_size == 9


def test_bad_value_in_env_file_is_named(clean_environment: Path) -> None:
    (clean_environment / ".env").write_text("EXECUTOR_QUEUE_SIZE=0\n")
    with pytest.raises(ConfigError, match=r"^EXECUTOR_QUEUE_SIZE: "):
        load_settings()


def test_secret_file_is_read(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    (secrets / "executor_primary_api_secret").write_text(SECRET)
    monkeypatch.setattr(settings_module, "SECRETS_DIR", secrets)
    monkeypatch.setenv("EXECUTOR_PRIMARY_API_KEY", "KEY123456789")
    settings = load_settings()
    assert settings.primary_api_secret is not None
    assert settings.primary_api_secret.get_secret_value() == SECRET


def test_secrets_are_secret_str_and_hidden_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EXECUTOR_PRIMARY_API_KEY", "KEY123456789")
    monkeypatch.setenv("EXECUTOR_PRIMARY_API_SECRET", SECRET)
    monkeypatch.setenv("EXECUTOR_SIGNAL_SECRET", SECRET)
    monkeypatch.setenv("EXECUTOR_REDIS_URL", f"redis://user:{SECRET}@redis:6379/0")
    settings = load_settings()
    for value in (
        settings.primary_api_key,
        settings.primary_api_secret,
        settings.signal_secret,
        settings.redis_url,
    ):
        assert isinstance(value, SecretStr)
    assert SECRET not in repr(settings)
    assert SECRET not in str(settings)
    assert "KEY123456789" not in repr(settings)
    assert settings.redis_url.get_secret_value() == f"redis://user:{SECRET}@redis:6379/0"


def test_overrides_are_validated_like_the_environment() -> None:
    with pytest.raises(ConfigError, match=r"^EXECUTOR_QUEUE_SIZE: "):
        load_settings(queue_size=0)
    assert load_settings(queue_size=5).queue_size == 5
