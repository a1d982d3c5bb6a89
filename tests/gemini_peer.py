"""A scripted Gemini API server that the real ``google-genai`` SDK talks to.

Like ``tests/openai_peer.py`` for OpenAI: an upstream that streams exactly what a test asks for
(text, thought parts, function calls, usage, finish reasons, blocked prompts, HTTP errors,
mid-stream errors, dropped connections) and records what the client did (its headers and body,
whether and when it went away). Its streaming body is plain ASGI with its own ``receive()``
watcher, so a bug in the code under test cannot hide a disconnect here.

```python notest
with ScriptedGemini() as server:
    server.script("slow", Script(tokens=["a", "b"], delay_seconds=0.05))
    client = genai.Client(api_key="key", http_options=server.http_options)
    stream = await client.aio.models.generate_content_stream(model="slow", contents="hi")
    ...
    record = server.wait_for_request(1)
    assert record.wait_disconnected(timeout=1.0)
```

The wire format is the Gemini Developer API's as ``google-genai`` requests and parses it
(``_api_client.py``: ``_aiter_response_stream``, ``async_request_streamed``; ``errors.py``):

- ``POST /v1beta/models/{model}:streamGenerateContent?alt=sse`` (or ``/v1/...``) with the key in
  ``x-goog-api-key`` and a JSON body (``contents``, ``generationConfig``, ``tools``, ...);
- ``200`` and ``text/event-stream``: ``data: {GenerateContentResponse}`` frames separated by a
  blank line (CRLF, as Google's servers send them). Each frame has ``candidates[0].content.parts``
  (``{"text"}``, ``{"text", "thought": true}``, ``{"functionCall": {"name", "args", "id"}}``),
  ``usageMetadata`` (the prompt count on every frame, the full counts on the last), and the last
  candidate frame has ``finishReason``. A blocked prompt is a single frame with
  ``promptFeedback.blockReason`` and no ``candidates``. There is no ``[DONE]``: the body ends;
- an error before the stream: the status and Google's error body
  ``{"error": {"code", "message", "status", "details"}}`` (429 ``RESOURCE_EXHAUSTED`` with a
  ``google.rpc.RetryInfo`` ``retryDelay``; 401/403 quoting the key it received, as a test must
  prove that it never reaches the app's client; 503 ``UNAVAILABLE`` "The model is overloaded");
- an error mid-stream: ``data: {"error": {...}}``, which the SDK raises as ``APIError``.
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
    "FunctionCall",
    "RecordedRequest",
    "Script",
    "ScriptedGemini",
    "Usage",
    "create_app",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

Failure = Literal["error_payload", "drop", "stall", "bad_json"]
FAILURES: tuple[Failure, ...] = ("error_payload", "drop", "stall", "bad_json")
Outcome = Literal["completed", "failed", "http_error", "dropped", "disconnected", "cancelled"]

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
"""google.rpc.Code names Google's APIs put in ``error.status`` for each HTTP status."""


# --------------------------------------------------------------------------- scripts


@dataclass(frozen=True)
class FunctionCall:
    """One function call the model makes; Gemini sends its ``args`` whole, in one part."""

    name: str
    args: dict[str, Any]
    id: str | None = None


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int
    candidates_tokens: int
    thoughts_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.candidates_tokens + self.thoughts_tokens


