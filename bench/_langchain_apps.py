"""The LangChain routes of ``bench/_llm_apps.py``: one ``ChatOpenAI`` on the same upstream.

Every route streams the same ``chat.astream(...)`` of ``tokens`` tokens (langchain-openai over
the openai SDK, talking to ``bench/_openai_upstream.py``) and differs only in what turns it
into a response:

==========================  ========================================================================
``/llm/lc_ours_<format>``   ``llm_stream(chat.astream(...), format=<format>)``, for every format
``/llm/lc_hand_text``       ``StreamingResponse`` of ``chunk.content`` for each chunk of
                            ``chat.astream(...)`` (``text/plain``): the loop people write
``/llm/lc_sdk_only``        reads ``chat.astream(...)`` to the end and answers the token count: the
                            floor, what LangChain and the SDK cost with nothing sent
==========================  ========================================================================
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from langchain_openai import ChatOpenAI
from starlette.responses import StreamingResponse
from starlette.types import Receive, Scope, Send

from faststream_kit import llm_stream
from faststream_kit._llm._formats import FORMATS

__all__ = ["ROUTES"]

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
    **{f"/llm/lc_ours_{name}": _ours(name) for name in FORMATS},
    "/llm/lc_hand_text": _hand_text,
    "/llm/lc_sdk_only": _sdk_only,
}
