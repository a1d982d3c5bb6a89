"""A real server on loopback for testing streaming routes.

``httpx.ASGITransport`` collects the whole body before handing it over, so it cannot tell a
stream from a burst. :class:`LiveServer` runs the app in uvicorn (HTTP/1.1), hypercorn
(HTTP/1.1 and HTTP/2 with prior knowledge) or granian (its embeddable server) in a
background thread, on a random port of 127.0.0.1, so tests read it over a real socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import socket
import threading
from collections.abc import Coroutine, Mapping
from types import TracebackType
from typing import Any, Literal, TypedDict, Unpack

from starlette.types import ASGIApp

from .._names import NOT_GIVEN, old_name
from .._validate import check_callable, check_mapping, non_empty_str, non_negative_seconds, one_of

__all__ = ["LiveServer", "OldShutdownGrace", "ServerName"]

ServerName = Literal["uvicorn", "hypercorn", "granian"]
"""The servers :class:`LiveServer` can run."""

SHUTDOWN_GRACE_SECONDS = 2.0
"""A test server's grace at shutdown: a test run must not wait on a stream a test left open."""


class OldShutdownGrace(TypedDict, total=False):
    """The old name of ``shutdown_grace_seconds``, accepted for one release with a warning."""

    graceful_shutdown_seconds: float


_LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")

_SET_BY_LIVE_SERVER = frozenset(
    {"app", "host", "port", "uds", "fd", "log_level", "lifespan", "timeout_graceful_shutdown"}
)


