"""``llm_stream``: OpenAI (and compatible) token streams in six wire formats.

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
from typing import Any, Unpack

import anyio
from starlette.requests import Request

from .._errors import library_error
from .._names import (
    KEEPALIVE,
    LLM_IDLE_TIMEOUT,
    SEND_TIMEOUT,
    FormatKeepalive,
    OldKeepalive,
    keepalive_argument,
)
from .._response import StreamResponse, current_telemetry, stop_reason
from .._threads import ThreadIterator, iterate_in_thread
from .._validate import (
    check_callable,
    check_headers,
    check_limiter,
    check_request,
    non_empty_str,
    one_of,
    optional_positive_seconds,
    stream_source,
)
from ._errors import sdk_error
from ._events import Finish, LLMEvent, ReasoningDelta, TextDelta, ToolCallDelta
from ._formats import FORMATS, Encoder, FormatSpec, LLMFormat
from ._providers import Reader, reader_for_item, reader_for_stream
from ._telemetry import record_llm_telemetry

__all__ = [
    "Completion",
    "LLMFormat",
    "LLMSource",
    "OnComplete",
    "ToolCall",
    "check_source",
    "format_response",
    "llm_events",
    "llm_stream",
]

logger = logging.getLogger("faststream_kit")

LLMSource = AsyncIterable[Any] | Iterable[Any] | Awaitable[Any]
"""What :func:`llm_stream` reads: a model provider's stream (OpenAI, Anthropic, Google Gen AI,
LangChain, LangGraph ``stream_mode="messages"``), an awaitable returning one (``create(...)``
not awaited), or any sync or async iterable of ``str``."""

_SOURCE = (
    "a model provider's stream (OpenAI, Anthropic, Google Gen AI, LangChain, LangGraph), "
    "an awaitable returning one, or an iterable of str"
)


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
    thread_id: str | None = None,
    run_id: str | None = None,
    headers: Mapping[str, str] | None = None,
    request: Request | None = None,
    thread_limiter: anyio.CapacityLimiter | None = None,
    **deprecated: Unpack[OldKeepalive],
) -> StreamResponse:
    """Stream an LLM answer to the client in one of six wire formats.

    ``source`` is a model provider's stream, sync or async: OpenAI chat completion chunks or
    Responses API events, Anthropic ``messages.create(..., stream=True)`` or a
    ``messages.stream(...)`` manager, Google Gen AI ``generate_content_stream(...)``, a
    LangChain chat model's ``astream(...)``/``stream(...)`` or a LangGraph graph's
    ``astream(..., stream_mode="messages")``; or an awaitable that returns one (pass
    ``create(...)`` without awaiting it, so that errors it raises become HTTP responses); or
    any sync or async iterable of ``str``. Sources are recognised by shape; no SDK is
    imported.

    ``format``: ``"text"`` (plain UTF-8), ``"sse"`` (events ``text``, ``reasoning``,
    ``tool_call``, ``done``, ``error``), ``"ndjson"`` (the same objects, one per line, with a
    ``type`` key), ``"openai"`` (``chat.completion.chunk`` SSE ending in ``data: [DONE]``, so
    the openai SDK can read it), ``"ui"`` (the Vercel AI SDK UI message stream v1),
    ``"ag-ui"`` (one AG-UI protocol run; ``thread_id`` and ``run_id`` are the ``threadId``
    and ``runId`` of the client's ``RunAgentInput``, new ones when not given).

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
    check_source("source", source)
    one_of("format", format, FORMATS)
    check_callable("on_complete", on_complete, arguments=1)
    keepalive = keepalive_argument("llm_stream", keepalive, deprecated)
    optional_positive_seconds("send_timeout", send_timeout)
    optional_positive_seconds("idle_timeout", idle_timeout)
    non_empty_str("model", model, optional=True)
    run_ids = run_ids_for(format, thread_id=thread_id, run_id=run_id)
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
    encoder = spec.make_encoder(model, **run_ids)
    return format_response(
        llm_events(source, on_complete=on_complete, thread_limiter=thread_limiter, model=model),
        spec,
        encoder,
        encode=encoder.encode,
        keepalive=keepalive,
        send_timeout=send_timeout,
        idle_timeout=idle_timeout,
        headers=headers,
        request=request,
    )


def check_source(name: str, source: Any, *, what: str = _SOURCE) -> None:
    """An iterable or awaitable, or an SDK object a provider reads although it is neither
    (an Anthropic ``messages.stream(...)`` manager, entered when the response starts)."""
    try:
        stream_source(name, source, what=what, awaitable=True)
    except TypeError:
        if reader_for_stream(source) is None:
            raise


def run_ids_for(format: str, **ids: str | None) -> dict[str, str | None]:
    """``thread_id`` and ``run_id`` for a format that takes them (checked); refused for any
    other. Shared with ``ResumableStreams.llm_response``."""
    takes_them = FORMATS[format].run_ids
    for name, value in ids.items():
        non_empty_str(name, value, optional=True)
        if value is not None and not takes_them:
            formats = " or ".join(repr(f) for f, spec in FORMATS.items() if spec.run_ids)
            raise ValueError(f"{name} is only used by format={formats}, not {format!r}")
    return ids if takes_them else {}


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
    model: str | None = None,
) -> _LLMEvents:
    """The source as neutral events, ending with one :class:`Finish`; reports to
    ``on_complete``. Closing it before it started (a ``HEAD``) still closes the source.
    A sync source runs in a worker thread of ``thread_limiter`` (default: ours). ``model``
    is the requested model, for telemetry."""
    return _LLMEvents(source, on_complete, thread_limiter, model)


