"""The operator contract: one typed settings model, read once at start-up.

Only ``app.py`` and ``cli.py`` read it; every component receives plain
arguments. A wrong value stops start-up with a one-line error naming the
variable (and never echoing a secret).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "EXECUTOR_"
SECRETS_DIR = Path("/run/secrets")

BYBIT_HOSTS: dict[str, str] = {
    "mainnet": "https://api.bybit.com",
    "testnet": "https://api-testnet.bybit.com",
    "demo": "https://api-demo.bybit.com",
    "eu": "https://api.bybit.eu",
    "nl": "https://api.bybit.nl",
    "tr": "https://api.bybit.tr",
    "kz": "https://api.bybit.kz",
    "ge": "https://api.bybitgeorgia.ge",
    "ae": "https://api.bybit.ae",
    "id": "https://api.bybit.id",
}

BybitEnv = Literal["mainnet", "testnet", "demo", "eu", "nl", "tr", "kz", "ge", "ae", "id"]


class ConfigError(Exception):
    """A setting is missing or wrong; the message names the variable."""


def default_consumer() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        # `EXECUTOR_SECONDARY_API_KEY=` (empty) means "not set", as in most .env files.
        env_ignore_empty=True,
    )

    redis_url: SecretStr = SecretStr("redis://localhost:6379/0")
    stream: str = Field("signals", min_length=1)
    group: str = Field("executor", min_length=1)
    consumer: str = Field(default_factory=default_consumer, min_length=1)
    results_stream: str = Field("signals:results", min_length=1)
    dead_letter_stream: str = Field("signals:dead", min_length=1)
    results_maxlen: int = Field(1_000_000, ge=1000)

    bybit_env: BybitEnv = "testnet"
    bybit_base_url: str | None = None
    primary_api_key: SecretStr | None = None
    primary_api_secret: SecretStr | None = None
    secondary_api_key: SecretStr | None = None
    secondary_api_secret: SecretStr | None = None
    recv_window_ms: int = Field(5000, ge=100, le=60_000)
    request_timeout_s: float = Field(10.0, gt=0, le=120)

    signal_secret: SecretStr | None = None
    # "kid=secret,kid2=secret2": several publisher secrets, for rotation without downtime.
    signal_secrets: SecretStr | None = None
    signal_kid: str | None = Field(None, min_length=1, max_length=64)
    queue_size: int = Field(1000, ge=1, le=1_000_000)
    workers: int = Field(16, ge=1, le=1024)
    read_count: int = Field(100, ge=1, le=10_000)
    block_ms: int = Field(1000, ge=10, le=60_000)
    dedup_ttl_s: int = Field(86_400, ge=60)
    claim_idle_ms: int = Field(60_000, ge=1000)
    ip_ban_s: float = Field(600.0, ge=1, le=86_400)
    max_attempts: int = Field(5, ge=1, le=100)
    drain_timeout_s: float = Field(20.0, ge=0)

    rate_limit_per_s: Decimal = Field(Decimal(10), gt=0, le=100_000)
    rate_limit_burst: int = Field(1, ge=1, le=100_000)
    # One budget per account in Redis, shared by every replica; false: each paces alone.
    rate_limit_shared: bool = True
    # The shared budget's name in its Redis keys (default: the account's userID).
    rate_limit_key: str | None = Field(None, pattern=r"^[A-Za-z0-9_.:-]{1,100}$")
    # The shared budget counts a window this much longer than Bybit's second (network jitter).
    rate_limit_margin_ms: int = Field(10, ge=0, le=1000)

    breaker_failures: int = Field(5, ge=1, le=1000)
    breaker_failure_ratio: float = Field(0.5, gt=0, le=1)
    breaker_window_s: float = Field(30.0, gt=0, le=3600)
    breaker_min_calls: int = Field(10, ge=1, le=100_000)
    breaker_cooldown_s: float = Field(30.0, gt=0, le=3600)
    failback_probe_s: float = Field(60.0, ge=0, le=86_400)
    keep_warm_s: float = Field(20.0, ge=0, le=3600)
    key_check_interval_s: float = Field(3600.0, ge=0, le=86_400 * 7)
    halt_key: str = Field("executor:halt", min_length=1)

    risk_symbols: str | None = None  # "BTCUSDT,ETHUSDT": the only symbols traded
    risk_max_qty: str | None = None  # "BTCUSDT=0.5,ETHUSDT=10"
    risk_max_notional: str | None = None  # per order, in quote currency
    risk_max_orders_per_minute: int | None = Field(None, ge=1)  # per strategy
    check_instruments: bool = True  # round qty to the step, check min/max before sending
    instruments_refresh_s: float = Field(3600.0, gt=0)

    metrics_port: int = Field(9464, ge=0, le=65535)
    metrics_host: str = "0.0.0.0"
    dry_run: bool = False
    log_format: Literal["json", "console"] | None = None
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    # Fast paths, each kept because the benchmark shows it pays (docs/benchmarks.md).
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    http_transport: Literal["aiohttp", "httpx"] = "aiohttp"
    # Queued orders of one category may share a create-batch request (its own
    # rate budget, at RATE_LIMIT_PER_S): twice the orders per second under the limits.
    batch_orders: bool = False  # opt-in until it has run under every fault test
    batch_size: int = Field(20, ge=2, le=20)  # spot batches hold at most 10

    @field_validator("log_level", mode="before")
    @classmethod
    def _lower_level(cls, value: object) -> object:
        return value.lower() if isinstance(value, str) else value

    @field_validator("bybit_env", mode="before")
    @classmethod
    def _lower_env(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("bybit_base_url")
    @classmethod
    def _check_base_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @field_validator("signal_secrets")
    @classmethod
    def _check_signal_secrets(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_signal_secrets(value.get_secret_value())
        return value

    @model_validator(mode="after")
    def _risk_limits_parse(self) -> Settings:
        from executor.risk import RiskLimits

        for name in ("risk_symbols", "risk_max_qty", "risk_max_notional"):
            try:
                RiskLimits.parse(**{name.removeprefix("risk_"): getattr(self, name)})
            except ValueError as exc:
                raise ValueError(f"{ENV_PREFIX}{name.upper()}: {exc}") from None
        return self

    @model_validator(mode="after")
    def _keys_in_pairs(self) -> Settings:
        for role in ("primary", "secondary"):
            key = getattr(self, f"{role}_api_key")
            secret = getattr(self, f"{role}_api_secret")
            if (key is None) != (secret is None):
                missing = "api_secret" if secret is None else "api_key"
                raise ValueError(f"{ENV_PREFIX}{role.upper()}_{missing.upper()} is required too")
        return self

    @property
    def base_url(self) -> str:
        return self.bybit_base_url or BYBIT_HOSTS[self.bybit_env]

    def publisher_secrets(self) -> dict[str, str]:
        """Key id -> secret for verifying publishers; "" is the id of SIGNAL_SECRET."""
        secrets = {}
        if self.signal_secret is not None:
            secrets[""] = self.signal_secret.get_secret_value()
        if self.signal_secrets is not None:
            secrets.update(parse_signal_secrets(self.signal_secrets.get_secret_value()))
        return secrets


def parse_signal_secrets(text: str) -> dict[str, str]:
    """``kid=secret,kid2=secret2``; the error never repeats a secret."""
    secrets = {}
    for number, item in enumerate(text.split(","), 1):
        kid, sep, secret = item.strip().partition("=")
        if not sep or not kid.strip() or not secret.strip():
            raise ValueError(f"item {number} is not kid=secret")
        secrets[kid.strip()] = secret.strip()
    return secrets


def file_overrides(environ: Mapping[str, str]) -> dict[str, str]:
    """``EXECUTOR_<NAME>_FILE=/path`` sets <name> from the file's content (Docker and
    Kubernetes secrets). A file that cannot be read stops start-up, naming the variable."""
    values = {}
    for variable, path in environ.items():
        upper = variable.upper()
        if not (upper.startswith(ENV_PREFIX) and upper.endswith("_FILE")):
            continue
        name = upper[len(ENV_PREFIX) : -len("_FILE")].lower()
        if name not in Settings.model_fields:
            continue
        try:
            values[name] = Path(path).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{upper}: cannot read {path}: {exc.strerror}") from None
    return values


def load_settings(**overrides: Any) -> Settings:
    """Build the settings or raise ConfigError with one line naming the variable."""
    overrides = {**file_overrides(os.environ), **overrides}
    secrets_dir = SECRETS_DIR if SECRETS_DIR.is_dir() else None
    try:
        return Settings(_secrets_dir=secrets_dir, **overrides)  # type: ignore[call-arg]
    except ValidationError as exc:
        raise ConfigError(describe(exc)) from None


def describe(exc: ValidationError) -> str:
    """One line per problem, naming the variable, never echoing a secret value."""
    lines = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error["loc"] else ""
        name = f"{ENV_PREFIX}{field.upper()}" if field else "settings"
        message = str(error["msg"]).removeprefix("Value error, ")
        secret = "secret" in field or field == "redis_url"
        if field and not secret and "input" in error:
            message = f"{message} (got {error['input']!r})"
        lines.append(f"{name}: {message}" if field else message)
    return "; ".join(lines)
