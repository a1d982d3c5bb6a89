"""The ``aiohttp.ClientSession`` edge of :func:`upstream_stream` (aiohttp is imported lazily)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ._base import Header, cannot_connect, client_closed, connection_failed, upstream_timeout

__all__ = ["open_aiohttp"]


async def open_aiohttp(
    session: Any,
    method: str,
    url: str,
    *,
    params: Any,
    headers: list[Header],
    content: Any,
    connect_timeout: float | None,
    read_timeout: float | None,
) -> AiohttpUpstream:
    """Send the request and return once the upstream's headers arrived."""
    import aiohttp

    if session.closed is True:  # a bool property; stand-ins may answer anything
        raise client_closed("aiohttp.ClientSession")
    # connect covers waiting for a pooled connection too; sock_read is per read, like httpx's.
    timeout = aiohttp.ClientTimeout(
        total=None, connect=connect_timeout, sock_connect=connect_timeout, sock_read=read_timeout
    )
    try:
        response = await session.request(
            method,
            url,
            params=params,
            headers=_as_sent(headers),
            data=content,
            timeout=timeout,
            allow_redirects=False,  # a proxy hands redirects to its client
            auto_decompress=False,  # we decide whether to decode, from our client's Accept-Encoding
        )
    except aiohttp.ServerTimeoutError as exc:
        connecting = isinstance(exc, getattr(aiohttp, "ConnectionTimeoutError", ()))
        if connecting:
            raise upstream_timeout("connect", connect_timeout) from exc
        raise upstream_timeout("read", read_timeout) from exc
    except TimeoutError as exc:
        raise upstream_timeout("connect", connect_timeout) from exc
    except aiohttp.ClientConnectorError as exc:
        raise cannot_connect(type(exc).__name__) from exc
    except aiohttp.ClientError as exc:
        raise connection_failed(type(exc).__name__) from exc
    return AiohttpUpstream(response, read_timeout)


class AiohttpUpstream:
    def __init__(self, response: Any, read_timeout: float | None) -> None:
        self._response = response
        self._read_timeout = read_timeout
        self.status_code: int = response.status
        self.headers: list[Header] = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in response.raw_headers
        ]

    async def iter_raw(self) -> AsyncIterator[bytes]:
        import aiohttp

        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise upstream_timeout("read", self._read_timeout) from exc
        except aiohttp.ClientError as exc:
            raise connection_failed(type(exc).__name__) from exc

    async def close(self, *, complete: bool) -> None:
        if complete:
            self._response.release()  # back to the pool
        else:
            self._response.close()  # the upstream sees the connection drop


def _as_sent(headers: list[Header]) -> list[Header]:
    """Values aiohttp will write as the octets the client sent.

    Starlette decodes header octets as latin-1 and aiohttp encodes values as UTF-8, so a
    client's UTF-8 ``café`` would arrive double-encoded; decoding the octets as UTF-8 first
    makes aiohttp's encoding give them back (octets that are not UTF-8 become U+FFFD).
    """
    return [
        (name, value if value.isascii() else value.encode("latin-1").decode("utf-8", "replace"))
        for name, value in headers
    ]
