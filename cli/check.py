"""``main.py check``: is this deployment able to trade? Exit 0 if so, else 1.

Checks, in order, each reported on one line (``ok`` lines on stdout, problems on stderr):

1. settings: ``load_settings`` (done by the caller; a bad setting is the only problem
   printed then, since nothing else can be checked without settings);
2. database: reachable within a few seconds (the embedded server is started or joined
   when no URL is set); the URL is never printed;
3. migrations: every file under ``migrations/`` applied, none changed since, none applied
   that this version does not know; the audit tables have the columns the writer needs;
4. audit: the running daemon's audit trail is kept (not degraded), and no dead letters
   wait for ``main.py audit replay`` (database/audit_state.py, database/dead_letters.py);
5. exchange: the paper venue needs nothing; a ccxt exchange must answer ``load_markets``
   and a balance fetch (which needs valid credentials), and know every ``TRADER_SYMBOLS``;
6. intake: the live daemon of this account, if any (not a problem when none: ``check``
   runs before a start too), and every request no live daemon will take
   (``monitoring.waiting_requests``: a problem — it would wait forever, silently).
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field

from cli.connect import EXIT_FAILED, EXIT_OK, database_problem, setup_cli
from cli.status import NONE_WAITING
from config.logging import redact
from config.settings import Settings
from core.errors import TraderError

DATABASE_TIMEOUT_S = 3.0
EXCHANGE_TIMEOUT_S = 30.0


@dataclass
class Findings:
    """What passed and what did not, as lines."""

    ok: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


async def check_database(
    settings: Settings, findings: Findings, timeout_s: float = DATABASE_TIMEOUT_S
) -> None:
    """Connect (retrying a refused connection for ``timeout_s``), then compare applied
    migrations with the files."""
    from database.migrate import discover
    from database.pool import open_database
    from database.reports import applied_migrations
    from database.schema_check import newer_line, schema_mismatches

    try:
        # The outer bound also covers starting the embedded server when no URL is set.
        async with asyncio.timeout(timeout_s + 30):
            async with open_database(settings, min_size=1, max_size=1, wait_s=timeout_s) as pool:
                findings.ok.append("database: reachable")
                applied = await applied_migrations(pool)
                mismatches = await schema_mismatches(pool) if applied else []
    except TimeoutError:
        findings.problems.append("database: no answer in time")
        return
    except Exception as exc:  # any failure to reach it is the finding, whatever its type
        problem = database_problem(exc, settings).removeprefix("database: ")
        findings.problems.append(f"database: unreachable: {problem}")
        return
    migrations = {m.name: m for m in discover()}
    files = {name: m.checksum for name, m in migrations.items()}
    if unknown := sorted(set(applied) - set(files)):
        findings.problems.append(f"migrations: {newer_line(unknown)}")
    findings.problems.extend(f"schema: {line}" for line in mismatches)
    pending = sorted(set(files) - set(applied))
    changed = sorted(n for n in files if n in applied and not migrations[n].matches(applied[n]))
    if pending:
        findings.problems.append(
            f"migrations: {len(pending)} not applied ({', '.join(pending)}); "
            "run `python main.py migrate`"
        )
    if changed:
        findings.problems.append(f"migrations: changed after being applied: {', '.join(changed)}")
    if not pending and not changed and not unknown:
        findings.ok.append(f"migrations: {len(files)} applied")


def check_audit(settings: Settings, findings: Findings) -> None:
    """The audit trail as the running daemon sees it, and the dead letters on disk."""
    from database.audit_state import read_state
    from database.dead_letters import DEAD_LETTER_FILE, summarise

    directory = settings.spool_dir / settings.account
    state = read_state(directory)
    if state is not None and state.get("degraded"):
        findings.problems.append(
            f"audit: degraded since {state.get('since')}, no new entries or orders: "
            + " ".join(str(state.get("reason")).split())
        )
    dead = summarise(directory / DEAD_LETTER_FILE)
    if dead.count:
        age = dead.oldest_age_s or 0.0
        findings.problems.append(
            f"audit: {dead.count} dead letters in {directory / DEAD_LETTER_FILE} (oldest "
            f"refused {age:.0f}s ago); fix the cause, then run `python3 main.py audit replay`"
        )
    elif state is None or not state.get("degraded"):
        findings.ok.append("audit: trail kept, no dead letters")


async def check_exchange(settings: Settings, findings: Findings) -> None:
    """Markets and an authenticated balance fetch on the configured exchange."""
    if settings.is_paper:
        findings.ok.append("exchange: paper venue (simulated)")
        return
    if not settings.api_key.get_secret_value() or not settings.api_secret.get_secret_value():
        findings.problems.append(
            f"exchange: {settings.exchange}: TRADER_API_KEY and TRADER_API_SECRET must be set"
        )
        return
    from exchanges.ccxt_adapter import CcxtAdapter

    try:
        adapter = CcxtAdapter.from_settings(settings)
    except TraderError as exc:
        findings.problems.append(f"exchange: {settings.exchange}: {exc}")
        return
    try:
        async with asyncio.timeout(EXCHANGE_TIMEOUT_S):
            markets = await adapter.load_markets()
            unknown = []
            for symbol in settings.symbols:
                try:
                    adapter.market(symbol)
                except TraderError:
                    unknown.append(symbol)
            quote = next(iter(markets.values())).quote if markets else "USDT"
            await adapter.fetch_free_balance(quote)
    except TimeoutError:
        findings.problems.append(f"exchange: {settings.exchange}: no answer in time")
        return
    except TraderError as exc:
        kind = type(exc).__name__
        findings.problems.append(f"exchange: {settings.exchange}: {kind}: {exc}")
        return
    finally:
        await adapter.aclose()
    if unknown:
        findings.problems.append(
            f"exchange: {settings.exchange}: unknown symbols in TRADER_SYMBOLS: "
            + ", ".join(unknown)
        )
    else:
        findings.ok.append(f"exchange: {settings.exchange}: reachable and authenticated")


WAITING_SHOWN = 10


async def check_waiting_requests(
    settings: Settings, findings: Findings, timeout_s: float = DATABASE_TIMEOUT_S
) -> None:
    """The account's live daemon, and the requests no live daemon will take."""
    from database.daemons import count_waiting, live_daemon, waiting_requests
    from database.pool import open_database

    try:
        async with asyncio.timeout(timeout_s + 30):
            async with open_database(settings, min_size=1, max_size=1, wait_s=timeout_s) as pool:
                daemon = await live_daemon(pool, settings.account)
                waiting = await waiting_requests(pool, WAITING_SHOWN)
                total = await count_waiting(pool) if len(waiting) == WAITING_SHOWN else len(waiting)
    except Exception as exc:  # the database check above reports the database itself
        findings.problems.append(f"intake: could not be read: {type(exc).__name__}")
        return
    if daemon is not None:
        findings.ok.append(
            f"daemon: account {settings.account!r} served by pid {daemon['pid']} on "
            f"{daemon['host']} (version {daemon['version']}, {daemon['venue']})"
        )
    else:
        findings.ok.append(f"daemon: none live for account {settings.account!r}")
    if not waiting:
        findings.ok.append(f"intake: {NONE_WAITING}")
        return
    findings.problems.append(
        f"intake: {total} request(s) wait with no live daemon to take them "
        "(monitoring.waiting_requests)"
    )
    for row in waiting:
        account = "any account" if row["account"] is None else repr(row["account"])
        findings.problems.append(
            f"intake: {row['request']} {row['id']} for {account}: {row['why']}"
        )


async def run_checks(
    settings: Settings, *, database_timeout_s: float = DATABASE_TIMEOUT_S
) -> Findings:
    """Every check after settings; they run one after the other (the output is ordered)."""
    findings = Findings(ok=["settings: valid"])
    await check_database(settings, findings, database_timeout_s)
    check_audit(settings, findings)
    await check_exchange(settings, findings)
    if not any(p.startswith(("database:", "migrations:")) for p in findings.problems):
        await check_waiting_requests(settings, findings)
    return findings


def check_command(settings: Settings) -> int:
    """Print one line per check and exit 1 if anything is wrong."""
    setup_cli(settings)
    findings = asyncio.run(run_checks(settings))
    for line in findings.ok:
        print(line)
    for line in findings.problems:
        print(redact(line), file=sys.stderr)
    return EXIT_FAILED if findings.problems else EXIT_OK
