"""The ASGI app ``bench/llm.py`` serves, in one module so the server subprocess imports it.

Every route asks the same ``AsyncOpenAI`` client (one per process, ``max_retries=0``, pointed at
``$FSK_BENCH_UPSTREAM``, the ``bench/_openai_upstream.py`` server) for the same streamed chat
completion of ``tokens`` tokens, and differs only in what turns the SDK stream into a response:

========================  ==========================================================================
``/llm/ours_text``        ``llm_stream(client.chat.completions.create(...), format="text")``
``/llm/ours_sse``         ``llm_stream(client.chat.completions.create(...), format="sse")``
``/llm/hand_text``        ``StreamingResponse(gen(), media_type="text/plain")``, ``gen`` yielding
                          ``chunk.choices[0].delta.content`` (the loop every team writes)
``/llm/hand_sse``         the same loop yielding ``f"data: {json.dumps({'text': token})}\\n\\n"``
                          (``media_type="text/event-stream"``)
``/llm/ours_ui``           ``llm_stream(client.chat.completions.create(...), format="ui")``
``/llm/hand_ui``          the loop writing the AI SDK UI message stream by hand: ``start``,
                          ``text-start``, a ``text-delta`` part per token (``json.dumps``),
                          ``text-end``, ``finish``, ``[DONE]``
``/llm/ours_ag_ui``       ``llm_stream(client.chat.completions.create(...), format="ag-ui")``
``/llm/hand_ag_ui``       the loop writing an AG-UI run by hand: ``RUN_STARTED``,
                          ``TEXT_MESSAGE_START``, a ``TEXT_MESSAGE_CONTENT`` per token
                          (``json.dumps``), ``TEXT_MESSAGE_END``, ``RUN_FINISHED``
``/llm/ours_text_untimed``  ``ours_text`` with ``idle_timeout=None, send_timeout=None`` (diagnosis:
``/llm/ours_sse_untimed``   what the two per-token timeout scopes cost), and the same for ``sse``
``/llm/sdk_only``         reads the SDK stream to the end and answers ``200`` with the token count:
                          the floor, what the SDK alone costs
``/health``               ``200 ok``, for the readiness probe
``/cpu``                  this process's CPU seconds so far (all threads, ns resolution)
``/profile/start``        start ``cProfile`` in this process (the event loop's thread)
``/profile/stop?file=F``  stop it and dump the stats to ``F`` (``.pstats``)
========================  ==========================================================================

The routes are plain ASGI with no middleware, so every variant pays the same routing toll.
Run it alone with ``FSK_BENCH_UPSTREAM=http://127.0.0.1:PORT/v1 uvicorn bench._llm_apps:app
--lifespan off`` from the repository root.
"""

from __future__ import annotations

import cProfile
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from time import process_time, thread_time
from typing import Any
from urllib.parse import parse_qs

from openai import AsyncOpenAI
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from faststream_kit import llm_stream

__all__ = [
    "HAND_AG_UI_END",
    "HAND_AG_UI_START",
    "HAND_UI_END",
    "HAND_UI_START",
    "app",
    "hand_ag_ui_delta",
    "hand_sse_frame",
    "hand_ui_delta",
    "sse_data",
]

DEFAULT_TOKENS = 5_000
MAX_TOKENS = 100_000
"""Bounds what a request may ask for, so a typo cannot keep a server busy for minutes."""

client = AsyncOpenAI(
    base_url=os.environ.get("FSK_BENCH_UPSTREAM", "http://127.0.0.1:8001/v1"),
    api_key="sk-bench",
    max_retries=0,
)

Handler = Callable[[Scope, Receive, Send, int], Awaitable[None]]


def create(tokens: int) -> Any:
    """The one request every route makes; not awaited, so ``llm_stream`` can map its errors."""
    return client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Stream the benchmark tokens."}],
        max_tokens=tokens,
        stream=True,
        stream_options={"include_usage": True},
    )


async def _ours_text(scope: Scope, receive: Receive, send: Send, tokens: int) -> None:
    await llm_stream(create(tokens), format="text")(scope, receive, send)


async def _ours_sse(scope: Scope, receive: Receive, send: Send, tokens: int) -> None:
    await llm_stream(create(tokens), format="sse")(scope, receive, send)


async def _ours_ui(scope: Scope, receive: Receive, send: Send, tokens: int) -> None:
    await llm_stream(create(tokens), format="ui")(scope, receive, send)


async def _ours_ag_ui(scope: Scope, receive: Receive, send: Send, tokens: int) -> None:
    await llm_stream(create(tokens), format="ag-ui")(scope, receive, send)


def sse_data(part: dict[str, Any]) -> str:
    """One SSE event the way a hand-written loop writes it."""
    return f"data: {json.dumps(part)}\n\n"


HAND_UI_START = [{"type": "start"}, {"type": "text-start", "id": "text-1"}]
HAND_UI_END = [{"type": "text-end", "id": "text-1"}, {"type": "finish"}]
HAND_AG_UI_START = [
    {"type": "RUN_STARTED", "threadId": "thread-1", "runId": "run-1"},
    {"type": "TEXT_MESSAGE_START", "messageId": "msg-1", "role": "assistant"},
]
HAND_AG_UI_END = [
    {"type": "TEXT_MESSAGE_END", "messageId": "msg-1"},
    {"type": "RUN_FINISHED", "threadId": "thread-1", "runId": "run-1"},
]


def hand_sse_frame(token: str) -> str:
    return f"data: {json.dumps({'text': token})}\n\n"


