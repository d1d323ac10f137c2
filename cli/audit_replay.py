"""``main.py audit replay``: write the dead letters again, once their cause is fixed.

Reads ``dead-letter.jsonl`` of the account's spool (database/dead_letters.py), writes
every record through the audit writer's careful path (one transaction, refused rows
isolated by bisection), and settles the file: records that went in are moved to
``dead-letter.replayed.jsonl``, the ones still refused stay with their new error.
Idempotent: every audit row has an idempotency key, so a record already in the database
counts as written and is not written twice. Safe while the daemon runs.

Prints one summary line (``replayed: N written, M still refused``) and one line per
record still refused, with why. Exit 0 when none is left, 1 otherwise.
"""

from __future__ import annotations

import json
from typing import Any

import asyncpg

from cli.connect import EXIT_FAILED, EXIT_OK
from config.logging import redact
from core.records import AuditRecord
from database.batch_writer import BatchWriter
from database.codec import decode_record
from database.dead_letters import settle, take_snapshot

_KEYS = ("client_order_id", "event_key", "trade_id", "id", "position_id")


def _describe(rec: AuditRecord | None, line: bytes) -> str:
    if rec is None:
        return "an undecodable line"
    key = next((f"{k}={rec.row[k]}" for k in _KEYS if rec.row.get(k) is not None), "")
    return f"{rec.kind.value} {key}".strip()


def _refreshed(line: bytes, error: str) -> bytes:
    """The dead-letter line with its latest error (the record itself unchanged)."""
    try:
        obj: dict[str, Any] = json.loads(line)
    except ValueError:
        return line
    obj["error"] = error
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


async def replay_dead_letters(pool: asyncpg.Pool, directory: Any) -> tuple[int, list[str]]:
    """Replay the dead letters of ``directory``; (written, lines about those refused)."""
    lines, upto = take_snapshot(directory)
    decoded: list[tuple[bytes, AuditRecord | None]] = []
    errors: dict[int, str] = {}
    for i, line in enumerate(lines):
        try:
            decoded.append((line, decode_record(line)))
        except (ValueError, KeyError, TypeError) as exc:
            decoded.append((line, None))
            errors[i] = f"{type(exc).__name__}: {exc}"
    index = {id(rec): i for i, (_, rec) in enumerate(decoded) if rec is not None}

    def refused(rec: AuditRecord, exc: BaseException) -> None:
        errors[index[id(rec)]] = f"{type(exc).__name__}: {exc}"

    writer = BatchWriter(pool, on_refused=refused)
    records = [rec for _, rec in decoded if rec is not None]
    try:
        if records and not await writer.write(records):
            error = writer.error
            raise RuntimeError(f"the database took none of them: {type(error).__name__}: {error}")
    finally:
        await writer.release()
    replayed = [line for i, (line, _) in enumerate(decoded) if i not in errors]
    kept = [_refreshed(line, errors[i]) for i, (line, _) in enumerate(decoded) if i in errors]
    settle(directory, upto, replayed, kept)
    why = [
        f"refused: {_describe(decoded[i][1], decoded[i][0])}: {' '.join(errors[i].split())}"
        for i in sorted(errors)
    ]
    return len(replayed), why


async def replay_command(pool: asyncpg.Pool, directory: Any) -> int:
    try:
        written, why = await replay_dead_letters(pool, directory)
    except RuntimeError as exc:
        print(redact(f"replay: nothing replayed, {exc}"))
        return EXIT_FAILED
    print(f"replayed: {written} written, {len(why)} still refused")
    for line in why:
        print(redact(line))
    return EXIT_FAILED if why else EXIT_OK
