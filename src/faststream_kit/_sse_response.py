"""``sse_response``: a ``text/event-stream`` response from any source of events."""

from __future__ import annotations

from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from typing import Any, Unpack

import anyio
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.types import Scope

from ._names import KEEPALIVE, SEND_TIMEOUT, OldKeepalive, keepalive_argument
from ._response import StreamResponse
from ._sse import PING_FRAME, ServerSentEvent, compact_json, data_text, sse_frame
from ._validate import (
    check_background,
    check_headers,
    check_instance,
    check_limiter,
    check_request,
    check_status_code,
    optional_positive_seconds,
    returned_source,
    source_factory,
    stream_source,
)

__all__ = ["SHUTDOWN_EVENT", "encode_event", "foreign_event", "sse_response"]

Events = AsyncIterable[Any] | Iterable[Any]
EventsFactory = Callable[[str | None], Events]

SHUTDOWN_EVENT = ServerSentEvent(event="shutdown", data={"reason": "server shutting down"})
"""The last event of every open stream when the server shuts down (then the body ends)."""

_EVENT_FIELDS = frozenset({"data", "event", "id", "retry", "comment"})

_EVENTS = "a sync or async iterable of events, or a function of the Last-Event-ID returning one"


def encode_event(item: Any) -> bytes:
    """One source item as an SSE frame.

    ``ServerSentEvent`` as built; a ``dict`` as its fields (``{"data": ..., "event": ...}``);
    ``str`` and ``bytes`` as ``data``; an event of another library, recognised by its
    attributes (see :func:`foreign_event`), as its fields; anything else (a list, a
    dataclass, a pydantic model) as JSON ``data``.
    """
    if type(item) is str:
        return sse_frame(item)
    if type(item) is dict and len(item) == 1 and "data" in item:
        return sse_frame(item["data"])  # the common {"data": ...}: no field checks needed
    if isinstance(item, ServerSentEvent):
        return item.encode()
    if isinstance(item, dict):
        unknown = item.keys() - _EVENT_FIELDS
        if unknown:
            raise ValueError(
                f"event dict has unknown field(s) {sorted(unknown)}; the fields are "
                "data, event, id, retry and comment (wrap a JSON payload as {'data': ...})"
            )
        return sse_frame(**item)
    foreign = foreign_event(item)
    if foreign is not None:
        return foreign
    return sse_frame(item)


_NOT_AN_EVENT, _EVENT, _FASTAPI_EVENT = 0, 1, 2
_event_kinds: dict[type, int] = {}
"""What each item type seen so far is; bounded by :data:`_EVENT_KINDS_KEPT`."""
_EVENT_KINDS_KEPT = 256


def foreign_event(item: Any) -> bytes | None:
    """The frame of another library's event object, or None if ``item`` is not one.

    An object with the attributes ``data``, ``event``, ``id``, ``retry`` and ``comment`` is
    an event (sse-starlette's ``ServerSentEvent`` and ``JSONServerSentEvent``; its ``sep``
    is ignored, since every line ending is valid and ours is LF). One that also has
    ``raw_data`` is FastAPI's (``fastapi.sse.ServerSentEvent``), sent as FastAPI sends it:
    ``raw_data`` as is, else ``data`` as JSON (a ``str`` is sent quoted). The fields get the
    checks of :func:`sse_frame`. Neither library is imported; the first item of a type
    decides for its type, so other objects pay one dict lookup.
    """
    kind = _event_kinds.get(type(item))
    if kind is None:
        kind = _event_kind(item)
        if len(_event_kinds) < _EVENT_KINDS_KEPT:
            _event_kinds[type(item)] = kind
    if kind == _NOT_AN_EVENT:
        return None
    data = item.data
    if kind == _FASTAPI_EVENT:
        raw_data = item.raw_data
        if raw_data is not None:
            data = raw_data
        elif isinstance(data, str | bytes | bytearray | memoryview):
            data = compact_json(data_text(data))
    return sse_frame(data, event=item.event, id=item.id, retry=item.retry, comment=item.comment)


def _event_kind(item: Any) -> int:
    if not all(hasattr(item, name) for name in _EVENT_FIELDS):
        return _NOT_AN_EVENT
    return _FASTAPI_EVENT if hasattr(item, "raw_data") else _EVENT


