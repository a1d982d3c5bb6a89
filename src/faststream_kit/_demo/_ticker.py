"""The upstream proxy panel: an "upstream service" and a route that proxies it.

The service is a sub-app mounted at ``/upstream`` of the demo itself, so the demo needs no
second process; the proxy still reaches it over a real socket with the ``httpx.AsyncClient``
the app holds for its lifetime (``httpx.ASGITransport`` would collect the whole body first).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import AsyncIterator

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .._response import stream_response
from .._upstream import upstream_stream

TICKS = 20
TICK_SECONDS = 0.2


async def ticker(request: Request) -> Response:
    """A price ticker as NDJSON: one line every ``TICK_SECONDS``, ``TICKS`` lines."""

    async def ticks() -> AsyncIterator[str]:
        price = 100.0
        for number in range(1, TICKS + 1):
            price = round(price * (1 + random.uniform(-0.01, 0.01)), 2)
            tick = {"tick": number, "of": TICKS, "symbol": "FSK", "price": price}
            yield json.dumps({**tick, "sent": round(time.time(), 3)}) + "\n"
            if number < TICKS:
                await anyio.sleep(TICK_SECONDS)

    return stream_response(
        ticks(), media_type="application/x-ndjson", headers={"X-Upstream": "ticker"}
    )


def upstream_service() -> Starlette:
    return Starlette(routes=[Route("/ticker", ticker)])


def own_base_url(request: Request) -> str:
    # The address this server listens on, not the Host header a client sent.
    server = request.scope.get("server")
    if server and server[1] is not None:
        host, port = server
        host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)  # listening on all
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    return str(request.base_url).rstrip("/")


async def proxied_ticker(request: Request) -> Response:
    """GET /proxy/ticker: the upstream ticker, streamed through as it arrives."""
    url = own_base_url(request) + "/upstream/ticker"
    return upstream_stream(request.app.state.http, "GET", url, request=request)
