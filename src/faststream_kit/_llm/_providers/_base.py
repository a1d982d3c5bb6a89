"""What every provider module shares: the :class:`Reader` base class."""

from __future__ import annotations

import contextlib
import gc
import inspect
import socket
import threading
from collections.abc import AsyncIterable, Callable, Iterable, Iterator
from typing import Any

import anyio

from ..._threads import default_thread_limiter
from .._errors import sdk_error
from .._events import Finish, LLMEvent

__all__ = ["InterruptibleChain", "InterruptibleRead", "Reader", "close_stream", "shut_down_http11"]


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


_CHAIN_DEPTH = 8
"""How many generators deep to look for the HTTP response a sync generator chain reads."""


def _http_response_of(value: Any) -> Any:
    """The httpx (or httpx2) response ``value`` is, or holds as an SDK's stream, else None."""
    cls = type(value)
    module = cls.__module__
    if cls.__name__ == "Response" and module.partition(".")[0] in ("httpx", "httpx2"):
        return value
    if cls.__name__ == "HttpResponse" and module == "google.genai._api_client":
        return _http_response_of(getattr(value, "response_stream", None))
    if cls.__name__ == "Stream" and module.partition(".")[0] in ("openai", "anthropic"):
        return _http_response_of(getattr(value, "response", None))
    return None


def http_response_in_chain(generator: Any) -> Any:
    """The HTTP response a suspended sync generator chain reads, or None.

    The chain's generators iterate one another with ``for`` (the inner one is on the outer's
    value stack, not among its locals), so they are found with ``gc.get_referents``, which
    lists a suspended generator's locals and stack. Only generators are followed, at most
    ``_CHAIN_DEPTH`` of them; call it in the thread that runs the chain, between two items.
    """
    seen: set[int] = set()
    pending = [generator]
    while pending and len(seen) < _CHAIN_DEPTH:
        current = pending.pop(0)
        if id(current) in seen or getattr(current, "gi_frame", None) is None:
            continue
        seen.add(id(current))
        for value in gc.get_referents(current):
            if inspect.isgenerator(value):
                pending.append(value)
                continue
            response = _http_response_of(value)
            if response is not None:
                return response
    return None


class InterruptibleRead:
    """A sync SDK stream read in a worker thread, whose blocked read the event loop can end.

    The worker closes the stream once its current read returns; between two tokens that can
    be seconds, while the model keeps generating. So :meth:`interrupt`, called on the event
    loop when the client leaves, shuts the HTTP/1.1 connection's socket down: the peer sees
    the connection end at once, and the blocked read returns. Once the body is at its end
    (:meth:`_end`, under the lock ``interrupt`` holds, before the read that could release the
    connection) it may be back in the pool carrying another request: it is left alone then.
    """

    __slots__ = ("_ending", "_lock", "_response")

    def __init__(self, response: Any = None) -> None:
        self._lock = threading.Lock()
        self._ending = False
        self._response = response

    def _end(self) -> None:
        with self._lock:
            self._ending = True

    def interrupt(self) -> None:
        """On the event loop: end the connection the worker may be blocked reading."""
        with self._lock:
            response = self._response
            if self._ending or response is None or getattr(response, "is_closed", False):
                return
            shut_down_http11(response)


class InterruptibleChain(InterruptibleRead):
    """A sync SDK generator chain (Gemini's, LangChain's) whose HTTP response is not at hand:
    after each item (in the worker thread, the chain suspended) the response it reads is
    looked up when not known yet or closed (a continuation makes another request). Once an
    item says it is the last (``is_last``), or the chain ended, the socket is left alone.
    """

    __slots__ = ("_generator", "_is_last", "_looked")

    def __init__(self, generator: Any, is_last: Callable[[Any], bool]) -> None:
        super().__init__()
        self._generator = generator
        self._is_last = is_last
        self._looked = False  # a chain where none is found is not searched at every item

    def __iter__(self) -> Iterator[Any]:
        return self

    def __next__(self) -> Any:
        try:
            item = next(self._generator)
        except BaseException:
            self._end()
            raise
        last = self._is_last(item)
        response = self._response
        if not last and (
            (response is None and not self._looked) or (response is not None and response.is_closed)
        ):
            self._looked = True
            response = http_response_in_chain(self._generator)
        with self._lock:
            self._response = response
            self._ending = self._ending or last
        return item

    def close(self) -> None:
        self._end()
        self._generator.close()