class LiveServer:
    """Serve ``app`` on ``http://127.0.0.1:<random port>`` while the ``with`` block runs.

    ```python
    with LiveServer(app) as server:
        response = httpx.get(server.url + "/stream")
    ```

    ``server="hypercorn"`` also speaks HTTP/2 over cleartext (h2c with prior knowledge), which
    ``httpx.Client(http1=False, http2=True)`` uses. ``server="granian"`` runs granian's
    embeddable server (``granian.server.embed``, which granian calls experimental): its
    Rust HTTP stack with the app on this thread's event loop. ``shutdown_grace_seconds``
    bounds how long stopping waits for open streams (2 s: a test run must not wait on a stream
    the test left open; ``graceful_shutdown_seconds``, its old name, is deprecated);
    ``uvicorn_options`` go to ``uvicorn.Config`` (for example ``{"http": "h11"}``).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        server: ServerName = "uvicorn",
        host: str = "127.0.0.1",
        shutdown_grace_seconds: float = SHUTDOWN_GRACE_SECONDS,
        log_level: str = "warning",
        uvicorn_options: Mapping[str, Any] | None = None,
        **deprecated: Unpack[OldShutdownGrace],
    ) -> None:
        check_callable("app", app, optional=False)
        one_of("server", server, ("uvicorn", "hypercorn", "granian"))
        non_empty_str("host", host)
        grace = old_name(
            "LiveServer",
            deprecated,
            "graceful_shutdown_seconds",
            "shutdown_grace_seconds",
            new_given=shutdown_grace_seconds != SHUTDOWN_GRACE_SECONDS,
        )
        if grace is NOT_GIVEN:
            non_negative_seconds("shutdown_grace_seconds", shutdown_grace_seconds)
        else:
            old_seconds: Any = grace
            shutdown_grace_seconds = non_negative_seconds("graceful_shutdown_seconds", old_seconds)
        one_of("log_level", log_level, _LOG_LEVELS)
        check_mapping("uvicorn_options", uvicorn_options)
        if uvicorn_options and server != "uvicorn":
            raise ValueError("uvicorn_options is for server='uvicorn' only")
        taken = _SET_BY_LIVE_SERVER & set(uvicorn_options or {})
        if taken:
            names = ", ".join(sorted(taken))
            raise ValueError(f"uvicorn_options may not set {names}: LiveServer sets them")
        self.app = app
        self.server = server
        self.host = host
        self.shutdown_grace_seconds = shutdown_grace_seconds
        self.log_level = log_level
        self.uvicorn_options = dict(uvicorn_options or {})
        self.port = 0
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._stop: Any = None  # a callable that asks the server to stop
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """The base URL, without a trailing slash."""
        return f"http://{self.host}:{self.port}"

    def __enter__(self) -> LiveServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> None:
        # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only when
        # the listening socket says it is TCP; without it small writes wait ~40 ms (Nagle).
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        self.port = sock.getsockname()[1]
        target = {
            "uvicorn": self._run_uvicorn,
            "hypercorn": self._run_hypercorn,
            "granian": self._run_granian,
        }[self.server]
        self._thread = threading.Thread(
            target=target, args=(sock,), name=f"live-{self.server}", daemon=True
        )
        self._thread.start()
        if not self._started.wait(timeout=20):
            raise RuntimeError(f"{self.server} did not start within 20 s")
        if self._error is not None:
            raise RuntimeError(f"{self.server} failed to start") from self._error

    def stop(self) -> None:
        if self._thread is None:
            return
        if self._stop is not None:
            self._stop()
        self._thread.join(timeout=self.shutdown_grace_seconds + 10)
        self._thread = None

    def _run_uvicorn(self, sock: socket.socket) -> None:
        import uvicorn

        config = uvicorn.Config(
            self.app,
            log_level=self.log_level,
            lifespan="auto",
            timeout_graceful_shutdown=int(max(1, self.shutdown_grace_seconds)),
            **self.uvicorn_options,
        )
        woken = asyncio.Event()  # bound to the server's loop on first use

        class Server(uvicorn.Server):
            # uvicorn's main loop looks at ``should_exit`` every 0.1 s; a test suite stops
            # hundreds of servers, so this one also wakes when ``stop()`` says so.
            async def main_loop(self) -> None:
                counter = 0
                while not await self.on_tick(counter):
                    counter = (counter + 1) % 864000  # as uvicorn: on_tick dates every 10th
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(woken.wait(), 0.1)

        server = Server(config)

        async def serve() -> None:
            loop = asyncio.get_running_loop()

            def stop() -> None:
                server.should_exit = True
                loop.call_soon_threadsafe(woken.set)

            task = asyncio.create_task(server.serve(sockets=[sock]))
            # uvicorn exposes no start event, only this flag.
            while not server.started and not task.done():  # noqa: ASYNC110
                await asyncio.sleep(0.005)
            self._stop = stop
            self._started.set()
            await task

        self._run_loop(serve(), sock)

    def _run_hypercorn(self, sock: socket.socket) -> None:
        from hypercorn.asyncio import serve
        from hypercorn.config import Config, Sockets

        sock.listen(128)

        async def main() -> None:
            serving = asyncio.Event()

            class OurSocket(Config):
                # hypercorn asks for its sockets once the app's lifespan has started: it gets
                # this one, which its server closes when it stops (then a no-op here). An
                # ``fd://`` bind made it wrap the number in a second socket object (the fd
                # closed twice), or a duplicate that leaked, listening, if the lifespan failed.
                def create_sockets(self) -> Sockets:
                    serving.set()
                    return Sockets(secure_sockets=[], insecure_sockets=[sock], quic_sockets=[])

            config = OurSocket()
            config.loglevel = self.log_level.upper()
            config.graceful_timeout = self.shutdown_grace_seconds
            shutdown = asyncio.Event()
            loop = asyncio.get_running_loop()
            self._stop = lambda: loop.call_soon_threadsafe(shutdown.set)
            # hypercorn types its app with its own ASGI types; any Starlette ASGIApp is one.
            app: Any = self.app
            task = asyncio.create_task(serve(app, config, shutdown_trigger=shutdown.wait))
            # Not a test connection: the socket listens already, served or not.
            started = asyncio.create_task(serving.wait())
            await asyncio.wait({task, started}, return_when=asyncio.FIRST_COMPLETED)
            if not serving.is_set():
                started.cancel()
                await task  # raises why it did not start
                raise RuntimeError("hypercorn stopped before it served")
            self._started.set()
            await task

        self._run_loop(main(), sock)

    def _run_granian(self, sock: socket.socket) -> None:
        from granian.constants import Interfaces
        from granian.server.embed import Server

        # granian binds its own socket: hand it the port this one reserved.
        sock.close()
        server = Server(
            self.app,
            address=self.host,
            port=self.port,
            interface=Interfaces.ASGI,
            log_enabled=self.log_level in ("debug", "trace", "info"),
        )
        # Without it, stopping waits for open streams forever.
        server.workers_kill_timeout = max(1, math.ceil(self.shutdown_grace_seconds))

        async def main() -> None:
            loop = asyncio.get_running_loop()
            self._stop = lambda: loop.call_soon_threadsafe(server.stop)
            task = asyncio.create_task(server.serve())
            listening = asyncio.create_task(_wait_listening(self.host, self.port))
            await asyncio.wait({task, listening}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                listening.cancel()
                await task  # raises why it did not start
                raise RuntimeError("granian stopped before it listened")
            self._started.set()
            await task

        self._run_loop(main())

    def _run_loop(self, main: Coroutine[Any, Any, None], sock: socket.socket | None = None) -> None:
        """Run the server thread's event loop; a failure is raised to ``start()``'s caller.

        ``sock`` is closed before ``start()`` is woken: a server that failed to start must
        not be found listening by the caller (it was, now and then, when closed after).
        """
        try:
            asyncio.run(main)
        except BaseException as exc:
            self._error = exc
        finally:
            if sock is not None:
                sock.close()
            self._started.set()


async def _wait_listening(host: str, port: int) -> None:
    for _ in range(400):
        try:
            _, writer = await asyncio.open_connection(host, port)
        except OSError:
            await asyncio.sleep(0.01)
            continue
        writer.close()
        return
