"""A one-page demo: a streamed chat, an SSE clock, and the buffering trap side by side.

The chat uses a built-in scripted model, so it runs without keys or network.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from importlib import resources

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import Route

from .._response import stream_response
from .._sse import ServerSentEvent
from .._sse_response import sse_response

SCRIPTED_ANSWER = (
    "Streaming works when every layer lets each chunk through as soon as it exists: "
    "the browser must not sniff, the proxy must not buffer, gzip must not wait for more, "
    "and the server must notice when you leave. This answer arrives token by token. "
    "監視カメラの映像もストリーミングできます。"
)


def scripted_tokens(prompt: str) -> Iterator[str]:
    """A stand-in model: split the answer into small tokens."""
    words = f"You asked: “{prompt.strip()[:200]}”. {SCRIPTED_ANSWER}".split(" ")
    for word in words:
        yield word + " "


async def chat(request: Request) -> Response:
    prompt = request.query_params.get("prompt", "Why does my stream arrive all at once?")

    async def tokens(last_event_id: str | None) -> AsyncIterator[ServerSentEvent]:
        start = int(last_event_id) + 1 if last_event_id else 0
        for index, token in enumerate(scripted_tokens(prompt)):
            if index < start:
                continue
            await anyio.sleep(0.06)
            yield ServerSentEvent(data={"text": token}, event="token", id=str(index))
        yield ServerSentEvent(data={"finish_reason": "stop"}, event="done")

    return sse_response(tokens, ping=5)


def trap_source() -> Iterator[str]:
    # A few short lines, 300 ms apart: below the ~1 KiB a browser sniffs before rendering.
    for n in range(1, 11):
        yield f"line {n} of 10\n"
        time.sleep(0.3)


async def trap_plain(request: Request) -> Response:
    return StreamingResponse(trap_source(), media_type="text/plain")


async def trap_ours(request: Request) -> Response:
    return stream_response(trap_source(), media_type="text/plain")


async def clock(request: Request) -> Response:
    async def ticks() -> AsyncIterator[ServerSentEvent]:
        while True:
            yield ServerSentEvent(data=time.strftime("%H:%M:%S"), event="tick")
            await anyio.sleep(1)

    return sse_response(ticks(), ping=15)


async def index(request: Request) -> Response:
    page = resources.files(__package__).joinpath("index.html").read_text(encoding="utf-8")
    return HTMLResponse(page)


def create_app() -> Starlette:
    """The demo as a Starlette app (``uvicorn --factory faststream_kit._demo:create_app``)."""
    return Starlette(
        routes=[
            Route("/", index),
            Route("/chat", chat),
            Route("/clock", clock),
            Route("/trap/plain", trap_plain),
            Route("/trap/ours", trap_ours),
        ]
    )
