"""The tick fan-out's cost per account tick, counted in CPU instructions, not timed.

    python tests/bench/fanout_instructions.py [--accounts N] [--ticks T] [--seed S]

Why: ``us_per_account_tick`` of tests/bench/fanout_bench.py moves by up to a third
between runs of the same code on this machine kind, more than any one step of work on
the tick path changes it. Instructions barely do: valgrind's callgrind counts them, and
two runs of the same code side by side give the same count to about 0.01 %. Not to the
instruction: the world keeps wall-clock time (the walk stamps its ticks with the time
now; samples and stop-move gates go by it), and a run slowed differently takes different
work per tick. A run alone on an idle machine counted 27,250 where two at once counted
26,482 and 26,484 (3,000 ticks). Valgrind is on every machine kind here; without it this
says so and exits 2.

The world is the fan-out bench's at a small size: ``--accounts`` (default 2) accounts of
the load scenario (tests/chaos/test_chaos_load.py), each with its 20 trailing positions
and 2,000 emulated orders, one ``AuditWriter`` on a scratch PostgreSQL database. It is fed
``--ticks`` (default 1,000) ticks of the scenario's seeded walk back to back, yielding to
the event loop after each as the scenario's consumer does. Only what runs inside the
accounts' ``TickLoop.on_tick`` is counted (fired orders up to their venue call included):
the ticks are handed out through ``itertools.starmap`` and callgrind collects inside its C
function ``starmap_next`` alone, which nothing else here calls. The first ticks carry the
start's burst of fired near orders; 3,000 ticks weigh the quiet ticks more.

``--without venue|orders|positions`` (repeatable) builds every account's tick loop
without that part: no paper venue hook, or an order or position tracker that sees
nothing. The difference to a full run is that part's share of the count.

Prints as its last line:
``instructions_per_account_tick=<n> accounts=<a> ticks=<t> without=<parts>``

A before/after pair: run this file from a ``git worktree`` of the older commit and from
here, with the same arguments, both at once (``a & b; wait``), so that both run slowed
alike. It takes about a minute per 1,000 ticks at 2 accounts.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gc
import itertools
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import cast

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

from config.logging import configure_logging
from core.models import Tick
from core.tick_loop import TickHook, TickLoop
from tests.bench.fanout_bench import audit_world, close_accounts
from tests.chaos import test_chaos_load as load

COLLECTED = re.compile(r"Collected : (\d+)")
PARTS = ("venue", "orders", "positions")


class Blind:
    """An order or position tracker that sees nothing: what a part left out leaves."""

    def on_tick(self, tick: Tick) -> tuple[()]:
        return ()


def tick_loop(account: load.Account, without: frozenset[str]) -> TickLoop:
    """The account's tick loop, wired as the scenario wires it, less the parts named."""
    if not without:
        return account.loop
    core, blind = account.core, Blind()
    hooks: tuple[TickHook, ...] = ()
    if "venue" not in without:  # its hook returns the orders it changed; the loop drops them
        hooks = (cast(TickHook, account.venue.on_tick),)
    return TickLoop(
        load.no_feed(),
        core.prices,
        blind if "orders" in without else core.orders,  # type: ignore[arg-type]  # stand-in
        blind if "positions" in without else core.lifecycle,  # type: ignore[arg-type]
        core.tasks,
        venue_hooks=hooks,
    )


async def feed_world(accounts: int, ticks: int, seed: int, without: frozenset[str]) -> None:
    """Build the world, then hand ``ticks`` ticks to every account through starmap."""
    load.ACCOUNTS = accounts  # build_accounts opens this many
    async with audit_world("fanout_instructions") as (pool, audit, _):
        sink = load.CountingSink(audit)
        built = await load.build_accounts(pool, audit, sink, seed, load.reach_of(ticks))
        await audit.flush(120)
        gc.collect()
        gc.freeze()  # as the daemon does once started
        loops = [tick_loop(a, without) for a in built]
        walk = load.Walk(seed)
        for _ in range(ticks):
            tick = walk.tick()
            pairs = [(loop, tick) for loop in loops]
            collections.deque(itertools.starmap(TickLoop.on_tick, pairs), maxlen=0)
            await asyncio.sleep(0)
        gc.unfreeze()
        await close_accounts(built)


def count(args: argparse.Namespace) -> int:
    """Run this file's world under callgrind; return the instructions it collected."""
    valgrind = shutil.which("valgrind")
    if valgrind is None:
        sys.exit("valgrind is not installed (apt-get install valgrind); nothing to count")
    with tempfile.TemporaryDirectory(prefix="fanout-callgrind-") as tmp:
        command = [
            valgrind,
            "--tool=callgrind",
            "--toggle-collect=starmap_next",
            f"--callgrind-out-file={tmp}/callgrind.out",
            sys.executable,
            __file__,
            "--inner",
            f"--accounts={args.accounts}",
            f"--ticks={args.ticks}",
            f"--seed={args.seed}",
            *(f"--without={part}" for part in args.without),
        ]
        # A fixed hash seed: set and dict orders, and so the work, are the same every run.
        env = {**os.environ, "PYTHONHASHSEED": "0"}
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    found = COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        sys.stderr.write(done.stderr[-4000:])
        sys.exit(f"the counted run failed (exit {done.returncode})")
    instructions = int(found.group(1))
    if instructions == 0:
        sys.exit("callgrind collected nothing: this Python has no symbol for starmap_next")
    return instructions


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--accounts", type=int, default=2, help="accounts of the load world")
    parser.add_argument("--ticks", type=int, default=1000, help="ticks fed to every account")
    parser.add_argument("--seed", type=int, default=5, help="prices and orders")
    parser.add_argument(
        "--without", action="append", choices=PARTS, default=[], help="leave this part out"
    )
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        configure_logging("json", "INFO", load._DEVNULL)
        without = frozenset(args.without)
        load.run_on_uvloop(feed_world(args.accounts, args.ticks, args.seed, without))
        return
    per_tick = count(args) / (args.accounts * args.ticks)
    print(
        f"instructions_per_account_tick={per_tick:.0f} accounts={args.accounts}"
        f" ticks={args.ticks} without={','.join(args.without) or '-'}"
    )


if __name__ == "__main__":
    main()
