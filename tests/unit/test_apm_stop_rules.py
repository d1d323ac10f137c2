"""Stop-move tuning from the settings: TRADER_STOP_MOVE_MIN_TICKS and
TRADER_STOP_MOVE_INTERVAL_S are validated, and reach every position's stop rules."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest

from config.settings import SettingsError, load_settings
from tests.trading_harness import BTC, build_stack, long_signal


def test_stop_move_settings_default_to_one_tick_and_one_second() -> None:
    """Without the settings a stop moves for one tick of improvement, once a second."""
    settings = load_settings(_env_file=None)
    assert (1, 1.0) == (settings.stop_move_min_ticks, settings.stop_move_interval_s)


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("stop_move_min_ticks", "0", "TRADER_STOP_MOVE_MIN_TICKS: must be >= 1"),
        ("stop_move_interval_s", "-1", "TRADER_STOP_MOVE_INTERVAL_S: must be a finite number"),
        ("stop_move_interval_s", "inf", "TRADER_STOP_MOVE_INTERVAL_S: must be a finite number"),
    ],
)
def test_bad_stop_move_settings_stop_the_start_naming_the_setting(
    name: str, value: str, message: str
) -> None:
    """A bad value is refused with one line naming the setting."""
    with pytest.raises(SettingsError) as err:
        load_settings(_env_file=None, **{name: value})
    assert str(err.value).startswith(message)


async def test_positions_follow_the_configured_minimum_and_interval() -> None:
    """A position's rules carry the configured minimum improvement and rate limit, and a
    trailing improvement below that minimum leaves the stop where it is."""
    stack = build_stack(
        trailing_callback_pct=Decimal("1"), stop_move_min_ticks=10_000, stop_move_interval_s=7.5
    )
    position = await stack.apm.open_position_atomic(long_signal())
    live = stack.book.get(position.id)
    assert live is not None and live.rules is not None
    assert (10_000, timedelta(seconds=7.5)) == (live.rules.min_move_ticks, live.rules.min_interval)
    before = [s.trigger_price for s in await stack.venue_stops()]
    stack.tick(BTC, "50100")  # trailing level 49599.0: 589 better, under 10 000 ticks of 0.1
    await stack.tasks.drain(5)
    assert before == [s.trigger_price for s in await stack.venue_stops()]
    stack.tick(BTC, "51000")  # 50490.0: 1480 better, over 1000
    await stack.tasks.drain(5)
    assert [Decimal("50490.0")] == [s.trigger_price for s in await stack.venue_stops()]
