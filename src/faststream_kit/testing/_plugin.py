"""pytest plugin: the ``live_server`` fixture (registered through the ``pytest11`` entry point)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ._server import LiveServer, ServerName


@pytest.fixture
def live_server() -> Iterator[Callable[..., LiveServer]]:
    """Start apps on loopback for the duration of a test: ``live_server(app).url``.

    Call it with ``server="hypercorn"`` for HTTP/2. Every server it started is stopped when
    the test ends.
    """
    started: list[LiveServer] = []

    def start(app: Any, *, server: ServerName = "uvicorn", **options: Any) -> LiveServer:
        live = LiveServer(app, server=server, **options)
        live.start()
        started.append(live)
        return live

    yield start
    for live in reversed(started):
        live.stop()
