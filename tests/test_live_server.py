"""``faststream_kit.testing.LiveServer`` itself: what it leaves behind when it stops.

A listening socket closed twice (once by the server, once by ours) closes whatever the process
opened under that number in between: in a test suite, that is another test's pipe or pytest's
capture file, and a later, unrelated test fails with "Bad file descriptor".
"""

from __future__ import annotations

import contextlib
import gc
import socket
import warnings
from collections.abc import AsyncIterator

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from faststream_kit.testing import LiveServer


async def hello(request: object) -> PlainTextResponse:
    return PlainTextResponse("hello")


APP = Starlette(routes=[Route("/", hello)])


@pytest.mark.parametrize("server", ["uvicorn", "hypercorn", "granian"])
def test_stopping_closes_the_listening_socket_once_and_leaves_nothing_open(server: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with LiveServer(APP, server=server) as live:
            assert httpx.get(live.url).text == "hello"
        gc.collect()
    unclosed = [str(w.message) for w in caught if issubclass(w.category, ResourceWarning)]
    assert unclosed == []


@contextlib.asynccontextmanager
async def database_down(app: object) -> AsyncIterator[None]:
    raise RuntimeError("the database is down")
    yield


@pytest.mark.parametrize("server", ["uvicorn", "hypercorn", "granian"])
def test_an_app_whose_startup_fails_fails_start_and_leaves_nothing_listening(server: str) -> None:
    live = LiveServer(Starlette(lifespan=database_down), server=server)
    with pytest.raises(RuntimeError, match="failed to start"):
        live.start()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((live.host, live.port), timeout=5).close()
