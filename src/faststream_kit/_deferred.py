"""``DeferredResponse``: a response returned at once, whose real answer is opened when it starts.

``s3_stream`` and ``upstream_stream`` must ask another service (``GetObject``, the upstream
request) before they know their status and headers. Asking when the ASGI server starts the
response, rather than in the route, lets them be called like every other helper (``return
s3_stream(...)``, no ``await``), while every status they produce is still decided before the
first header goes out.
"""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import Awaitable, Callable, Generator
from typing import Any

import anyio
from starlette.background import BackgroundTasks
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import Message, Receive, Scope, Send

__all__ = ["DeferredResponse", "Opener"]

Opener = Callable[[Scope], Awaitable[Response]]
"""Does the I/O that must precede the headers and returns the response to send."""

_SET_COOKIE = b"set-cookie"  # the one field that is repeated, never replaced (RFC 9110 §5.3)


class DeferredResponse(Response):
    """A response whose status, headers and body come from ``open_response``, awaited when
    the ASGI server starts the response.

    What is set on this object before it starts reaches the client on whatever is opened,
    an error response included: header fields (``response.headers[...] = ...``,
    ``set_cookie()``, FastAPI's ``headers.raw.extend(...)``) replace the opened response's
    fields of the same name, ``Set-Cookie`` is added to them, and ``background`` (FastAPI
    sets its background tasks here) runs after the opened one. ``status_code`` says ``200``
    until the response has started, and the opened status after.

    ``cancel_on_disconnect``: while ``open_response`` runs, watch ``receive()`` and cancel the
    opener when the client leaves; such an opener must close what it opened when cancelled.
    ``receive_free`` is awaited before that watch reads ``receive()``, for an opener that
    reads the request body itself (``receive()`` is its until the body ends, and a client
    that leaves meanwhile ends the body with ``ClientDisconnect``). Without the watch, a
    client that left is noticed once the opened response starts, which closes its source.
    """

    def __init__(
        self,
        open_response: Opener,
        *,
        helper: str,
        cancel_on_disconnect: bool = False,
        receive_free: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self._open_response = open_response
        self._helper = helper
        self._cancel_on_disconnect = cancel_on_disconnect
        self._receive_free = receive_free
        self.status_code = 200
        self.background = None
        self.raw_headers: list[tuple[bytes, bytes]] = []

    def __await__(self) -> Generator[Any, None, DeferredResponse]:
        """``await helper(...)``, the form of 0.1: still the response itself, with a warning."""
        warnings.warn(
            f"{self._helper}() returns the response itself: drop the await "
            f"(return {self._helper}(...)); awaiting it is deprecated and will raise "
            "TypeError in the next release",
            DeprecationWarning,
            stacklevel=2,
        )
        return self
        yield  # unreachable: makes this a generator, as __await__ must return an iterator

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            opened = await self._open(scope, receive)
        except ClientDisconnect:
            opened = None  # the client left while the opener was reading its body
        if opened is None:
            if self.background is not None:
                await self.background()  # as every response does when its client left
            return
        self._hand_over(opened)
        await opened(scope, receive, send)

    async def _open(self, scope: Scope, receive: Receive) -> Response | None:
        """The opened response, or ``None`` when the client left while it was opening."""
        if not self._cancel_on_disconnect:
            return await self._open_response(scope)
        opened: Response | None = None
        opening = anyio.CancelScope()
        watch = asyncio.get_running_loop().create_task(self._watch_client(receive, opening))
        try:
            with opening:
                opened = await self._open_response(scope)
        finally:
            # Not awaited: that would give the loop a turn before the opened response reads
            # its source (aiohttp drops what it buffered once it sees the upstream fail).
            # The watch ends at the loop's next turn, before anything else reads receive().
            watch.cancel()
        # Done without an error only after it saw the client leave (and then before we resumed).
        left = watch.done() and not watch.cancelled() and watch.exception() is None
        if not left:
            return opened
        if opened is not None:
            # Opened just as the client left: the response's own disconnect path closes it.
            await opened(scope, _disconnected, _discard)
        return None

    async def _watch_client(self, receive: Receive, opening: anyio.CancelScope) -> None:
        """Cancel ``opening`` when the client leaves; ends (done, no error) only then."""
        if self._receive_free is not None:
            await self._receive_free()
        while (await receive())["type"] != "http.disconnect":
            pass  # a body nobody forwards
        opening.cancel()

    def _hand_over(self, opened: Response) -> None:
        """Give the opened response what was set on this one."""
        self.status_code = opened.status_code
        if self.raw_headers:
            replaced = {name.lower() for name, _ in self.raw_headers} - {_SET_COOKIE}
            kept = [field for field in opened.raw_headers if field[0].lower() not in replaced]
            opened.raw_headers[:] = kept + self.raw_headers
        if self.background is not None:
            if opened.background is None:
                opened.background = self.background
            else:
                opened.background = BackgroundTasks([opened.background, self.background])


async def _disconnected() -> Message:
    return {"type": "http.disconnect"}


async def _discard(message: Message) -> None:
    pass
