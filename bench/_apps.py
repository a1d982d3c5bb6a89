"""The ASGI apps the benchmarks serve, in one module so the server subprocess imports it.

``app`` routes ``/<scenario>/<implementation>?<params>`` to one response. Every variant of a
scenario reads the same source (the same generator function, the same preallocated ``bytes``
object), so the only difference between them is the response machinery under test:

=============================  ==========================================================
``/small/ours_async``          ``stream_response(async generator)``, ``n`` × ``size`` B
``/small/ours_sync``           ``stream_response(sync generator)``
``/small/starlette_async``     ``StreamingResponse(async generator)``
``/small/starlette_sync``      ``StreamingResponse(sync generator)`` (a thread hop per item)
``/bulk/ours``                 ``stream_response(async generator)``, ``total`` B in ``chunk``
``/bulk/raw``                  a hand-written ``send`` loop over the same async generator
``/bulk/starlette``            ``StreamingResponse(async generator)``
``/sync1k/ours``               ``stream_response(sync generator)``, ``total`` B in ``chunk``
``/sync1k/starlette``          ``StreamingResponse(sync generator)``
``/health``                    ``200 ok``, for the readiness probe
``/cpu``                       this process's CPU seconds so far (all threads, ns resolution)
=============================  ==========================================================

Run it alone with ``uvicorn bench._apps:app --lifespan off`` from the repository root.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from time import process_time
from urllib.parse import parse_qs

from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from faststream_kit import stream_response

__all__ = ["app"]

_MAX_TOTAL_BYTES = 4 << 30
"""Bounds what a request may ask for, so a typo cannot keep a server busy for minutes."""

_MAX_ITEMS = 10_000_000

_TEXT_HEADERS = [(b"content-type", b"application/octet-stream")]

Handler = Callable[[Scope, Receive, Send, dict[str, int]], Awaitable[None]]


async def async_items(item: bytes, count: int) -> AsyncIterator[bytes]:
    """Yield the same ``bytes`` object ``count`` times, never suspending (a pure source)."""
    for _ in range(count):
        yield item


def sync_items(item: bytes, count: int) -> Iterator[bytes]:
    """The blocking twin of :func:`async_items`."""
    for _ in range(count):
        yield item


def _item(size: int) -> bytes:
    return b"x" * (size - 1) + b"\n"


def _small_source(params: dict[str, int]) -> tuple[bytes, int]:
    return _item(params.get("size", 32)), params.get("n", 20_000)


def _chunked_source(params: dict[str, int], default_chunk: int) -> tuple[bytes, int]:
    chunk = params.get("chunk", default_chunk)
    return _item(chunk), params.get("total", 256 << 20) // chunk


async def _small_ours_async(scope: Scope, receive: Receive, send: Send, p: dict[str, int]) -> None:
    item, count = _small_source(p)
    await stream_response(async_items(item, count))(scope, receive, send)


async def _small_ours_sync(scope: Scope, receive: Receive, send: Send, p: dict[str, int]) -> None:
    item, count = _small_source(p)
    await stream_response(sync_items(item, count))(scope, receive, send)


async def _small_starlette_async(
    scope: Scope, receive: Receive, send: Send, p: dict[str, int]
) -> None:
    item, count = _small_source(p)
    await StreamingResponse(async_items(item, count), media_type="text/plain")(scope, receive, send)


async def _small_starlette_sync(
    scope: Scope, receive: Receive, send: Send, p: dict[str, int]
) -> None:
    item, count = _small_source(p)
    await StreamingResponse(sync_items(item, count), media_type="text/plain")(scope, receive, send)


async def _bulk_ours(scope: Scope, receive: Receive, send: Send, p: dict[str, int]) -> None:
    item, count = _chunked_source(p, 64 << 10)
    await stream_response(async_items(item, count))(scope, receive, send)


async def _bulk_raw(scope: Scope, receive: Receive, send: Send, p: dict[str, int]) -> None:
    # The floor: what any response class must add its overhead to.
    item, count = _chunked_source(p, 64 << 10)
    await send({"type": "http.response.start", "status": 200, "headers": _TEXT_HEADERS})
    async for chunk in async_items(item, count):
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})


async def _bulk_starlette(scope: Scope, receive: Receive, send: Send, p: dict[str, int]) -> None:
    item, count = _chunked_source(p, 64 << 10)
    await StreamingResponse(async_items(item, count), media_type="text/plain")(scope, receive, send)


async def _sync1k_ours(scope: Scope, receive: Receive, send: Send, p: dict[str, int]) -> None:
    item, count = _chunked_source(p, 1 << 10)
    await stream_response(sync_items(item, count))(scope, receive, send)


async def _sync1k_starlette(scope: Scope, receive: Receive, send: Send, p: dict[str, int]) -> None:
    item, count = _chunked_source(p, 1 << 10)
    await StreamingResponse(sync_items(item, count), media_type="text/plain")(scope, receive, send)


async def _health(scope: Scope, receive: Receive, send: Send, p: dict[str, int]) -> None:
    await send({"type": "http.response.start", "status": 200, "headers": _TEXT_HEADERS})
    await send({"type": "http.response.body", "body": b"ok", "more_body": False})


async def _cpu(scope: Scope, receive: Receive, send: Send, p: dict[str, int]) -> None:
    # CLOCK_PROCESS_CPUTIME_ID counts every thread, finished worker threads included, and is
    # far finer than the 10 ms ticks of /proc/<pid>/stat.
    body = repr(process_time()).encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


ROUTES: dict[str, Handler] = {
    "/small/ours_async": _small_ours_async,
    "/small/ours_sync": _small_ours_sync,
    "/small/starlette_async": _small_starlette_async,
    "/small/starlette_sync": _small_starlette_sync,
    "/bulk/ours": _bulk_ours,
    "/bulk/raw": _bulk_raw,
    "/bulk/starlette": _bulk_starlette,
    "/sync1k/ours": _sync1k_ours,
    "/sync1k/starlette": _sync1k_starlette,
    "/health": _health,
    "/cpu": _cpu,
}


def _parse_params(query_string: bytes) -> dict[str, int] | str:
    """The integer query parameters, or the reason they are rejected."""
    params: dict[str, int] = {}
    for name, values in parse_qs(query_string.decode("latin-1")).items():
        try:
            params[name] = int(values[-1])
        except ValueError:
            return f"{name} must be an integer"
    if any(value < 1 for value in params.values()):
        return "parameters must be positive"
    if (
        params.get("size", 1) * params.get("n", 1) > _MAX_TOTAL_BYTES
        or params.get("total", 1) > _MAX_TOTAL_BYTES
    ):
        return f"at most {_MAX_TOTAL_BYTES} bytes per response"
    if (
        params.get("n", 1) > _MAX_ITEMS
        or params.get("total", 1) // params.get("chunk", 1024) > _MAX_ITEMS
    ):
        return f"at most {_MAX_ITEMS} items per response"
    return params


async def _reject(send: Send, status: int, reason: str) -> None:
    body = reason.encode() + b"\n"
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Route one benchmark request; no middleware, so every variant pays the same toll."""
    if scope["type"] != "http":
        return  # lifespan is off in the bench; nothing else is served
    handler = ROUTES.get(scope["path"])
    if handler is None:
        await _reject(send, 404, f"no route {scope['path']}")
        return
    params = _parse_params(scope["query_string"])
    if isinstance(params, str):
        await _reject(send, 400, params)
        return
    await handler(scope, receive, send, params)
