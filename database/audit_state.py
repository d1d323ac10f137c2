"""Whether the audit trail is being kept: the writer's degraded state, and its status file.

The trail is *degraded* when records can be kept neither in the database nor on disk:

- ``disk``: the database does not take them and the spool's disk refuses them too (full,
  read-only, gone). Left as soon as either takes a record again.
- ``schema``: the database answers but refuses every row of a table, whatever its values
  (database/batch_writer.py, :func:`~database.batch_writer.schema_refusal`). The records
  wait in the spool; left when the database takes them again.

While degraded the daemon takes no new risk (core/audit_gate.py). The state is mirrored in
``audit-state.json`` in the spool directory, for ``main.py check`` (another process). The
file is created at start at a fixed size and then overwritten in place, so that updating
it needs no new disk space: it still works when the disk is full, which is when it
matters.
"""

from __future__ import annotations

import contextlib
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any

from core.money import utcnow

STATE_FILE = "audit-state.json"
_STATE_BYTES = 1024


class TrailState:
    """The two reasons the trail can be degraded, and the file that shows them."""

    def __init__(self, directory: Path) -> None:
        self.path = Path(directory) / STATE_FILE
        self.disk: str | None = None
        self.schema: str | None = None
        self.since: datetime | None = None
        self._fd: int | None = None

    @property
    def degraded(self) -> bool:
        return self.disk is not None or self.schema is not None

    @property
    def reason(self) -> str | None:
        parts = [p for p in (self.schema, self.disk) if p is not None]
        return "; ".join(parts) if parts else None

    def set(self, **reasons: str | None) -> bool:
        """Set the reasons named (``disk=``, ``schema=``; None clears one); True if that
        changed whether the trail is degraded."""
        was = self.degraded
        for name, reason in reasons.items():
            if name not in ("disk", "schema"):
                raise TypeError(f"no degraded reason {name!r}")
            setattr(self, name, reason)
        if self.degraded != was:
            self.since = utcnow() if self.degraded else None
        self.publish()
        return self.degraded != was

    # -- the status file -------------------------------------------------------------
    def open(self) -> None:
        """Create the file at its full size (best effort: a full disk leaves none)."""
        try:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if os.fstat(self._fd).st_size < _STATE_BYTES:
                os.pwrite(self._fd, b" " * _STATE_BYTES, 0)
        except OSError:
            self.close()
        self.publish()

    def publish(self, *, running: bool = True) -> None:
        if self._fd is None:
            return
        body = json.dumps(
            {
                "pid": os.getpid() if running else None,
                "degraded": self.degraded,
                "reason": self.reason,
                "since": self.since.isoformat() if self.since else None,
            }
        ).encode()[: _STATE_BYTES - 1]
        # The status file is a view; the state itself lives in memory.
        with contextlib.suppress(OSError):
            os.pwrite(self._fd, body.ljust(_STATE_BYTES - 1) + b"\n", 0)

    def close(self) -> None:
        if self._fd is not None:
            self.publish(running=False)
            os.close(self._fd)
            self._fd = None


def read_state(directory: Path) -> dict[str, Any] | None:
    """The state a running daemon published in ``directory``, or None (none running)."""
    try:
        state = json.loads((Path(directory) / STATE_FILE).read_bytes())
    except (OSError, ValueError):
        return None
    pid = state.get("pid") if isinstance(state, dict) else None
    if not isinstance(state, dict) or not isinstance(pid, int):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None  # left by a daemon that died
    except PermissionError:
        pass
    return dict(state)
