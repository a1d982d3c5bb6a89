"""What the scripted provider servers share (``openai_peer``, ``anthropic_peer``,
``gemini_peer``): a registry of scripts by model name, the record of every request, and a
uvicorn on loopback that does not log a scripted dropped connection as an error.

Each peer speaks its provider's wire protocol in its own module; only this machinery is here.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from starlette.types import ASGIApp

from faststream_kit.testing import LiveServer

__all__ = ["HideScriptedDrops", "PeerDroppedConnection", "ScriptedServer"]

ScriptT = TypeVar("ScriptT")
RecordT = TypeVar("RecordT")


class PeerDroppedConnection(Exception):
    """Raised inside a peer's ASGI app so uvicorn closes the connection mid-body."""


class HideScriptedDrops(logging.Filter):
    # uvicorn logs every app exception with a traceback; a scripted drop is not an error.
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], PeerDroppedConnection))


class ScriptedServer(Generic[ScriptT, RecordT]):
    """A scripted server on ``127.0.0.1``, running while the ``with`` block runs.

    A request's model name selects a script registered with :meth:`script`; any other name
    gets ``default``. ``create_app(self)`` builds the peer's ASGI app.
    """

    def __init__(
        self,
        default: ScriptT,
        create_app: Callable[[Any], ASGIApp],
        *,
        log_level: str = "warning",
    ) -> None:
        self.default = default
        self.app = create_app(self)
        self._scripts: dict[str, ScriptT] = {}
        self._requests: list[RecordT] = []
        self._arrived = threading.Condition()
        self._server = LiveServer(self.app, log_level=log_level)
        self._log_filter = HideScriptedDrops()

    # scripting

    def script(self, name: str, script: ScriptT) -> None:
        """Answer requests for model ``name`` with ``script``."""
        self._scripts[name] = script

    def script_for(self, name: str | None) -> ScriptT:
        return self._scripts.get(name or "", self.default)

    # recording

    @property
    def requests(self) -> list[RecordT]:
        """Every request so far, oldest first (a copy)."""
        with self._arrived:
            return list(self._requests)

    def wait_for_request(self, n: int = 1, timeout: float = 5.0) -> RecordT:
        """Block until ``n`` requests have arrived; return the ``n``-th (1-based)."""
        with self._arrived:
            if not self._arrived.wait_for(lambda: len(self._requests) >= n, timeout):
                raise TimeoutError(
                    f"expected {n} request(s) within {timeout} s, got {len(self._requests)}"
                )
            return self._requests[n - 1]

    def _add_record(self, record: RecordT) -> None:
        with self._arrived:
            self._requests.append(record)
            self._arrived.notify_all()

    # lifecycle

    @property
    def url(self) -> str:
        return self._server.url

    def start(self) -> None:
        self._server.start()
        # After start: uvicorn configures its loggers when it starts.
        logging.getLogger("uvicorn.error").addFilter(self._log_filter)

    def stop(self) -> None:
        self._server.stop()
        logging.getLogger("uvicorn.error").removeFilter(self._log_filter)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
