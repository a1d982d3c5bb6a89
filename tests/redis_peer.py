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

__all__ = [
    "RedisCluster",
    "RedisServer",
    "ping",
    "redis_binary",
    "redis_cli_binary",
    "redis_cluster_fixture",
    "redis_server_fixture",
]


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


class RedisCluster:
    """Three ``redis-server --cluster-enabled yes`` masters on free loopback ports, joined by
    ``redis-cli --cluster create`` (no replicas: the tests need the slots spread, not HA)."""

    def __init__(self, binary: str, cli: str, directory: Path, ports: list[int]) -> None:
        from .conftest import free_port

        self.binary, self.cli, self.directory, self.ports = binary, cli, directory, ports
        # The bus port defaults to port + 10000, out of range for an ephemeral port.
        self.bus_ports = [free_port() for _ in ports]
        self.processes: list[subprocess.Popen[bytes]] = []

    @classmethod
    @contextmanager
    def started(cls, binary: str, cli: str, nodes: int = 3) -> Iterator[RedisCluster]:
        from .conftest import free_port

        directory = Path(tempfile.mkdtemp(prefix="fsk-cluster-"))
        cluster = cls(binary, cli, directory, [free_port() for _ in range(nodes)])
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.kill()
            shutil.rmtree(directory, ignore_errors=True)

    @property
    def nodes(self) -> list[tuple[str, int]]:
        return [("127.0.0.1", port) for port in self.ports]

    def start(self, timeout: float = 20.0) -> None:
        for port, bus_port in zip(self.ports, self.bus_ports, strict=True):
            node_dir = self.directory / str(port)
            node_dir.mkdir()
            command = [
                self.binary,
                "--bind", "127.0.0.1",
                "--port", str(port),
                "--cluster-enabled", "yes",
                "--cluster-port", str(bus_port),
                "--cluster-config-file", str(node_dir / "nodes.conf"),
                "--cluster-node-timeout", "2000",
                "--save", "",
                "--appendonly", "no",
                "--dir", str(node_dir),
                "--logfile", str(node_dir / "redis.log"),
            ]  # fmt: skip
            self.processes.append(
                subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        deadline = time.monotonic() + timeout
        for port in self.ports:
            while not _tcp_ping(port):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"cluster node {port} did not answer PING")
                time.sleep(0.01)
        create = [self.cli, "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports)]
        subprocess.run(
            [*create, "--cluster-replicas", "0", "--cluster-yes"],
            check=True,
            stdout=subprocess.DEVNULL,
            timeout=timeout,
        )
        # Every node must agree before a client connects (it reads the slot map once).
        while not all(_cluster_ok(port) for port in self.ports):
            if time.monotonic() > deadline:
                raise RuntimeError("the cluster did not reach cluster_state:ok")
            time.sleep(0.05)

    def kill(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGKILL)
                process.wait(timeout=10)
        self.processes = []


def _command(port: int, command: bytes, timeout: float = 0.5) -> bytes:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            sock.sendall(command)
            return sock.recv(4096)
    except OSError:
        return b""


def _tcp_ping(port: int) -> bool:
    return _command(port, b"PING\r\n").startswith(b"+PONG")


def _cluster_ok(port: int) -> bool:
    return b"cluster_state:ok" in _command(port, b"CLUSTER INFO\r\n")


def redis_cli_binary() -> str | None:
    return shutil.which("redis-cli")


@pytest.fixture(scope="module", name="redis_cluster")
def redis_cluster_fixture() -> Iterator[RedisCluster]:
    """A three-node Redis Cluster for the module; skipped without redis-server/redis-cli on
    a laptop, failed in CI."""
    binary, cli = redis_binary(), redis_cli_binary()
    need_peer(
        binary is not None and cli is not None,
        "redis-server and redis-cli are not installed (apt-get install redis-server)",
    )
    assert binary is not None
    assert cli is not None
    with RedisCluster.started(binary, cli) as cluster:
        yield cluster
