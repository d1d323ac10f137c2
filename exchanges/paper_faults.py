"""Switchable fault modes of the paper venue (``TRADER_PAPER_FAULTS``).

Each fault reproduces something a real exchange does, so the code that must survive it can
be tested offline and deterministically:

==========================  ==================================================================
``reject_stop=P``           a stop / take-profit order is refused (Bybit "trigger price"
                            errors, Binance -2021), probability P
``reject_entry=P``          a non-reduce-only order is refused, probability P
``timeout_after_accept=P``  the order IS accepted and persisted, then the call raises
                            ``RequestTimeout`` (the reply was lost on the way back)
``no_average_price=P``      the reply is an acknowledgement like Binance USD-M's answer to a
                            market order: status ``NEW``, filled 0, no average price, no fills,
                            although the order filled on the venue
``no_status=P``             the reply's status is ``None``
``id_only_reply=P``         the reply carries only the exchange id and the client id (Bybit v5)
``position_lag_s=S``        ``fetch_positions`` shows a new or changed position S seconds late
``latency_ms=MS``           every venue call sleeps MS milliseconds first
``partial_fill=F``          a market order fills at most the fraction F of its amount per price
                            tick; the rest fills on later ticks (a thin book)
==========================  ==================================================================

Probabilities are drawn from one seeded :class:`random.Random`, and a die is rolled only
for a fault that is switched on, so a test with a given seed and fault set always sees the
same sequence of outcomes.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any

from core.errors import ValidationError
from core.money import ZERO, to_decimal

_PROBABILITIES = (
    "reject_stop",
    "reject_entry",
    "timeout_after_accept",
    "no_average_price",
    "no_status",
    "id_only_reply",
)


@dataclass(frozen=True, slots=True)
class PaperFaults:
    """The fault settings; every field 0 means the fault is off."""

    reject_stop: Decimal = ZERO
    reject_entry: Decimal = ZERO
    timeout_after_accept: Decimal = ZERO
    no_average_price: Decimal = ZERO
    no_status: Decimal = ZERO
    id_only_reply: Decimal = ZERO
    position_lag_s: Decimal = ZERO
    latency_ms: Decimal = ZERO
    partial_fill: Decimal = ZERO

    @classmethod
    def parse(cls, value: PaperFaults | Mapping[str, Any] | None) -> PaperFaults:
        """Build from ``{"reject_stop": "0.5", ...}`` (``settings.paper_faults``)."""
        if value is None:
            return cls()
        if isinstance(value, PaperFaults):
            return value
        known = {f.name for f in fields(cls)}
        values: dict[str, Decimal] = {}
        for name, raw in value.items():
            if name not in known:
                raise ValidationError("paper_faults", f"unknown fault {name!r}", name)
            number = to_decimal(raw, f"paper_faults.{name}")
            if number < 0:
                raise ValidationError(f"paper_faults.{name}", "must be >= 0", raw)
            if (name in _PROBABILITIES or name == "partial_fill") and number > 1:
                raise ValidationError(f"paper_faults.{name}", "must be <= 1", raw)
            values[name] = number
        return cls(**values)

    @property
    def active(self) -> dict[str, Decimal]:
        """The faults that are on, for logs."""
        return {f.name: getattr(self, f.name) for f in fields(self) if getattr(self, f.name)}


class FaultDice:
    """Seeded coin flips for the probability faults."""

    __slots__ = ("_rng",)

    def __init__(self, seed: int | None) -> None:
        self._rng = random.Random(seed)

    def roll(self, probability: Decimal) -> bool:
        """True with ``probability``; no draw at all when the fault is off or certain."""
        if probability <= 0:
            return False
        if probability >= 1:
            return True
        return Decimal(repr(self._rng.random())) < probability
