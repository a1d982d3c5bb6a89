"""A one-page demo: a streamed chat, an SSE clock, and the buffering trap side by side.

The chat uses a built-in scripted model, so it runs without keys or network.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Iterator
from importlib import resources
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .._llm import llm_stream
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
    """POST {"prompt", "format"}: the scripted model, or OpenAI when OPENAI_API_KEY is set."""
    body = await request.json()
    prompt = str(body.get("prompt") or "Why does my stream arrive all at once?")
    answer_format = body.get("format", "sse")
    if answer_format not in ("text", "sse", "ndjson", "openai", "ui"):
        return JSONResponse({"error": {"type": "bad_request", "message": "unknown format"}}, 400)
    return llm_stream(model_source(prompt), format=answer_format, model=model_name())


def model_name() -> str:
    return os.environ.get("OPENAI_MODEL", "gpt-4o-mini") if use_openai() else "scripted"


def use_openai() -> bool:
    return bool(os.environ.get("OPENAI_API_KEY"))


def model_source(prompt: str) -> Any:
    if use_openai():
        from openai import AsyncOpenAI

        client = AsyncOpenAI()  # reads OPENAI_API_KEY and OPENAI_BASE_URL
        return client.chat.completions.create(
            model=model_name(),
            messages=[{"role": "user", "content": prompt}],
            stream=True,
            stream_options={"include_usage": True},
        )
    return scripted_model(prompt)


async def scripted_model(prompt: str) -> AsyncIterator[str]:
    for token in scripted_tokens(prompt):
        await anyio.sleep(0.06)
        yield token


async def about(request: Request) -> Response:
    return JSONResponse({"model": model_name(), "openai": use_openai()})


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
            Route("/chat", chat, methods=["POST"]),
            Route("/about", about),
            Route("/clock", clock),
            Route("/trap/plain", trap_plain),
            Route("/trap/ours", trap_ours),
        ]
    )
