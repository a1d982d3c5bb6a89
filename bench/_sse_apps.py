"""The FastAPI app the SSE benchmark serves, in one module so the server subprocess imports it.

Every route is a FastAPI path operation, as a FastAPI developer would write it, so each
implementation pays the same routing cost and only the SSE machinery differs. Every stream
variant reads the same source: ``n`` small JSON payloads ``{"i": i, "t": "token"}`` from an
async generator that never suspends.

==============================  ===========================================================
``/stream/ours_dict``           ``sse_response`` of ``{"data": payload}`` (keepalive=15)
``/stream/ours_event``          ``sse_response`` of ``ServerSentEvent(data=payload)``
``/stream/fastapi``             FastAPI native SSE: a generator yielding ``payload``
                                (``response_class=EventSourceResponse``)
``/stream/ours_class``          the same path operation with faststream-kit's
                                ``response_class=EventSourceResponse`` (keepalive=15)
``/stream/sse_starlette``       sse-starlette ``EventSourceResponse`` of
                                ``{"data": compact_json(payload)}`` (its default 15 s ping)
``/stream/handwritten``         ``StreamingResponse`` of ``f"data: {compact_json(payload)}\\n\\n"``
``/stream/preformatted``        ``StreamingResponse`` of ready-made ``b"data: {...}\\n\\n"``
                                frames (built once per ``n``): the anchor
``/idle/<implementation>``      one event, then silence until the client leaves (``ours``,
                                ``ours_class``, ``fastapi``, ``sse_starlette``: pings on at
                                15 s; and
                                ``starlette``, a plain ``StreamingResponse``: the floor)
``/health``                     ``200 ok``, for the readiness probe
==============================  ===========================================================

Run it alone with ``uvicorn bench._sse_apps:app --lifespan off`` from the repository root.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from functools import lru_cache, partial
from typing import Any

import anyio
from fastapi import FastAPI
from fastapi.responses import PlainTextResponse
from fastapi.sse import EventSourceResponse as FastAPIEventSourceResponse
from sse_starlette import EventSourceResponse as SseStarletteResponse
from starlette.applications import Starlette
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from faststream_kit import EventSourceResponse, ServerSentEvent, sse_response

__all__ = ["app"]

PING_SECONDS = 15.0
"""Every implementation's ping interval: long enough not to fire while the bench measures."""

_MAX_EVENTS = 1_000_000
"""Bounds what a request may ask for, so a typo cannot keep a server busy for minutes."""

app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)


def _count(n: int) -> int:
    return max(0, min(n, _MAX_EVENTS))


compact_json = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
"""The JSON every variant writes, so every variant sends the same bytes."""


def payload(i: int) -> dict[str, Any]:
    return {"i": i, "t": "token"}


async def payloads(n: int) -> AsyncIterator[dict[str, Any]]:
    """The common source: ``n`` payloads, built as they are yielded, never suspending."""
    for i in range(n):
        yield payload(i)


@lru_cache(maxsize=4)
def _ready_frames(n: int) -> tuple[bytes, ...]:
    return tuple(f"data: {compact_json(payload(i))}\n\n".encode() for i in range(n))


@app.get("/health")
async def health() -> Response:
    return PlainTextResponse("ok")


@app.get("/stream/ours_dict")
async def stream_ours_dict(n: int = 20_000) -> Response:
    async def events() -> AsyncIterator[dict[str, Any]]:
        async for item in payloads(_count(n)):
            yield {"data": item}

    return sse_response(events(), keepalive=PING_SECONDS)


@app.get("/stream/ours_event")
async def stream_ours_event(n: int = 20_000) -> Response:
    async def events() -> AsyncIterator[ServerSentEvent]:
        async for item in payloads(_count(n)):
            yield ServerSentEvent(data=item)

    return sse_response(events(), keepalive=PING_SECONDS)


@app.get("/stream/fastapi", response_class=FastAPIEventSourceResponse)
async def stream_fastapi(n: int = 20_000) -> AsyncIterator[dict[str, Any]]:
    async for item in payloads(_count(n)):
        yield item


OursClass = EventSourceResponse.with_options(keepalive=PING_SECONDS)


@app.get("/stream/ours_class", response_class=OursClass)
async def stream_ours_class(n: int = 20_000) -> AsyncIterator[dict[str, Any]]:
    async for item in payloads(_count(n)):
        yield item


@app.get("/stream/sse_starlette")
async def stream_sse_starlette(n: int = 20_000) -> Response:
    async def events() -> AsyncIterator[dict[str, str]]:
        async for item in payloads(_count(n)):
            yield {"data": compact_json(item)}

    return SseStarletteResponse(events(), ping=int(PING_SECONDS))


@app.get("/stream/handwritten")
async def stream_handwritten(n: int = 20_000) -> Response:
    async def frames() -> AsyncIterator[bytes]:
        async for item in payloads(_count(n)):
            yield f"data: {compact_json(item)}\n\n".encode()

    return StreamingResponse(frames(), media_type="text/event-stream")


@app.get("/stream/preformatted")
async def stream_preformatted(n: int = 20_000) -> Response:
    ready = _ready_frames(_count(n))

    async def frames() -> AsyncIterator[bytes]:
        for frame in ready:
            yield frame

    return StreamingResponse(frames(), media_type="text/event-stream")


@app.get("/idle/ours")
async def idle_ours() -> Response:
    async def events() -> AsyncIterator[ServerSentEvent]:
        yield ServerSentEvent(data=payload(0))
        await anyio.sleep_forever()

    return sse_response(events(), keepalive=PING_SECONDS)


@app.get("/idle/fastapi", response_class=FastAPIEventSourceResponse)
async def idle_fastapi() -> AsyncIterator[dict[str, Any]]:
    yield payload(0)  # FastAPI's own ping interval is fixed at 15 s (fastapi.sse._PING_INTERVAL)
    await anyio.sleep_forever()


@app.get("/idle/ours_class", response_class=OursClass)
async def idle_ours_class() -> AsyncIterator[dict[str, Any]]:
    yield payload(0)
    await anyio.sleep_forever()


@app.get("/idle/sse_starlette")
async def idle_sse_starlette() -> Response:
    async def events() -> AsyncIterator[dict[str, str]]:
        yield {"data": compact_json(payload(0))}
        await anyio.sleep_forever()

    return SseStarletteResponse(events(), ping=int(PING_SECONDS))


@app.get("/idle/starlette")
async def idle_starlette() -> Response:
    async def frames() -> AsyncIterator[bytes]:
        yield f"data: {compact_json(payload(0))}\n\n".encode()
        await anyio.sleep_forever()

    return StreamingResponse(frames(), media_type="text/event-stream")


async def _plain(endpoint: Any, request: Any) -> Response:
    response: Response = await endpoint()
    return response


starlette_app = Starlette(
    routes=[
        Route("/health", partial(_plain, health)),
        Route("/idle/ours", partial(_plain, idle_ours)),
        Route("/idle/sse_starlette", partial(_plain, idle_sse_starlette)),
        Route("/idle/starlette", partial(_plain, idle_starlette)),
    ]
)
"""The same idle routes as plain Starlette routes: the lightest app each of these can live in."""
