"""systemd's notify protocol: datagrams to ``$NOTIFY_SOCKET``.

``READY=1`` once start-up is complete, ``WATCHDOG=1`` from the heartbeat while the feed
and trigger loop are alive, ``STATUS=`` a one-line summary, ``STOPPING=1`` on shutdown.
Without ``$NOTIFY_SOCKET`` (not under systemd) every call is a no-op. An abstract socket
name starts with ``@`` and is sent with a leading NUL byte, as sd_notify(3) says.
"""

from __future__ import annotations

import os
import socket
from typing import Any


class Notifier:
    """Sends sd_notify messages; silent when not under systemd."""

    def __init__(self, address: str | None = None) -> None:
        address = address if address is not None else os.environ.get("NOTIFY_SOCKET", "")
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self._sock: socket.socket | None = None
        if self._address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def send(self, message: str) -> bool:
        """Send one message; a full or missing socket is not an error worth dying for."""
        if self._sock is None:
            return False
        try:
            self._sock.sendto(message.encode(), self._address)
        except OSError:
            return False
        return True

    def ready(self, status: str = "") -> None:
        self.send("READY=1" + (f"\nSTATUS={status}" if status else ""))

    def watchdog(self) -> None:
        self.send("WATCHDOG=1")

    def status(self, text: str) -> None:
        self.send(f"STATUS={text.splitlines()[0] if text else ''}")

    def stopping(self) -> None:
        self.send("STOPPING=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval_s() -> float | None:
    """Half the watchdog timeout systemd set (``$WATCHDOG_USEC``), or None when off."""
    usec = os.environ.get("WATCHDOG_USEC")
    if not usec or not usec.isdigit() or int(usec) == 0:
        return None
    return int(usec) / 2_000_000


def audit_status(audit: Any) -> str:
    """The audit trail's part of ``STATUS=``: empty while all is well, else what is wrong
    (degraded: no new entries or orders; dead letters waiting for a replay)."""
    parts = []
    if audit.degraded:
        reason = " ".join(str(audit.degraded_reason).split())[:160]
        parts.append(f"AUDIT DEGRADED, no new entries or orders: {reason}")
    if count := audit.dead_letter_count:
        age = audit.dead_letter_oldest_age_s
        oldest = f", oldest {age:.0f}s" if age is not None else ""
        parts.append(f"dead_letters={count}{oldest} (run `main.py audit replay`)")
    return "; ".join(parts)
