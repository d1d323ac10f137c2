"""JSON encodings of record rows: a plain one for ``jsonb`` columns, a lossless one for disk.

Two different needs (failure mode 10: ``Decimal`` is not JSON-serialisable):

- :func:`dumps_json` writes what a person querying ``jsonb`` wants to read: ``Decimal``
  as a string (never a float: no precision lost), ``datetime`` as ISO-8601, enums by value.
- :func:`encode_record` / :func:`decode_record` write one audit record per line for the
  spool and the dead-letter file, and must give back exactly the values that went in:
  ``Decimal`` becomes ``{"$dec": "1.50"}`` and ``datetime`` ``{"$ts": "<iso with offset>"}``.
  A key of a user dict that starts with ``$`` gets one more ``$`` on disk (and loses it
  when read back), so decoding never mistakes data for a tag.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

import orjson

from core.records import AuditRecord, RecordKind


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def dumps_json(value: Any) -> str:
    """JSON for a ``jsonb`` column: Decimal as a string, datetime as ISO-8601.

    orjson (a tenth of the standard library's cost, paid for every order event's detail
    on the audit path); the standard library for what orjson refuses (an int beyond 64
    bits), so the two give the same document for everything else.
    """
    try:
        return orjson.dumps(value, default=_plain, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:
        return json.dumps(value, default=_plain, separators=(",", ":"))


# -- lossless encoding (spool, dead letters) -----------------------------------------
def _tag(value: Any) -> Any:
    if isinstance(value, Decimal):
        return {"$dec": str(value)}
    if isinstance(value, datetime):
        return {"$ts": value.isoformat()}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple | set | frozenset):
        return [_escape(v) for v in value]
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def _key(key: object) -> str:
    text = str(key)
    return "$" + text if text.startswith("$") else text


def _escape(value: Any) -> Any:
    """Give user keys starting with ``$`` one more ``$``; recurse into containers."""
    if isinstance(value, Mapping):
        return {_key(k): _escape(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_escape(v) for v in value]
    return value


def _untag(obj: dict[str, Any]) -> Any:
    # Called innermost first. A tag is a one-key dict with exactly that key; no user
    # dict can be one, since its "$" keys were written as "$$...".
    if len(obj) == 1:
        key, value = next(iter(obj.items()))
        if key == "$dec":
            return Decimal(value)
        if key == "$ts":
            return datetime.fromisoformat(value)
        if key == "$date":
            return date.fromisoformat(value)
    if any(k.startswith("$$") for k in obj):
        return {(k[1:] if k.startswith("$$") else k): v for k, v in obj.items()}
    return obj


_encoder = json.JSONEncoder(default=_tag, separators=(",", ":"), ensure_ascii=False)
_decoder = json.JSONDecoder(object_hook=_untag)


def encode_row(row: Mapping[str, Any]) -> str:
    """A row as lossless JSON. Only nested containers need escaping (columns are names)."""
    flat = {_key(k): (_escape(v) if isinstance(v, Mapping | list) else v) for k, v in row.items()}
    return _encoder.encode(flat)


def encode_record(rec: AuditRecord) -> bytes:
    """One spool line (with its trailing newline) for ``rec``; raise TypeError if it cannot."""
    return f'{{"k":"{rec.kind.value}","r":{encode_row(rec.row)}}}\n'.encode()


def decode_record(line: bytes | str) -> AuditRecord:
    """The record of one spool line; raise ValueError if the line is not one."""
    obj = _decoder.decode(line.decode() if isinstance(line, bytes) else line)
    if not isinstance(obj, dict) or not isinstance(obj.get("r"), dict):
        raise ValueError("not an audit record line")
    return AuditRecord(RecordKind(obj["k"]), obj["r"])
