"""Anthropic Messages streams: ``messages.create(..., stream=True)`` and ``messages.stream()``.

What ``llm_stream`` accepts from the ``anthropic`` SDK (and its Bedrock / Vertex clients,
which stream the same events), sync or async:

- the ``Stream`` / ``AsyncStream`` of raw events that ``messages.create(..., stream=True)``
  returns (or an awaitable of one: pass the async ``create()`` call without awaiting it);
- the ``MessageStream`` / ``AsyncMessageStream`` a ``messages.stream(...)`` manager gives in
  its ``with`` block;
- the manager itself, ``messages.stream(...)`` without ``with``: it is entered when the
  response starts (so the request's errors become statuses) and exited when it ends.

The events, in wire order (``lib/streaming/_messages.py`` accumulates the same ones):
``message_start`` (input tokens), per content block ``content_block_start`` /
``content_block_delta`` (``text_delta``, ``thinking_delta`` -> reasoning, ``signature_delta``,
``input_json_delta`` -> tool-call arguments, ``citations_delta``) / ``content_block_stop``,
``message_delta`` (stop reason, output tokens), ``message_stop``. ``ping`` is skipped, and an
``error`` event (``overloaded_error`` when the API is overloaded mid-answer) ends the stream
with an error.

Like the OpenAI provider, the stream is read from the SDK's own SSE decoder
(``Stream._iter_events()``) and each event's JSON read as a plain ``dict``, without building
the SDK's pydantic model per token: what the SDK does between the two is repeated here
(``ping`` and events without a name are skipped, an ``error`` event raises). A stream the
SDK has already begun to read is iterated through its models, which gives the same events.
``_iter_events`` and ``MessageStream._raw_stream`` are private to the SDK ("Private APIs we
rely on" in ``docs/design.md``; ``tests/test_private_apis.py`` fails when they change).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio

from ..._errors import library_error
from .._errors import sdk_error, upstream_error
from .._events import Finish, LLMEvent, ReasoningDelta, TextDelta, ToolCallDelta
from ._base import Reader

__all__ = ["STOP_REASONS", "for_item", "for_stream"]

STOP_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
"""Anthropic's ``stop_reason`` -> the OpenAI finish reason it means; any other (such as
``pause_turn``) is passed on as Anthropic names it."""

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
        return None
    name = cls.__name__
    if name in _RAW_STREAMS or name in _MESSAGE_STREAMS:
        return MessagesReader()
    if name in _MANAGERS:
        return MessagesReader(manager=True)
    return None


def for_item(item: Any) -> Reader | None:
    """The first event of an Anthropic stream nobody recognised (someone's wrapper)."""
    if type(item).__module__.startswith("anthropic") and isinstance(
        getattr(item, "type", None), str
    ):
        return MessagesReader()
    return None


class MessagesReader(Reader):
    """Messages stream events -> neutral events; remembers the stop reason and the usage."""

    __slots__ = ("_fast", "_manager", "_stopped", "_stop_reason", "_tools", "_usage")

    def __init__(self, *, manager: bool = False) -> None:
        self._manager = manager
        self._fast = False  # items are plain dicts from the SDK's SSE decoder
        self._stopped = False  # message_stop arrived: the answer is complete
        self._stop_reason: str | None = None
        self._usage: dict[str, int] = {}  # Anthropic's own counters, as last reported
        self._tools: dict[int, int] = {}  # content block index -> tool call index

    def items(self, stream: Any) -> Any:
        if self._manager:
            self._fast = True
            if hasattr(stream, "__aenter__"):
                return _async_manager_payloads(stream)
            return _SyncManagerPayloads(stream)
        payloads = _payloads(stream)
        if payloads is None:
            return stream
        self._fast = True
        return payloads

    def events_for(self, item: Any) -> list[LLMEvent]:
        if not self._fast:
            item = _as_dict(item)
        kind = item.get("type")
        if kind == "content_block_delta":
            delta = item["delta"]
            delta_type = delta.get("type")
            if delta_type == "text_delta":
                text = delta["text"]
                return [TextDelta(text)] if text else []
            if delta_type == "thinking_delta":
                thinking = delta["thinking"]
                return [ReasoningDelta(thinking)] if thinking else []
            if delta_type == "input_json_delta":
                piece = delta["partial_json"]
                index = self._tools.get(item["index"])
                return [ToolCallDelta(index, None, None, piece)] if piece and index is not None else []
            return []  # signature_delta, citations_delta: nothing a format carries
        if kind == "content_block_start":
            block = item["content_block"]
            if block.get("type") != "tool_use":
                return []  # text, thinking, redacted thinking, server-side tool blocks
            index = self._tools.setdefault(item["index"], len(self._tools))
            return [ToolCallDelta(index, block.get("id"), block.get("name"), "")]
        if kind == "message_start":
            self._count(item["message"].get("usage"))
        elif kind == "message_delta":
            self._stop_reason = item["delta"].get("stop_reason") or self._stop_reason
            self._count(item.get("usage"))
        elif kind == "message_stop":
            self._stopped = True
        elif kind == "error":  # only from a wrapper that yields the error event itself
            raise _in_band_error(item)
        return []

    def _count(self, usage: Any) -> None:
        # message_delta counts are cumulative: a later one replaces an earlier one.
        if isinstance(usage, dict):
            for name, value in usage.items():
                if type(value) is int:
                    self._usage[name] = value

    def finish(self) -> Finish:
        if not self._stopped:
            # The body ended cleanly but the answer did not: a proxy or load balancer cut
            # it short. Passing it on as finished would hide that it is incomplete.
            raise upstream_error("the model's answer ended before its message_stop event", None)
        reason = self._stop_reason or "end_turn"
        return Finish(STOP_REASONS.get(reason, reason), _usage(self._usage))

    def error(self, exc: Exception) -> Exception:
        status = getattr(exc, "status_code", None)
        if isinstance(status, int) and status < 400:
            # An ``event: error`` read by the SDK: it raises it with the stream's own 200.
            return _in_band_error(getattr(exc, "body", None))
        if isinstance(exc, json.JSONDecodeError):
            return upstream_error("the model provider sent an event that is not JSON", None)
        return sdk_error(exc)


def _usage(counts: dict[str, int]) -> dict[str, int] | None:
    """Anthropic's counters as OpenAI's: its ``input_tokens`` leave out the prompt tokens read
    from or written to the cache, which OpenAI's ``prompt_tokens`` include."""
    if not counts:
        return None
    prompt = (
        counts.get("input_tokens", 0)
        + counts.get("cache_creation_input_tokens", 0)
        + counts.get("cache_read_input_tokens", 0)
    )
    completion = counts.get("output_tokens", 0)
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }


