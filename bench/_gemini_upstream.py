"""A minimal Gemini API upstream for ``bench/llm.py``'s Gemini row: as fast as an upstream can be.

``POST /v1beta/models/{model}:streamGenerateContent?alt=sse`` answers with a pre-encoded
``text/event-stream`` body of ``generationConfig.maxOutputTokens`` frames (default 5,000), one
text part each, as the Gemini API streams them: every frame carries ``usageMetadata`` with the
prompt count, the last one ``finishReason: "STOP"`` and the full counts. Frames are separated by
CRLF CRLF, as Google's servers send them. The body is built once per token count and sent in
64 KiB writes with a ``Content-Length``, so the upstream costs next to nothing.

``GET /health`` answers ``200 ok``, ``GET /cpu`` this process's CPU seconds so far. The tokens
are ``bench/_openai_upstream.py``'s, so every provider's row streams the same text.
"""

from __future__ import annotations

import json
from functools import lru_cache
from time import process_time
from typing import Any

from bench._openai_upstream import DEFAULT_TOKENS, MAX_TOKENS, PROMPT_TOKENS, tokens

__all__ = ["app"]

WRITE_BYTES = 64 << 10

_json = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


@lru_cache(maxsize=8)
def _body(count: int) -> tuple[bytes, ...]:
    """The whole SSE body for ``count`` tokens, cut into ``WRITE_BYTES`` pieces."""
    prompt_usage = {"promptTokenCount": PROMPT_TOKENS, "totalTokenCount": PROMPT_TOKENS}
    final_usage = {
        "promptTokenCount": PROMPT_TOKENS,
        "candidatesTokenCount": count,
        "totalTokenCount": PROMPT_TOKENS + count,
    }
    pieces = tokens(count)

    def frame(index: int, token: str) -> bytes:
        candidate: dict[str, Any] = {"content": {"parts": [{"text": token}], "role": "model"}}
        last = index == len(pieces) - 1
        if last:
            candidate["finishReason"] = "STOP"
        candidate["index"] = 0
        data = {
            "candidates": [candidate],
            "usageMetadata": final_usage if last else prompt_usage,
            "modelVersion": "gemini-2.5-flash",
            "responseId": "bench-gemini-response-id",
        }
        return b"data: " + _json(data).encode() + b"\r\n\r\n"

    body = b"".join(frame(index, token) for index, token in enumerate(pieces))
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
    if not path.endswith(":streamGenerateContent") or scope["method"] != "POST":
        await _plain(send, 404, f"no route {scope['method']} {path}".encode())
        return
    request = await _read_json(receive)
    config = request.get("generationConfig") or {}
    count = config.get("maxOutputTokens") or DEFAULT_TOKENS
    if not isinstance(count, int) or not 1 <= count <= MAX_TOKENS:
        await _plain(send, 400, f"maxOutputTokens must be an integer in 1..{MAX_TOKENS}".encode())
        return
    pieces = _body(count)
    headers = [
        (b"content-type", b"text/event-stream"),
        (b"content-length", str(sum(map(len, pieces))).encode()),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    for piece in pieces:
        await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b"", "more_body": False})
