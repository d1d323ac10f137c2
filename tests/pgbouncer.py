"""PgBouncer (Debian's package) started by a test on a loopback port, in front of a test
PostgreSQL, in transaction pooling mode; stopped when the test ends. Tests skip, with the
reason, where the binary is absent (``.ci/run`` installs it)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest


def pgbouncer_binary() -> str:
    """The pgbouncer executable, or skip the test saying how to get it."""
    found = shutil.which("pgbouncer") or (
        "/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None
    )
    if found is None:
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer; .ci/run does)")
    return found


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def pgbouncer(
    server_url: str, pool_mode: str = "transaction", server_connections: int = 2
) -> Iterator[str]:
    """Run PgBouncer in front of ``server_url``'s server; yield the URL through it (same
    user and database). Fewer server connections than clients, as in production, so
    clients really share them."""
    binary = pgbouncer_binary()
    parts = urlsplit(server_url)
    port = _free_port()
    # PgBouncer refuses to run as root: as root it drops to 'nobody', who must be able
    # to read its files and write its log, so the directory is world-accessible.
    work = Path(tempfile.mkdtemp(prefix="pgbouncer-"))
    work.chmod(0o777)
    user = parts.username or "postgres"
    backend = f"host={parts.hostname or '127.0.0.1'} port={parts.port or 5432} user={user}"
    if parts.password:
        backend += f" password={parts.password}"
    (work / "users.txt").write_text(f'"{user}" ""\n')
    (work / "pgbouncer.ini").write_text(
        "[databases]\n"
        f"* = {backend}\n"
        "[pgbouncer]\n"
        "listen_addr = 127.0.0.1\n"
        f"listen_port = {port}\n"
        "unix_socket_dir =\n"
        "auth_type = trust\n"
        f"auth_file = {work / 'users.txt'}\n"
        f"pool_mode = {pool_mode}\n"
        f"default_pool_size = {server_connections}\n"
        "max_client_conn = 200\n"
        f"logfile = {work / 'pgbouncer.log'}\n"
    )
    for name in ("users.txt", "pgbouncer.ini"):
        (work / name).chmod(0o644)
    command = [binary, str(work / "pgbouncer.ini")]
    if os.geteuid() == 0:
        command[1:1] = ["-u", "nobody"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (
                    (work / "pgbouncer.log").read_text()
                    if (work / "pgbouncer.log").exists()
                    else ""
                )
                raise RuntimeError(f"pgbouncer did not start: {log}")
            time.sleep(0.05)
        netloc = f"{user}@127.0.0.1:{port}"
        yield urlunsplit(("postgresql", netloc, parts.path, "", ""))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(work, ignore_errors=True)
