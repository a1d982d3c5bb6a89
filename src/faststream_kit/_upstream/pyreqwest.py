"""The ``pyreqwest.client.Client`` edge of :func:`upstream_stream` (pyreqwest is imported lazily).

pyreqwest is a Rust HTTP client (reqwest on tokio): its socket reads and HTTP parsing run on
its own runtime threads, so the event loop only hands chunks on. Two of its defaults are wrong
for a proxy and are set per request here:

* ``streamed_read_buffer_limit``: a streamed response first reads that much body (64 KiB by
  default) before it returns the headers, and then hands the body over in batches of that
  size. An SSE or LLM stream would wait for 64 KiB. With ``0`` the headers come as soon as
  they arrive and each chunk as soon as it is read.
* the timeouts: pyreqwest has a per-request *total* timeout only, so ``read_timeout`` bounds
  the wait for the headers and each body read here, with asyncio. It cannot tell when a
  connection is up, so ``connect_timeout`` is the client's own (``ClientBuilder``).

Two others can only be set on the client, so the caller builds it for proxying (see
``docs/upstream.md``): ``follow_redirects(False)`` and no automatic decompression
(``gzip``/``brotli``/``zstd``/``deflate(False)``), which would otherwise decode a body our
client asked to receive compressed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any
from urllib.parse import urlencode

from ._base import Header, cannot_connect, client_closed, connection_failed, upstream_timeout

__all__ = ["open_pyreqwest"]


async def open_pyreqwest(
    client: Any,
    method: str,
    url: str,
    *,
    params: Any,
    headers: list[Header],
    content: Any,
    connect_timeout: float | None,
    read_timeout: float | None,
) -> PyreqwestUpstream:
    """Send the request and return once the upstream's headers arrived."""
    from pyreqwest import exceptions as errors

    builder = client.request(method, _with_query(url, params))
    # Starlette decodes request header octets as latin-1, and pyreqwest takes str values it
    # encodes as UTF-8: decoding the octets as UTF-8 first sends the client's octets back
    # (what aiohttp.py does for the same reason; octets that are not UTF-8 become U+FFFD).
    builder = builder.headers(
        [
            (name, value if value.isascii() else value.encode("latin-1").decode("utf-8", "replace"))
            for name, value in headers
        ]
    )
    if isinstance(content, str):
        builder = builder.body_text(content)
    elif isinstance(content, bytes | bytearray):
        builder = builder.body_bytes(content)
    elif content is not None:
        builder = builder.body_stream(content)
    request = builder.streamed_read_buffer_limit(0).build_streamed()
    try:
        # The headers within read_timeout of sending, connecting included: pyreqwest cannot
        # tell us when the connection is up, and connect_timeout + read_timeout would let an
        # impatient route (read_timeout=0.5) wait 10 s. connect_timeout applies where the
        # client was built with one (ClientBuilder.connect_timeout); docs/upstream.md says so.
        async with asyncio.timeout(read_timeout):
            response = await request.__aenter__()
    except TimeoutError as exc:
        if isinstance(exc, errors.ConnectTimeoutError | errors.PoolTimeoutError):
            raise upstream_timeout("connect", None) from exc  # the client's own timeouts
        raise upstream_timeout("read", read_timeout) from exc
    except errors.ClientClosedError as exc:
        raise client_closed("pyreqwest Client") from exc
    except errors.ConnectError as exc:
        raise cannot_connect(type(exc).__name__) from exc
    except errors.RequestError as exc:
        raise connection_failed(type(exc).__name__) from exc
    except RuntimeError as exc:  # pyreqwest says "Client was closed" for a closed client
        if "closed" in str(exc).lower():
            raise client_closed("pyreqwest Client") from exc
        raise
    return PyreqwestUpstream(request, response, read_timeout)


def _with_query(url: str, params: Any) -> str:
    """``url`` with ``params`` appended (pyreqwest's ``query()`` takes no ``str`` form)."""
    if params is None:
        return url
    if isinstance(params, str):
        query = params.lstrip("?")
    else:
        pairs = _pairs(params)
        query = urlencode([(k, _query_value(v)) for k, v in pairs])
    if not query:
        return url
    return f"{url}{'&' if '?' in url else '?'}{query}"


def _pairs(params: Any) -> list[tuple[Any, Any]]:
    multi_items = getattr(params, "multi_items", None)  # starlette QueryParams: repeated keys
    if callable(multi_items):
        return list(multi_items())
    if isinstance(params, Mapping):
        pairs: list[tuple[Any, Any]] = []
        for key, value in params.items():
            if isinstance(value, list | tuple):
                pairs.extend((key, item) for item in value)
            else:
                pairs.append((key, value))
        return pairs
    return list(params)


def _query_value(value: Any) -> str:
    # httpx's rendering, so that the same params give the same URL with every client.
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return ""
    return str(value)


class PyreqwestUpstream:
    def __init__(self, request: Any, response: Any, read_timeout: float | None) -> None:
        self._request = request
        self._response = response
        self._read_timeout = read_timeout
        self.status_code: int = response.status
        self.headers: list[Header] = list(response.headers.items())

    async def iter_raw(self) -> AsyncIterator[bytes]:
        from pyreqwest import exceptions as errors

        reader = self._response.body_reader
        read_timeout = self._read_timeout
        loop = asyncio.get_running_loop()
        try:
            while True:
                if read_timeout is None:
                    chunk = await reader.read_chunk()
                else:
                    async with asyncio.timeout(loop.time() + read_timeout):
                        chunk = await reader.read_chunk()
                if chunk is None:
                    return
                # ``Bytes`` is pyreqwest's zero-copy view of its buffer; an ASGI body must be
                # ``bytes``, so this is the one copy the relay makes.
                yield chunk.to_bytes()
        except TimeoutError as exc:
            raise upstream_timeout("read", read_timeout) from exc
        except errors.RequestError as exc:
            raise connection_failed(type(exc).__name__) from exc

    async def close(self, *, complete: bool) -> None:
        # pyreqwest hands a fully read connection back to its pool; closing the response
        # early cancels its body reader, which drops (closes) the connection.
        await self._request.__aexit__(None, None, None)
