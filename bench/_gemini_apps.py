"""The ASGI app of ``bench/llm.py``'s Gemini row, in one module so the server subprocess imports it.

Every route asks the same ``genai.Client`` (one per process, pointed at
``$FSK_BENCH_GEMINI_UPSTREAM``, the ``bench/_gemini_upstream.py`` server) for the same
``client.aio.models.generate_content_stream`` of ``tokens`` tokens, and differs only in what
turns the SDK stream into a response:

=======================  ===========================================================================
``/llm/ours_<format>``   ``llm_stream(generate_content_stream(...), format=<format>)`` for ``text``,
                         ``sse``, ``ndjson``, ``openai``, ``ui`` and ``ag-ui``
``/llm/hand_text``       ``StreamingResponse(gen(), media_type="text/plain")``, ``gen`` yielding
                         ``chunk.text`` (the loop every team writes)
``/llm/hand_sse``        the same loop yielding an SSE ``data:`` line of ``{"text": chunk.text}``
``/llm/sdk_only``        reads the SDK stream to the end and answers ``200`` with the chunk count:
                         what the SDK alone costs
``/health``, ``/cpu``    the readiness probe; this process's CPU seconds so far
=======================  ===========================================================================

The routes are plain ASGI with no middleware, so every variant pays the same routing toll.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from time import process_time
from typing import Any
from urllib.parse import parse_qs

from google import genai
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from faststream_kit import llm_stream

__all__ = ["FORMATS", "app"]

FORMATS = ("text", "sse", "ndjson", "openai", "ui", "ag-ui")
MAX_TOKENS = 100_000

client = genai.Client(
    api_key="bench-key",
    http_options={
        "base_url": os.environ.get("FSK_BENCH_GEMINI_UPSTREAM", "http://127.0.0.1:8002"),
        "api_version": "v1beta",
    },
)

Handler = Callable[[Scope, Receive, Send, int], Awaitable[None]]


def generate(tokens: int) -> Any:
    """The one request every route makes; not awaited, as ``llm_stream`` takes it."""
    return client.aio.models.generate_content_stream(
        model="gemini-2.5-flash",
        contents="Stream the benchmark tokens.",
        config={"max_output_tokens": tokens},
    )


def _ours(fmt: str) -> Handler:
    async def handle(scope: Scope, receive: Receive, send: Send, tokens: int) -> None:
        await llm_stream(generate(tokens), format=fmt)(scope, receive, send)  # type: ignore[arg-type]

    return handle


async def _hand_text(scope: Scope, receive: Receive, send: Send, tokens: int) -> None:
    async def gen() -> AsyncIterator[str]:
        async for chunk in await generate(tokens):
            if chunk.text:
                yield chunk.text

    await StreamingResponse(gen(), media_type="text/plain")(scope, receive, send)


async def _hand_sse(scope: Scope, receive: Receive, send: Send, tokens: int) -> None:
    async def gen() -> AsyncIterator[str]:
        async for chunk in await generate(tokens):
            if chunk.text:
                yield f"data: {json.dumps({'text': chunk.text})}\n\n"

    await StreamingResponse(gen(), media_type="text/event-stream")(scope, receive, send)


async def _sdk_only(scope: Scope, receive: Receive, send: Send, tokens: int) -> None:
    count = 0
    async for chunk in await generate(tokens):
        if chunk.text:
            count += 1
    await _plain(send, 200, str(count).encode())


async def _plain(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


ROUTES: dict[str, Handler] = {
    **{f"/llm/ours_{fmt}": _ours(fmt) for fmt in FORMATS},
    "/llm/hand_text": _hand_text,
    "/llm/hand_sse": _hand_sse,
    "/llm/sdk_only": _sdk_only,
}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Route one benchmark request; no middleware, so every variant pays the same toll."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/health":
        await _plain(send, 200, b"ok")
        return
    if path == "/cpu":
        # CLOCK_PROCESS_CPUTIME_ID counts every thread and is far finer than /proc's ticks.
        await _plain(send, 200, repr(process_time()).encode())
        return
    handler = ROUTES.get(path)
    if handler is None:
        await _plain(send, 404, f"no route {path}".encode())
        return
    query = parse_qs(scope["query_string"].decode("latin-1"))
    try:
        tokens = int(query.get("tokens", ["5000"])[-1])
    except ValueError:
        tokens = 0
    if not 1 <= tokens <= MAX_TOKENS:
        await _plain(send, 400, f"tokens must be an integer in 1..{MAX_TOKENS}\n".encode())
        return
    await handler(scope, receive, send, tokens)