@dataclass
class Script:
    """What the server answers to one request.

    Order of a successful stream: one frame per thought part, one per text token, one with all
    function calls, then the finish on the last frame (``finishReason`` and the full
    ``usageMetadata``, as Gemini sends them with the last part). ``first_token_delay_seconds``
    comes before the first frame, ``delay_seconds`` before every later frame and before a
    scripted failure; ``headers_delay_seconds`` holds the response headers back.

    ``block_reason`` answers with the one frame of a blocked prompt (``promptFeedback``, no
    candidates). ``fail_after_tokens=n`` replaces the stream after ``n`` text tokens with
    ``failure``: ``"error_payload"`` (``data: {"error": {...}}``, which the SDK raises as
    ``APIError`` with ``code``), ``"drop"`` (the connection closes mid-body), ``"stall"``
    (nothing for ``stall_seconds`` or until the client leaves, then a drop), ``"bad_json"``
    (a ``data:`` line that is not JSON).

    ``http_status`` (>= 400) answers with that status, ``http_headers`` and Google's error body
    (``error_body`` replaces it); the 429 body carries ``retry_delay`` as its ``RetryInfo``.

    ``continue_after_tokens=n`` answers in two requests, as a long generation does: the first
    stream ends after ``n`` tokens with ``finishReason: "CONTINUATION"`` and a
    ``continuationToken``; a request carrying that token gets the rest.
    """

    tokens: list[str] = field(default_factory=lambda: ["Hello", ",", " world", "!"])
    thoughts: list[str] = field(default_factory=list)
    function_calls: list[FunctionCall] = field(default_factory=list)
    usage: Usage | None = None
    finish_reason: str = "STOP"
    block_reason: str | None = None
    delay_seconds: float = 0.0
    first_token_delay_seconds: float = 0.0
    headers_delay_seconds: float = 0.0
    fail_after_tokens: int | None = None
    failure: Failure = "error_payload"
    error_status: int = 500
    error_message: str = "An internal error has occurred. Please retry or report in https://developers.generativeai.google/guide/troubleshooting"
    stall_seconds: float = 30.0
    http_status: int | None = None
    http_headers: dict[str, str] = field(default_factory=dict)
    error_body: dict[str, Any] | None = None
    retry_delay: str = "17s"
    continue_after_tokens: int | None = None

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


# --------------------------------------------------------------------------- recording


