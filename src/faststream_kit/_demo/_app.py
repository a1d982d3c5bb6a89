"""A one-page demo: chat, S3 gallery, upstream proxy, the buffering trap, an SSE clock.

Everything runs locally without keys or accounts: the chat has a scripted model, the gallery
an embedded S3 server, the proxy an upstream service mounted in the same app.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from importlib import resources

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, Response, StreamingResponse
from starlette.routing import Mount, Route

from .._response import stream_response
from .._sse import ServerSentEvent
from .._sse_response import sse_response
from ._chat import about, chat
from ._gallery import gallery_info, media, running_gallery
from ._settings import DemoSettings
from ._ticker import proxied_ticker, upstream_service

TRAP_LINES = 10
TRAP_LINE_SECONDS = 0.3


def trap_source() -> Iterator[str]:
    # A few short lines, 300 ms apart: below the ~1 KiB a browser sniffs before rendering.
    for number in range(1, TRAP_LINES + 1):
        yield f"line {number} of {TRAP_LINES}\n"
        time.sleep(TRAP_LINE_SECONDS)  # a blocking source on purpose: both run it in a thread


async def trap_plain(request: Request) -> Response:
    return StreamingResponse(trap_source(), media_type="text/plain")


async def trap_ours(request: Request) -> Response:
    return stream_response(trap_source(), media_type="text/plain")


async def clock(request: Request) -> Response:
    async def ticks() -> AsyncIterator[ServerSentEvent]:
        while True:
            yield ServerSentEvent(data=time.strftime("%H:%M:%S"), event="tick")
            await anyio.sleep(1)

    return sse_response(ticks())


async def index(request: Request) -> Response:
    page = resources.files(__package__).joinpath("index.html").read_text(encoding="utf-8")
    return HTMLResponse(page)


def create_app(settings: DemoSettings | None = None) -> Starlette:
    """The demo as a Starlette app (``uvicorn --factory faststream_kit.demo:create_app``).

    ``settings`` defaults to :meth:`DemoSettings.from_env`.
    """
    settings = settings or DemoSettings.from_env()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        import httpx

        async with httpx.AsyncClient() as client, running_gallery(settings) as gallery:
            app.state.http = client  # one pool for every proxied request
            app.state.gallery = gallery
            yield

    app = Starlette(
        routes=[
            Route("/", index),
            Route("/chat", chat, methods=["POST"]),
            Route("/about", about),
            Route("/gallery", gallery_info),
            Route("/media/{name}", media, methods=["GET", "HEAD"]),
            Route("/proxy/ticker", proxied_ticker),
            Mount("/upstream", upstream_service()),
            Route("/trap/plain", trap_plain),
            Route("/trap/ours", trap_ours),
            Route("/clock", clock),
        ],
        lifespan=lifespan,
    )
    app.state.settings = settings
    return app