def last_event_id(scope: Scope) -> str | None:
    """The ``Last-Event-ID`` request header, which ``EventSource`` sends when it reconnects.

    ``EventSource`` sends the id as UTF-8; octets that are not UTF-8 become U+FFFD rather
    than an error, so the source always gets a valid ``str`` (or ``None``: absent or empty).
    """
    for name, value in scope.get("headers", ()):
        if name == b"last-event-id":
            return bytes(value).decode("utf-8", errors="replace") or None
    return None


def sse_response(
    events: Events | EventsFactory,
    *,
    keepalive: float | None = KEEPALIVE,
    retry: int | None = None,
    status_code: int = 200,
    headers: Mapping[str, str] | None = None,
    background: BackgroundTask | None = None,
    send_timeout: float | None = SEND_TIMEOUT,
    idle_timeout: float | None = None,
    shutdown_event: ServerSentEvent | None = SHUTDOWN_EVENT,
    thread_limiter: anyio.CapacityLimiter | None = None,
    request: Request | None = None,
    **deprecated: Unpack[OldKeepalive],
) -> StreamResponse:
    """Stream Server-Sent Events.

    ``events`` is a sync or async iterable of items (see :func:`encode_event`), or a function
    that takes the request's ``Last-Event-ID`` (``None`` on a first connection) and returns
    one, so a reconnecting ``EventSource`` resumes where it left off:

    ```python
    @app.get("/events")
    async def events():
        async def updates(last_event_id: str | None):
            start = int(last_event_id or 0) + 1
            for n in range(start, start + 3):
                yield ServerSentEvent(data={"n": n}, id=str(n))

        return sse_response(updates)
    ```

    ``keepalive`` sends a ``: ping`` comment after that many idle seconds (``None`` turns
    it off; ``ping``, its old name, is deprecated); it is idle-based, so a busy stream sends
    none. ``retry`` is sent once, first, and tells the browser how many milliseconds to wait
    before reconnecting. When the source fails after the first event, the stream ends with
    ``event: error`` and a JSON body ``{"type": ..., "message": ...}``; before it, the
    client gets an HTTP error response. When the server shuts down, each open stream sends
    ``shutdown_event`` and ends, so it never holds the shutdown up. ``send_timeout`` drops a
    client that stops reading; ``idle_timeout`` ends a source silent for that long.

    Pass the route's ``request`` when the source reads the request body while the response
    streams.
    """
    # Every argument under the name the caller used, before StreamResponse checks its own.
    if _is_events_factory(events):
        source_factory("events", events, "the Last-Event-ID")
    else:
        stream_source("events", events, what=_EVENTS)
    keepalive = keepalive_argument("sse_response", keepalive, deprecated)
    if retry is not None:
        ServerSentEvent(retry=retry)  # validates with the field's name in the message
    check_status_code("status_code", status_code)
    check_headers("headers", headers)
    check_background("background", background)
    optional_positive_seconds("send_timeout", send_timeout)
    optional_positive_seconds("idle_timeout", idle_timeout)
    check_instance("shutdown_event", shutdown_event, ServerSentEvent)
    check_limiter("thread_limiter", thread_limiter)
    check_request("request", request)
    preamble = sse_frame(retry=retry) if retry is not None else b""
    content: Events | Callable[[Scope], Events]
    if _is_events_factory(events):
        factory: EventsFactory = events  # type: ignore[assignment]

        def content(scope: Scope) -> Events:
            # Only now can a factory's result be checked: a wrong one is the caller's bug
            # (a 500, logged naming ``events``), not the client's.
            opened: Events = returned_source(
                "events", factory(last_event_id(scope)), what="a sync or async iterable of events"
            )
            return opened

    else:
        content = events  # type: ignore[assignment]
    return StreamResponse(
        content,
        status_code=status_code,
        headers=headers,
        media_type="text/event-stream",
        background=background,
        keepalive=keepalive,
        keepalive_frame=PING_FRAME,
        send_timeout=send_timeout,
        idle_timeout=idle_timeout,
        encode=encode_event,
        preamble=preamble,
        shutdown_frame=shutdown_event.encode() if shutdown_event is not None else None,
        thread_limiter=thread_limiter,
        request=request,
    )


def _is_events_factory(events: object) -> bool:
    return callable(events) and not isinstance(events, AsyncIterable | Iterable)
