"""Replay of a price CSV, at a chosen speed, optionally following the file like ``tail -f``.

Two forms, told apart by the header or, without one, by the number of columns:

- ticks: ``ts,symbol,price``, any number of symbols (bare ids like ``BTCUSDT`` are mapped
  to the unified symbol of the feed that matches them);
- OHLCV candles: ``timestamp,open,high,low,close[,volume]``, one symbol: the first of
  ``symbols``. Each candle becomes four ticks spread evenly over the candle: a bullish
  candle (close >= open) goes open -> low -> high -> close, a bearish one
  open -> high -> low -> close, the path that visits the nearer extreme first. The candle
  length is ``candle_s``, else the gap from the previous candle, else 60 s.

Timestamps are ISO-8601 (naive ones are taken as UTC) or epoch milliseconds; an epoch
number below 1e11 is read as seconds (1e11 ms is 1973, 1e11 s is the year 5138).

``speed`` compresses time using the ticks' own timestamps (2 = twice as fast); ``"max"``
never sleeps. ``restamp=True`` stamps ticks with the time they are emitted instead of the
file's (the daemon lives in the present). A malformed line is skipped with a warning: a
replay never crashes on bad data. File reads are small local reads done inline.
"""

from __future__ import annotations

import asyncio
import os
from collections import deque
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TextIO

from config.logging import get_logger
from core.models import Tick
from core.money import to_decimal, utcnow
from exchanges.feeds_base import FeedBase

log = get_logger(__name__)

_TIME_NAMES = frozenset({"ts", "timestamp", "time", "date", "datetime"})
_EPOCH_SECONDS_BELOW = 100_000_000_000
DEFAULT_CANDLE_S = 60.0


def parse_timestamp(text: str) -> datetime:
    """ISO-8601 (naive = UTC) or epoch milliseconds (seconds below 1e11)."""
    text = text.strip()
    try:
        number = Decimal(text)
    except ArithmeticError:
        number = None
    if number is not None:
        if not number.is_finite() or number < 0:
            raise ValueError(f"bad epoch timestamp {text!r}")
        seconds = number if number < _EPOCH_SECONDS_BELOW else number / 1000
        return datetime(1970, 1, 1, tzinfo=UTC) + timedelta(seconds=float(seconds))
    ts = datetime.fromisoformat(text)
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _positive(text: str, name: str) -> Decimal:
    value = to_decimal(text, name)
    if value <= 0:
        raise ValueError(f"{name} must be > 0")
    return value


class CsvTickParser:
    """Turns lines of either CSV form into ``(ts, symbol, price)`` points."""

    def __init__(self, symbols: Sequence[str], candle_s: float | None = None) -> None:
        self.symbols = tuple(symbols)
        self.candle_s = candle_s
        self.form: str | None = None  # "ticks" or "ohlcv", fixed by the first data line
        self._by_id = {_compact(s): s for s in self.symbols}
        self._last_candle_ts: datetime | None = None

    def parse(self, line: str) -> list[tuple[datetime, str, Decimal]]:
        """Points of one line (none for a header, a comment or another symbol's tick).
        Raises ``ValueError`` naming the problem for a malformed line."""
        text = line.strip()
        if not text or text.startswith("#"):
            return []
        fields = [f.strip() for f in text.split(",")]
        if self.form is None and fields[0].lower() in _TIME_NAMES:
            names = {f.lower() for f in fields}
            if "symbol" in names and "price" in names:
                self.form = "ticks"
            elif {"open", "high", "low", "close"} <= names:
                self.form = "ohlcv"
            else:
                raise ValueError(f"unknown header {text!r}")
            return []
        if self.form is None:
            self.form = "ticks" if len(fields) == 3 else "ohlcv"
        return self._ticks(fields) if self.form == "ticks" else self._candle(fields)

    def _ticks(self, fields: list[str]) -> list[tuple[datetime, str, Decimal]]:
        if len(fields) != 3:
            raise ValueError(f"a tick line has 3 fields (ts,symbol,price), got {len(fields)}")
        ts = parse_timestamp(fields[0])
        symbol = self._unify(fields[1])
        price = _positive(fields[2], "price")
        return [] if symbol is None else [(ts, symbol, price)]

    def _candle(self, fields: list[str]) -> list[tuple[datetime, str, Decimal]]:
        if len(fields) not in (5, 6):
            raise ValueError(
                f"a candle line has 6 fields (timestamp,open,high,low,close,volume), "
                f"got {len(fields)}"
            )
        if not self.symbols:
            raise ValueError("an OHLCV file needs a symbol: pass one in symbols")
        ts = parse_timestamp(fields[0])
        o, h, lo, c = (_positive(f, n) for f, n in zip(fields[1:5], "ohlc", strict=True))
        if lo > min(o, c) or h < max(o, c):
            raise ValueError("inconsistent candle: low must be <= open, close <= high")
        length = self.candle_s
        if length is None:
            previous = self._last_candle_ts
            gap = (ts - previous).total_seconds() if previous is not None else 0.0
            length = gap if gap > 0 else DEFAULT_CANDLE_S
        self._last_candle_ts = ts
        path = (o, lo, h, c) if c >= o else (o, h, lo, c)
        quarter = timedelta(seconds=length / 4)
        symbol = self.symbols[0]
        return [(ts + quarter * i, symbol, p) for i, p in enumerate(path)]

    def _unify(self, symbol: str) -> str | None:
        if not self.symbols or symbol in self.symbols:
            return symbol
        return self._by_id.get(_compact(symbol))


