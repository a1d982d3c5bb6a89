"""An upstream answer that cannot be relayed is a 502, and the upstream connection is closed."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import httpx
import pytest
from fastapi import FastAPI, Request
from starlette.responses import Response

from faststream_kit import upstream_stream
from faststream_kit.testing import LiveServer

from .upstream_peers import http_clients


class OddUpstream:
    """A raw HTTP/1.1 server whose every answer has status 999 (three digits: clients parse
    it; no ASGI server may send it). It records when each connection was closed by its peer."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.closed = threading.Semaphore(0)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(30)
            request = b""
            while b"\r\n\r\n" not in request:
                request += conn.recv(4096)
            # A long body, so the answer is still unread when the proxy gives up on it.
            conn.sendall(b"HTTP/1.1 999 Odd\r\nContent-Length: 1000000\r\n\r\nhello")
            try:
                while conn.recv(4096):  # until the proxy closes its side
                    pass
            except OSError:
                pass
            self.closed.release()

    def stop(self) -> None:
        self._listener.close()


@pytest.fixture(scope="module")
def odd() -> Iterator[tuple[OddUpstream, str]]:
    upstream = OddUpstream()

    app = FastAPI(lifespan=http_clients)

    @app.get("/{kind}")
    async def proxy(kind: str, request: Request) -> Response:
        return upstream_stream(request.app.state.clients[kind], "GET", upstream.url)

    with LiveServer(app) as server:
        yield upstream, server.url
    upstream.stop()


@pytest.mark.parametrize("kind", ["httpx", "aiohttp"])
def test_an_answer_that_cannot_be_relayed_is_a_502_and_closes_the_upstream(
    odd: tuple[OddUpstream, str], kind: str
) -> None:
    upstream, url = odd
    response = httpx.get(f"{url}/{kind}", timeout=15)
    assert response.status_code == 502
    invalid = "The upstream service sent an invalid answer."
    assert response.json() == {"error": {"type": "upstream_error", "message": invalid}}
    assert upstream.closed.acquire(timeout=10), "the upstream connection was left open"


def test_a_sync_pyreqwest_client_is_a_type_error_that_says_so() -> None:
    from pyreqwest.client import SyncClientBuilder

    with (
        SyncClientBuilder().build() as client,
        pytest.raises(TypeError, match=r"^client must be .*got the sync SyncClient"),
    ):
        upstream_stream(client, "GET", "http://127.0.0.1:9/")
