"""Deterministic client order ids: ``td-<account>-p<position>-<purpose>-<seq>``.

Every order the daemon sends carries one, so a submit whose reply was lost can be looked
up by it instead of being sent twice (failure mode 14). Venues cap the length (Bybit and
Binance: 36 characters), so an account name that would not fit is replaced by a short
stable hash of itself: the id stays deterministic and unique.
"""

from __future__ import annotations

import hashlib
import re

from core.order_model import OrderPurpose

PREFIX = "td"
MAX_LENGTH = 36
_PURPOSE_CODE = {
    OrderPurpose.ENTRY: "en",
    OrderPurpose.STOP_LOSS: "sl",
    OrderPurpose.TAKE_PROFIT: "tp",
    OrderPurpose.EXIT: "ex",
    OrderPurpose.ROLLBACK: "rb",
    OrderPurpose.MANUAL: "mo",
}
_SAFE = re.compile(r"[^A-Za-z0-9]")


def client_order_id(account: str, owner: str, purpose: OrderPurpose, seq: int) -> str:
    """Build the id. ``owner`` is ``p<position id>`` or ``r<request id>``."""
    code = _PURPOSE_CODE[purpose]
    acct = _SAFE.sub("", account) or "x"
    cid = f"{PREFIX}-{acct}-{owner}-{code}-{seq}"
    if len(cid) > MAX_LENGTH:
        acct = hashlib.sha1(account.encode()).hexdigest()[:6]
        cid = f"{PREFIX}-{acct}-{owner}-{code}-{seq}"
    if len(cid) > MAX_LENGTH:
        raise ValueError(f"client order id {cid!r} exceeds {MAX_LENGTH} characters")
    return cid


def position_owner(position_id: int) -> str:
    return f"p{position_id}"


def request_owner(request_id: int) -> str:
    return f"r{request_id}"


def is_ours(client_id: str | None, account: str) -> bool:
    """True when ``client_id`` was made by this daemon for ``account``."""
    if not client_id or not client_id.startswith(PREFIX + "-"):
        return False
    acct = _SAFE.sub("", account) or "x"
    short = hashlib.sha1(account.encode()).hexdigest()[:6]
    return client_id.startswith((f"{PREFIX}-{acct}-", f"{PREFIX}-{short}-"))


def owner_of(client_id: str | None) -> tuple[str, int] | None:
    """``('p', 42)`` for ``td-acct-p42-sl-1``, ``('r', 7)`` for a request's order, else None."""
    if not client_id or not client_id.startswith(PREFIX + "-"):
        return None
    parts = client_id.split("-")
    if len(parts) != 5 or parts[3] not in _PURPOSE_CODE.values():
        return None
    owner = parts[2]
    if len(owner) < 2 or owner[0] not in "pr" or not owner[1:].isdigit():
        return None
    return owner[0], int(owner[1:])


def purpose_of(client_id: str) -> OrderPurpose | None:
    """The purpose a client id was made for, if it is one of ours."""
    parts = client_id.split("-")
    if len(parts) != 5:
        return None
    return next((p for p, code in _PURPOSE_CODE.items() if code == parts[3]), None)