def _compact(symbol: str) -> str:
    """``BTC/USDT:USDT`` and ``BTCUSDT`` both become ``BTCUSDT``."""
    return symbol.split(":")[0].replace("/", "").replace("-", "").upper()


class ReplayFeed(FeedBase):
    """Ticks from a CSV file (see the module docstring for the forms and rules)."""

    def __init__(
        self,
        path: Path | str,
        symbols: Sequence[str],
        speed: str | float | Decimal = 1,
        follow: bool = False,
        *,
        poll_s: float = 0.2,
        restamp: bool = False,
        candle_s: float | None = None,
    ) -> None:
        super().__init__()
        self.path = Path(path)
        self.follow = follow
        self.poll_s = poll_s
        self.restamp = restamp
        self.speed = _parse_speed(speed)
        self._parser = CsvTickParser(symbols, candle_s)
        self._file: TextIO | None = None
        self._partial = ""
        self._line_no = 0
        self._pending: deque[tuple[datetime, str, Decimal]] = deque()
        self._anchor: tuple[float, datetime] | None = None

    async def _next(self) -> Tick | None:
        while not self._pending:
            line = await self._read_line()
            if line is None:
                return None
            try:
                self._pending.extend(self._parser.parse(line))
            except (ValueError, ArithmeticError) as exc:
                log.warning(
                    "replay_line_skipped", path=str(self.path), line=self._line_no, reason=str(exc)
                )
        ts, symbol, price = self._pending.popleft()
        if not await self._sleep(self._delay(ts)):
            return None
        return Tick(symbol, price, utcnow() if self.restamp else ts)

    def _delay(self, ts: datetime) -> float:
        if self.speed is None:
            return 0.0
        loop = asyncio.get_running_loop()
        if self._anchor is None:
            self._anchor = (loop.time(), ts)
            return 0.0
        started, first_ts = self._anchor
        due = started + (ts - first_ts).total_seconds() / self.speed
        return due - loop.time()

    async def _read_line(self) -> str | None:
        """The next complete line; ``None`` at the end (never, when following)."""
        while True:
            if self._file is None and not await self._open():
                return None
            assert self._file is not None
            chunk = self._file.readline()
            if chunk:
                if chunk.endswith("\n"):
                    self._line_no += 1
                    line, self._partial = self._partial + chunk, ""
                    return line
                # A line still being written: wait for its end when following.
                self._partial += chunk
                if self.follow:
                    continue
            if not self.follow:
                if self._partial:
                    self._line_no += 1
                    line, self._partial = self._partial, ""
                    return line
                return None
            self._check_truncated()
            if not await self._sleep(self.poll_s):
                return None

    async def _open(self) -> bool:
        while True:
            try:
                self._file = self.path.open(encoding="utf-8", errors="replace", newline="")
                return True
            except FileNotFoundError:
                if not self.follow:
                    raise
            # Following a file that does not exist yet: wait for it, like tail -F.
            if not await self._sleep(self.poll_s):
                return False

    def _check_truncated(self) -> None:
        assert self._file is not None
        try:
            size = os.stat(self.path).st_size
        except FileNotFoundError:
            return
        if size < self._file.tell():
            log.info("replay_file_truncated", path=str(self.path))
            self._file.seek(0)
            self._partial = ""

    async def _close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None


def _parse_speed(speed: str | float | Decimal) -> float | None:
    """``None`` for ``"max"``, else a positive multiplier."""
    if isinstance(speed, str) and speed.strip().lower() == "max":
        return None
    value = float(to_decimal(speed, "speed"))
    if value <= 0:
        raise ValueError("speed must be > 0 or 'max'")
    return value
