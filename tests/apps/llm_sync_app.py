"""The seed's pattern: a sync ``OpenAI`` client streaming from ``def`` routes, in its own process.

``FASTSTREAM_KIT_OPENAI_BASE_URL`` points the client at the scripted OpenAI-compatible peer.
``/chat`` streams through ``llm_stream``; ``/chat-handwritten`` is the loop everyone writes
(a ``StreamingResponse`` over a generator of the sync stream), kept as the control;
``/ping`` is the trivial ``def`` endpoint whose latency the load test measures.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from fastapi import FastAPI
from openai import OpenAI, Stream
from openai.types.chat import ChatCompletionChunk, ChatCompletionMessageParam
from starlette.responses import StreamingResponse

from faststream_kit import StreamResponse, llm_stream

MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "count"}]

app = FastAPI()
client = OpenAI(
    base_url=os.environ["FASTSTREAM_KIT_OPENAI_BASE_URL"], api_key="sk-load", max_retries=0
)


def open_stream(model: str) -> Stream[ChatCompletionChunk]:
    return client.chat.completions.create(model=model, messages=MESSAGES, stream=True)


@app.get("/chat")
def chat(model: str = "load") -> StreamResponse:
    return llm_stream(open_stream(model), format="text")


@app.get("/chat-handwritten")
def chat_handwritten(model: str = "load") -> StreamingResponse:
    stream = open_stream(model)

    def text() -> Iterator[str]:
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                yield chunk.choices[0].delta.content

    return StreamingResponse(text(), media_type="text/plain")


@app.get("/ping")
def ping() -> dict[str, bool]:
    return {"ok": True}
