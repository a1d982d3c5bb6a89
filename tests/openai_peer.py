"""A scripted OpenAI-compatible HTTP server that the real ``openai`` SDK talks to.

The tests of ``llm_stream`` need an upstream that streams exactly what a test asks for (tokens,
delays, tool calls, reasoning, usage, mid-stream failures, dropped connections, HTTP errors) and
reports what the client did (its headers and body, whether and when it went away). This module is
that upstream. It knows nothing about faststream-kit: its streaming body is plain ASGI with its
own ``receive()`` watcher, so a bug in the code under test cannot hide a disconnect here.

```python notest
with ScriptedOpenAI() as server:
    server.script("slow", Script(tokens=["a", "b"], delay_seconds=0.05))
    client = OpenAI(base_url=server.base_url, api_key="sk-test", max_retries=0)
    stream = client.chat.completions.create(model="slow", messages=[...], stream=True)
    ...
    record = server.wait_for_request(1)
    assert record.wait_disconnected(timeout=1.0)
```

Wire formats follow the OpenAI API as the SDK parses it (``openai/_streaming.py``):

- Chat Completions: ``data: {chat.completion.chunk}\\n\\n`` ... ``data: [DONE]\\n\\n``. The usage
  chunk (``choices: []``) is sent when the request asks for it with
  ``stream_options.include_usage`` (as OpenAI does), or always with ``Script.usage_always``.
- Responses: ``event: <type>\\ndata: {"type": ..., "sequence_number": n, ...}\\n\\n``, no
  ``[DONE]``; the body simply ends after ``response.completed``.
- Azure: ``/openai/deployments/{deployment}/chat/completions?api-version=...`` picks the script
  by deployment name and sends Azure's prelude chunk (``choices: []``, ``object: ""``,
  ``prompt_filter_results``) before the first token.
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
    "WEATHER_ARGS",
    "RecordedRequest",
    "Script",
    "ScriptedOpenAI",
    "ToolCall",
    "Usage",
    "create_app",
    "weather_script",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

Failure = Literal[
    "error_payload", "responses_error", "response_failed", "drop", "stall", "bad_json"
]
FAILURES: tuple[Failure, ...] = (
    "error_payload",
    "responses_error",
    "response_failed",
    "drop",
    "stall",
    "bad_json",
)
Outcome = Literal["completed", "failed", "http_error", "dropped", "disconnected", "cancelled"]


# --------------------------------------------------------------------------- scripts


@dataclass(frozen=True)
class ToolCall:
    """One function call the model makes; ``arguments_json`` goes out in ``chunks`` deltas."""

    id: str
    name: str
    arguments_json: str
    chunks: int = 3

    def argument_chunks(self) -> list[str]:
        """``arguments_json`` split into at most ``chunks`` non-empty, nearly equal pieces."""
        text = self.arguments_json
        count = max(1, min(self.chunks, len(text)))
        size, extra = divmod(len(text), count)
        pieces, start = [], 0
        for index in range(count):
            end = start + size + (1 if index < extra else 0)
            pieces.append(text[start:end])
            start = end
        return [piece for piece in pieces if piece] or [""]


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int = 0
    cached_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass
class Script:
    """What the server answers to one request.

    Order of a successful stream: reasoning deltas, text tokens, tool calls, the finish, usage.
    ``first_token_delay_seconds`` comes before the first delta of any kind (after the headers
    and, for chat, the role chunk); ``delay_seconds`` before every later delta (reasoning, text,
    each tool-argument chunk) and before a scripted failure. ``headers_delay_seconds`` holds the
    response headers back (so ``create()`` itself waits: SDK read timeouts before headers).

    ``fail_after_tokens=n`` replaces the stream after ``n`` text tokens with ``failure``:

    - ``"error_payload"``: ``data: {"error": {...}}`` then the body ends; the SDK raises
      ``openai.APIError`` while iterating (both endpoints).
    - ``"responses_error"``: Responses ``event: error`` (``type``, ``code``, ``message``,
      ``param``, ``sequence_number``) then the body ends. On the chat endpoint, which has no
      such event, it is sent as ``"error_payload"``.
    - ``"response_failed"``: Responses ``response.failed`` (``response.status == "failed"``,
      ``response.error == {code, message}``) then the body ends. Chat: as ``"error_payload"``.
    - ``"drop"``: the connection closes mid-body (no final chunk of the chunked encoding).
    - ``"stall"``: nothing more is sent for ``stall_seconds`` (or until the client leaves),
      then the connection drops.
    - ``"bad_json"``: a ``data:`` line that is not JSON, then the body ends (both endpoints).

    ``http_status`` (>= 400) answers with that status, ``http_headers`` and a JSON error body
    shaped like OpenAI's (``error_body`` replaces it). A 401 echoes the API key it received in
    the message, as real servers do, so a test can prove the key never reaches its own client.
    ``http_headers`` are also sent on successful streams. ``drop_after_done`` closes a chat
    stream's connection right after ``data: [DONE]``, without ending the chunked body.
    """

    tokens: list[str] = field(default_factory=lambda: ["Hello", ",", " world", "!"])
    delay_seconds: float = 0.0
    first_token_delay_seconds: float = 0.0
    headers_delay_seconds: float = 0.0
    reasoning: list[str] = field(default_factory=list)
    tool_calls: list[ToolCall] = field(default_factory=list)
    usage: Usage | None = None
    usage_always: bool = False
    finish_reason: str | None = None
    fail_after_tokens: int | None = None
    failure: Failure = "error_payload"
    error_code: str = "server_error"
    error_message: str = "The server had an error while processing your request. Sorry about that!"
    stall_seconds: float = 30.0
    drop_after_done: bool = False
    http_status: int | None = None
    http_headers: dict[str, str] = field(default_factory=dict)
    error_body: dict[str, Any] | None = None
    azure_prelude: bool | None = None

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

    @property
    def resolved_finish_reason(self) -> str:
        if self.finish_reason is not None:
            return self.finish_reason
        return "tool_calls" if self.tool_calls else "stop"


WEATHER_ARGS = json.dumps({"city": "Oslo", "unit": "celsius"})


def weather_script() -> Script:
    """The answer the front-end tests stream: "The weather in Oslo" one token per 80 ms, then a
    ``get_weather`` call (id ``call_w1``, ``WEATHER_ARGS`` in three pieces) and usage 12 + 9."""
    return Script(
        tokens=["The", " weather", " in", " Oslo"],
        delay_seconds=0.08,
        tool_calls=[ToolCall("call_w1", "get_weather", WEATHER_ARGS, chunks=3)],
        usage=Usage(prompt_tokens=12, completion_tokens=9),
    )


# --------------------------------------------------------------------------- recording


@dataclass
class RecordedRequest:
    """One request as the server saw it. Times are ``time.monotonic()`` of this process."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: Any
    script_name: str  # the name that was looked up (model, or the Azure deployment)
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
        """The key the client sent: ``Authorization: Bearer`` or Azure's ``api-key``."""
        authorization = self.headers.get("authorization", "")
        if authorization.lower().startswith("bearer "):
            return authorization[len("bearer ") :]
        return self.headers.get("api-key")

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


