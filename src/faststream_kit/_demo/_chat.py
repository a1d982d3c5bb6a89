"""The chat panel: ``llm_stream`` over a scripted model, or OpenAI when a key is set."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from .._errors import StreamError, error_response
from .._llm import llm_stream
from ._settings import DemoSettings

FORMATS = ("text", "sse", "ndjson", "openai", "ui")
DEFAULT_PROMPT = "Why does my stream arrive all at once?"
TOKEN_SECONDS = 0.04
SCRIPTED_ANSWER = (
    "Streaming works when every layer lets each chunk through as soon as it exists: "
    "the browser must not sniff, the proxy must not buffer, gzip must not wait for more, "
    "and the server must notice when you leave. This answer arrives token by token. "
    "監視カメラの映像もストリーミングできます。"
)


def scripted_tokens(prompt: str) -> Iterator[str]:
    """A stand-in model: the answer in small tokens, each word with its trailing space."""
    words = f"You asked: “{prompt.strip()[:200]}”. {SCRIPTED_ANSWER}".split(" ")
    for word in words:
        yield word + " "


async def scripted_model(prompt: str) -> AsyncIterator[str]:
    for token in scripted_tokens(prompt):
        await anyio.sleep(TOKEN_SECONDS)
        yield token


def model_source(settings: DemoSettings, prompt: str) -> Any:
    if settings.openai_model is None:
        return scripted_model(prompt)
    from openai import AsyncOpenAI

    client = AsyncOpenAI()  # reads OPENAI_API_KEY and OPENAI_BASE_URL
    # The un-awaited create(): llm_stream awaits it, so its errors become HTTP statuses.
    return client.chat.completions.create(
        model=settings.openai_model,
        messages=[{"role": "user", "content": prompt}],
        stream=True,
        stream_options={"include_usage": True},
    )


async def chat(request: Request) -> Response:
    """POST {"prompt", "format"}: the answer streamed in that format."""
    settings: DemoSettings = request.app.state.settings
    body = await request.json()
    prompt = str(body.get("prompt") or DEFAULT_PROMPT)
    answer_format = body.get("format", "sse")
    if answer_format not in FORMATS:
        message = f"format must be one of {', '.join(FORMATS)}"
        return error_response(StreamError(message, status_code=400, type="bad_request"))
    source = model_source(settings, prompt)
    return llm_stream(source, format=answer_format, model=settings.chat_model)


async def about(request: Request) -> Response:
    settings: DemoSettings = request.app.state.settings
    return JSONResponse({"model": settings.chat_model, "openai": settings.openai_model is not None})
