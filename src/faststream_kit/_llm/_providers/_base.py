"""What every provider module shares: the :class:`Reader` base class."""

from __future__ import annotations

import contextlib
import inspect
import socket
from collections.abc import AsyncIterable, Iterable
from typing import Any

import anyio

from ..._threads import default_thread_limiter
from .._errors import sdk_error
from .._events import Finish, LLMEvent

__all__ = ["Reader", "close_stream", "shut_down_http11"]


class Reader:
    """Reads one source of one provider: its items become neutral events.

    A provider module has a subclass of this and two functions, ``for_stream(stream)`` (the
    SDK's stream object, recognised before any item is read) and ``for_item(item)`` (the first
    item of a stream nobody recognised); each returns a new reader or None. The read loop in
    ``_stream.py`` owns everything else: awaiting the source, the worker thread for a sync
    stream, ``on_complete``, timeouts and cancellation.
    """

    __slots__ = ()

    def items(self, stream: Any) -> Iterable[Any] | AsyncIterable[Any]:
        """What to iterate. A sync iterable is read in a worker thread."""
        result: Iterable[Any] | AsyncIterable[Any] = stream
        return result

    def events_for(self, item: Any) -> list[LLMEvent]:
        """One item as neutral events; raise ``upstream_error`` for an in-band error."""
        raise NotImplementedError

    def finish(self) -> Finish:
        """The last event, after the last item: finish reason and usage."""
        return Finish("stop", None)

    def error(self, exc: Exception) -> Exception:
        """An exception raised while iterating, in the library's vocabulary."""
        return sdk_error(exc)

    def interrupt(self) -> None:
        """The client left while a worker thread reads this sync stream. Called on the event
        loop, without waiting: make the worker's blocked read return now, so the provider
        sees the connection end (default: nothing; the worker closes the stream once its
        current read returns)."""

    async def close(
        self, stream: Any, items: Any, thread_limiter: anyio.CapacityLimiter | None
    ) -> None:
        """Release the provider's HTTP response, so it sees the client leave."""
        await close_stream(stream, items, thread_limiter)


async def close_stream(
    stream: Any, items: Any, thread_limiter: anyio.CapacityLimiter | None
) -> None:
    """Close what was iterated, then the SDK stream (``aclose()``, or ``close()``)."""
    if items is not None and hasattr(items, "aclose"):
        await items.aclose()
    if stream is None or stream is items:
        return
    aclose = getattr(stream, "aclose", None)
    close = getattr(stream, "close", None)
    if aclose is not None:
        await aclose()
    elif inspect.iscoroutinefunction(close):
        await close()
    elif close is not None:
        # A sync stream never handed to a worker thread (a HEAD): its close() may block (a
        # generator's finally, a socket), so not on the event loop either.
        limiter = thread_limiter or default_thread_limiter()
        await anyio.to_thread.run_sync(close, limiter=limiter)


def shut_down_http11(response: Any) -> None:
    """``shutdown(2)`` the socket of an HTTP/1.1 httpx response, from any thread.

    Unlike ``close()``, this also wakes a worker thread blocked reading that socket, so the
    provider sees the client leave between two tokens. ``network_stream`` is httpcore's public
    response extension. Call it only while the body is unread: after the end of the body the
    connection may be back in the pool, serving someone else.
    """
    if getattr(response, "http_version", None) != "HTTP/1.1":
        return  # HTTP/2: the socket carries other streams too
    network_stream = getattr(response, "extensions", {}).get("network_stream")
    sock = network_stream.get_extra_info("socket") if network_stream is not None else None
    if isinstance(sock, socket.socket):
        with contextlib.suppress(OSError):  # already closed
            sock.shutdown(socket.SHUT_RDWR)
