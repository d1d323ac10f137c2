"""A Prometheus text endpoint on 127.0.0.1:``TRADER_METRICS_PORT``.

A deliberately tiny HTTP/1.0 server on asyncio streams: one route (``/metrics``), no
dependencies, bound to loopback only. Values are read from the running components at
scrape time, so nothing is computed unless someone asks.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import math
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager

from core.errors import TraderError

Sample = tuple[str, str, dict[str, str], float]  # name, help, labels, value


class MetricsUnavailable(TraderError):
    """The metrics port cannot be bound (in use, not allowed). Final: fix the setting."""


def percentile(values: Iterable[float], pct: float) -> float:
    """The ``pct`` percentile (nearest rank) of ``values``; 0 when empty."""
    ordered = sorted(values)
    if not ordered:
        return 0.0
    rank = max(0, min(len(ordered) - 1, math.ceil(pct / 100 * len(ordered)) - 1))
    return float(ordered[rank])


def render(samples: Iterable[Sample]) -> str:
    """Prometheus text exposition format, one HELP / TYPE per metric name."""
    lines: list[str] = []
    seen: set[str] = set()
    for name, help_text, labels, value in samples:
        if name not in seen:
            seen.add(name)
            lines.append(f"# HELP {name} {help_text}")
            lines.append(f"# TYPE {name} gauge")
        label_text = ",".join(f'{k}="{_escape(v)}"' for k, v in sorted(labels.items()))
        lines.append(f"{name}{{{label_text}}} {value}" if label_text else f"{name} {value}")
    return "\n".join(lines) + "\n"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


@asynccontextmanager
async def serve_metrics(port: int, collect: Callable[[], Iterable[Sample]]) -> AsyncIterator[None]:
    """Serve ``collect()`` at ``http://127.0.0.1:port/metrics`` while the context is open."""
    if port == 0:
        yield
        return

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request = await asyncio.wait_for(reader.readline(), timeout=5)
            path = request.split()[1].decode() if len(request.split()) > 1 else "/"
            if path.split("?")[0] == "/metrics":
                body, status = render(collect()).encode(), "200 OK"
            else:
                body, status = b"not found\n", "404 Not Found"
            writer.write(
                f"HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4\r\n"
                f"Content-Length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (TimeoutError, ConnectionError, IndexError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    try:
        server = await asyncio.start_server(handle, "127.0.0.1", port)
    except OSError as exc:
        reason = exc.strerror or str(exc)
        if exc.errno == errno.EADDRINUSE:
            reason = "address already in use (another daemon, or another program, has it)"
        raise MetricsUnavailable(
            f"TRADER_METRICS_PORT={port}: cannot listen on 127.0.0.1:{port}: {reason}"
        ) from None
    try:
        yield
    finally:
        server.close()
        await server.wait_closed()


def since(monotonic: float | None) -> float:
    """Seconds since a ``time.monotonic()`` stamp (-1 when never)."""
    return -1.0 if monotonic is None else round(time.monotonic() - monotonic, 3)
