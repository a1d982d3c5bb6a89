"""A minimal Anthropic Messages upstream for ``bench/llm.py``: as fast as an upstream can be.

``POST /v1/messages`` answers every request with the same pre-encoded ``text/event-stream``
body, exactly as the Messages API streams a text answer: ``message_start`` (input tokens), a
``ping``, ``content_block_start``, ``max_tokens`` ``text_delta`` events (default 5,000; the
tokens of ``bench/_openai_upstream.py``), ``content_block_stop``, ``message_delta``
(``end_turn``, output tokens) and ``message_stop``, so ``llm_stream`` reports the usage of
``bench/_openai_upstream.py`` for the same count. The body is built once per token count and
sent in 64 KiB writes with a ``Content-Length``, so the upstream costs next to nothing.

``GET /health`` answers ``200 ok``, ``GET /cpu`` this process's CPU seconds so far. Run it alone
with ``uvicorn bench._anthropic_upstream:app --lifespan off``.
"""

from __future__ import annotations

import json
from functools import lru_cache
from time import process_time
from typing import Any

from bench._openai_upstream import DEFAULT_TOKENS, MAX_TOKENS, PROMPT_TOKENS, WRITE_BYTES, tokens

__all__ = ["app"]

_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def _event(event_type: str, **fields: Any) -> bytes:
    data = _json({"type": event_type, **fields}).encode()
    return b"event: " + event_type.encode() + b"\ndata: " + data + b"\n\n"


@lru_cache(maxsize=8)
def _body(count: int) -> tuple[bytes, ...]:
    """The whole SSE body for ``count`` tokens, cut into ``WRITE_BYTES`` pieces."""
    message = {
        "id": "msg_bench000000000000000000",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": PROMPT_TOKENS,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 1,
        },
    }
    events = [
        _event("message_start", message=message),
        _event("content_block_start", index=0, content_block={"type": "text", "text": ""}),
        _event("ping"),
    ]
    events += [
        _event("content_block_delta", index=0, delta={"type": "text_delta", "text": token})
        for token in tokens(count)
    ]
    events.append(_event("content_block_stop", index=0))
    delta = {"stop_reason": "end_turn", "stop_sequence": None}
    events.append(_event("message_delta", delta=delta, usage={"output_tokens": count}))
    events.append(_event("message_stop"))
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
    if path != "/v1/messages" or scope["method"] != "POST":
        await _plain(send, 404, f"no route {scope['method']} {path}".encode())
        return
    request = await _read_json(receive)
    count = request.get("max_tokens") or DEFAULT_TOKENS
    if not isinstance(count, int) or not 1 <= count <= MAX_TOKENS:
        await _plain(send, 400, f"max_tokens must be an integer in 1..{MAX_TOKENS}".encode())
        return
    pieces = _body(count)
    headers = [
        (b"content-type", b"text/event-stream; charset=utf-8"),
        (b"content-length", str(sum(map(len, pieces))).encode()),
        (b"request-id", b"req_bench"),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for piece in pieces:
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