@dataclass
class RecordedRequest:
    """One request as the server saw it. Times are ``time.monotonic()`` of this process."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: Any
    model: str
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
        """The key the client sent (``x-goog-api-key``; ``?key=`` as older clients did)."""
        return self.headers.get("x-goog-api-key") or self.query.get("key")

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

_CONTINUATION_TOKEN = "Y29udGludWUtaGVyZQ=="  # base64 bytes, as the API sends them


def _frame(data: Any) -> bytes:
    payload = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    return f"data: {payload}\r\n\r\n".encode()


def _google_error(status: int, message: str, details: list[Any] | None = None) -> dict[str, Any]:
    error: dict[str, Any] = {
        "code": status,
        "message": message,
        "status": _STATUS_NAMES.get(status, "UNKNOWN"),
    }
    if details:
        error["details"] = details
    return {"error": error}


def _default_error_body(script: Script, api_key: str | None) -> dict[str, Any]:
    status = script.http_status
    assert status is not None
    if status == 429:
        return _google_error(
            429,
            "You exceeded your current quota, please check your plan and billing details. "
            f"Please retry in {script.retry_delay}.",
            [
                {
                    "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                    "violations": [
                        {
                            "quotaMetric": "generativelanguage.googleapis.com/"
                            "generate_content_free_tier_requests",
                            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                        }
                    ],
                },
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": script.retry_delay,
                },
            ],
        )
    if status in (400, 401, 403):
        # Real servers quote what they were sent; a test proves the key goes no further.
        return _google_error(
            status,
            f"API key not valid: {api_key}. Please pass a valid API key.",
            [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "API_KEY_INVALID",
                    "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com", "key": api_key},
                }
            ],
        )
    if status == 503:
        return _google_error(503, "The model is overloaded. Please try again later.")
    return _google_error(status, f"Scripted HTTP {status}")


def _usage_metadata(script: Script, final: bool) -> dict[str, Any] | None:
    usage = script.usage
    if usage is None:
        return None
    details = [{"modality": "TEXT", "tokenCount": usage.prompt_tokens}]
    if not final:  # Gemini counts the prompt on every frame, the answer on the last
        return {
            "promptTokenCount": usage.prompt_tokens,
            "totalTokenCount": usage.prompt_tokens,
            "promptTokensDetails": details,
        }
    metadata: dict[str, Any] = {
        "promptTokenCount": usage.prompt_tokens,
        "candidatesTokenCount": usage.candidates_tokens,
        "totalTokenCount": usage.total_tokens,
        "promptTokensDetails": details,
    }
    if usage.thoughts_tokens:
        metadata["thoughtsTokenCount"] = usage.thoughts_tokens
    return metadata


class _Body:
    """The streaming side of one response: sends frames and counts tokens into the record."""

    def __init__(self, send: Send, record: RecordedRequest, script: Script) -> None:
        self._send = send
        self.record = record
        self.script = script
        self.ending = False  # the final body message is on its way; not a disconnect
        self._frames = 0
        self.response_id = uuid.uuid4().hex[:22]
        self.finish_reason = script.finish_reason
        self.continuation_token: str | None = None

    async def start(self, status: int, headers: dict[str, str]) -> None:
        raw = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        await self._send({"type": "http.response.start", "status": status, "headers": raw})

    async def send(self, data: bytes, *, token: bool = False) -> None:
        await self._send({"type": "http.response.body", "body": data, "more_body": True})
        if token:
            self.record.tokens_sent += 1
            self.record.token_sent_at.append(time.monotonic())

    async def pace(self) -> None:
        """Wait the scripted time before the next frame (or the failure replacing it)."""
        first = self._frames == 0
        self._frames += 1
        seconds = self.script.first_token_delay_seconds if first else self.script.delay_seconds
        if seconds:
            await anyio.sleep(seconds)

    async def end(self, data: bytes = b"") -> None:
        self.ending = True
        await self._send({"type": "http.response.body", "body": data, "more_body": False})

    def failure_due(self, tokens_done: int) -> bool:
        return self.script.fail_after_tokens == tokens_done

    def response(
        self, parts: list[dict[str, Any]] | None, *, final: bool = False
    ) -> dict[str, Any]:
        """One ``GenerateContentResponse`` frame as the Gemini API sends it."""
        frame: dict[str, Any] = {}
        if parts is not None:
            candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}}
            if final:
                candidate["finishReason"] = self.finish_reason
                if self.continuation_token is not None:
                    candidate["continuationToken"] = self.continuation_token
            candidate["index"] = 0
            frame["candidates"] = [candidate]
        usage = _usage_metadata(self.script, final)
        if usage is not None:
            frame["usageMetadata"] = usage
        frame["modelVersion"] = self.record.model
        frame["responseId"] = self.response_id
        return frame


async def _stream(body: _Body) -> Outcome:
    script = body.script
    if script.block_reason is not None:
        await body.pace()
        frame = body.response(None, final=True)
        frame = {"promptFeedback": {"blockReason": script.block_reason}, **frame}
        await body.end(_frame(frame))
        return "completed"

    tokens = script.tokens
    split = script.continue_after_tokens
    if split is not None:
        request = body.record.body
        if request.get("continuationToken") == _CONTINUATION_TOKEN:
            tokens = tokens[split:]
        else:
            tokens = tokens[:split]
            body.finish_reason = "CONTINUATION"
            body.continuation_token = _CONTINUATION_TOKEN
    # Every frame but the last goes out as soon as the next one is known, so the last one can
    # carry the finish reason and the final usage, as Gemini's do.
    frames: list[tuple[list[dict[str, Any]], bool]] = [
        ([{"text": thought, "thought": True}], False) for thought in script.thoughts
    ]
    for done, token in enumerate(tokens):
        if body.failure_due(done):
            break
        frames.append(([{"text": token}], True))
    calls = [
        {"functionCall": {**({"id": c.id} if c.id else {}), "name": c.name, "args": c.args}}
        for c in script.function_calls
    ]
    failing = script.fail_after_tokens is not None and script.fail_after_tokens <= len(tokens)
    if calls and not failing:
        frames.append((calls, False))
    if not frames and not failing:
        frames.append(([{"text": ""}], False))
    for number, (parts, token) in enumerate(frames):
        await body.pace()
        final = number == len(frames) - 1 and not failing
        await body.send(_frame(body.response(parts, final=final)), token=token)
    if failing:
        return await _fail(body)
    await body.end()
    return "completed"


async def _fail(body: _Body) -> Outcome:
    script = body.script
    await body.pace()
    if script.failure == "drop":
        return "dropped"
    if script.failure == "stall":
        await anyio.sleep(script.stall_seconds)
        return "dropped"
    if script.failure == "bad_json":
        await body.end(b'data: {"candidates": [\r\n\r\n')
        return "failed"
    await body.end(_frame(_google_error(script.error_status, script.error_message)))
    return "failed"


# --------------------------------------------------------------------------- ASGI


class _ScriptedResponse:
    """Plain ASGI: answers one request while its own task watches ``receive()``.

    uvicorn reports a client that left only through ``receive()`` returning
    ``http.disconnect`` (it wakes at once when the socket closes), so the watcher records the
    time and cancels whatever the body is doing, including a sleep between tokens.
    """

    def __init__(self, record: RecordedRequest, script: Script) -> None:
        self.record = record
        self.script = script

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
            error = script.error_body or _default_error_body(script, self.record.api_key)
            content = json.dumps(error, indent=2).encode()  # Google's are pretty-printed
            headers.setdefault("content-type", "application/json; charset=UTF-8")
            headers["content-length"] = str(len(content))
            await body.start(script.http_status, headers)
            await body.end(content)
            return "http_error"
        headers = {
            "content-type": "text/event-stream",
            "content-disposition": "attachment",
            "vary": "Origin, X-Origin, Referer",
            "server-timing": "gfet4t7; dur=100",
            **headers,
        }
        await body.start(200, headers)
        return await _stream(body)


def create_app(peer: ScriptedGemini) -> Starlette:
    """The Starlette app serving the Gemini API's streaming endpoint for ``peer``."""

    async def stream_generate_content(request: Request) -> Any:
        raw = await request.body()
        try:
            payload = json.loads(raw) if raw else None
        except ValueError:
            payload = None
        model = request.path_params["model"]
        record = RecordedRequest(
            method=request.method,
            path=request.url.path,
            query=dict(request.query_params),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=payload,
            model=model,
            started_at=time.monotonic(),
            client_port=request.client.port if request.client else None,
        )
        peer._add_record(record)
        if not isinstance(payload, dict) or request.query_params.get("alt") != "sse":
            record._mark_finished("http_error")
            message = "the scripted Gemini peer serves only JSON bodies with ?alt=sse"
            return JSONResponse(_google_error(400, message), status_code=400)
        return _ScriptedResponse(record, peer.script_for(model))

    # The API serves both versions; the SDK picks v1 for a base URL it reads from the
    # environment (GOOGLE_GEMINI_BASE_URL) and v1beta otherwise.
    routes = [
        Route(
            f"/{version}/models/{{model}}:streamGenerateContent",
            stream_generate_content,
            methods=["POST"],
        )
        for version in ("v1beta", "v1")
    ]
    return Starlette(routes=routes)


# --------------------------------------------------------------------------- server


class ScriptedGemini(ScriptedServer[Script, RecordedRequest]):
    """The scripted Gemini API on ``127.0.0.1``, running while the ``with`` block runs.

    The request's model (in the path) selects a script registered with :meth:`script`; any
    other model gets ``default``.
    """

    def __init__(self, default: Script | None = None, *, log_level: str = "warning") -> None:
        super().__init__(default or Script(), create_app, log_level=log_level)

    @property
    def http_options(self) -> dict[str, Any]:
        """For ``genai.Client(http_options=...)``: this server as the base URL."""
        return {"base_url": self.url, "api_version": "v1beta"}
