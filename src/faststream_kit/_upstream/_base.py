"""What the proxy and its client adapters share: the adapter protocol and its errors.

The adapters (``httpx.py``, ``aiohttp.py``, ``pyreqwest.py``) import this module and nothing
else of ours, and the proxy imports them lazily, so there is no import cycle.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Literal, Protocol

from .._errors import StreamError, library_error

__all__ = [
    "Header",
    "Upstream",
    "cannot_connect",
    "client_closed",
    "connection_failed",
    "is_pyreqwest_client",
    "is_sync_pyreqwest_client",
    "upstream_timeout",
]

Header = tuple[str, str]


class Upstream(Protocol):
    """One upstream response, whatever the client library: what the adapters return."""

    status_code: int
    headers: list[Header]

    def iter_raw(self) -> AsyncIterator[bytes]:
        """The body exactly as received (still compressed); raises :class:`StreamError`."""
        ...

    async def close(self, *, complete: bool) -> None:
        """Give the connection back to the pool if ``complete``, else close it."""
        ...


def cannot_connect(detail: str) -> StreamError:
    """Nothing listens, DNS failed, the connection was refused."""
    return library_error(
        "upstream_unavailable", f"Could not connect to the upstream service ({detail})."
    )


def connection_failed(detail: str) -> StreamError:
    """The connection broke before or while the upstream answered."""
    return library_error(
        "upstream_unavailable", f"The connection to the upstream service failed ({detail})."
    )


def upstream_timeout(phase: Literal["connect", "read"], seconds: float | None) -> StreamError:
    what = "accept the connection" if phase == "connect" else "answer"
    within = "in time" if seconds is None else f"within {seconds} s"  # None: the client's own
    return library_error("timeout", f"The upstream service did not {what} {within}.")


def client_closed(kind: str) -> RuntimeError:
    """The caller closed its client before the response started: a bug in the route."""
    return RuntimeError(
        f"client (the {kind}) was closed before the response started: upstream_stream() "
        "sends the request after the route returned, so create the client for the app's "
        "lifetime (in its lifespan), not in an `async with` inside the route"
    )


def is_pyreqwest_client(client: Any) -> bool:
    """A pyreqwest client, told by its shape without importing pyreqwest: its class comes
    from the ``pyreqwest`` package and it has ``request()``."""
    module = type(client).__module__ or ""
    return module.split(".", 1)[0] == "pyreqwest" and callable(getattr(client, "request", None))


def is_sync_pyreqwest_client(client: Any) -> bool:
    """pyreqwest's ``SyncClient``: a plain context manager, where ``Client`` is an async one."""
    return is_pyreqwest_client(client) and not hasattr(client, "__aenter__")