def hand_ui_delta(token: str) -> str:
    return sse_data({"type": "text-delta", "id": "text-1", "delta": token})


def hand_ag_ui_delta(token: str) -> str:
    return sse_data({"type": "TEXT_MESSAGE_CONTENT", "messageId": "msg-1", "delta": token})


async def _hand_ui(scope: Scope, receive: Receive, send: Send, tokens: int) -> None:
    async def gen() -> AsyncIterator[str]:
        stream = await create(tokens)
        for part in HAND_UI_START:
            yield sse_data(part)
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                yield hand_ui_delta(chunk.choices[0].delta.content)
        for part in HAND_UI_END:
            yield sse_data(part)
        yield "data: [DONE]\n\n"

    headers = {"x-vercel-ai-ui-message-stream": "v1"}
    response = StreamingResponse(gen(), media_type="text/event-stream", headers=headers)
    await response(scope, receive, send)


async def _hand_ag_ui(scope: Scope, receive: Receive, send: Send, tokens: int) -> None:
    async def gen() -> AsyncIterator[str]:
        stream = await create(tokens)
        for part in HAND_AG_UI_START:
            yield sse_data(part)
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                yield hand_ag_ui_delta(chunk.choices[0].delta.content)
        for part in HAND_AG_UI_END:
            yield sse_data(part)

    await StreamingResponse(gen(), media_type="text/event-stream")(scope, receive, send)


async def _ours_text_untimed(scope: Scope, receive: Receive, send: Send, tokens: int) -> None:
    response = llm_stream(create(tokens), format="text", idle_timeout=None, send_timeout=None)
    await response(scope, receive, send)


async def _ours_sse_untimed(scope: Scope, receive: Receive, send: Send, tokens: int) -> None:
    response = llm_stream(create(tokens), format="sse", idle_timeout=None, send_timeout=None)
    await response(scope, receive, send)


async def _hand_text(scope: Scope, receive: Receive, send: Send, tokens: int) -> None:
    async def gen() -> AsyncIterator[str]:
        stream = await create(tokens)
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                yield chunk.choices[0].delta.content

    await StreamingResponse(gen(), media_type="text/plain")(scope, receive, send)


async def _hand_sse(scope: Scope, receive: Receive, send: Send, tokens: int) -> None:
    async def gen() -> AsyncIterator[str]:
        stream = await create(tokens)
        async for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                yield hand_sse_frame(chunk.choices[0].delta.content)

    await StreamingResponse(gen(), media_type="text/event-stream")(scope, receive, send)


async def _sdk_only(scope: Scope, receive: Receive, send: Send, tokens: int) -> None:
    stream = await create(tokens)
    count = 0
    async for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            count += 1
    await _plain(send, 200, str(count).encode())


async def _plain(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


ROUTES: dict[str, Handler] = {
    "/llm/ours_text": _ours_text,
    "/llm/ours_sse": _ours_sse,
    "/llm/ours_text_untimed": _ours_text_untimed,
    "/llm/ours_sse_untimed": _ours_sse_untimed,
    "/llm/hand_text": _hand_text,
    "/llm/hand_sse": _hand_sse,
    "/llm/ours_ui": _ours_ui,
    "/llm/hand_ui": _hand_ui,
    "/llm/ours_ag_ui": _ours_ag_ui,
    "/llm/hand_ag_ui": _hand_ag_ui,
    "/llm/sdk_only": _sdk_only,
}

if os.environ.get("FSK_BENCH_LANGCHAIN"):
    # Only in a LangChain run: its imports would otherwise sit in every run's heap.
    from bench._langchain_apps import ROUTES as LANGCHAIN_ROUTES

    ROUTES.update(LANGCHAIN_ROUTES)

_profiler: cProfile.Profile | None = None


async def _control(send: Send, path: str, query: dict[str, list[str]]) -> None:
    """``/health``, ``/cpu`` and the ``/profile/*`` switches."""
    global _profiler
    if path == "/health":
        await _plain(send, 200, b"ok")
    elif path == "/cpu":
        # CLOCK_PROCESS_CPUTIME_ID counts every thread and is far finer than /proc's ticks.
        await _plain(send, 200, repr(process_time()).encode())
    elif path == "/profile/start":
        # CPU time of the event loop's thread (where every route runs), not wall time, so
        # time spent descheduled on a busy machine is not charged to whatever was running.
        _profiler = cProfile.Profile(thread_time)
        _profiler.enable()
        await _plain(send, 200, b"profiling")
    elif path == "/profile/stop" and _profiler is not None and query.get("file"):
        profiler, _profiler = _profiler, None
        profiler.disable()
        profiler.dump_stats(query["file"][-1])
        await _plain(send, 200, b"saved")
    else:
        await _plain(send, 404, f"no route {path}".encode())


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    """Route one benchmark request; no middleware, so every variant pays the same toll."""
    if scope["type"] != "http":
        return  # lifespan is off in the bench; nothing else is served
    path = scope["path"]
    query = parse_qs(scope["query_string"].decode("latin-1"))
    handler = ROUTES.get(path)
    if handler is None:
        await _control(send, path, query)
        return
    try:
        tokens = int(query.get("tokens", [str(DEFAULT_TOKENS)])[-1])
    except ValueError:
        tokens = 0
    if not 1 <= tokens <= MAX_TOKENS:
        await _plain(send, 400, f"tokens must be an integer in 1..{MAX_TOKENS}\n".encode())
        return
    await handler(scope, receive, send, tokens)
