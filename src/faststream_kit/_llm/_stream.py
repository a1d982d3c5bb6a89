"""``llm_stream``: OpenAI (and compatible) token streams in five wire formats.

The SDK objects are duck-typed (openai 3.x runs on ``httpx2``, other providers mimic the
shapes): a chat completion chunk has ``choices[].delta``; a Responses API event has a
``type``; anything else must be text. Each is turned into a few neutral events
(:class:`TextDelta`, :class:`ToolCallDelta`, ...), which the chosen format encodes.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
)
from dataclasses import dataclass, field
from typing import Any, Literal, Unpack

import anyio
from starlette.requests import Request

from ._errors import StreamError, library_error
from ._llm_formats import (
    FORMATS,
    Encoder,
    Finish,
    FormatSpec,
    LLMEvent,
    ReasoningDelta,
    TextDelta,
    ToolCallDelta,
)
from ._llm_wire import sdk_payloads, upstream_error
from ._names import (
    KEEPALIVE,
    LLM_IDLE_TIMEOUT,
    SEND_TIMEOUT,
    FormatKeepalive,
    OldKeepalive,
    keepalive_argument,
)
from ._response import StreamResponse, stop_reason
from ._threads import ThreadIterator, default_thread_limiter, iterate_in_thread
from ._validate import (
    check_callable,
    check_headers,
    check_limiter,
    check_request,
    non_empty_str,
    one_of,
    optional_positive_seconds,
    stream_source,
)

__all__ = [
    "Completion",
    "LLMFormat",
    "LLMSource",
    "OnComplete",
    "ToolCall",
    "format_response",
    "llm_events",
    "llm_stream",
]

logger = logging.getLogger("faststream_kit")

LLMFormat = Literal["text", "sse", "ndjson", "openai", "ui"]
"""The wire formats of :func:`llm_stream`."""

LLMSource = AsyncIterable[Any] | Iterable[Any] | Awaitable[Any]
"""What :func:`llm_stream` reads: an OpenAI ``Stream``/``AsyncStream`` (or a stream of
another SDK with the same shapes), an awaitable returning one (``create(...)`` not
awaited), or any sync or async iterable of ``str``."""

_SOURCE = "an OpenAI Stream/AsyncStream, an awaitable returning one, or an iterable of str"


@dataclass
class ToolCall:
    """One tool call as the model made it; ``arguments`` is the JSON text it streamed."""

    id: str | None
    name: str | None
    arguments: str = ""


@dataclass
class Completion:
    """What ``on_complete`` receives, exactly once per stream."""

    text: str = ""
    reasoning: str = ""
    finish_reason: str | None = None
    usage: dict[str, int] | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    error: BaseException | None = None
    """The exception that ended the stream early, if any."""
    disconnected: bool = False
    """True when the client left before the stream finished."""

    @property
    def finished(self) -> bool:
        return self.error is None and not self.disconnected and self.finish_reason is not None


OnComplete = Callable[[Completion], Awaitable[None] | None]
"""Called once per stream with its :class:`Completion`; sync or async."""


def llm_stream(
    source: LLMSource,
    *,
    format: LLMFormat = "sse",
    on_complete: OnComplete | None = None,
    keepalive: float | None = KEEPALIVE,
    send_timeout: float | None = SEND_TIMEOUT,
    idle_timeout: float | None = LLM_IDLE_TIMEOUT,
    model: str | None = None,
    headers: Mapping[str, str] | None = None,
    request: Request | None = None,
    thread_limiter: anyio.CapacityLimiter | None = None,
    **deprecated: Unpack[OldKeepalive],
) -> StreamResponse:
    """Stream an LLM answer to the client in one of five wire formats.

    ``source`` is an OpenAI ``Stream``/``AsyncStream`` of chat completion chunks or Responses
    API events, an awaitable that returns one (pass ``client.chat.completions.create(...,
    stream=True)`` without awaiting it, so that errors it raises become HTTP responses), or
    any sync or async iterable of ``str``.

    ``format``: ``"text"`` (plain UTF-8), ``"sse"`` (events ``text``, ``reasoning``,
    ``tool_call``, ``done``, ``error``), ``"ndjson"`` (the same objects, one per line, with a
    ``type`` key), ``"openai"`` (``chat.completion.chunk`` SSE ending in ``data: [DONE]``, so
    the openai SDK can read it), ``"ui"`` (the Vercel AI SDK UI message stream v1).

    Errors before the first token become HTTP errors: 429 keeps ``Retry-After``, an upstream
    401/403 becomes 502 (your key problem is not the client's), timeouts 504. After it, the
    format's error frame ends the stream (``text`` aborts the connection instead).
    ``idle_timeout`` bounds the wait between two chunks (60 s: a model that stops sending
    has failed). ``keepalive`` (``ping``, its old name, is deprecated) sends the format's
    keepalive after that many idle seconds; ``text`` has none. A client that leaves closes
    the upstream stream at once. ``on_complete`` (sync or async) is called exactly once with
    a :class:`Completion`: the text, finish reason, usage, tool calls, and the error or the
    disconnect if the stream did not finish. A sync stream is read in one worker thread of
    ``thread_limiter``; pass the route's ``request`` when the source reads the request body
    while the answer streams.
    """
    stream_source("source", source, what=_SOURCE, awaitable=True)
    one_of("format", format, FORMATS)
    check_callable("on_complete", on_complete, arguments=1)
    keepalive = keepalive_argument("llm_stream", keepalive, deprecated)
    optional_positive_seconds("send_timeout", send_timeout)
    optional_positive_seconds("idle_timeout", idle_timeout)
    non_empty_str("model", model, optional=True)
    check_headers("headers", headers)
    check_request("request", request)
    check_limiter("thread_limiter", thread_limiter)
    spec = FORMATS[format]
    if spec.keepalive_frame is None and keepalive is not None:
        if not isinstance(keepalive, FormatKeepalive):
            raise ValueError(
                f"keepalive must be None for format={format!r}: it has no keepalive bytes "
                f"a reader would ignore, got {keepalive!r}"
            )
        keepalive = None
    encoder = spec.make_encoder(model)
    return format_response(
        llm_events(source, on_complete=on_complete, thread_limiter=thread_limiter),
        spec,
        encoder,
        encode=encoder.encode,
        keepalive=keepalive,
        send_timeout=send_timeout,
        idle_timeout=idle_timeout,
        headers=headers,
        request=request,
    )


def format_response(
    content: Any,
    spec: FormatSpec,
    encoder: Encoder,
    *,
    encode: Callable[[Any], bytes],
    keepalive: float | None,
    send_timeout: float | None,
    idle_timeout: float | None,
    headers: Mapping[str, str] | None,
    request: Request | None,
    preamble: bytes = b"",
    shutdown_frame: bytes | None = None,
) -> StreamResponse:
    """A ``StreamResponse`` in one of the LLM wire formats (also for resumable answers)."""
    return StreamResponse(
        content,
        media_type=spec.media_type,
        headers={**spec.headers, **(headers or {})},
        keepalive=keepalive,
        keepalive_frame=spec.keepalive_frame,
        send_timeout=send_timeout,
        encode=encode,
        preamble=encoder.preamble() + preamble,
        error_frame=encoder.error_frame if spec.has_error_frame else None,
        idle_timeout=idle_timeout,
        shutdown_frame=shutdown_frame,
        request=request,
    )


def llm_events(
    source: Any,
    *,
    on_complete: OnComplete | None,
    thread_limiter: anyio.CapacityLimiter | None = None,
) -> _LLMEvents:
    """The source as neutral events, ending with one :class:`Finish`; reports to
    ``on_complete``. Closing it before it started (a ``HEAD``) still closes the source.
    A sync source runs in a worker thread of ``thread_limiter`` (default: ours)."""
    return _LLMEvents(source, on_complete, thread_limiter)


class _LLMEvents:
    """``llm_stream``'s source: the neutral events, and an ``aclose()`` that works unstarted.

    The core closes a source it never started (a ``HEAD`` request) with ``aclose()``, and
    closing an async generator that never started runs none of its code: its ``finally``
    could neither close what the caller opened (a ``create()`` call not awaited yet, an open
    SDK stream) nor call ``on_complete``. ``aclose()`` does both then, once.
    """

    __slots__ = ("_events", "_on_complete", "_source", "_started", "_thread_limiter")

    def __init__(
        self,
        source: Any,
        on_complete: OnComplete | None,
        thread_limiter: anyio.CapacityLimiter | None,
    ) -> None:
        self._source = source
        self._on_complete = on_complete
        self._thread_limiter = thread_limiter
        self._started = False
        self._events = self._read()

    def __aiter__(self) -> AsyncGenerator[LLMEvent, None]:
        return self._events  # the per-token path is the generator itself, no layer on top

    async def aclose(self) -> None:
        await self._events.aclose()
        if self._started:
            return  # the generator's own finally closed the source and reported
        self._started = True  # closed before it started: it never will, so this runs once
        source = self._source
        with anyio.CancelScope(shield=True):
            stream = None if inspect.isawaitable(source) else source
            await _close_upstream(None, stream, source, self._thread_limiter)
            if self._on_complete is not None:
                # Nothing was generated, nothing failed and nobody left: see docs/llm.md.
                await _report(self._on_complete, Completion())

    async def _read(self) -> AsyncGenerator[LLMEvent, None]:
        self._started = True
        source, on_complete = self._source, self._on_complete
        completion = Completion() if on_complete is not None else None
        stream: Any = None
        items: AsyncIterator[Any] | None = None
        try:
            try:
                stream = await source if inspect.isawaitable(source) else source
            except Exception as exc:
                raise _sdk_error(exc) from exc
            readable = sdk_payloads(stream) or stream
            if isinstance(readable, AsyncIterable):
                items = aiter(readable)
            elif isinstance(readable, Iterable) and not isinstance(readable, str | bytes):
                items = iterate_in_thread(readable, thread_limiter=self._thread_limiter)
            else:
                raise TypeError(
                    "llm_stream needs an OpenAI Stream/AsyncStream, an awaitable returning one, "
                    f"or an iterable of str; got {type(stream).__name__}"
                )
            state = _ChunkState()
            # The response enforces ``idle_timeout`` from its watch task: no timer per token.
            while True:
                try:
                    item = await items.__anext__()
                except StopAsyncIteration:
                    break
                except Exception as exc:
                    raise _sdk_error(exc) from exc
                for event in state.events_for(item):
                    if completion is not None:
                        _record(completion, event)
                    yield event
            finish = state.finish()
            if completion is not None:
                _record(completion, finish)
            yield finish
        except BaseException as exc:
            if completion is not None:
                if isinstance(exc, GeneratorExit) or _is_cancellation(exc):
                    if stop_reason() == "idle_timeout":
                        completion.error = library_error(
                            "timeout", "the model sent nothing in time"
                        )
                    else:
                        completion.disconnected = True
                else:
                    completion.error = exc
            raise
        finally:
            with anyio.CancelScope(shield=True):
                await _close_upstream(items, stream, source, self._thread_limiter)
                if completion is not None and on_complete is not None:
                    await _report(on_complete, completion)


def _is_cancellation(exc: BaseException) -> bool:
    return isinstance(exc, anyio.get_cancelled_exc_class())


async def _close_upstream(
    items: Any, stream: Any, source: Any, thread_limiter: anyio.CapacityLimiter | None
) -> None:
    """Close the SDK stream so the provider sees the disconnect and stops generating."""
    try:
        if isinstance(items, ThreadIterator):
            # A sync stream is closed by its worker thread, in that thread, as soon as its
            # current read returns; waiting for that here would hold up the error frame.
            items.stop()
            return
        if items is not None and hasattr(items, "aclose"):
            await items.aclose()
        if stream is not None and stream is not items:
            aclose = getattr(stream, "aclose", None)
            close = getattr(stream, "close", None)
            if aclose is not None:
                await aclose()
            elif inspect.iscoroutinefunction(close):
                await close()
            elif close is not None:
                # A sync stream never handed to a worker thread (a HEAD): its close() may
                # block (a generator's finally, a socket), so not on the event loop either.
                limiter = thread_limiter or default_thread_limiter()
                await anyio.to_thread.run_sync(close, limiter=limiter)
        elif stream is None and inspect.iscoroutine(source):
            # Never awaited (it failed, or the response never started): closing it means no
            # request is made and no "coroutine was never awaited" warning.
            source.close()
    except Exception:
        logger.debug("closing the upstream stream failed", exc_info=True)


async def _report(on_complete: OnComplete, completion: Completion) -> None:
    try:
        result = on_complete(completion)
        if inspect.isawaitable(result):
            await result
    except Exception:
        logger.exception("on_complete raised")


def _record(completion: Completion, event: LLMEvent) -> None:
    if type(event) is TextDelta:
        completion.text += event.text
    elif type(event) is ReasoningDelta:
        completion.reasoning += event.text
    elif type(event) is ToolCallDelta:
        while len(completion.tool_calls) <= event.index:
            completion.tool_calls.append(ToolCall(None, None))
        call = completion.tool_calls[event.index]
        call.id = call.id or event.id
        call.name = call.name or event.name
        call.arguments += event.arguments
    elif type(event) is Finish:
        completion.finish_reason = event.finish_reason
        completion.usage = event.usage


class _ChunkState:
    """Turns SDK items into neutral events and remembers what the final event needs."""

    __slots__ = ("finish_reason", "tool_indexes", "usage")

    def __init__(self) -> None:
        self.finish_reason: str | None = None
        self.usage: dict[str, int] | None = None
        self.tool_indexes: dict[int, int] = {}  # Responses output_index -> tool call index

    def events_for(self, item: Any) -> list[LLMEvent]:
        if type(item) is str:
            return [TextDelta(item)] if item else []
        choices = getattr(item, "choices", None)
        if choices is not None:
            return self._chat_chunk(item, choices)
        kind = getattr(item, "type", None)
        if isinstance(kind, str):
            return self._responses_event(kind, item)
        if isinstance(item, str):
            return [TextDelta(str(item))] if item else []
        raise TypeError(
            f"llm_stream cannot read a {type(item).__name__}: expected a chat completion "
            "chunk, a Responses API event or str"
        )

    def _chat_chunk(self, chunk: Any, choices: Any) -> list[LLMEvent]:
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            self.usage = _chat_usage(usage)
        events: list[LLMEvent] = []
        for choice in choices:  # Azure's prelude chunk has none: nothing to do
            if getattr(choice, "index", 0) != 0:
                continue  # n > 1 is not streamed; the first choice is the answer
            delta = getattr(choice, "delta", None)
            if delta is not None:
                reasoning = _reasoning_of(delta)
                if isinstance(reasoning, str) and reasoning:
                    events.append(ReasoningDelta(reasoning))
                content = getattr(delta, "content", None)
                if content:
                    events.append(TextDelta(content))
                for call in getattr(delta, "tool_calls", None) or ():
                    function = getattr(call, "function", None)
                    events.append(
                        ToolCallDelta(
                            index=getattr(call, "index", 0) or 0,
                            id=getattr(call, "id", None),
                            name=getattr(function, "name", None),
                            arguments=getattr(function, "arguments", None) or "",
                        )
                    )
            reason = getattr(choice, "finish_reason", None)
            if reason:
                self.finish_reason = reason
        return events

    def _responses_event(self, kind: str, event: Any) -> list[LLMEvent]:
        if kind == "response.output_text.delta":
            return [TextDelta(event.delta)] if event.delta else []
        if kind in ("response.reasoning_text.delta", "response.reasoning_summary_text.delta"):
            return [ReasoningDelta(event.delta)] if event.delta else []
        if kind == "response.output_item.added":
            item = event.item
            if getattr(item, "type", None) != "function_call":
                return []
            index = self.tool_indexes.setdefault(event.output_index, len(self.tool_indexes))
            return [ToolCallDelta(index, getattr(item, "call_id", None), item.name, "")]
        if kind == "response.function_call_arguments.delta":
            index = self.tool_indexes.setdefault(event.output_index, len(self.tool_indexes))
            return [ToolCallDelta(index, None, None, event.delta)]
        if kind in ("response.completed", "response.incomplete"):
            response = event.response
            if response.usage is not None:
                self.usage = _responses_usage(response.usage)
            if kind == "response.incomplete":
                details = getattr(response, "incomplete_details", None)
                reason = getattr(details, "reason", None)
                self.finish_reason = "length" if reason == "max_output_tokens" else reason
            else:
                self.finish_reason = "tool_calls" if self.tool_indexes else "stop"
            return []
        if kind == "response.failed":
            error = getattr(event.response, "error", None)
            raise upstream_error(
                getattr(error, "message", None),
                getattr(error, "code", None),
                fallback="the model failed to answer",
            )
        if kind == "error":
            raise upstream_error(getattr(event, "message", None), getattr(event, "code", None))
        return []

    def finish(self) -> Finish:
        return Finish(self.finish_reason or "stop", self.usage)


def _reasoning_of(delta: Any) -> object:
    """``reasoning_content`` (DeepSeek, vLLM) or ``reasoning`` (OpenRouter), if present.

    Neither is a declared field of the SDK's delta model; reading its extras dict once is much
    cheaper than two failing attribute lookups per token.
    """
    extra = getattr(delta, "__pydantic_extra__", None)
    if isinstance(extra, dict):
        return extra.get("reasoning_content") or extra.get("reasoning")
    return getattr(delta, "reasoning_content", None) or getattr(delta, "reasoning", None)


def _as_dict(usage: Any) -> dict[str, Any]:
    if isinstance(usage, dict):
        return usage
    dump = getattr(usage, "model_dump", None)
    if dump is not None:
        result: dict[str, Any] = dump()
        return result
    return dict(vars(usage))


def _chat_usage(usage: Any) -> dict[str, int]:
    raw = _as_dict(usage)
    return {
        name: int(raw.get(name) or 0)
        for name in ("prompt_tokens", "completion_tokens", "total_tokens")
    }


def _responses_usage(usage: Any) -> dict[str, int]:
    raw = _as_dict(usage)
    prompt = int(raw.get("input_tokens") or 0)
    completion = int(raw.get("output_tokens") or 0)
    total = int(raw.get("total_tokens") or prompt + completion)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": total}


def _sdk_error(exc: Exception) -> Exception:
    """Map an SDK/transport exception to a :class:`StreamError` with an honest status."""
    if isinstance(exc, StreamError):
        return exc
    status = getattr(exc, "status_code", None)
    names = {cls.__name__ for cls in type(exc).__mro__}
    if isinstance(status, int):
        if status == 429:
            headers = {}
            retry_after = _response_header(exc, "retry-after")
            if retry_after:
                headers["Retry-After"] = retry_after
            return library_error(
                "rate_limited",
                "the model provider is rate limiting requests; retry later",
                headers=headers,
            )
        if status in (401, 403):
            # The server's credentials were refused: not the client's fault, and the
            # provider's message may quote the key, so it is never passed on.
            return library_error(
                "upstream_auth_error", "the model provider refused this server's credentials"
            )
        if status in (408, 504):
            return library_error("timeout", "the model provider timed out")
        if status in (503, 529):  # 529: Anthropic's "overloaded"
            return library_error("unavailable", "the model provider is overloaded; retry later")
        return library_error("upstream_error", f"the model provider answered {status}")
    if names & {"APITimeoutError", "TimeoutException", "TimeoutError", "ReadTimeout"}:
        return library_error("timeout", "the model provider timed out")
    if "APIConnectionError" in names or names & {"ConnectError", "RemoteProtocolError"}:
        return library_error("upstream_unavailable", "the connection to the model provider failed")
    if "APIError" in names:
        return upstream_error(getattr(exc, "message", None), getattr(exc, "code", None))
    return exc


def _response_header(exc: Exception, name: str) -> str | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    value = headers.get(name)
    return value if isinstance(value, str) else None
