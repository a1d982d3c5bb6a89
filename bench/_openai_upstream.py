"""A minimal OpenAI-compatible upstream for ``bench/llm.py``: as fast as an upstream can be.

``POST /v1/chat/completions`` answers every request with the same pre-encoded
``text/event-stream`` body: a role chunk, ``max_tokens`` content chunks (default 5,000), a
``finish_reason: "stop"`` chunk, a usage chunk (``choices: []``) and ``data: [DONE]``, exactly
as the OpenAI API streams with ``stream_options={"include_usage": true}``. The body is built
once per token count and sent in 64 KiB writes with a ``Content-Length``, so the upstream costs
next to nothing and the app server under test spends its time on the stream, not on waiting.

``GET /health`` answers ``200 ok`` (the readiness probe), ``GET /cpu`` this process's CPU
seconds so far. Run it alone with ``uvicorn bench._openai_upstream:app --lifespan off``.

:func:`tokens` is the token sequence, shared with the runner so it can check every response.
"""

from __future__ import annotations

import json
from functools import lru_cache
from itertools import cycle, islice
from time import process_time
from typing import Any

__all__ = ["DEFAULT_TOKENS", "MAX_TOKENS", "app", "tokens", "usage"]

DEFAULT_TOKENS = 5_000
MAX_TOKENS = 100_000
"""Bounds what a request may ask for, so a typo cannot keep a server busy for minutes."""
WRITE_BYTES = 64 << 10
PROMPT_TOKENS = 17

_VOCABULARY = (
    "The", " quick", " brown", " fox", " jumps", " over", " the", " lazy", " dog", ".",
    " Streaming", " tokens", " one", " by", " one", ",", " with", " \"quotes\"", " and",
    " accents", ":", " café", " naïve", " —", " 東京", " 🙂", "\n\n", "-", " `code`", "!",
    " 42", " µs",
)  # fmt: skip
"""Short pieces like a tokenizer's, with JSON escapes, multi-byte UTF-8 and newlines."""


def tokens(count: int = DEFAULT_TOKENS) -> list[str]:
    """The ``count`` content tokens every stream carries, in order."""
    return list(islice(cycle(_VOCABULARY), count))


def usage(count: int) -> dict[str, int]:
    """The usage the final chunk reports for ``count`` tokens."""
    return {
        "prompt_tokens": PROMPT_TOKENS,
        "completion_tokens": count,
        "total_tokens": PROMPT_TOKENS + count,
    }


_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


@lru_cache(maxsize=8)
def _body(count: int) -> tuple[bytes, ...]:
    """The whole SSE body for ``count`` tokens, cut into ``WRITE_BYTES`` pieces."""
    prefix = {
        "id": "chatcmpl-bench0000000000000000000000",
        "object": "chat.completion.chunk",
        "created": 1_700_000_000,
        "model": "gpt-4o-mini-2024-07-18",
        "service_tier": "default",
        "system_fingerprint": "fp_bench",
    }

    def chunk(choices: list[dict[str, Any]], **extra: Any) -> bytes:
        return b"data: " + _json({**prefix, "choices": choices, **extra}).encode() + b"\n\n"

    def choice(delta: dict[str, Any], finish_reason: str | None = None) -> dict[str, Any]:
        return {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}

    events = [chunk([choice({"role": "assistant", "content": "", "refusal": None})], usage=None)]
    events += [chunk([choice({"content": token})], usage=None) for token in tokens(count)]
    events.append(chunk([choice({}, "stop")], usage=None))
    events.append(chunk([], usage=usage(count)))
    events.append(b"data: [DONE]\n\n")
    body = b"".join(events)
    return tuple(body[i : i + WRITE_BYTES] for i in range(0, len(body), WRITE_BYTES))


async def _read_json(receive: Any) -> dict[str, Any]:
    body = b""
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return {}
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        return {}
    return data if isinstance(data, dict) else {}


async def _plain(send: Any, status: int, body: bytes) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Serve the pre-built stream; no routing framework, so it costs next to nothing."""
    if scope["type"] != "http":
        return
    path = scope["path"]
    if path == "/health":
        await _plain(send, 200, b"ok")
        return
    if path == "/cpu":
        await _plain(send, 200, repr(process_time()).encode())
        return
    if path != "/v1/chat/completions" or scope["method"] != "POST":
        await _plain(send, 404, f"no route {scope['method']} {path}".encode())
        return
    request = await _read_json(receive)
    # langchain-openai sends max_tokens as max_completion_tokens, as OpenAI now asks.
    count = request.get("max_tokens") or request.get("max_completion_tokens") or DEFAULT_TOKENS
    if not isinstance(count, int) or not 1 <= count <= MAX_TOKENS:
        await _plain(send, 400, f"max_tokens must be an integer in 1..{MAX_TOKENS}".encode())
        return
    pieces = _body(count)
    headers = [
        (b"content-type", b"text/event-stream; charset=utf-8"),
        (b"content-length", str(sum(map(len, pieces))).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for piece in pieces:
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
