"""A real PostgreSQL for the tests: a throwaway cluster in a temp dir, killable.

```python notest
with PostgresServer.started() as server:
    engine = create_async_engine(server.sqlalchemy_url)
```

Debian's ``postgresql`` package puts the server in ``/usr/lib/postgresql/<version>/bin``,
off ``PATH``: the newest one there is used. ``initdb`` refuses to run as root, so as root
the cluster belongs to the ``postgres`` user and every server command runs as that user.
The server listens on a free loopback port and on a unix socket in the cluster directory;
``fsync=off``: nothing here must survive a crash.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from .conftest import free_port, need_peer

__all__ = ["PostgresServer", "postgres_bin_dir", "postgres_server_fixture"]

_USER = "postgres"


def postgres_bin_dir() -> Path | None:
    """The directory of ``initdb`` and ``postgres``: Debian's newest, else one on ``PATH``."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(Path(path).parts[-3]) if Path(path).parts[-3].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _run_as() -> dict[str, Any]:
    """``subprocess`` arguments that run a server command as a non-root user, if we are root."""
    if os.geteuid() != 0:
        return {}
    account = pwd.getpwnam(_USER)  # KeyError: no such user (see missing_reason)
    return {"user": account.pw_uid, "group": account.pw_gid}


def missing_reason() -> str | None:
    """Why no PostgreSQL can be started here, or ``None``."""
    if postgres_bin_dir() is None:
        return "PostgreSQL is not installed (apt-get install postgresql)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(_USER)
        except KeyError:
            return f"running as root, and there is no {_USER!r} user to run PostgreSQL as"
    return None


class PostgresServer:
    """One ``postgres`` process over a cluster of its own; trust authentication, loopback."""

    def __init__(self, bin_dir: Path, directory: Path) -> None:
        self.bin_dir = bin_dir
        self.directory = directory
        self.data_dir = directory / "data"
        self.socket_dir = directory
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    @contextmanager
    def started(cls) -> Iterator[PostgresServer]:
        bin_dir = postgres_bin_dir()
        if bin_dir is None:
            raise RuntimeError("PostgreSQL is not installed (apt-get install postgresql)")
        # Short: the socket path must fit in sun_path (107 bytes).
        server = cls(bin_dir, Path(tempfile.mkdtemp(prefix="fsk-pg-")))
        try:
            server._initdb()
            server.start()
            yield server
        finally:
            server.kill()
            shutil.rmtree(server.directory, ignore_errors=True)

    def _initdb(self) -> None:
        run_as = _run_as()
        if run_as:
            os.chown(self.directory, run_as["user"], run_as["group"])
        subprocess.run(
            [str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", _USER,
             "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"],
            check=True, capture_output=True, **run_as,
        )  # fmt: skip

    @property
    def dsn(self) -> str:
        """For asyncpg: ``postgresql://postgres@127.0.0.1:<port>/postgres``."""
        return f"postgresql://{_USER}@127.0.0.1:{self.port}/postgres"

    @property
    def sqlalchemy_url(self) -> str:
        return f"postgresql+asyncpg://{_USER}@127.0.0.1:{self.port}/postgres"

    def psql(self, sql: str) -> str:
        """Run ``sql`` with ``psql`` over the unix socket; its unaligned, tuples-only output."""
        done = subprocess.run(
            [str(self.bin_dir / "psql"), "-h", str(self.socket_dir), "-p", str(self.port),
             "-U", _USER, "-d", "postgres", "-XAtq", "-v", "ON_ERROR_STOP=1", "-c", sql],
            check=True, capture_output=True, text=True, **_run_as(),
        )  # fmt: skip
        return done.stdout.strip()

    def start(self, timeout: float = 30.0) -> None:
        """Start ``postgres`` and return once it accepts connections."""
        log = open(self.directory / "postgres.log", "wb")  # noqa: SIM115 - the process owns it
        command = [
            str(self.bin_dir / "postgres"),
            "-D", str(self.data_dir),
            "-p", str(self.port),
            "-k", str(self.socket_dir),
            "-c", "listen_addresses=127.0.0.1",
            "-c", "fsync=off",
            "-c", "synchronous_commit=off",
            "-c", "full_page_writes=off",
            # A scan always starts at the table's first row: rows come back in their order.
            "-c", "synchronize_seqscans=off",
        ]  # fmt: skip
        self.process = subprocess.Popen(command, stdout=log, stderr=log, **_run_as())
        log.close()
        deadline = time.monotonic() + timeout
        while not self._ready():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                detail = (self.directory / "postgres.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"postgres did not start: {detail}")
            time.sleep(0.05)

    def _ready(self) -> bool:
        done = subprocess.run(
            [str(self.bin_dir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)],
            check=False,
        )
        return done.returncode == 0

    def kill(self) -> None:
        """SIGINT, PostgreSQL's "fast" shutdown: it disconnects clients instead of waiting
        for them, as SIGTERM's "smart" one would."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module", name="postgres")
def postgres_server_fixture() -> Iterator[PostgresServer]:
    """A PostgreSQL for the module; skipped without one on a laptop, failed in CI."""
    reason = missing_reason()
    need_peer(reason is None, reason or "")
    with PostgresServer.started() as server:
        yield server
