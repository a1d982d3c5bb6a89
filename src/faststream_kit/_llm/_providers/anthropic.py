"""Anthropic Messages streams: ``messages.create(..., stream=True)`` and ``messages.stream()``.

What ``llm_stream`` accepts from the ``anthropic`` SDK (its Bedrock, Vertex and Foundry
clients return the same classes; only the first-party API is tested), sync or async:

- the ``Stream`` / ``AsyncStream`` of raw events that ``messages.create(..., stream=True)``
  returns, or the async call itself, not awaited;
- the ``MessageStream`` / ``AsyncMessageStream`` of a ``messages.stream(...)`` block;
- the ``messages.stream(...)`` manager itself, not entered: it is entered when the response
  starts (so the request's errors become statuses; a sync one in the worker thread) and
  exited when the stream ends.

The events, in wire order (``lib/streaming/_messages.py`` accumulates the same ones):
``message_start`` (input tokens), per content block ``content_block_start`` /
``content_block_delta`` (``text_delta``; ``thinking_delta``, the reasoning; ``signature_delta``;
``input_json_delta``, a tool call's arguments; ``citations_delta``) / ``content_block_stop``,
then ``message_delta`` (stop reason, output tokens) and ``message_stop``. ``ping`` is skipped;
an ``error`` event (``overloaded_error`` when the API is overloaded mid-answer) ends the stream
with an error. A body that ends without ``message_stop`` was cut short, and is an error too.

Like the OpenAI provider, a stream is read from the SDK's own SSE decoder
(``Stream._iter_events()``) with each event's JSON as a plain ``dict``, without the SDK's
pydantic model per event; what the SDK does between the two is repeated here (events without
a name and ``ping`` are skipped, ``error`` raises). A stream that someone began to read is
iterated through the SDK's models instead, which carry the same fields. ``_iter_events`` and
``MessageStream._raw_stream`` are private to the SDK ("Private APIs we rely on" in
``docs/design.md``; ``tests/test_private_apis.py`` fails when they change).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio

from .._errors import in_band_error, sdk_error, upstream_error
from .._events import Finish, LLMEvent, ReasoningDelta, TextDelta, ToolCallDelta
from ._base import InterruptibleRead, Reader

__all__ = ["ITEMS", "STOP_REASONS", "MessagesReader", "for_item", "for_stream"]

ITEMS = "an Anthropic Messages stream event"

STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
"""Anthropic's ``stop_reason`` -> the OpenAI finish reason that means the same; any other
(``pause_turn``, and reasons added later) is passed on as Anthropic names it."""

_RAW_STREAMS = frozenset({"Stream", "AsyncStream"})
_MESSAGE_STREAMS = frozenset(
    {"MessageStream", "AsyncMessageStream", "BetaMessageStream", "BetaAsyncMessageStream"}
)
_MANAGERS = frozenset(
    {
        "MessageStreamManager",
        "AsyncMessageStreamManager",
        "BetaMessageStreamManager",
        "BetaAsyncMessageStreamManager",
    }
)


def for_stream(stream: Any) -> Reader | None:
    """An ``anthropic`` raw event stream, message stream or stream manager; else None."""
    cls = type(stream)
    if not cls.__module__.startswith("anthropic"):
        return None  # by name, never by import: the SDK is loaded only by those who use it
    name = cls.__name__
    if name in _RAW_STREAMS or name in _MESSAGE_STREAMS:
        return MessagesReader(manager=False)
    if name in _MANAGERS:
        return MessagesReader(manager=True)
    return None


def for_item(item: Any) -> Reader | None:
    """The first event of an Anthropic stream that nobody recognised (someone's wrapper)."""
    if type(item).__module__.startswith("anthropic") and isinstance(
        getattr(item, "type", None), str
    ):
        return MessagesReader(manager=False)
    return None


class MessagesReader(Reader):
    """Messages stream events -> neutral events; remembers the stop reason and the usage."""

    __slots__ = ("_manager", "_stop_reason", "_stopped", "_sync", "_tools", "_usage")

    def __init__(self, *, manager: bool) -> None:
        self._manager = manager
        self._sync: _SyncReading | None = None
        self._stopped = False  # message_stop arrived: the answer is complete
        self._stop_reason: str | None = None
        self._usage: dict[str, int] = {}  # Anthropic's own counters, as last reported
        self._tools: dict[Any, int] = {}  # content block index -> tool call index

    def items(self, stream: Any) -> Any:
        if hasattr(stream, "__aenter__" if self._manager else "__aiter__"):
            if self._manager:
                return _async_manager_payloads(stream)
            return _payloads(stream) or _async_dicts(stream)
        self._sync = _SyncReading(stream, manager=self._manager)
        return self._sync

    def events_for(self, item: Any) -> list[LLMEvent]:
        if type(item) is not dict:
            item = _as_dict(item)
        kind = item.get("type")
        if kind == "content_block_delta":
            # .get() throughout: a malformed event is skipped, as the SDK's lenient models
            # would read it, never a KeyError reported as our own failure.
            delta = item.get("delta") or {}
            delta_type = delta.get("type")
            if delta_type == "text_delta":
                text = delta.get("text")
                return [TextDelta(text)] if text else []
            if delta_type == "thinking_delta":
                thinking = delta.get("thinking")
                return [ReasoningDelta(thinking)] if thinking else []
            if delta_type == "input_json_delta":
                piece = delta.get("partial_json")
                index = self._tools.get(item.get("index"))
                if not piece or index is None:
                    return []
                return [ToolCallDelta(index, None, None, piece)]
            return []  # signature_delta, citations_delta: nothing a format carries
        if kind == "content_block_start":
            block = item.get("content_block") or {}
            if block.get("type") != "tool_use":
                return []  # text, thinking, redacted thinking; server tools are not the app's
            index = self._tools.setdefault(item.get("index"), len(self._tools))
            return [ToolCallDelta(index, block.get("id"), block.get("name"), "")]
        if kind == "message_start":
            self._count((item.get("message") or {}).get("usage"))
        elif kind == "message_delta":
            self._stop_reason = (item.get("delta") or {}).get("stop_reason") or self._stop_reason
            self._count(item.get("usage"))
        elif kind == "message_stop":
            self._stopped = True
        elif kind == "error":  # only from a wrapper that yields the error event as an item
            raise in_band_error(item)
        return []

    def _count(self, usage: Any) -> None:
        # The counts of message_delta are running totals: a later one replaces an earlier one.
        if isinstance(usage, dict):
            for name, value in usage.items():
                if type(value) is int:
                    self._usage[name] = value

    def finish(self) -> Finish:
        if not self._stopped:
            # The body ended cleanly but the answer did not (a proxy cut it short): passing
            # it on as finished would hide that it is incomplete.
            raise upstream_error("the model's answer ended before its message_stop event", None)
        reason = self._stop_reason or "end_turn"
        return Finish(STOP_REASONS.get(reason, reason), _usage(self._usage))

    def error(self, exc: Exception) -> Exception:
        status = getattr(exc, "status_code", None)
        if isinstance(status, int) and status < 400:
            # An ``event: error`` read by the SDK, which raises it with the stream's own 200.
            return in_band_error(getattr(exc, "body", None))
        if isinstance(exc, json.JSONDecodeError):  # the SDK's own ``sse.json()`` failed
            return upstream_error("the model provider sent an event that is not JSON", None)
        return sdk_error(exc)

    def interrupt(self) -> None:
        if self._sync is not None:
            self._sync.interrupt()

    async def close(
        self, stream: Any, items: Any, thread_limiter: anyio.CapacityLimiter | None
    ) -> None:
        if self._manager and items is None:
            _close_unsent_request(stream)
        await super().close(stream, items, thread_limiter)


def _close_unsent_request(manager: Any) -> None:
    """An async ``messages.stream(...)`` manager that was never entered (a ``HEAD``) holds its
    request as a coroutine never awaited: closing it sends nothing, as entering would, and
    spares the "coroutine was never awaited" warning. (A sync manager holds a function.)"""
    for value in vars(manager).values():
        if inspect.iscoroutine(value):
            value.close()


def _usage(counts: dict[str, int]) -> dict[str, int] | None:
    """Anthropic's counters in OpenAI's terms. Its ``input_tokens`` leave out the prompt tokens
    read from or written to the prompt cache, which OpenAI's ``prompt_tokens`` include."""
    if "input_tokens" not in counts:
        return None  # someone else read message_start: a partial count would mislead
    prompt = (
        counts["input_tokens"]
        + counts.get("cache_creation_input_tokens", 0)
        + counts.get("cache_read_input_tokens", 0)
    )
    completion = counts.get("output_tokens", 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _as_dict(item: Any) -> dict[str, Any]:
    """An SDK event model as the JSON object it was read from."""
    to_dict = getattr(item, "to_dict", None)
    if to_dict is None:
        raise TypeError(
            f"llm_stream cannot read a {type(item).__name__} in an Anthropic stream: "
            f"expected {ITEMS}"
        )
    result: dict[str, Any] = to_dict()
    return result


# --------------------------------------------------------------------------- reading


def _payloads(stream: Any) -> Any:
    """The stream's events as dicts from the SDK's SSE decoder, or None to iterate it as is."""
    raw = getattr(stream, "_raw_stream", stream)  # a MessageStream wraps the raw stream
    iter_events = getattr(raw, "_iter_events", None)
    response = getattr(raw, "response", None)
    if iter_events is None or response is None or getattr(response, "is_stream_consumed", True):
        return None  # a changed SDK, or someone began to read it: the SDK reads the rest
    if hasattr(raw, "__aiter__"):
        return _async_payloads(iter_events())
    return _sync_payloads(iter_events())


def _payload(event: Any) -> dict[str, Any] | None:
    """One SSE event as the SDK's ``Stream.__stream__`` treats it; None: skip it."""
    name = event.event
    if name is None or name == "ping":
        return None
    if name == "error":
        try:
            body = json.loads(event.data)
        except ValueError:
            body = None
        raise in_band_error(body)
    data = event.data
    if not data:
        return None
    try:
        payload = json.loads(data)
    except ValueError:
        raise upstream_error("the model provider sent an event that is not JSON", None) from None
    if type(payload) is not dict:
        raise upstream_error("the model provider sent an event that is not a JSON object", None)
    return payload


async def _async_payloads(events: AsyncIterator[Any]) -> AsyncIterator[dict[str, Any]]:
    async for event in events:
        payload = _payload(event)
        if payload is not None:
            yield payload


def _sync_payloads(events: Iterator[Any]) -> Iterator[dict[str, Any]]:
    for event in events:
        payload = _payload(event)
        if payload is not None:
            yield payload


async def _async_dicts(stream: Any) -> AsyncIterator[dict[str, Any]]:
    async for event in stream:
        yield _as_dict(event)


async def _async_manager_payloads(manager: Any) -> AsyncIterator[dict[str, Any]]:
    """Enter ``messages.stream(...)`` now (its request's errors reach the read loop before any
    header is sent), read it, and exit it however the reading ends."""
    stream = await manager.__aenter__()
    try:
        async for payload in _payloads(stream) or _async_dicts(stream):
            yield payload
    finally:
        # Shielded: a client that left cancels this task, and the response must still close.
        with anyio.CancelScope(shield=True):
            await manager.__aexit__(None, None, None)


class _SyncReading(InterruptibleRead):
    """A sync stream (or manager, entered by the first ``next()``), read in the worker thread;
    ``interrupt()`` ends a read blocked between two tokens (see ``InterruptibleRead``). The
    body is at its end once ``message_stop`` has been read, or the reading failed.
    """

    __slots__ = ("_events", "_manager", "_stream")

    def __init__(self, stream: Any, *, manager: bool) -> None:
        super().__init__()
        self._stream = stream
        self._manager = manager
        self._events: Iterator[dict[str, Any]] | None = None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self

    def __next__(self) -> dict[str, Any]:
        if self._events is None:
            self._open()
        assert self._events is not None
        try:
            payload = next(self._events)
        except BaseException:
            self._end()
            raise
        if payload.get("type") == "message_stop":
            self._end()
        return payload

    def _open(self) -> None:
        if self._manager:
            # Entering makes the request. From here on the message stream stands for the
            # manager: closing it is what the manager's ``__exit__`` does.
            self._stream = self._stream.__enter__()
        payloads = _payloads(self._stream)
        self._events = payloads if payloads is not None else map(_as_dict, iter(self._stream))
        with self._lock:
            self._response = getattr(self._stream, "response", None)

    def close(self) -> None:
        """In the worker thread: release the response (and exit the manager)."""
        self._end()
        if self._events is None and self._manager:
            return  # never entered: a manager makes no request until then
        close = getattr(self._events, "close", None)
        if close is not None:
            close()
        self._stream.close()
