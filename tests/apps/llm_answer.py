"""An LLM answer of five tokens 0.3 s apart, in the format named by the path (``/ui``, ...).

Served by uvicorn in a subprocess by ``tests/test_shutdown.py``, which sends it SIGTERM while
answers stream.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
from starlette.types import Receive, Scope, Send

from faststream_kit import llm_stream

TOKENS = ["one", " two", " three", " four", " five"]


async def model() -> AsyncIterator[str]:
    for token in TOKENS:
        yield token
        await anyio.sleep(0.3)


async def app(scope: Scope, receive: Receive, send: Send) -> None:
    if scope["type"] != "http":
        return  # no lifespan work
    fmt = scope["path"].strip("/")
    await llm_stream(model(), format=fmt)(scope, receive, send)  # type: ignore[arg-type]
