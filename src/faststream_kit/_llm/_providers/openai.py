"""The JSON payloads of an OpenAI ``Stream``/``AsyncStream``, without the SDK's model objects.

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

from ._errors import StreamError, library_error

__all__ = ["Payload", "sdk_payloads", "upstream_error"]

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


class _SyncPayloads:
    """Iterated in a worker thread; ``close()`` closes the SDK stream (and its connection)."""

    __slots__ = ("_events", "_stream")

    def __init__(self, stream: Any, events: Iterator[Any]) -> None:
        self._stream = stream
        self._events = events

    def __iter__(self) -> Iterator[Payload]:
        return self

    def __next__(self) -> Payload:
        data = next(self._events).data
        if data.startswith("[DONE]"):
            raise StopIteration  # the thread engine then calls close(), in this thread
        return _payload(data)

    def close(self) -> None:
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


def upstream_error(
    message: object, code: object, fallback: str = "the model reported an error"
) -> StreamError:
    """An error the model provider reported, as clients see it: a 502 ``upstream_error``
    with its message, and its own error code (if it gave one) as ``code``."""
    return library_error(
        "upstream_error",
        message if isinstance(message, str) and message else fallback,
        code=code if isinstance(code, str) and code else None,
    )
