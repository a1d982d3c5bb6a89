"""``EventSourceResponse`` and ``NDJSONResponse``: stream classes for ``yield`` path operations.

Name one as FastAPI's ``response_class=`` on a path operation that ``yield``s, or build one
from an iterable as you would a ``StreamingResponse``. FastAPI hands the generator to any
response class that is not one of its own (``response_class(content=generator, ...)``), so
everything else is ours: the core (:class:`StreamResponse`) brings the headers, disconnect,
keepalives, shutdown and the error contract; this module adds the formats and, on a FastAPI
route, the item validation FastAPI does for its own classes (:mod:`._route_items`).

Any other ``StreamResponse`` subclass with a ``media_type`` class attribute works the same
way for text or bytes items (``class CSVResponse(StreamResponse): media_type = "text/csv"``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from ._response import Content, Encoder, SourceFactory, StreamResponse
from ._route_items import Serializer, item_serializer
from ._sse import ServerSentEvent, compact_json, json_data_frame, sse_frame
from ._sse_response import SHUTDOWN_EVENT, encode_event, foreign_event
from ._validate import check_instance

__all__ = ["NDJSON_SHUTDOWN_LINE", "EventSourceResponse", "NDJSONResponse"]

NDJSON_SHUTDOWN_LINE: Mapping[str, str] = {"type": "shutdown", "reason": "server shutting down"}
"""The last line of every open NDJSON stream when the server shuts down (then the body
ends): the counterpart of SSE's ``event: shutdown``, with ``type`` as in the error line."""


class _ItemStreamResponse(StreamResponse):
    """A stream of items in a JSON-based format; on a FastAPI route that declares an item
    type, items are validated and serialized against it."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            serialize = item_serializer(scope.get("route"))
            if serialize is not None:
                self._encode = self._typed_encoder(serialize)
        await super().__call__(scope, receive, send)

    def _typed_encoder(self, serialize: Serializer) -> Encoder:
        raise NotImplementedError  # pragma: no cover


class EventSourceResponse(_ItemStreamResponse):
    """Server-Sent Events (``text/event-stream``) from the items of an iterable.

    On a FastAPI ``yield`` path operation (``response_class=EventSourceResponse``) whose
    return annotation names the item type (``-> AsyncIterator[Tick]``), each item is
    validated and sent as JSON ``data``, as FastAPI's own ``EventSourceResponse`` does.
    Otherwise items are encoded as :func:`sse_response` encodes them: a
    :class:`ServerSentEvent`, a ``dict`` of its fields, ``str`` data as it is, anything else
    as JSON data. Events (ours, FastAPI's, sse-starlette's) are always sent as events, with
    all their fields.

    ``keepalive`` sends a ``: ping`` comment after that many idle seconds; ``retry`` is sent
    first and tells ``EventSource`` how many milliseconds to wait before reconnecting; on
    server shutdown the stream ends with ``shutdown_event`` (``None``: it is not ended).
    The rest is :class:`StreamResponse`'s.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        content: Content | SourceFactory,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
        *,
        keepalive: float | None = 15.0,
        send_timeout: float | None = 30.0,
        idle_timeout: float | None = None,
        retry: int | None = None,
        shutdown_event: ServerSentEvent | None = SHUTDOWN_EVENT,
        thread_limiter: anyio.CapacityLimiter | None = None,
        request: Request | None = None,
    ) -> None:
        if retry is not None:
            ServerSentEvent(retry=retry)  # validates with the field's name in the message
        check_instance("shutdown_event", shutdown_event, ServerSentEvent)
        super().__init__(
            content,
            status_code,
            headers,
            media_type,
            background,
            keepalive=keepalive,
            send_timeout=send_timeout,
            idle_timeout=idle_timeout,
            thread_limiter=thread_limiter,
            request=request,
            encode=encode_event,
            preamble=sse_frame(retry=retry) if retry is not None else b"",
            shutdown_frame=shutdown_event.encode() if shutdown_event is not None else None,
        )

    def _typed_encoder(self, serialize: Serializer) -> Encoder:
        def encode(item: Any) -> bytes:
            # Events are built by the route itself: sent as they are, unvalidated (FastAPI
            # skips them too, so a route may mix events and items).
            if isinstance(item, ServerSentEvent):
                return item.encode()
            frame = foreign_event(item)
            if frame is not None:
                return frame
            return json_data_frame(serialize(item))

        return encode


class NDJSONResponse(_ItemStreamResponse):
    """Newline-delimited JSON (``application/x-ndjson``): each item one compact JSON line.

    On a FastAPI ``yield`` path operation (``response_class=NDJSONResponse``) whose return
    annotation names the item type, each item is validated and serialized against it, as
    FastAPI does for its own JSON Lines; otherwise pydantic models, dataclasses, dicts, lists,
    strings and numbers are written as JSON. ``keepalive`` sends an empty line (which JSON
    Lines readers skip) after that many idle seconds; on server shutdown the stream ends
    with the line ``shutdown_line`` (``None``: it is not ended). The rest is
    :class:`StreamResponse`'s.
    """

    media_type = "application/x-ndjson"

    def __init__(
        self,
        content: Content | SourceFactory,
        status_code: int = 200,
        headers: Mapping[str, str] | None = None,
        media_type: str | None = None,
        background: BackgroundTask | None = None,
        *,
        keepalive: float | None = 15.0,
        send_timeout: float | None = 30.0,
        idle_timeout: float | None = None,
        shutdown_line: object = NDJSON_SHUTDOWN_LINE,
        thread_limiter: anyio.CapacityLimiter | None = None,
        request: Request | None = None,
    ) -> None:
        shutdown_frame = None
        if shutdown_line is not None:
            try:
                shutdown_frame = json_line(shutdown_line)
            except ValueError as exc:
                raise ValueError(f"shutdown_line must be JSON-serialisable: {exc}") from None
        super().__init__(
            content,
            status_code,
            headers,
            media_type,
            background,
            keepalive=keepalive,
            send_timeout=send_timeout,
            idle_timeout=idle_timeout,
            thread_limiter=thread_limiter,
            request=request,
            encode=json_line,
            shutdown_frame=shutdown_frame,
        )

    def _typed_encoder(self, serialize: Serializer) -> Encoder:
        def encode(item: Any) -> bytes:
            return serialize(item) + b"\n"

        return encode


def json_line(item: Any) -> bytes:
    """One item as a compact JSON line: pydantic models by their own ``model_dump_json()``."""
    model_dump_json = getattr(item, "model_dump_json", None)
    if model_dump_json is not None and not isinstance(item, type):
        text: str = model_dump_json()
    else:
        try:
            text = compact_json(item)
        except TypeError as exc:
            raise ValueError(f"an NDJSON item must be JSON-serialisable: {exc}") from None
    return text.encode() + b"\n"
