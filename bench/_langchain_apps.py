"""The LangChain routes of ``bench/_llm_apps.py``: one ``ChatOpenAI`` on the same upstream.

Every route streams the same ``chat.astream(...)`` of ``tokens`` tokens (langchain-openai over
the openai SDK, talking to ``bench/_openai_upstream.py``) and differs only in what turns it
into a response:

==========================  ========================================================================
``/llm/lc_ours_<format>``   ``llm_stream(chat.astream(...), format=<format>)``, for every format
``/llm/lc_hand_<format>``   ``StreamingResponse`` of a loop over ``chat.astream(...)`` writing that
                            format by hand, as people do: ``chunk.content`` (``text``), SSE
                            ``data: {"text": ...}`` (``sse``), NDJSON lines (``ndjson``),
                            ``chat.completion.chunk`` SSE ending in ``[DONE]`` (``openai``), the
                            AI SDK UI parts (``ui``) and an AG-UI run (``ag_ui``), with the same
                            frames as the OpenAI and Anthropic routes' hand loops
``/llm/lc_sdk_only``        reads ``chat.astream(...)`` to the end and answers the token count: the
                            floor, what LangChain and the SDK cost with nothing sent
==========================  ========================================================================

``FSK_BENCH_LANGCHAIN_CHUNK_TIMEOUT`` sets ``ChatOpenAI(stream_chunk_timeout=...)``: unset or
``0`` is ``None`` (no ``asyncio.wait_for`` per chunk, as docs/llm.md advises); ``120`` is
ChatOpenAI's own default (``bench/llm.py --langchain-default-timeout`` sets it).
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from bench._anthropic_apps import HAND_FRAMES
from bench._llm_apps import (
    HAND_AG_UI_END,
    HAND_AG_UI_START,
    HAND_UI_END,
    HAND_UI_START,
    hand_ag_ui_delta,
    hand_sse_frame,
    hand_ui_delta,
    sse_data,
)
from langchain_openai import ChatOpenAI
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from faststream_kit import llm_stream
from faststream_kit._llm._formats import FORMATS

__all__ = ["HAND_LOOPS", "ROUTES", "route_name"]

Handler = Callable[[Scope, Receive, Send, int], Awaitable[None]]

chat = ChatOpenAI(
    model="gpt-4o-mini",
    base_url=os.environ.get("FSK_BENCH_UPSTREAM", "http://127.0.0.1:8001/v1"),
    api_key="sk-bench",  # type: ignore[arg-type]
    max_retries=0,
    stream_usage=True,
    # As docs/llm.md advises with llm_stream (whose idle_timeout does the same job): no
    # asyncio.wait_for per chunk. FSK_BENCH_LANGCHAIN_CHUNK_TIMEOUT=120 measures the default.
    stream_chunk_timeout=float(os.environ.get("FSK_BENCH_LANGCHAIN_CHUNK_TIMEOUT", "0")) or None,
)
MESSAGES = [("user", "Stream the benchmark tokens.")]


def astream(tokens: int) -> AsyncIterator[Any]:
    """The one stream every route reads (the upstream sends ``max_completion_tokens`` tokens)."""
    return chat.astream(MESSAGES, max_tokens=tokens)


def _ours(format: Any) -> Handler:
    async def handle(scope: Scope, receive: Receive, send: Send, tokens: int) -> None:
        await llm_stream(astream(tokens), format=format)(scope, receive, send)

    return handle


async def _hand_text(scope: Scope, receive: Receive, send: Send, tokens: int) -> None:
    async def gen() -> AsyncIterator[Any]:
        async for chunk in astream(tokens):
            yield chunk.content

    await StreamingResponse(gen(), media_type="text/plain")(scope, receive, send)


HandLoop = tuple[str, list[str], Callable[[str], str], list[str]]
"""A hand-written format: media type, what goes before the tokens, one text delta's frame
(only for non-empty ``chunk.content``), what goes after the last one."""

HAND_LOOPS: dict[str, HandLoop] = {
    "sse": ("text/event-stream", [], hand_sse_frame, []),
    "ndjson": ("application/x-ndjson", [], HAND_FRAMES["ndjson"][1], []),
    "openai": ("text/event-stream", [], HAND_FRAMES["openai"][1], [HAND_FRAMES["openai"][2]]),
    "ui": (
        "text/event-stream",
        [sse_data(part) for part in HAND_UI_START],
        hand_ui_delta,
        [*(sse_data(part) for part in HAND_UI_END), "data: [DONE]\n\n"],
    ),
    "ag-ui": (
        "text/event-stream",
        [sse_data(part) for part in HAND_AG_UI_START],
        hand_ag_ui_delta,
        [sse_data(part) for part in HAND_AG_UI_END],
    ),
}
"""The loops people write per format; ``bench/llm.py`` sizes the bodies from them."""


def _hand(fmt: str) -> Handler:
    media_type, start, frame, end = HAND_LOOPS[fmt]

    async def handle(scope: Scope, receive: Receive, send: Send, tokens: int) -> None:
        async def gen() -> AsyncIterator[str]:
            for part in start:
                yield part
            async for chunk in astream(tokens):
                if chunk.content:
                    yield frame(chunk.content)
            for part in end:
                yield part

        await StreamingResponse(gen(), media_type=media_type)(scope, receive, send)

    return handle


def route_name(fmt: str) -> str:
    """``ag-ui`` -> ``ag_ui``, as the route and result names have it."""
    return fmt.replace("-", "_")


async def _sdk_only(scope: Scope, receive: Receive, send: Send, tokens: int) -> None:
    count = 0
    async for chunk in astream(tokens):
        if chunk.content:
            count += 1
    body = str(count).encode()
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


ROUTES: dict[str, Handler] = {
    **{f"/llm/lc_ours_{route_name(name)}": _ours(name) for name in FORMATS},
    "/llm/lc_hand_text": _hand_text,
    **{f"/llm/lc_hand_{route_name(fmt)}": _hand(fmt) for fmt in HAND_LOOPS},
    "/llm/lc_sdk_only": _sdk_only,
}