class _LLMEvents:
    """``llm_stream``'s source: the neutral events, and an ``aclose()`` that works unstarted.

    The core closes a source it never started (a ``HEAD`` request) with ``aclose()``, and
    closing an async generator that never started runs none of its code: its ``finally``
    could neither close what the caller opened (a ``create()`` call not awaited yet, an open
    SDK stream) nor call ``on_complete``. ``aclose()`` does both then, once.
    """

    __slots__ = ("_events", "_model", "_on_complete", "_source", "_started", "_thread_limiter")

    def __init__(
        self,
        source: Any,
        on_complete: OnComplete | None,
        thread_limiter: anyio.CapacityLimiter | None,
        model: str | None = None,
    ) -> None:
        self._source = source
        self._model = model
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
            # Its provider's reader knows what an unread stream holds (an Anthropic stream
            # manager, its request's coroutine).
            reader = None if stream is None else reader_for_stream(stream)
            await _close_upstream(reader, None, stream, source, self._thread_limiter)
            if self._on_complete is not None:
                # Nothing was generated, nothing failed and nobody left: see docs/llm.md.
                await _report(self._on_complete, Completion())

    async def _read(self) -> AsyncGenerator[LLMEvent, None]:
        self._started = True
        source, on_complete = self._source, self._on_complete
        telemetry = current_telemetry()
        # Telemetry reports what on_complete would get, so it needs the completion too.
        completion = Completion() if on_complete is not None or telemetry else None
        first_output: float | None = None  # seconds from the response's start, for telemetry
        outputs = 0
        stream: Any = None
        reader: Reader | None = None
        items: AsyncIterator[Any] | None = None
        try:
            try:
                stream = await source if inspect.isawaitable(source) else source
            except Exception as exc:
                raise sdk_error(exc) from exc
            reader = reader_for_stream(stream)
            readable = reader.items(stream) if reader is not None else stream
            if isinstance(readable, AsyncIterable):
                items = aiter(readable)
            elif isinstance(readable, Iterable) and not isinstance(readable, str | bytes):
                items = iterate_in_thread(readable, thread_limiter=self._thread_limiter)
            else:
                raise TypeError(f"llm_stream needs {_SOURCE}; got {type(stream).__name__}")
            # The response enforces ``idle_timeout`` from its watch task: no timer per token.
            while True:
                try:
                    item = await items.__anext__()
                except StopAsyncIteration:
                    break
                except Exception as exc:
                    raise (sdk_error(exc) if reader is None else reader.error(exc)) from exc
                if reader is None:
                    reader = reader_for_item(item)
                for event in reader.events_for(item):
                    if completion is not None:
                        _record(completion, event)
                    if telemetry is not None:
                        outputs += 1
                        if first_output is None:
                            first_output = telemetry.since_start()
                    yield event
            finish = reader.finish() if reader is not None else Finish("stop", None)
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
                await _close_upstream(reader, items, stream, source, self._thread_limiter)
                if telemetry is not None and completion is not None:
                    record_llm_telemetry(
                        telemetry,
                        completion.finish_reason,
                        completion.usage,
                        reader,
                        self._model,
                        first_output,
                        outputs,
                    )
                if completion is not None and on_complete is not None:
                    await _report(on_complete, completion)


def _is_cancellation(exc: BaseException) -> bool:
    return isinstance(exc, anyio.get_cancelled_exc_class())


async def _close_upstream(
    reader: Reader | None,
    items: Any,
    stream: Any,
    source: Any,
    thread_limiter: anyio.CapacityLimiter | None,
) -> None:
    """Close the SDK stream so the provider sees the disconnect and stops generating."""
    try:
        if isinstance(items, ThreadIterator):
            # A sync stream is closed by its worker thread, in that thread, as soon as its
            # current read returns; waiting for that here would hold up the error frame.
            items.stop()
            if reader is not None:
                reader.interrupt()
            return
        if stream is None and inspect.iscoroutine(source):
            # Never awaited (it failed, or the response never started): closing it means no
            # request is made and no "coroutine was never awaited" warning.
            source.close()
            return
        await (reader or Reader()).close(stream, items, thread_limiter)
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
