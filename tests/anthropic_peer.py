"""A scripted Anthropic Messages API server that the real ``anthropic`` SDK talks to.

The Anthropic tests of ``llm_stream`` need an upstream that streams exactly what a test asks
for (thinking, text, tool use, usage, pings, in-band errors, dropped connections, HTTP errors)
and reports what the client did (its headers and body, whether and when it went away). This
module is that upstream, shaped like ``tests/openai_peer.py``. It knows nothing about
faststream-kit: its streaming body is plain ASGI with its own ``receive()`` watcher, so a bug in
the code under test cannot hide a disconnect here.

```python notest
with ScriptedAnthropic() as server:
    server.script("slow", Script(tokens=["a", "b"], delay_seconds=0.05))
    client = Anthropic(base_url=server.base_url, api_key="sk-ant-test", max_retries=0)
    stream = client.messages.create(model="slow", max_tokens=64, messages=[...], stream=True)
    ...
    record = server.wait_for_request(1)
    assert record.wait_disconnected(timeout=1.0)
```

The wire format is the Messages streaming protocol as the SDK parses it
(``anthropic/_streaming.py``, ``anthropic/lib/streaming/_messages.py``): every event is
``event: <type>\\ndata: {"type": <type>, ...}\\n\\n``, in this order::

    message_start        {"message": {..., "content": [], "usage": {"input_tokens": n, ...}}}
    ping                 (the SDK skips it)
    content_block_start  {"index": i, "content_block": {"type": "thinking" | "text" | "tool_use"}}
    content_block_delta  {"index": i, "delta": {"type": "thinking_delta" | "signature_delta" |
                          "text_delta" | "input_json_delta", ...}}
    content_block_stop   {"index": i}
    message_delta        {"delta": {"stop_reason": ..., "stop_sequence": null},
                          "usage": {"output_tokens": n}}
    message_stop

An ``event: error`` (``{"type": "error", "error": {"type": "overloaded_error", ...}}``) can
replace the rest of the stream; the SDK raises it as an ``APIStatusError`` whose status is
the stream's own 200. There is no ``[DONE]``: the body ends after ``message_stop``.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, Literal

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .scripted_peer import PeerDroppedConnection, ScriptedServer

__all__ = [
    "FAILURES",
    "RecordedRequest",
    "Script",
    "ScriptedAnthropic",
    "ToolUse",
    "Usage",
    "create_app",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

Failure = Literal["overloaded", "api_error", "drop", "stall", "bad_json", "truncate"]
FAILURES: tuple[Failure, ...] = (
    "overloaded",
    "api_error",
    "drop",
    "stall",
    "bad_json",
    "truncate",
)
Outcome = Literal["completed", "failed", "http_error", "dropped", "disconnected", "cancelled"]


# --------------------------------------------------------------------------- scripts


@dataclass(frozen=True)
class ToolUse:
    """One ``tool_use`` block; ``input_json`` goes out in ``chunks`` ``input_json_delta``\\s."""

    id: str
    name: str
    input_json: str
    chunks: int = 3

    def input_chunks(self) -> list[str]:
        """``input_json`` split into at most ``chunks`` non-empty, nearly equal pieces."""
        text = self.input_json
        count = max(1, min(self.chunks, len(text)))
        size, extra = divmod(len(text), count)
        pieces, start = [], 0
        for index in range(count):
            end = start + size + (1 if index < extra else 0)
            pieces.append(text[start:end])
            start = end
        return [piece for piece in pieces if piece]


@dataclass(frozen=True)
class Usage:
    """``input_tokens`` go out in ``message_start``, ``output_tokens`` in ``message_delta``."""

    input_tokens: int
    output_tokens: int
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


@dataclass
class Script:
    """What the server answers to one request.

    Order of a successful stream: a thinking block (``thinking`` deltas, then one
    ``signature_delta``), a text block (``tokens``), one ``tool_use`` block per tool call,
    ``message_delta`` (stop reason, output tokens), ``message_stop``. A ``ping`` follows
    ``message_start`` (as the API sends it) and, with ``ping_every_tokens=n``, every ``n``-th
    text token. ``first_token_delay_seconds`` comes before the first delta of any kind;
    ``delay_seconds`` before every later delta and before a scripted failure.
    ``headers_delay_seconds`` holds the response headers back (``create()`` itself waits).

    ``fail_after_tokens=n`` replaces the stream after ``n`` text tokens with ``failure``:

    - ``"overloaded"``: ``event: error`` with an ``overloaded_error``, then the body ends (the
      API's way of saying it is overloaded once the stream has begun);
    - ``"api_error"``: the same with an ``error_type`` error (``api_error`` unless set) and
      ``error_message``;
    - ``"drop"``: the connection closes mid-body (no final chunk of the chunked encoding);
    - ``"stall"``: nothing more for ``stall_seconds`` (or until the client leaves), then a drop;
    - ``"bad_json"``: a ``content_block_delta`` whose data is not JSON, then the body ends;
    - ``"truncate"``: the body ends properly but early, without ``message_stop`` (what a
      proxy that gives up on a long response can look like).

    ``http_status`` (>= 400) answers with that status, ``http_headers`` and a JSON error body
    shaped like Anthropic's (``{"type": "error", "error": {"type", "message"}, "request_id"}``;
    ``error_body`` replaces it). A 401 quotes the API key it received, so a test can prove
    the key never reaches its own client. ``http_headers`` also go out on successful streams.
    """

    tokens: list[str] = field(default_factory=lambda: ["Hello", ",", " world", "!"])
    delay_seconds: float = 0.0
    first_token_delay_seconds: float = 0.0
    headers_delay_seconds: float = 0.0
    thinking: list[str] = field(default_factory=list)
    signature: str = "EqQBCkYIBxgCKkBzaWduYXR1cmU="
    tool_uses: list[ToolUse] = field(default_factory=list)
    usage: Usage = field(default_factory=lambda: Usage(input_tokens=10, output_tokens=5))
    stop_reason: str | None = None
    ping_every_tokens: int = 0
    fail_after_tokens: int | None = None
    failure: Failure = "overloaded"
    error_type: str = "api_error"
    error_message: str = "Internal server error"
    stall_seconds: float = 30.0
    http_status: int | None = None
    http_headers: dict[str, str] = field(default_factory=dict)
    error_body: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        for name in (
            "delay_seconds",
            "first_token_delay_seconds",
            "headers_delay_seconds",
            "stall_seconds",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"Script.{name} must be >= 0, got {getattr(self, name)!r}")
        if self.failure not in FAILURES:
            raise ValueError(f"Script.failure must be one of {FAILURES}, got {self.failure!r}")
        if self.fail_after_tokens is not None and self.fail_after_tokens < 0:
            raise ValueError(
                f"Script.fail_after_tokens must be >= 0 or None, got {self.fail_after_tokens!r}"
            )
        if self.http_status is not None and not 400 <= self.http_status <= 599:
            raise ValueError(f"Script.http_status must be 400-599, got {self.http_status!r}")
        if self.ping_every_tokens < 0:
            raise ValueError(
                f"Script.ping_every_tokens must be >= 0, got {self.ping_every_tokens!r}"
            )

    @property
    def resolved_stop_reason(self) -> str:
        if self.stop_reason is not None:
            return self.stop_reason
        return "tool_use" if self.tool_uses else "end_turn"


# --------------------------------------------------------------------------- recording


@dataclass
class RecordedRequest:
    """One request as the server saw it. Times are ``time.monotonic()`` of this process."""

    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any
    script_name: str  # the request's model
    started_at: float
    client_port: int | None = None  # tells apart the client's connections
    disconnected: bool = False
    disconnected_at: float | None = None
    tokens_sent: int = 0
    token_sent_at: list[float] = field(default_factory=list)
    completed: bool = False
    outcome: Outcome | None = None
    finished_at: float | None = None
    _disconnected_event: threading.Event = field(
        default_factory=threading.Event, repr=False, compare=False
    )
    _finished_event: threading.Event = field(
        default_factory=threading.Event, repr=False, compare=False
    )

    @property
    def api_key(self) -> str | None:
        """The key the client sent: ``x-api-key``, or an ``Authorization: Bearer`` token."""
        key = self.headers.get("x-api-key")
        if key is not None:
            return key
        authorization = self.headers.get("authorization", "")
        if authorization.lower().startswith("bearer "):
            return authorization[len("bearer ") :]
        return None

    def wait_disconnected(self, timeout: float = 5.0) -> bool:
        """Block until the client went away mid-response; False if it did not in time."""
        return self._disconnected_event.wait(timeout)

    def wait_finished(self, timeout: float = 5.0) -> bool:
        """Block until the server is done with this request, however it ended."""
        return self._finished_event.wait(timeout)

    def _mark_disconnected(self) -> None:
        if not self.disconnected:
            self.disconnected_at = time.monotonic()
            self.disconnected = True
            self._disconnected_event.set()

    def _mark_finished(self, outcome: Outcome) -> None:
        self.outcome = outcome
        self.completed = outcome == "completed"
        self.finished_at = time.monotonic()
        self._finished_event.set()


# --------------------------------------------------------------------------- wire


def _event(event_type: str, **fields: Any) -> bytes:
    data = json.dumps({"type": event_type, **fields}, separators=(",", ":"))
    return f"event: {event_type}\ndata: {data}\n\n".encode()


_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def _error_object(error_type: str, message: str) -> dict[str, Any]:
    return {"type": "error", "error": {"type": error_type, "message": message}}


def _default_error_body(status: int, api_key: str | None) -> dict[str, Any]:
    error_type = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    if status == 401:
        message = f"invalid x-api-key: {api_key}"
    elif status == 429:
        message = "Number of request tokens has exceeded your per-minute rate limit"
    elif status == 529:
        message = "Overloaded"
    else:
        message = f"Scripted HTTP {status}"
    return {**_error_object(error_type, message), "request_id": f"req_{uuid.uuid4().hex[:24]}"}


class _Body:
    """The streaming side of one response: sends events and counts tokens into the record."""

    def __init__(self, send: Send, record: RecordedRequest, script: Script) -> None:
        self._send = send
        self.record = record
        self.script = script
        self.ending = False  # the final body message is on its way; not a disconnect
        self._deltas = 0

    async def start(self, status: int, headers: dict[str, str]) -> None:
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        await self._send({"type": "http.response.start", "status": status, "headers": raw})

    async def frame(self, data: bytes, *, token: bool = False) -> None:
        await self._send({"type": "http.response.body", "body": data, "more_body": True})
        if token:
            self.record.tokens_sent += 1
            self.record.token_sent_at.append(time.monotonic())

    async def emit(self, event_type: str, *, token: bool = False, **fields: Any) -> None:
        await self.frame(_event(event_type, **fields), token=token)

    async def pace(self) -> None:
        """Wait the scripted time before the next delta (or the failure replacing it)."""
        first = self._deltas == 0
        self._deltas += 1
        seconds = self.script.first_token_delay_seconds if first else self.script.delay_seconds
        if seconds:
            await anyio.sleep(seconds)

    async def end(self, data: bytes = b"") -> None:
        self.ending = True
        await self._send({"type": "http.response.body", "body": data, "more_body": False})


# --------------------------------------------------------------------------- messages


async def _stream_message(body: _Body, request: dict[str, Any]) -> Outcome:
    script = body.script
    usage = script.usage
    message = {
        "id": f"msg_{uuid.uuid4().hex[:24]}",
        "type": "message",
        "role": "assistant",
        "model": request.get("model") or "scripted",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": {
            "input_tokens": usage.input_tokens,
            "cache_creation_input_tokens": usage.cache_creation_input_tokens,
            "cache_read_input_tokens": usage.cache_read_input_tokens,
            "output_tokens": 1,  # the API counts the first token already
        },
    }
    await body.emit("message_start", message=message)
    await body.emit("ping")
    index = 0

    if script.thinking:
        block = {"type": "thinking", "thinking": "", "signature": ""}
        await body.emit("content_block_start", index=index, content_block=block)
        for piece in script.thinking:
            await body.pace()
            delta = {"type": "thinking_delta", "thinking": piece}
            await body.emit("content_block_delta", index=index, delta=delta)
        delta = {"type": "signature_delta", "signature": script.signature}
        await body.emit("content_block_delta", index=index, delta=delta)
        await body.emit("content_block_stop", index=index)
        index += 1

    if script.tokens or not script.tool_uses:
        block = {"type": "text", "text": ""}
        await body.emit("content_block_start", index=index, content_block=block)
        for done, token in enumerate(script.tokens):
            if script.fail_after_tokens == done:
                return await _fail(body, index)
            await body.pace()
            delta = {"type": "text_delta", "text": token}
            await body.emit("content_block_delta", token=True, index=index, delta=delta)
            if script.ping_every_tokens and (done + 1) % script.ping_every_tokens == 0:
                await body.emit("ping")
        if script.fail_after_tokens is not None and script.fail_after_tokens >= len(script.tokens):
            return await _fail(body, index)
        await body.emit("content_block_stop", index=index)
        index += 1
    elif script.fail_after_tokens is not None:
        return await _fail(body, index)

    for call in script.tool_uses:
        block = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
        await body.emit("content_block_start", index=index, content_block=block)
        for piece in call.input_chunks():
            await body.pace()
            delta = {"type": "input_json_delta", "partial_json": piece}
            await body.emit("content_block_delta", index=index, delta=delta)
        await body.emit("content_block_stop", index=index)
        index += 1

    delta = {"stop_reason": script.resolved_stop_reason, "stop_sequence": None}
    await body.emit("message_delta", delta=delta, usage={"output_tokens": usage.output_tokens})
    await body.end(_event("message_stop"))
    return "completed"


async def _fail(body: _Body, index: int) -> Outcome:
    script = body.script
    await body.pace()
    if script.failure == "stall":
        await anyio.sleep(script.stall_seconds)
        return "dropped"
    if script.failure == "drop":
        return "dropped"
    if script.failure == "truncate":
        await body.end()
        return "failed"
    if script.failure == "bad_json":
        await body.end(b'event: content_block_delta\ndata: {"type": "content_block_delta", \n\n')
        return "failed"
    if script.failure == "overloaded":
        error = _error_object("overloaded_error", "Overloaded")
    else:
        error = _error_object(script.error_type, script.error_message)
    await body.end(_event("error", error=error["error"]))
    return "failed"


# --------------------------------------------------------------------------- ASGI


class _ScriptedResponse:
    """Plain ASGI: answers one request while its own task watches ``receive()``.

    uvicorn reports a client that left only through ``receive()`` returning
    ``http.disconnect`` (it wakes at once when the socket closes), so the watcher records the
    time and cancels whatever the body is doing, including a sleep between tokens.
    """

    def __init__(self, record: RecordedRequest, script: Script, request: dict[str, Any]) -> None:
        self.record = record
        self.script = script
        self.request = request

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        body = _Body(send, self.record, self.script)
        outcome: Outcome = "disconnected"
        try:
            async with anyio.create_task_group() as tasks:

                async def watch_disconnect() -> None:
                    while (await receive())["type"] != "http.disconnect":
                        pass
                    if not body.ending:
                        self.record._mark_disconnected()
                        tasks.cancel_scope.cancel()

                tasks.start_soon(watch_disconnect)
                outcome = await self._respond(body)
                tasks.cancel_scope.cancel()
        except BaseException:
            if outcome == "disconnected" and not self.record.disconnected:
                outcome = "cancelled"  # server shutdown
            raise
        finally:
            self.record._mark_finished(outcome)
        if outcome == "dropped":
            raise PeerDroppedConnection(f"scripted drop after {self.record.tokens_sent} tokens")

    async def _respond(self, body: _Body) -> Outcome:
        script = self.script
        if script.headers_delay_seconds:
            await anyio.sleep(script.headers_delay_seconds)
        headers = {k.lower(): v for k, v in script.http_headers.items()}
        headers.setdefault("request-id", f"req_{uuid.uuid4().hex[:24]}")
        if script.http_status is not None:
            error = script.error_body or _default_error_body(
                script.http_status, self.record.api_key
            )
            content = json.dumps(error).encode()
            headers.setdefault("content-type", "application/json")
            headers["content-length"] = str(len(content))
            await body.start(script.http_status, headers)
            await body.end(content)
            return "http_error"
        headers = {
            "content-type": "text/event-stream; charset=utf-8",
            "cache-control": "no-cache",
            **headers,
        }
        await body.start(200, headers)
        return await _stream_message(body, self.request)


def create_app(peer: ScriptedAnthropic) -> Starlette:
    """The Starlette app serving ``POST /v1/messages`` for ``peer``."""

    async def messages(request: Request) -> Any:
        raw = await request.body()
        try:
            payload = json.loads(raw) if raw else {}
        except ValueError:
            payload = None
        name = payload.get("model") if isinstance(payload, dict) else None
        record = RecordedRequest(
            method=request.method,
            path=request.url.path,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=payload,
            script_name=str(name or ""),
            started_at=time.monotonic(),
            client_port=request.client.port if request.client else None,
        )
        peer._add_record(record)
        if not isinstance(payload, dict) or payload.get("stream") is not True:
            record._mark_finished("http_error")
            message = "the scripted Anthropic peer serves only JSON bodies with stream=true"
            error = _error_object("invalid_request_error", message)
            return JSONResponse(error, status_code=400)
        return _ScriptedResponse(record, peer.script_for(name), payload)

    return Starlette(routes=[Route("/v1/messages", messages, methods=["POST"])])


# --------------------------------------------------------------------------- server


class ScriptedAnthropic(ScriptedServer[Script, RecordedRequest]):
    """The scripted Anthropic API on ``127.0.0.1``, running while the ``with`` block runs.

    The request's ``model`` selects a script registered with :meth:`script`; any other
    model gets ``default``.
    """

    def __init__(self, default: Script | None = None, *, log_level: str = "warning") -> None:
        super().__init__(default or Script(), create_app, log_level=log_level)

    @property
    def base_url(self) -> str:
        """For ``Anthropic(base_url=...)`` / ``AsyncAnthropic(base_url=...)`` (the SDK adds
        ``/v1/messages``)."""
        return self.url