def _in_band_error(body: Any) -> Exception:
    """An ``error`` event's ``{"type": "error", "error": {"type", "message"}}`` as ours."""
    error = body.get("error") if isinstance(body, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if kind == "overloaded_error":
        return library_error("unavailable", "the model provider is overloaded; retry later")
    if kind == "rate_limit_error":
        return library_error(
            "rate_limited", "the model provider is rate limiting requests; retry later"
        )
    return upstream_error(message, kind)


def _as_dict(item: Any) -> dict[str, Any]:
    """An SDK event model (or a dict) as the wire's JSON object."""
    if isinstance(item, dict):
        return item
    to_dict = getattr(item, "to_dict", None)
    if to_dict is not None:
        result: dict[str, Any] = to_dict()
        return result
    raise TypeError(
        f"llm_stream cannot read a {type(item).__name__} from an Anthropic stream: "
        "expected a Messages stream event"
    )


# --------------------------------------------------------------------------- fast path


def _payloads(stream: Any) -> Iterator[dict[str, Any]] | AsyncIterator[dict[str, Any]] | None:
    """The stream's events as dicts from the SDK's SSE decoder, or None to iterate it as is."""
    raw = getattr(stream, "_raw_stream", stream)  # a MessageStream wraps the raw stream
    iter_events = getattr(raw, "_iter_events", None)
    response = getattr(raw, "response", None)
    if iter_events is None or response is None or getattr(response, "is_stream_consumed", True):
        return None  # an older or changed SDK, or someone began reading it: the SDK's way
    if hasattr(raw, "__aiter__"):
        return _async_payloads(iter_events())
    return _SyncPayloads(stream, iter_events())


def _payload(event: Any) -> dict[str, Any] | None:
    """One SSE event as the SDK's ``__stream__`` treats it: None to skip it."""
    name = event.event
    if name is None or name == "ping":
        return None
    if name == "error":
        try:
            body = json.loads(event.data)
        except ValueError:
            body = None
        raise _in_band_error(body)
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


class _SyncPayloads:
    """Iterated in a worker thread; ``close()`` closes the SDK stream (and its connection)."""

    __slots__ = ("_events", "_stream")

    def __init__(self, stream: Any, events: Iterator[Any]) -> None:
        self._stream = stream
        self._events = events

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self

    def __next__(self) -> dict[str, Any]:
        while True:
            payload = _payload(next(self._events))
            if payload is not None:
                return payload

    def close(self) -> None:
        self._stream.close()


async def _async_manager_payloads(manager: Any) -> AsyncIterator[dict[str, Any]]:
    """Enter ``messages.stream(...)`` now (the request's errors reach the read loop before any
    header is sent), read it, and exit it however the reading ends."""
    stream = await manager.__aenter__()
    try:
        payloads = _payloads(stream)
        async for payload in payloads if payloads is not None else _async_dicts(stream):
            yield payload
    finally:
        # Shielded: a client that left cancels this task, and the response must still close.
        with anyio.CancelScope(shield=True):
            await manager.__aexit__(None, None, None)


async def _async_dicts(stream: Any) -> AsyncIterator[dict[str, Any]]:
    async for event in stream:
        yield _as_dict(event)


class _SyncManagerPayloads:
    """A sync ``messages.stream(...)`` manager, entered by the first ``next()`` (in the worker
    thread, so the request blocks no event loop) and exited by ``close()``."""

    __slots__ = ("_manager", "_payloads")

    def __init__(self, manager: Any) -> None:
        self._manager = manager
        self._payloads: Iterator[dict[str, Any]] | None = None

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self

    def __next__(self) -> dict[str, Any]:
        if self._payloads is None:
            stream = self._manager.__enter__()
            payloads = _payloads(stream)
            self._payloads = (
                payloads if isinstance(payloads, Iterator) else map(_as_dict, iter(stream))
            )
        return next(self._payloads)

    def close(self) -> None:
        if self._payloads is not None:
            self._manager.__exit__(None, None, None)
