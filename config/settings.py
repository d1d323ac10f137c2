"""Settings: environment and an optional ``.env``, prefix ``TRADER_`` (each field's type,
default and description is the reference; docs/architecture.md, "Settings").

A bad value stops the daemon at start with one line naming the setting and what is wrong
(:func:`load_settings` raises :class:`SettingsError` with that line). Credentials are
``SecretStr``: their ``repr`` and ``str`` are masked, so they cannot leak through a log
line or an error message by accident.
"""

from __future__ import annotations

import contextlib
import ipaddress
import math
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import (
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from config.value_checks import (
    paper_faults,
    percent,
    postgres_url,
    session_url_needed,
)
from core.errors import TraderError

PAPER = "paper"
FEEDS = ("synthetic", "exchange")
LOG_FORMATS = ("json", "console", "auto")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class SettingsError(TraderError):
    """A setting is invalid; the message is one line naming it."""


Percent = Annotated[Decimal | None, Field(default=None)]


class Settings(BaseSettings):
    """Every ``TRADER_*`` setting, validated."""

    model_config = SettingsConfigDict(
        env_prefix="TRADER_",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        frozen=True,
        # Each field's docstring is its description: ``main.py settings`` and
        # docs/settings.md are generated from them.
        use_attribute_docstrings=True,
    )

    database_url: SecretStr = SecretStr("")
    """PostgreSQL URL (``postgresql://user:password@host:port/db``). Empty: an embedded server
    under the state directory. A secret: never logged, printed or stored."""
    database_pool_mode: str = "session"
    """How ``TRADER_DATABASE_URL`` is pooled: ``session`` (a server, or PgBouncer in session
    mode) or ``transaction`` (PgBouncer's transaction pooling: asyncpg's statement cache is
    off, and the account lock and LISTEN use ``TRADER_SESSION_DATABASE_URL``)."""
    session_database_url: SecretStr = Field(default=SecretStr(""), validate_default=True)
    """PostgreSQL URL of the session connections that hold the account lock and LISTEN for
    requests. Empty: ``TRADER_DATABASE_URL``. Required, and different from it, when the pool
    mode is ``transaction``: session advisory locks and LISTEN do not survive transaction
    pooling. A secret: never logged, printed or stored."""
    state_dir: Path = Path("./var")
    """Directory of the daemon's own state: the embedded database, the audit spool and dead
    letters, the paper venue's book, trailing-stop state."""
    account: str = "main"
    """The account this daemon trades (1-32 letters, digits, '_' or '-'). One daemon per account: a
    second one refuses to start."""
    exchange: str = PAPER
    """The venue: ``paper`` (simulated) or a ccxt id such as ``bybit`` or ``binanceusdm``
    (futures)."""
    testnet: bool = False
    """Trade on the venue's testnet (sandbox) instead of the live market."""
    api_key: SecretStr = SecretStr("")
    """The venue's API key. A secret: never logged, printed or stored."""
    api_secret: SecretStr = SecretStr("")
    """The venue's API secret. A secret: never logged, printed or stored."""
    api_password: SecretStr = SecretStr("")
    """The venue's API passphrase, where it has one. A secret: never logged, printed or stored."""
    feed: str = ""
    """Where prices come from: ``synthetic`` (seeded random walk), ``exchange`` (the venue's
    tickers) or ``replay:PATH`` (a CSV of ts,symbol,price). Empty: synthetic on paper, exchange
    on a real venue."""
    feed_speed: str = "1"
    """Replay speed of a ``replay:`` feed: a positive factor of real time, or ``max``."""
    feed_follow: bool = False
    """Keep reading a ``replay:`` file as it grows (like ``tail -f``) instead of stopping at its
    end."""
    symbols: Annotated[tuple[str, ...], NoDecode] = ("BTC/USDT:USDT", "ETH/USDT:USDT")
    """The markets the daemon prices and trades, comma-separated; requests for other symbols are
    rejected."""
    feed_seed: int = 42
    """Seed of the synthetic feed, so a session can be replayed price for price."""
    paper_faults: Annotated[dict[str, Decimal], NoDecode] = Field(default_factory=dict)
    """Faults the paper venue injects, as ``name=value`` pairs separated by commas (e.g.
    ``partial_fill=0.5,reject_stop=0.1``); for tests and drills."""
    paper_balance: Decimal = Decimal(10000)
    """Starting quote balance of the paper account."""
    paper_slippage_bps: Decimal = Decimal(2)
    """Slippage of the paper venue's market fills, in basis points of the price (>= 0)."""
    paper_markets_file: Path | None = None
    """A JSON file of markets (precision, minimums) for the paper venue, instead of its built-in
    ones."""
    stop_loss_percent: Decimal | None = Decimal(2)
    """Default stop-loss distance, in percent of the entry fill, for a signal that names none
    (0-100 exclusive)."""
    take_profit_percent: Percent
    """Default take-profit distance, in percent of the entry fill, for a signal that names none.
    Unset: no take-profit."""
    trailing_activation_percent: Percent
    """Default trailing activation: the profit, in percent of the entry, at which the stop starts
    trailing. Unset: no trailing."""
    trailing_callback_percent: Percent
    """Default trailing callback: how far, in percent, the trailing stop follows behind the best
    price."""
    breakeven_percent: Percent
    """Profit, in percent of the entry, at which the stop moves to break-even (entry plus fees).
    Unset: no break-even move."""
    # The account's leverage, for the pre-trade margin check of every open. Unset: the
    # paper venue's own; on a live venue, no check (the venue refuses what it cannot
    # margin, after the entry was sent).
    leverage: Decimal | None = None
    """The account's leverage, for the pre-trade margin check of every open. Unset: the paper
    venue's own; on a live venue, no check."""
    log_format: str = "auto"
    """Log lines as ``json``, ``console`` (key=value) or ``auto`` (JSON under systemd, console on a
    terminal)."""
    log_level: str = "INFO"
    """Lowest level logged: DEBUG, INFO, WARNING, ERROR or CRITICAL."""
    metrics_port: int = 0
    """Port of the Prometheus metrics endpoint (``/metrics``); 0 turns it off."""
    metrics_address: str = "127.0.0.1"
    """Address the metrics endpoint listens on: loopback by default; ``0.0.0.0`` (or a
    host's own address) lets a Prometheus server on another machine scrape it."""
    reconcile_interval_s: float = 30.0
    """Seconds between reconciliation passes against the venue (positions, orders, strays)."""
    audit_batch_size: int = 5000
    """Most audit records written to PostgreSQL in one batch."""
    audit_queue_size: int = 100_000
    """Most audit records held in memory; past it new ones are shed and
    counted."""
    stop_retries: int = 3
    """Attempts to place a protective stop before the entry is rolled back."""
    # A protective stop moves (break-even, trailing) only when it improves by at least
    # this many ticks, and at most once per this many seconds.
    stop_move_min_ticks: int = 1
    """A protective stop moves (break-even, trailing) only when it improves by at least this many
    ticks."""
    stop_move_interval_s: float = 1.0
    """A protective stop moves at most once per this many seconds."""

    def secret_values(self) -> tuple[str, ...]:
        """Every secret's plain value, for the log redactor to mask (never to print). The
        database password is listed on its own too: a driver message may quote it
        without the rest of the URL."""
        secrets = (self.api_key, self.api_secret, self.api_password)
        values = [s.get_secret_value() for s in secrets]
        for url in (self.database_url, self.session_database_url):
            values.append(url.get_secret_value())
            with contextlib.suppress(ValueError):
                values.append(urlsplit(values[-1]).password or "")
        return tuple(values)

    # -- validators ------------------------------------------------------------------
    @field_validator("database_url", "session_database_url")
    @classmethod
    def _url(cls, value: SecretStr) -> SecretStr:
        return SecretStr(postgres_url(value.get_secret_value()))

    @field_validator("database_pool_mode")
    @classmethod
    def _pool_mode(cls, value: str) -> str:
        if value not in ("session", "transaction"):
            raise ValueError("must be 'session' or 'transaction'")
        return value

    @field_validator("session_database_url")
    @classmethod
    def _session_url(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        main = info.data.get("database_url")
        mode = info.data.get("database_pool_mode")
        session_url_needed(value.get_secret_value(), main.get_secret_value() if main else "", mode)
        return value

    @field_validator("account")
    @classmethod
    def _account(cls, value: str) -> str:
        if not value or len(value) > 32 or not all(c.isalnum() or c in "_-" for c in value):
            raise ValueError("must be 1-32 letters, digits, '_' or '-'")
        return value

    @field_validator("exchange")
    @classmethod
    def _exchange(cls, value: str) -> str:
        value = value.strip().lower()
        if value == PAPER:
            return value
        import ccxt  # ~0.4 s to import: only when a real exchange is configured

        if value not in ccxt.exchanges:
            raise ValueError(f"unknown exchange id {value!r} (use 'paper' or a ccxt id)")
        return value

    @field_validator("feed")
    @classmethod
    def _feed(cls, value: str) -> str:
        value = value.strip()
        if value and value not in FEEDS and not (value.startswith("replay:") and len(value) > 7):
            raise ValueError("must be 'synthetic', 'exchange' or 'replay:PATH'")
        return value

    @field_validator("feed_speed")
    @classmethod
    def _speed(cls, value: str) -> str:
        value = value.strip().lower()
        if value != "max":
            try:
                ok = Decimal(value) > 0
            except ArithmeticError:
                ok = False
            if not ok:
                raise ValueError("must be a positive number or 'max'")
        return value

    @field_validator("symbols", mode="before")
    @classmethod
    def _symbols(cls, value: Any) -> tuple[str, ...]:
        items = value.split(",") if isinstance(value, str) else list(value)
        symbols = tuple(s.strip() for s in items if s.strip())
        if not symbols:
            raise ValueError("must name at least one symbol")
        return symbols

    @field_validator("paper_faults", mode="before")
    @classmethod
    def _faults(cls, value: Any) -> dict[str, Decimal]:
        return paper_faults(value)

    @field_validator(
        "stop_loss_percent",
        "take_profit_percent",
        "trailing_activation_percent",
        "trailing_callback_percent",
        "breakeven_percent",
        mode="before",
    )
    @classmethod
    def _percent(cls, value: Any) -> Any:
        return percent(value)

    @field_validator("paper_balance", "paper_slippage_bps")
    @classmethod
    def _non_negative(cls, value: Decimal) -> Decimal:
        if not value.is_finite() or value < 0:
            raise ValueError("must be a finite number >= 0")
        return value

    @field_validator("leverage")
    @classmethod
    def _leverage(cls, value: Decimal | None) -> Decimal | None:
        if value is not None and (not value.is_finite() or not 0 < value <= 200):
            raise ValueError("must be a number in (0, 200]")
        return value

    @field_validator("log_format")
    @classmethod
    def _log_format(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in LOG_FORMATS:
            raise ValueError(f"must be one of {', '.join(LOG_FORMATS)}")
        return value

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        value = value.strip().upper()
        if value not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return value

    @field_validator("metrics_port")
    @classmethod
    def _port(cls, value: int) -> int:
        if not 0 <= value <= 65535:
            raise ValueError("must be a TCP port 0-65535 (0 = off)")
        return value

    @field_validator("metrics_address")
    @classmethod
    def _address(cls, value: str) -> str:
        try:
            ipaddress.ip_address(value)
        except ValueError:
            raise ValueError("must be an IP address to listen on, such as 127.0.0.1") from None
        return value

    @field_validator("reconcile_interval_s")
    @classmethod
    def _interval(cls, value: float) -> float:
        if not value > 0:
            raise ValueError("must be > 0 seconds")
        return value

    @field_validator("stop_move_interval_s")
    @classmethod
    def _move_interval(cls, value: float) -> float:
        if not math.isfinite(value) or value < 0:
            raise ValueError("must be a finite number of seconds >= 0")
        return value

    @field_validator("audit_batch_size", "audit_queue_size", "stop_retries", "stop_move_min_ticks")
    @classmethod
    def _positive_int(cls, value: int) -> int:
        if value < 1:
            raise ValueError("must be >= 1")
        return value

    @model_validator(mode="after")
    def _defaults(self) -> Settings:
        if not self.feed:
            object.__setattr__(self, "feed", "synthetic" if self.exchange == PAPER else "exchange")
        return self

    # -- derived ---------------------------------------------------------------------
    @property
    def is_paper(self) -> bool:
        return self.exchange == PAPER

    @property
    def uses_embedded_database(self) -> bool:
        return not self.database_url.get_secret_value()

    @property
    def spool_dir(self) -> Path:
        return self.state_dir / "audit-spool"

    @property
    def paper_dir(self) -> Path:
        return self.state_dir / "paper" / self.account

    @property
    def embedded_db_dir(self) -> Path:
        return self.state_dir / "postgres"


def load_settings(**overrides: Any) -> Settings:
    """Build the settings or raise :class:`SettingsError` with one line per bad setting."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            name = "TRADER_" + "_".join(str(p) for p in err["loc"][:1]).upper()
            # pydantic's own message, never the input value (it may be a secret).
            msg = str(err["msg"]).removeprefix("Value error, ")
            lines.append(f"{name}: {msg}")
        raise SettingsError("; ".join(lines)) from None
