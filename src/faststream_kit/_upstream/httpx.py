"""The ``httpx.AsyncClient`` edge of :func:`upstream_stream` (httpx is imported lazily)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from ._base import Header, cannot_connect, client_closed, connection_failed, upstream_timeout

__all__ = ["open_httpx"]


async def open_httpx(
    client: Any,
    method: str,
    url: str,
    *,
    params: Any,
    headers: list[Header],
    content: Any,
    connect_timeout: float | None,
    read_timeout: float | None,
) -> HttpxUpstream:
    """Send the request and return once the upstream's headers arrived."""
    import httpx

    if client.is_closed is True:  # a bool property; stand-ins may answer anything
        raise client_closed("httpx.AsyncClient")
    # write: how long one write of the request body may block; pool: waiting for a free
    # connection counts as connecting.
    timeout = httpx.Timeout(
        connect=connect_timeout, read=read_timeout, write=read_timeout, pool=connect_timeout
    )
    # Starlette decodes request header octets as latin-1; encoding them back forwards the
    # client's obs-text octets unchanged (RFC 9110 §5.5: opaque data). A str value would be
    # encoded as ASCII by httpx, which raises on the first octet above 0x7F.
    octets = [(name, value.encode("latin-1")) for name, value in headers]
    request = client.build_request(
        method, url, params=params, headers=octets, content=content, timeout=timeout
    )
    try:
        # A proxy hands redirects to its client rather than following them.
        response = await client.send(request, stream=True, follow_redirects=False)
    except httpx.ConnectTimeout as exc:
        raise upstream_timeout("connect", connect_timeout) from exc
    except httpx.PoolTimeout as exc:
        raise upstream_timeout("connect", connect_timeout) from exc
    except httpx.TimeoutException as exc:
        raise upstream_timeout("read", read_timeout) from exc
    except httpx.ConnectError as exc:
        raise cannot_connect(type(exc).__name__) from exc
    except httpx.TransportError as exc:
        raise connection_failed(type(exc).__name__) from exc
    return HttpxUpstream(response, read_timeout)


class HttpxUpstream:
    def __init__(self, response: Any, read_timeout: float | None) -> None:
        self._response = response
        self._read_timeout = read_timeout
        self.status_code: int = response.status_code
        self.headers: list[Header] = [
            (name.decode("latin-1"), value.decode("latin-1"))
            for name, value in response.headers.raw
        ]

    async def iter_raw(self) -> AsyncIterator[bytes]:
        import httpx

        try:
            async for chunk in self._response.aiter_raw():
                yield chunk
        except httpx.TimeoutException as exc:
            raise upstream_timeout("read", self._read_timeout) from exc
        except (httpx.TransportError, httpx.StreamError) as exc:
            raise connection_failed(type(exc).__name__) from exc

    async def close(self, *, complete: bool) -> None:
        # httpx returns a fully read connection to the pool and closes one that is not.
        await self._response.aclose()
