"""A real ``redis-server`` for the tests: unix socket only, no persistence, killable.

```python notest
with RedisServer.started() as server:
    client = redis.Redis(unix_socket_path=server.socket_path)
    server.kill()  # SIGKILL: what a crashed or evicted Redis looks like to its clients
    server.start()  # the same socket path again, empty
```

``--port 0`` turns TCP off, so parallel test runs never fight over a port; the socket lives in
a short directory under the system temp dir because ``sun_path`` holds only 107 bytes.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from .conftest import need_peer

__all__ = ["RedisServer", "ping", "redis_binary", "redis_server_fixture"]


def redis_binary() -> str | None:
    return shutil.which("redis-server") or next(
        (p for p in ("/usr/bin/redis-server", "/usr/local/bin/redis-server") if Path(p).exists()),
        None,
    )


def ping(socket_path: str, timeout: float = 0.5) -> bool:
    """True when a Redis answers ``PING`` on ``socket_path`` (raw RESP: no client library)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(socket_path)
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """One ``redis-server`` process on a unix socket; :meth:`kill` and :meth:`start` again."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        self.socket_path = str(directory / "redis.sock")
        self.process: subprocess.Popen[bytes] | None = None

    @classmethod
    @contextmanager
    def created(cls, binary: str | None = None) -> Iterator[RedisServer]:
        """A server with its socket path chosen but not running yet (call :meth:`start`)."""
        binary = binary or redis_binary()
        if binary is None:
            raise RuntimeError("redis-server is not installed (apt-get install redis-server)")
        server = cls(binary, Path(tempfile.mkdtemp(prefix="fsk-redis-")))
        try:
            yield server
        finally:
            server.kill()
            shutil.rmtree(server.directory, ignore_errors=True)

    @classmethod
    @contextmanager
    def started(cls, binary: str | None = None) -> Iterator[RedisServer]:
        with cls.created(binary) as server:
            server.start()
            yield server

    @property
    def url(self) -> str:
        """For ``redis.asyncio.Redis.from_url``."""
        return f"unix://{self.socket_path}"

    def start(self, timeout: float = 10.0) -> None:
        """Start ``redis-server`` and return once it answers ``PING``."""
        if self.process is not None and self.process.poll() is None:
            raise RuntimeError("redis-server is already running")
        command = [
            self.binary,
            "--port", "0",
            "--unixsocket", self.socket_path,
            "--unixsocketperm", "700",
            "--save", "",
            "--appendonly", "no",
            "--dir", str(self.directory),
            "--logfile", str(self.directory / "redis.log"),
        ]  # fmt: skip
        self.process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + timeout
        while not ping(self.socket_path):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                log = self.directory / "redis.log"
                detail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
                raise RuntimeError(f"redis-server did not answer PING: {detail}")
            time.sleep(0.01)

    def kill(self) -> None:
        """SIGKILL, no shutdown: clients see their connection reset mid-command."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)
        self.process = None
        Path(self.socket_path).unlink(missing_ok=True)

    def restart(self) -> None:
        self.kill()
        self.start()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


@pytest.fixture(scope="module", name="redis_server")
def redis_server_fixture() -> Iterator[RedisServer]:
    """A ``redis-server`` for the module; skipped without one on a laptop, failed in CI."""
    binary = redis_binary()
    need_peer(binary is not None, "redis-server is not installed (apt-get install redis-server)")
    with RedisServer.started(binary) as server:
        yield server
