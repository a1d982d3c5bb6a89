"""The ASGI app ``bench/llm.py`` serves for the Anthropic rows (one module, for the subprocess).

Every route asks the same ``AsyncAnthropic`` client (one per process, ``max_retries=0``,
pointed at ``$FSK_BENCH_ANTHROPIC_UPSTREAM``, the ``bench/_anthropic_upstream.py`` server) for
the same streamed message of ``tokens`` tokens, and differs only in what turns the SDK stream
into a response:

========================  ==========================================================================
``/llm/ours_<format>``    ``llm_stream(client.messages.create(..., stream=True), format=<format>)``
                          for each of ``text``, ``sse``, ``ndjson``, ``openai``, ``ui``, ``ag_ui``
``/llm/hand_<format>``    the loop people write over the SDK's stream, ``async for event in
                          stream: if event.type == "content_block_delta": yield ...``, yielding the
                          text (``text``) or the same token as that format's frame, built with
                          ``json.dumps`` (``sse``: ``data: {"text": ...}``; ``ndjson``: a line
                          ``{"type": "text", "text": ...}``; ``openai``: a ``chat.completion.chunk``
                          then ``[DONE]``; ``ui``: ``text-delta`` parts, then ``finish`` and
                          ``[DONE]``; ``ag_ui``: ``TEXT_MESSAGE_CONTENT`` events, then
                          ``TEXT_MESSAGE_END`` and ``RUN_FINISHED``), in a ``StreamingResponse``
``/llm/sdk_only``         reads the SDK stream to the end and answers the token count: the floor
``/health``, ``/cpu``     readiness, and this process's CPU seconds so far (all threads)
========================  ==========================================================================

The routes are plain ASGI with no middleware, so every variant pays the same routing toll.
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from time import process_time
from typing import Any
from urllib.parse import parse_qs

from anthropic import AsyncAnthropic
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from faststream_kit import llm_stream

__all__ = ["FORMATS", "HAND_FRAMES", "app", "route_name"]

DEFAULT_TOKENS = 5_000
MAX_TOKENS = 100_000
FORMATS = ("text", "sse", "ndjson", "openai", "ui", "ag-ui")

client = AsyncAnthropic(
    base_url=os.environ.get("FSK_BENCH_ANTHROPIC_UPSTREAM", "http://127.0.0.1:8001"),
    api_key="sk-ant-bench",
    max_retries=0,
)

Handler = Callable[[Scope, Receive, Send, int], Awaitable[None]]


def create(tokens: int) -> Any:
    """The one request every route makes; not awaited, so ``llm_stream`` can map its errors."""
    return client.messages.create(
        model="claude-sonnet-4-5",
        max_tokens=tokens,
        messages=[{"role": "user", "content": "Stream the benchmark tokens."}],
        stream=True,
    )


_CHUNK = {"id": "chatcmpl-bench", "object": "chat.completion.chunk", "created": 0, "model": "m"}

HAND_FRAMES: dict[str, tuple[str, Callable[[str], str], str]] = {
    # format: (media type, one token's frame, what follows the last token)
    "text": ("text/plain", lambda token: token, ""),
    "sse": ("text/event-stream", lambda token: f"data: {json.dumps({'text': token})}\n\n", ""),
    "ndjson": (
        "application/x-ndjson",
        lambda token: json.dumps({"type": "text", "text": token}) + "\n",
        "",
    ),
    "openai": (
        "text/event-stream",
        lambda token: (
            "data: "
            + json.dumps(
                {
                    **_CHUNK,
                    "choices": [{"index": 0, "delta": {"content": token}, "finish_reason": None}],
                }
            )
            + "\n\n"
        ),
        "data: [DONE]\n\n",
    ),
    "ui": (
        "text/event-stream",
        lambda token: f"data: {json.dumps({'type': 'text-delta', 'id': '0', 'delta': token})}\n\n",
        'data: {"type": "finish"}\n\ndata: [DONE]\n\n',
    ),
    "ag-ui": (
        "text/event-stream",
        lambda token: (
            "data: "
            + json.dumps({"type": "TEXT_MESSAGE_CONTENT", "messageId": "m", "delta": token})
            + "\n\n"
        ),
        'data: {"type": "TEXT_MESSAGE_END", "messageId": "m"}\n\n'
        'data: {"type": "RUN_FINISHED", "threadId": "t", "runId": "r"}\n\n',
    ),
}
"""The hand-written loops' frames; ``bench/llm.py`` uses them to know each body's size."""


def route_name(fmt: str) -> str:
    """``ag-ui`` -> ``ag_ui``: route and result names, as ``bench/_llm_apps.py`` has them."""
    return fmt.replace("-", "_")


def _ours(fmt: str) -> Handler:
    async def handle(scope: Scope, receive: Receive, send: Send, tokens: int) -> None:
        await llm_stream(create(tokens), format=fmt)(scope, receive, send)  # type: ignore[arg-type]

    return handle


def _hand(fmt: str) -> Handler:
    media_type, frame, end = HAND_FRAMES[fmt]

    async def handle(scope: Scope, receive: Receive, send: Send, tokens: int) -> None:
        async def gen() -> AsyncIterator[str]:
            stream = await create(tokens)
            async for event in stream:
                if event.type == "content_block_delta" and event.delta.type == "text_delta":
                    yield frame(event.delta.text)
            if end:
                yield end

        await StreamingResponse(gen(), media_type=media_type)(scope, receive, send)

    return handle


async def _sdk_only(scope: Scope, receive: Receive, send: Send, tokens: int) -> None:
    stream = await create(tokens)
    count = 0
    async for event in stream:
        if event.type == "content_block_delta" and event.delta.type == "text_delta":
            count += 1
    await _plain(send, 200, str(count).encode())


async def _plain(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


ROUTES: dict[str, Handler] = {
    **{f"/llm/ours_{route_name(fmt)}": _ours(fmt) for fmt in FORMATS},
    **{f"/llm/hand_{route_name(fmt)}": _hand(fmt) for fmt in FORMATS},
    "/llm/sdk_only": _sdk_only,
}


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Route one benchmark request; no middleware, so every variant pays the same toll."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    handler = ROUTES.get(path)
    if handler is None:
        if path == "/health":
            await _plain(send, 200, b"ok")
        elif path == "/cpu":
            await _plain(send, 200, repr(process_time()).encode())
        else:
            await _plain(send, 404, f"no route {path}".encode())
        return
    query = parse_qs(scope["query_string"].decode("latin-1"))
    try:
        tokens = int(query.get("tokens", [str(DEFAULT_TOKENS)])[-1])
    except ValueError:
        tokens = 0
    if not 1 <= tokens <= MAX_TOKENS:
        await _plain(send, 400, f"tokens must be an integer in 1..{MAX_TOKENS}\n".encode())
        return
    await handler(scope, receive, send, tokens)
