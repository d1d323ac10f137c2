"""No new risk while the audit trail cannot be kept.

The audit writer (database/audit.py) says whether records can still be kept somewhere:
in the database or in its spool on disk. When neither takes them, or the database
refuses every row of a table, it is *degraded*. Trading code asks :func:`require_trail`
where new risk is taken (a new position, a new order that is not reduce-only) and gets
:class:`~core.errors.AuditUnavailable` (a ``rejected`` request) while that lasts. Closing,
cancelling, stop moves and protection never ask: what is held stays protected.

Core knows only this protocol; the composition root (cli/service.py, cli/core_wiring.py)
injects the writer.
"""

from __future__ import annotations

from typing import Protocol

from core.errors import AuditUnavailable


class TrailHealth(Protocol):
    """Anything that says whether the audit trail is being kept (the audit writer)."""

    @property
    def degraded(self) -> bool: ...


def require_trail(trail: TrailHealth | None) -> None:
    """Raise :class:`AuditUnavailable` if the audit trail cannot be kept (None: no gate)."""
    if trail is not None and trail.degraded:
        raise AuditUnavailable()