def _sse(data: Any, event: str | None = None) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {payload}\n\n".encode()


def _error_object(code: str, message: str, error_type: str = "server_error") -> dict[str, Any]:
    return {"message": message, "type": error_type, "param": None, "code": code}


def _default_error_body(status: int, api_key: str | None, headers: dict[str, str]) -> Any:
    if status == 401:
        return {
            "error": _error_object(
                "invalid_api_key",
                f"Incorrect API key provided: {api_key}. You can find your API key at "
                "https://platform.openai.com/account/api-keys.",
                "invalid_request_error",
            )
        }
    if status == 429:
        wait = headers.get("retry-after", "20")
        return {
            "error": _error_object(
                "rate_limit_exceeded",
                f"Rate limit reached for requests. Please try again in {wait}s.",
                "requests",
            )
        }
    error_type = "server_error" if status >= 500 else "invalid_request_error"
    return {"error": _error_object(f"http_{status}", f"Scripted HTTP {status}", error_type)}


class _Body:
    """The streaming side of one response: sends frames and counts tokens into the record."""

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

    def failure_due(self, tokens_done: int) -> bool:
        return self.script.fail_after_tokens == tokens_done


# --------------------------------------------------------------------------- chat


def _chat_chunk(
    ids: dict[str, Any], delta: dict[str, Any], finish: str | None = None, **extra: Any
) -> dict[str, Any]:
    chunk = {
        **ids,
        "object": "chat.completion.chunk",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    chunk.update(extra)
    return chunk


_AZURE_FILTERS = {
    "hate": {"filtered": False, "severity": "safe"},
    "self_harm": {"filtered": False, "severity": "safe"},
    "sexual": {"filtered": False, "severity": "safe"},
    "violence": {"filtered": False, "severity": "safe"},
}


async def _stream_chat(body: _Body, request: dict[str, Any], azure: bool) -> Outcome:
    script = body.script
    ids = {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "created": int(time.time()),
        "model": request.get("model") or "scripted",
    }
    stream_options = request.get("stream_options") or {}
    send_usage = script.usage is not None and (
        script.usage_always or bool(stream_options.get("include_usage"))
    )
    # OpenAI sends "usage": null on every chunk once usage was asked for.
    extra: dict[str, Any] = {"usage": None} if send_usage else {}

    if script.azure_prelude if script.azure_prelude is not None else azure:
        # Azure's first chunk: no choices, empty id/object/model, the prompt's filter results.
        prelude = {
            "choices": [],
            "created": 0,
            "id": "",
            "model": "",
            "object": "",
            "prompt_filter_results": [
                {"prompt_index": 0, "content_filter_results": _AZURE_FILTERS}
            ],
        }
        await body.frame(_sse(prelude))
    await body.frame(
        _sse(_chat_chunk(ids, {"role": "assistant", "content": "", "refusal": None}, **extra))
    )

    for piece in script.reasoning:
        await body.pace()
        await body.frame(_sse(_chat_chunk(ids, {"reasoning_content": piece}, **extra)))

    for done, token in enumerate(script.tokens):
        if body.failure_due(done):
            return await _fail_chat(body)
        await body.pace()
        await body.frame(_sse(_chat_chunk(ids, {"content": token}, **extra)), token=True)
    if script.fail_after_tokens is not None and script.fail_after_tokens >= len(script.tokens):
        return await _fail_chat(body)

    for index, call in enumerate(script.tool_calls):
        for number, piece in enumerate(call.argument_chunks()):
            await body.pace()
            delta: dict[str, Any] = {"index": index, "function": {"arguments": piece}}
            if number == 0:
                delta.update(id=call.id, type="function")
                delta["function"]["name"] = call.name
            await body.frame(_sse(_chat_chunk(ids, {"tool_calls": [delta]}, **extra)))

    await body.frame(_sse(_chat_chunk(ids, {}, script.resolved_finish_reason, **extra)))
    if send_usage:
        assert script.usage is not None
        usage = {
            "prompt_tokens": script.usage.prompt_tokens,
            "completion_tokens": script.usage.completion_tokens,
            "total_tokens": script.usage.total_tokens,
            "prompt_tokens_details": {"cached_tokens": script.usage.cached_tokens},
            "completion_tokens_details": {"reasoning_tokens": script.usage.reasoning_tokens},
        }
        chunk = {**ids, "object": "chat.completion.chunk", "choices": [], "usage": usage}
        await body.frame(_sse(chunk))
    if script.drop_after_done:
        await body.frame(_sse("[DONE]"))
        return "dropped"
    await body.end(_sse("[DONE]"))
    return "completed"


async def _fail_chat(body: _Body) -> Outcome:
    script = body.script
    await body.pace()
    if script.failure in ("drop", "stall"):
        return await _abort(body)
    if script.failure == "bad_json":
        await body.end(b'data: {"choices": [\n\n')
        return "failed"
    # The SDK raises APIError for any data payload with an "error" key (_streaming.py).
    await body.end(_sse({"error": _error_object(script.error_code, script.error_message)}))
    return "failed"


async def _abort(body: _Body) -> Outcome:
    if body.script.failure == "stall":
        await anyio.sleep(body.script.stall_seconds)
    return "dropped"


# --------------------------------------------------------------------------- responses


class _Events:
    """Responses API events with a running ``sequence_number``."""

    def __init__(self, body: _Body) -> None:
        self.body = body
        self.sequence_number = 0

    async def emit(self, event_type: str, *, token: bool = False, **fields: Any) -> None:
        event = {"type": event_type, "sequence_number": self.sequence_number, **fields}
        self.sequence_number += 1
        await self.body.frame(_sse(event, event=event_type), token=token)


def _response_object(
    response_id: str, model: str, status: str, output: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "id": response_id,
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "error": None,
        "incomplete_details": None,
        "usage": None,
    }


def _response_usage(usage: Usage) -> dict[str, Any]:
    return {
        "input_tokens": usage.prompt_tokens,
        "input_tokens_details": {"cached_tokens": usage.cached_tokens, "cache_write_tokens": 0},
        "output_tokens": usage.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens,
    }


async def _stream_responses(body: _Body, request: dict[str, Any]) -> Outcome:
    script = body.script
    events = _Events(body)
    response_id = f"resp_{uuid.uuid4().hex[:24]}"
    model = request.get("model") or "scripted"
    output: list[dict[str, Any]] = []

    def response(status: str) -> dict[str, Any]:
        return _response_object(response_id, model, status, list(output))

    await events.emit("response.created", response=response("in_progress"))
    await events.emit("response.in_progress", response=response("in_progress"))

    if script.reasoning:
        item_id, index = f"rs_{uuid.uuid4().hex[:16]}", len(output)
        item = {"id": item_id, "type": "reasoning", "summary": [], "status": "in_progress"}
        await events.emit("response.output_item.added", output_index=index, item=item)
        where = {"item_id": item_id, "output_index": index, "summary_index": 0}
        part = {"type": "summary_text", "text": ""}
        await events.emit("response.reasoning_summary_part.added", **where, part=part)
        for piece in script.reasoning:
            await body.pace()
            await events.emit("response.reasoning_summary_text.delta", **where, delta=piece)
        text = "".join(script.reasoning)
        await events.emit("response.reasoning_summary_text.done", **where, text=text)
        part = {"type": "summary_text", "text": text}
        await events.emit("response.reasoning_summary_part.done", **where, part=part)
        item = {**item, "summary": [part], "status": "completed"}
        output.append(item)
        await events.emit("response.output_item.done", output_index=index, item=item)

    if script.tokens or not script.tool_calls:
        item_id, index = f"msg_{uuid.uuid4().hex[:16]}", len(output)
        item = {
            "id": item_id,
            "type": "message",
            "role": "assistant",
            "status": "in_progress",
            "content": [],
        }
        await events.emit("response.output_item.added", output_index=index, item=item)
        where = {"item_id": item_id, "output_index": index, "content_index": 0}
        part = {"type": "output_text", "text": "", "annotations": []}
        await events.emit("response.content_part.added", **where, part=part)
        for done, token in enumerate(script.tokens):
            if body.failure_due(done):
                return await _fail_responses(events, response)
            await body.pace()
            await events.emit(
                "response.output_text.delta", token=True, **where, delta=token, logprobs=[]
            )
        if script.fail_after_tokens is not None and script.fail_after_tokens >= len(script.tokens):
            return await _fail_responses(events, response)
        text = "".join(script.tokens)
        await events.emit("response.output_text.done", **where, text=text, logprobs=[])
        part = {"type": "output_text", "text": text, "annotations": []}
        await events.emit("response.content_part.done", **where, part=part)
        item = {**item, "status": "completed", "content": [part]}
        output.append(item)
        await events.emit("response.output_item.done", output_index=index, item=item)
    elif script.fail_after_tokens is not None:
        return await _fail_responses(events, response)

    for call in script.tool_calls:
        item_id, index = f"fc_{uuid.uuid4().hex[:16]}", len(output)
        item = {
            "id": item_id,
            "type": "function_call",
            "call_id": call.id,
            "name": call.name,
            "arguments": "",
            "status": "in_progress",
        }
        await events.emit("response.output_item.added", output_index=index, item=item)
        for piece in call.argument_chunks():
            await body.pace()
            await events.emit(
                "response.function_call_arguments.delta",
                item_id=item_id,
                output_index=index,
                delta=piece,
            )
        await events.emit(
            "response.function_call_arguments.done",
            item_id=item_id,
            output_index=index,
            arguments=call.arguments_json,
        )
        item = {**item, "arguments": call.arguments_json, "status": "completed"}
        output.append(item)
        await events.emit("response.output_item.done", output_index=index, item=item)

    final = response("completed")
    final["completed_at"] = int(time.time())
    if script.usage is not None:
        final["usage"] = _response_usage(script.usage)
    await events.emit("response.completed", response=final)
    await body.end()
    return "completed"


async def _fail_responses(events: _Events, response: Callable[[str], dict[str, Any]]) -> Outcome:
    body, script = events.body, events.body.script
    await body.pace()
    if script.failure in ("drop", "stall"):
        return await _abort(body)
    if script.failure == "responses_error":
        await events.emit("error", code=script.error_code, message=script.error_message, param=None)
    elif script.failure == "response_failed":
        failed = response("failed")
        failed["error"] = {"code": script.error_code, "message": script.error_message}
        await events.emit("response.failed", response=failed)
    elif script.failure == "bad_json":
        await body.frame(b'data: {"type": "response.output_text.delta", "delta": \n\n')
    else:  # error_payload: a bare data line, which the SDK raises as APIError
        await body.frame(_sse({"error": _error_object(script.error_code, script.error_message)}))
    await body.end()
    return "failed"


# --------------------------------------------------------------------------- ASGI


class _ScriptedResponse:
    """Plain ASGI: answers one request while its own task watches ``receive()``.

    uvicorn reports a client that left only through ``receive()`` returning
    ``http.disconnect`` (it wakes at once when the socket closes), so the watcher records the
    time and cancels whatever the body is doing, including a sleep between tokens.
    """

    def __init__(
        self,
        record: RecordedRequest,
        script: Script,
        kind: Literal["chat", "responses"],
        request: dict[str, Any],
        azure: bool,
    ) -> None:
        self.record = record
        self.script = script
        self.kind = kind
        self.request = request
        self.azure = azure

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
        if script.http_status is not None:
            error = script.error_body or _default_error_body(
                script.http_status, self.record.api_key, headers
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
            "x-request-id": f"req_{uuid.uuid4().hex[:24]}",
            **headers,
        }
        await body.start(200, headers)
        if self.kind == "chat":
            return await _stream_chat(body, self.request, self.azure)
        return await _stream_responses(body, self.request)


def create_app(peer: ScriptedOpenAI) -> Starlette:
    """The Starlette app serving OpenAI's (and Azure's) streaming endpoints for ``peer``."""

    def endpoint(kind: Literal["chat", "responses"]) -> Callable[[Request], Awaitable[Any]]:
        async def handle(request: Request) -> Any:
            raw = await request.body()
            try:
                payload = json.loads(raw) if raw else {}
            except ValueError:
                payload = None
            deployment = request.path_params.get("deployment")
            name = deployment or (payload.get("model") if isinstance(payload, dict) else None)
            record = RecordedRequest(
                method=request.method,
                path=request.url.path,
                query=dict(request.query_params),
                headers={k.lower(): v for k, v in request.headers.items()},
                body=payload,
                script_name=str(name or ""),
                started_at=time.monotonic(),
                client_port=request.client.port if request.client else None,
            )
            peer._add_record(record)
            if not isinstance(payload, dict) or payload.get("stream") is not True:
                record._mark_finished("http_error")
                message = "the scripted OpenAI peer serves only JSON bodies with stream=true"
                return JSONResponse(
                    {"error": _error_object("invalid_request", message, "invalid_request_error")},
                    status_code=400,
                )
            azure = request.url.path.startswith("/openai/")
            return _ScriptedResponse(record, peer.script_for(name), kind, payload, azure)

        return handle

    chat, responses = endpoint("chat"), endpoint("responses")
    routes = [
        Route("/v1/chat/completions", chat, methods=["POST"]),
        Route("/v1/responses", responses, methods=["POST"]),
        Route("/openai/deployments/{deployment}/chat/completions", chat, methods=["POST"]),
        Route("/openai/deployments/{deployment}/responses", responses, methods=["POST"]),
        Route("/openai/responses", responses, methods=["POST"]),
        Route("/openai/v1/chat/completions", chat, methods=["POST"]),
        Route("/openai/v1/responses", responses, methods=["POST"]),
    ]
    return Starlette(routes=routes)


# --------------------------------------------------------------------------- server


class ScriptedOpenAI(ScriptedServer[Script, RecordedRequest]):
    """The scripted OpenAI API on ``127.0.0.1``, running while the ``with`` block runs.

    The request's ``model`` (or, on Azure deployment paths, the deployment name) selects a
    script registered with :meth:`script`; any other name gets ``default``.
    """

    def __init__(self, default: Script | None = None, *, log_level: str = "warning") -> None:
        super().__init__(default or Script(), create_app, log_level=log_level)

    @property
    def base_url(self) -> str:
        """For ``OpenAI(base_url=...)`` / ``AsyncOpenAI(base_url=...)``."""
        return f"{self.url}/v1"

    @property
    def azure_endpoint(self) -> str:
        """For ``AzureOpenAI(azure_endpoint=..., api_version=...)``."""
        return self.url
