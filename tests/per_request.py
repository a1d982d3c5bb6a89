"""What an app under test recorded, filed per request.

A server that serves a whole test module outlives each test, and what a request causes (an
``on_complete`` call, a source's ``finally``) may come after its response has reached the
client. So a record is filed under the request that caused it (the ``X-Test-Request``
header, from the ``request_id`` fixture), never in a list that each test clears, and a test
reads its request's record once the app has returned from handling that request: nothing the
request causes comes later, and nothing another test's request caused is in it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

import pytest
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = ["REQUEST_ID", "PerRequest"]

REQUEST_ID = "x-test-request"
"""The request header that names a test's request."""

T = TypeVar("T")


class PerRequest(Generic[T]):
    """A record per request id, made by ``new`` when the request first touches it."""

    def __init__(self, new: Callable[[], T]) -> None:
        self._new = new
        self._changed = threading.Condition()
        self._records: dict[str, T] = {}
        self._handled: set[str] = set()

    def of(self, request_id: str) -> T:
        """The record of ``request_id`` (thread-safe: the app runs in the server's thread)."""
        with self._changed:
            if request_id not in self._records:
                self._records[request_id] = self._new()
            return self._records[request_id]

    def around(self, app: ASGIApp) -> ASGIApp:
        """``app``, noting when it has returned from each named request."""

        async def noted(scope: Scope, receive: Receive, send: Send) -> None:
            try:
                await app(scope, receive, send)
            finally:
                if scope["type"] == "http" and (request_id := Headers(scope=scope).get(REQUEST_ID)):
                    with self._changed:
                        self._handled.add(request_id)
                        self._changed.notify_all()

        return noted

    def after(self, request_id: str, timeout: float = 5.0) -> T:
        """The record of ``request_id`` once the app has finished handling that request."""
        with self._changed:
            if not self._changed.wait_for(lambda: request_id in self._handled, timeout):
                pytest.fail(f"the app was still handling request {request_id!r} after {timeout} s")
        return self.of(request_id)
