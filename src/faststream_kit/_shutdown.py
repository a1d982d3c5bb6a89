"""Ending open streams when the server shuts down.

uvicorn and hypercorn stop accepting connections on SIGTERM/SIGINT and then wait for open
responses to finish; an endless SSE stream never does, so the process hangs until it is
killed. The ASGI lifespan ``shutdown`` event comes only after the connections have closed,
too late to help. So the first response that wants a graceful end chains a handler in
front of the server's own signal handlers (at run time, in the main thread, calling the
previous handler, never patching the server's code); when it fires, every registered stream
sends its final frame and ends.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import weakref
from collections.abc import Callable
from types import FrameType
from typing import Any

__all__ = ["ShutdownWatch", "begin_shutdown", "register", "shutting_down"]

_SIGNALS = (signal.SIGTERM, signal.SIGINT)
_DRAIN_SECONDS = 1.0
"""Longest wait for the streams' final frames before the server's own handler runs."""
_DRAIN_POLL_SECONDS = 0.005

_streams: weakref.WeakSet[ShutdownWatch] = weakref.WeakSet()
_state = {"installed": False, "shutting_down": False}
_lock = threading.Lock()


class ShutdownWatch:
    """One stream's registration: ``stop`` is called in its event loop on shutdown."""

    __slots__ = ("__weakref__", "_call_soon", "stop")

    def __init__(self, stop: Callable[[], None]) -> None:
        self.stop = stop
        self._call_soon = asyncio.get_running_loop().call_soon_threadsafe

    def notify(self) -> None:
        self._call_soon(self.stop)


def shutting_down() -> bool:
    return _state["shutting_down"]


def register(stop: Callable[[], None]) -> ShutdownWatch:
    """Call ``stop`` (in this event loop) when the server begins shutting down.

    Keep the returned object alive for as long as the stream runs; dropping it unregisters.
    """
    watch = ShutdownWatch(stop)
    _install_signal_handlers()
    _streams.add(watch)
    if _state["shutting_down"]:
        watch.notify()
    return watch


def begin_shutdown() -> None:
    """End every registered stream now (also what the chained signal handler does)."""
    _state["shutting_down"] = True
    for watch in list(_streams):
        watch.notify()


def _install_signal_handlers() -> None:
    if _state["installed"] or threading.current_thread() is not threading.main_thread():
        return
    with _lock:
        if _state["installed"]:
            return
        _state["installed"] = True
        for sig in _SIGNALS:
            previous = signal.getsignal(sig)
            signal.signal(sig, _chained(previous))


def _chained(previous: Any) -> Callable[[int, FrameType | None], None]:
    def handle(signum: int, frame: FrameType | None) -> None:
        begin_shutdown()
        if callable(previous):
            _when_streams_ended(lambda: previous(signum, frame))
        elif previous == signal.SIG_DFL:
            # Nobody else handles it: do what the default would have done.
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)

    return handle


def _when_streams_ended(call: Callable[[], object]) -> None:
    """Run the server's own handler once the streams have sent their final frames.

    uvicorn and hypercorn wait for open responses after their handler ran, so it makes no
    difference there; daphne (Twisted) cancels every application at once, in the same loop
    turn, which would cut the streams before their final event. So the handler waits until
    every registered stream has ended, at most ``_DRAIN_SECONDS``.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        loop = None  # the signal came while no loop runs in this thread: nothing to wait for
    if loop is None or not _streams:
        call()
        return
    deadline = loop.time() + _DRAIN_SECONDS

    def check() -> None:
        if _streams and loop.time() < deadline:
            loop.call_later(_DRAIN_POLL_SECONDS, check)
        else:
            call()

    loop.call_soon_threadsafe(check)  # a signal handler may interrupt the loop anywhere
