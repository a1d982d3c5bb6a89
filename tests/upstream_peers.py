"""The real peers of ``test_upstream.py``: an upstream service that records what it saw,
and the FastAPI proxy in front of it.

The upstream is plain ASGI so that every byte and header it sends is chosen here, and it
writes down what really reached it (request headers, body size, when the proxy hung up), so
the tests assert on the upstream's side of the wire, not on what the proxy meant to do.

``python -m uvicorn tests.upstream_peers:proxy_from_env --factory`` serves the proxy in its
own process (``UPSTREAM_URL`` names the upstream), for measuring its memory.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import os
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import anyio
import httpx
from fastapi import FastAPI, Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from faststream_kit import upstream_stream

CLIENT_KINDS = ("httpx", "aiohttp", "pyreqwest")
POOL_SIZE = 4
"""Connections each proxy client may hold: small, so a leaked connection shows at once."""

PAYLOAD = b"".join(b"line %05d of the upstream body\n" % i for i in range(4000))


# --- the upstream --------------------------------------------------------------------------


@dataclass
class Seen:
    """What the upstream saw of one request."""

    headers: list[tuple[str, str]] = field(default_factory=list)
    arrived: threading.Event = field(default_factory=threading.Event)
    body_bytes: int = 0
    disconnected_at: float = 0.0
    disconnected: threading.Event = field(default_factory=threading.Event)


class UpstreamLog:
    """Thread-safe: the upstream runs in a server thread, the test reads from the main one."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._seen: dict[str, Seen] = {}
        self.disconnects = 0

    def get(self, request_id: str) -> Seen:
        with self._lock:
            return self._seen.setdefault(request_id, Seen())

    def disconnected(self, request_id: str) -> None:
        seen = self.get(request_id)
        seen.disconnected_at = time.monotonic()
        seen.disconnected.set()
        with self._lock:
            self.disconnects += 1
            self._lock.notify_all()

    def wait_for_disconnects(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` hang-ups in all were recorded; False if it timed out."""
        with self._lock:
            return self._lock.wait_for(lambda: self.disconnects >= count, timeout=timeout)


class Upstream:
    """The service behind the proxy. Paths (``?id=`` names the request in the log):

    ``/sse?n=&interval=``  ``n`` SSE events ``interval`` s apart, recording a hang-up
    ``/headers``           records the request headers, answers with hop-by-hop ones
    ``/gzip``              ``PAYLOAD``, gzipped only if the request accepts gzip
    ``/always-gzip``       ``PAYLOAD`` gzipped whatever the request accepts
    ``/slow?seconds=``     counts the body, answers after ``seconds``; records a hang-up
    ``/die``               three chunks, then the connection drops
    ``/count``             counts the request body's bytes, answers ``{"bytes": n}``
    ``/bulk?total=``       ``total`` bytes in 64 KiB chunks
    """

    def __init__(self) -> None:
        self.log = UpstreamLog()
        self._slow_lock = threading.Lock()
        self._slow_waits: dict[str, tuple[asyncio.AbstractEventLoop, anyio.CancelScope]] = {}
        self._answer_now: set[str] = set()

    def answer_slow_now(self, request_id: str) -> None:
        """``/slow?id=request_id`` answers now (or at once if it has not started): a test
        calls this from its thread so that a request nobody cancelled ends with the test."""
        with self._slow_lock:
            self._answer_now.add(request_id)
            waiting = self._slow_waits.get(request_id)
        if waiting is not None:
            loop, scope = waiting
            loop.call_soon_threadsafe(scope.cancel)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        query = {k: v[0] for k, v in parse_qs(scope["query_string"].decode()).items()}
        seen = self.log.get(query.get("id", ""))
        seen.headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        seen.arrived.set()
        route = getattr(self, "_" + scope["path"].strip("/").replace("-", "_"), None)
        if route is None:
            await _respond(send, 404, b"no such route")
            return
        await route(query, seen, receive, send)

    async def _sse(self, query: dict[str, str], seen: Seen, receive: Receive, send: Send) -> None:
        n, interval = int(query.get("n", "20")), float(query.get("interval", "0.1"))
        request_id = query.get("id", "")
        finished = False

        async def watch_for_hang_up() -> None:
            # uvicorn also answers receive() with a disconnect once the response is complete.
            while (await receive())["type"] != "http.disconnect":
                pass
            if not finished:
                self.log.disconnected(request_id)
            tasks.cancel_scope.cancel()

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(watch_for_hang_up)
            await send(_start(200, [(b"content-type", b"text/event-stream")]))
            for i in range(n):
                await send(_chunk(b"data: %d\n\n" % i))
                await anyio.sleep(interval)
            finished = True
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            tasks.cancel_scope.cancel()

    async def _headers(
        self, query: dict[str, str], seen: Seen, receive: Receive, send: Send
    ) -> None:
        headers = [
            (b"content-type", b"text/plain"),
            (b"connection", b"x-up-hop"),
            (b"x-up-hop", b"must not pass"),
            (b"keep-alive", b"timeout=5"),
            (b"proxy-authenticate", b"Basic"),
            (b"trailer", b"x-checksum"),
            (b"x-content-type-options", b"nosniff"),
            (b"x-end-to-end", b"kept"),
        ]
        await _respond(send, 200, b"headers recorded", headers)

    async def _gzip(self, query: dict[str, str], seen: Seen, receive: Receive, send: Send) -> None:
        accept = dict(seen.headers).get("accept-encoding", "")
        await self._payload(send, gzipped="gzip" in accept)

    async def _always_gzip(
        self, query: dict[str, str], seen: Seen, receive: Receive, send: Send
    ) -> None:
        await self._payload(send, gzipped=True)

    async def _payload(self, send: Send, *, gzipped: bool) -> None:
        body = gzip.compress(PAYLOAD) if gzipped else PAYLOAD
        headers = [(b"content-type", b"text/plain")]
        if gzipped:
            headers.append((b"content-encoding", b"gzip"))
        headers.append((b"content-length", b"%d" % len(body)))
        await send(_start(200, headers))
        for start in range(0, len(body), 16384):  # several chunks, to exercise decoding
            await send(_chunk(body[start : start + 16384]))
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _slow(self, query: dict[str, str], seen: Seen, receive: Receive, send: Send) -> None:
        request_id = query.get("id", "")
        with anyio.move_on_after(float(query.get("seconds", "5"))) as waiting:
            with self._slow_lock:
                self._slow_waits[request_id] = (asyncio.get_running_loop(), waiting)
                if request_id in self._answer_now:
                    waiting.cancel()
            try:
                while (message := await receive())["type"] != "http.disconnect":
                    seen.body_bytes += len(message.get("body", b""))
                self.log.disconnected(request_id)
                return
            finally:
                with self._slow_lock:
                    self._slow_waits.pop(request_id, None)
        await _respond(send, 200, b"too late")

    async def _die(self, query: dict[str, str], seen: Seen, receive: Receive, send: Send) -> None:
        await send(_start(200, [(b"content-type", b"text/plain")]))
        for i in range(3):
            await send(_chunk(b"chunk %d\n" % i))
        raise RuntimeError("the upstream dies mid-body (on purpose, for the test)")

    async def _count(self, query: dict[str, str], seen: Seen, receive: Receive, send: Send) -> None:
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            seen.body_bytes += len(message.get("body", b""))
            more = message.get("more_body", False)
        await _respond(send, 200, json.dumps({"bytes": seen.body_bytes}).encode())

    async def _bulk(self, query: dict[str, str], seen: Seen, receive: Receive, send: Send) -> None:
        total = int(query.get("total", str(1 << 20)))
        block = b"x" * 65536
        await send(_start(200, [(b"content-type", b"application/octet-stream")]))
        for _ in range(total // len(block)):
            await send(_chunk(block))
        await send({"type": "http.response.body", "body": b"", "more_body": False})


def _start(status: int, headers: list[tuple[bytes, bytes]]) -> dict[str, Any]:
    return {"type": "http.response.start", "status": status, "headers": headers}


def _chunk(body: bytes) -> dict[str, Any]:
    return {"type": "http.response.body", "body": body, "more_body": True}


async def _respond(
    send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    headers = [*(headers or []), (b"content-length", b"%d" % len(body))]
    await send(_start(status, headers))
    await send({"type": "http.response.body", "body": body, "more_body": False})


# --- the proxy -----------------------------------------------------------------------------


def pyreqwest_proxy_client(pool_size: int = 100) -> Any:
    """A pyreqwest ``Client`` built for proxying, as ``docs/upstream.md`` says to build it:
    redirects and compressed bodies are handed to our client, not handled by pyreqwest."""
    from pyreqwest.client import ClientBuilder

    builder = ClientBuilder().follow_redirects(False).max_connections(pool_size)
    return builder.gzip(False).brotli(False).zstd(False).deflate(False).build()


@asynccontextmanager
async def http_clients(app: FastAPI, pool_size: int = 100) -> AsyncIterator[None]:
    """A proxy app's lifespan: ``app.state.clients`` holds an ``httpx.AsyncClient``, an
    ``aiohttp.ClientSession`` and a pyreqwest ``Client`` (keys ``"httpx"``, ``"aiohttp"``,
    ``"pyreqwest"``), each with ``pool_size`` connections. They live as long as the app:
    ``upstream_stream`` uses its client after the route returned, and closing a client would
    also close a connection it leaked."""
    async with (
        httpx.AsyncClient(limits=httpx.Limits(max_connections=pool_size)) as httpx_client,
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=pool_size)) as session,
        pyreqwest_proxy_client(pool_size) as pyreqwest_client,
    ):
        app.state.clients = {
            "httpx": httpx_client,
            "aiohttp": session,
            "pyreqwest": pyreqwest_client,
        }
        yield


def proxy_app(upstream_url: str, *, down_url: str = "http://127.0.0.1:9") -> FastAPI:
    """A FastAPI app proxying ``/{httpx|aiohttp}/{path}`` to ``upstream_url`` with that client.

    ``/{kind}/impatient/{path}`` gives up after 0.5 s of upstream silence; ``/{kind}/down``
    proxies to ``down_url``, where nothing listens.
    """

    app = FastAPI(lifespan=partial(http_clients, pool_size=POOL_SIZE))

    def target(base: str, path: str, request: Request) -> str:
        query = request.url.query
        return f"{base}/{path}" + (f"?{query}" if query else "")

    @app.get("/{kind}/down")
    async def down(kind: str, request: Request) -> Response:
        client = request.app.state.clients[kind]
        return upstream_stream(client, "GET", down_url, request=request)

    @app.get("/{kind}/impatient/{path:path}")
    async def impatient(kind: str, path: str, request: Request) -> Response:
        client = request.app.state.clients[kind]
        url = target(upstream_url, path, request)
        return upstream_stream(client, "GET", url, request=request, read_timeout=0.5)

    @app.api_route("/{kind}/{path:path}", methods=["GET", "HEAD", "POST", "PUT"])
    async def proxy(kind: str, path: str, request: Request) -> Response:
        client = request.app.state.clients[kind]
        url = target(upstream_url, path, request)
        return upstream_stream(client, request.method, url, request=request)

    return app


def proxy_from_env() -> FastAPI:
    """The proxy for a subprocess: ``UPSTREAM_URL`` names the upstream."""
    return proxy_app(os.environ["UPSTREAM_URL"])
