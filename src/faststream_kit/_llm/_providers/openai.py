"""OpenAI: Chat Completions chunks and Responses API events (and compatible servers' SDKs).

The SDK's stream is read as JSON payloads, without the SDK's model objects.

Iterating an SDK stream builds a pydantic model per chunk, recursively and in Python: about
190 µs of the ~240 µs each token costs (measured with the SDK's own ``_iter_events``, which
decodes the SSE and reads the JSON in ~50 µs). ``llm_stream`` reads only a few fields of each
chunk and never hands the objects to the caller, so it takes the events from the SDK's own
decoder and reads their JSON as plain objects. For a sync stream that work runs in a worker
thread under the GIL: five times less of it leaves the event loop and ``def`` endpoints free.

What the SDK does between its decoder and its models is repeated here: ``[DONE]`` ends the
stream, and a payload with an ``error`` key raises. Its transport errors (timeouts, dropped
connections) still come from its ``_iter_events``. A stream it cannot read this way (no
``_iter_events``, already started, not ``text/event-stream``, a non-legacy stream mode) is
iterated by the SDK as before. ``_iter_events`` and ``_options`` are private to the SDK (see
"Private APIs we rely on" in ``docs/design.md``; ``tests/test_private_apis.py`` fails when
they change), and an openai ``Stream`` without ``_iter_events`` logs a warning once.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio

from .._errors import upstream_error
from .._events import Finish, LLMEvent, ReasoningDelta, TextDelta, ToolCallDelta
from ._base import InterruptibleRead, Reader

__all__ = ["ITEMS", "OpenAIReader", "Payload", "for_item", "for_stream", "sdk_payloads"]

logger = logging.getLogger("faststream_kit")

_DRAIN_SECONDS = 0.1
"""After ``[DONE]``, how long to read what is left of an async body so that its HTTP/1.1
connection goes back to the pool (the SDK's own cleanup does the same)."""


class Payload(dict[str, Any]):
    """A JSON object whose keys also read as attributes, like the SDK's models (absent: None)."""

    __slots__ = ()

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self.get(name)


def sdk_payloads(stream: Any) -> Iterator[Payload] | AsyncIterator[Payload] | None:
    """The stream's payloads read from the SDK's SSE events, or None to iterate it as is."""
    iter_events = getattr(stream, "_iter_events", None)
    response = getattr(stream, "response", None)
    if iter_events is None or response is None or not _unread_event_stream(response):
        if iter_events is None and _is_openai_stream(stream):
            _sdk_changed()
        return None
    options = getattr(stream, "_options", None)  # absent in older SDKs (1.40): read as chat
    if getattr(options, "stream_mode", "legacy") != "legacy" or getattr(
        options, "synthesize_event_and_data", None
    ):
        return None  # Assistants/agents event streams: the SDK reshapes those
    if hasattr(stream, "__aiter__"):
        return _async_payloads(iter_events())
    return _SyncPayloads(stream, iter_events())


def _is_openai_stream(stream: Any) -> bool:
    return any(
        cls.__name__ in ("Stream", "AsyncStream") and cls.__module__.startswith("openai")
        for cls in type(stream).__mro__
    )


_warned: list[bool] = []


def _sdk_changed() -> None:
    """Say once that an SDK change turned the fast path off (it still streams, more slowly)."""
    if _warned:
        return
    _warned.append(True)
    logger.warning(
        "openai's Stream has no _iter_events: llm_stream reads openai streams through the SDK's "
        "models (about 5x the CPU per token). Please report this to faststream-kit with your "
        "openai version"
    )


def _unread_event_stream(response: Any) -> bool:
    if getattr(response, "is_stream_consumed", True):
        return False  # someone began iterating: the SDK's decoder holds what it read
    content_type = getattr(response, "headers", {}).get("content-type", "")
    return isinstance(content_type, str) and content_type.startswith("text/event-stream")


_LAST_RESPONSES_EVENTS = frozenset({"response.completed", "response.failed", "response.incomplete"})
"""A Responses API stream's last event: its body ends after it."""


class _SyncPayloads(InterruptibleRead):
    """Iterated in a worker thread; ``close()`` closes the SDK stream (and its connection);
    ``interrupt()`` ends a read blocked between two tokens (see ``InterruptibleRead``)."""

    __slots__ = ("_events", "_stream")

    def __init__(self, stream: Any, events: Iterator[Any]) -> None:
        super().__init__(getattr(stream, "response", None))
        self._stream = stream
        self._events = events

    def __iter__(self) -> Iterator[Payload]:
        return self

    def __next__(self) -> Payload:
        data = next(self._events).data
        if data.startswith("[DONE]"):
            self._end()
            raise StopIteration  # the thread engine then calls close(), in this thread
        payload = _payload(data)
        if payload.get("type") in _LAST_RESPONSES_EVENTS:
            # The Responses API sends no [DONE]: the next read ends the body and may give the
            # connection back to the pool, out of interrupt()'s reach from then on.
            self._end()
        return payload

    def close(self) -> None:
        self._end()
        self._stream.close()


async def _async_payloads(events: AsyncIterator[Any]) -> AsyncIterator[Payload]:
    async for event in events:
        if event.data.startswith("[DONE]"):
            try:
                with anyio.move_on_after(_DRAIN_SECONDS):
                    async for _ in events:
                        pass
            except Exception:  # the answer is complete; only the connection is lost
                pass
            return
        yield _payload(event.data)


def _payload(data: str) -> Payload:
    try:
        payload = json.loads(data, object_hook=Payload)
    except ValueError:
        payload = None
    if isinstance(payload, dict) and payload.get("error"):
        # The SDK raises its APIError for a chat chunk that carries an error object.
        error = payload["error"]
        if isinstance(error, dict):
            raise upstream_error(error.get("message"), error.get("code"))
        raise upstream_error(None, None)
    if not isinstance(payload, Payload):
        raise upstream_error("the model provider sent an event that is not a JSON object", None)
    return payload


class OpenAIReader(Reader):
    """Chat chunks and Responses events as neutral events; remembers what ``Finish`` needs."""

    __slots__ = ("finish_reason", "payloads", "tool_indexes", "usage")

    def __init__(self, payloads: Iterator[Payload] | AsyncIterator[Payload] | None) -> None:
        self.payloads = payloads
        self.finish_reason: str | None = None
        self.usage: dict[str, int] | None = None
        self.tool_indexes: dict[int, int] = {}  # Responses output_index -> tool call index

    def items(self, stream: Any) -> Any:
        return self.payloads if self.payloads is not None else stream

    def interrupt(self) -> None:
        if isinstance(self.payloads, _SyncPayloads):
            self.payloads.interrupt()

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


ITEMS = "a chat completion chunk or a Responses API event"


def for_stream(stream: Any) -> Reader | None:
    """An openai ``Stream``/``AsyncStream`` (read through the fast path when it can be)."""
    payloads = sdk_payloads(stream)
    if payloads is not None:
        return OpenAIReader(payloads)
    return OpenAIReader(None) if _is_openai_stream(stream) else None


def for_item(item: Any) -> Reader | None:
    """A chat completion chunk (``choices``) or a Responses API event (``response.*``)."""
    if getattr(item, "choices", None) is not None:
        return OpenAIReader(None)
    kind = getattr(item, "type", None)
    if isinstance(kind, str) and (kind.startswith("response.") or kind == "error"):
        return OpenAIReader(None)
    return None
