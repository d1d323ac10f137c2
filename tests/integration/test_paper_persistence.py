"""The paper venue survives ``kill -9``: a process trades, is killed with SIGKILL, and the
venue reopened here has exactly the state that process had acknowledged."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from decimal import Decimal as D
from pathlib import Path

from exchanges.paper import PaperExchange

ROOT = Path(__file__).resolve().parents[2]

# Trades a fixed script, prints the whole venue state as one JSON line, then waits to die.
SCRIPTED_CHILD = r"""
import asyncio, json, sys
from decimal import Decimal as D
from core.models import Side
from core.order_model import OrderType
from core.venue import OrderRequest
from exchanges.paper import PaperExchange

BTC, ETH = "BTC/USDT:USDT", "ETH/USDT:USDT"

async def main() -> None:
    venue = PaperExchange(sys.argv[1], faults={"partial_fill": "0.5"})
    venue.set_price(BTC, "50000")
    venue.set_price(ETH, "3000")
    r = lambda cid, sym, side, kind, amt, **kw: OrderRequest(
        cid, sym, Side(side), OrderType(kind), D(amt), **kw)
    await venue.create_order(r("e1", BTC, "buy", "MARKET", "0.004"))  # partially filled
    await venue.create_order(r("sl1", BTC, "sell", "STOP_MARKET", "0.004",
                               trigger_price=D("45000"), reduce_only=True))
    await venue.create_order(r("tp1", BTC, "sell", "TAKE_PROFIT_MARKET", "0.004",
                               trigger_price=D("56000"), reduce_only=True))
    venue.set_price(BTC, "50500")  # completes the entry
    venue.faults = {}
    await venue.create_order(r("e2", ETH, "sell", "MARKET", "0.5"))
    await venue.create_order(r("l2", ETH, "buy", "LIMIT", "0.2", price=D("2950")))
    venue.set_price(ETH, "2950")  # fills the limit, reduces the short
    await venue.create_order(r("l3", ETH, "buy", "LIMIT", "0.1", price=D("2000")))
    await venue.cancel_order(ETH, client_order_id="l3")
    await venue.create_order(r("l4", ETH, "buy", "LIMIT", "0.1", price=D("2100")))
    print("STATE", json.dumps(venue.export_state()), flush=True)
    await asyncio.sleep(3600)

asyncio.run(main())
"""

# Trades round trips forever, printing "<ops done> <balance>" after each acknowledged call.
LOOPING_CHILD = r"""
import asyncio, sys
from decimal import Decimal as D
from core.models import Side
from core.order_model import OrderType
from core.venue import OrderRequest
from exchanges.paper import PaperExchange

async def main() -> None:
    venue = PaperExchange(sys.argv[1])
    venue.set_price("BTC/USDT:USDT", "50000")
    i = 0
    while True:
        side, cid = (Side.BUY, f"b{i}") if i % 2 == 0 else (Side.SELL, f"s{i}")
        await venue.create_order(OrderRequest(cid, "BTC/USDT:USDT", side, OrderType.MARKET,
                                              D("0.001"), reduce_only=i % 2 == 1))
        i += 1
        print("OK", i, venue.balance, flush=True)

asyncio.run(main())
"""


def spawn(code: str, directory: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", code, str(directory)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def kill9(child: subprocess.Popen[str]) -> str:
    """SIGKILL the child and return the rest of what it wrote."""
    child.send_signal(signal.SIGKILL)
    rest, _ = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    return rest


def test_state_after_sigkill_is_exactly_what_the_process_had(tmp_path: Path) -> None:
    """Every order, fill, position, balance and counter survives SIGKILL unchanged."""
    child = spawn(SCRIPTED_CHILD, tmp_path)
    assert child.stdout is not None
    line = child.stdout.readline()
    while line and not line.startswith("STATE "):  # skip log lines
        line = child.stdout.readline()
    kill9(child)
    assert line, "the child printed no state"
    expected = json.loads(line.removeprefix("STATE "))
    assert len(expected["o"]) == 7 and len(expected["f"]) >= 4

    venue = PaperExchange(tmp_path)
    try:
        assert venue.export_state() == expected
    finally:
        venue.close()


def test_sigkill_mid_stream_loses_no_acknowledged_call(tmp_path: Path) -> None:
    """Killed while trading flat out, the venue holds every acknowledged order (and at most
    the one in flight), with the balance the process last reported."""
    child = spawn(LOOPING_CHILD, tmp_path)
    assert child.stdout is not None
    deadline = time.monotonic() + 60
    seen = 0
    while seen < 150 and time.monotonic() < deadline:
        line = child.stdout.readline()
        if not line:
            break
        seen += line.startswith("OK ")
    rest = kill9(child)
    assert seen == 150, "the child did not trade"
    complete = [ln for ln in rest.split("\n")[:-1] if ln.startswith("OK ")]
    # A line cut by the kill is not complete: the call it reports may still be counted.
    acknowledged, last_balance = seen, None
    if complete:
        _, ops, balance = complete[-1].split()
        acknowledged, last_balance = int(ops), balance

    venue = PaperExchange(tmp_path)
    try:
        state = venue.export_state()
        orders = [o["cid"] for o in state["o"]]
        assert len(orders) in (acknowledged, acknowledged + 1)
        expected_ids = [f"b{i}" if i % 2 == 0 else f"s{i}" for i in range(len(orders))]
        assert orders == expected_ids
        assert all(o["st"] == "FILLED" for o in state["o"])
        assert len(state["f"]) == len(orders)
        if len(orders) == acknowledged and last_balance is not None:
            assert venue.balance == D(last_balance)
    finally:
        venue.close()
