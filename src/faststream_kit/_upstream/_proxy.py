"""``upstream_stream()``: stream another service's response through, as a correct proxy.

The trap it removes: an httpx/aiohttp streaming response is a context manager, so returning
``StreamingResponse(response.aiter_raw())`` from inside ``async with`` reads a closed body,
and the usual workaround (an ``AsyncExitStack`` dependency) never closes it early when the
client leaves. Here the upstream response belongs to the body iterator, and the core closes
that iterator on completion, on error and on client disconnect.

The header rules (what goes upstream, what comes back) are in :func:`request_headers` and
:func:`response_headers`; the hop-by-hop list itself is in ``_hop_by_hop``. The httpx and
aiohttp adapters live at the edge (``httpx.py``, ``aiohttp.py`` beside this module), import
their library lazily, and share only ``_base`` with this module (so does ``pyreqwest.py``).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import warnings
import zlib
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
)
from typing import Any, Literal

import anyio
from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from .._deferred import DeferredResponse
from .._errors import StreamError, error_response, library_error
from .._hop_by_hop import accepts, coding_qualities, end_to_end, without
from .._response import StreamResponse
from .._validate import (
    check_bool,
    check_callable,
    check_client,
    check_headers,
    check_query,
    check_request,
    check_token,
    check_url,
    optional_positive_seconds,
    stream_source,
)
from ._base import Header, Upstream, is_pyreqwest_client, is_sync_pyreqwest_client

__all__ = ["HeaderFilter", "upstream_stream"]

logger = logging.getLogger("faststream_kit")

Direction = Literal["request", "response"]
HeaderFilter = Callable[[Direction, str, str], "str | None"]
"""``(direction, name, value) -> value``: return the value to send (maybe changed), or
``None`` to drop the field. ``name`` is lowercase; hop-by-hop fields never reach it."""

DEFAULT_CONNECT_SECONDS = 10.0
DEFAULT_READ_SECONDS = 300.0
"""Longest silence (before the headers or between two reads) from the upstream; LLM
upstreams can think for minutes before their first token."""

# The ASGI server sets these on every response itself (uvicorn and hypercorn add Date and
# Server; the core adds the anti-buffering pair): passing the upstream's on would send two.
_SERVER_SET = ("date", "server", "x-content-type-options", "x-accel-buffering")

# Fields about this hop's request that the ASGI server already acted on.
_REQUEST_HOP_ONLY = ("host", "expect", "accept-encoding")

_CLIENT_KINDS = "an httpx.AsyncClient, an aiohttp.ClientSession or a pyreqwest Client"

_BODILESS_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "TRACE", "DELETE"})

_DECODABLE = frozenset({"gzip", "x-gzip", "deflate"})
_DECODED_PIECE_BYTES = 1 << 20
"""Largest piece one compressed chunk may inflate to before we hand it on (bounds memory)."""


def upstream_stream(
    client: Any,
    method: str,
    url: str,
    *,
    request: Request | None = None,
    params: Any = None,
    headers: Mapping[str, str] | None = None,
    content: bytes | str | AsyncIterable[bytes] | None = None,
    forward_cookies: bool = False,
    forward_authorization: bool = False,
    forwarded_headers: bool = True,
    header_filter: HeaderFilter | None = None,
    connect_timeout: float | None = DEFAULT_CONNECT_SECONDS,
    read_timeout: float | None = DEFAULT_READ_SECONDS,
    send_timeout: float | None = 30.0,
    idle_timeout: float | None = None,
) -> Response:
    """Send ``method url`` with ``client`` and stream the upstream's response to our client.

    ```python notest
    @app.api_route("/api/{path:path}", methods=["GET", "POST"])
    async def proxy(path: str, request: Request):
        return upstream_stream(client, request.method, f"{UPSTREAM}/{path}",
                               request=request, params=request.query_params)
    ```

    Returns at once, having checked every argument; the upstream request is sent when the
    response starts, and its status is decided before a header is sent. A client that
    leaves before the upstream answered cancels the upstream request.

    ``client`` is an ``httpx.AsyncClient``, an ``aiohttp.ClientSession`` or a
    ``pyreqwest.client.Client`` (you own it; the response borrows one connection and gives it
    back, or closes it). With ``request``, the
    incoming body is streamed upstream as it arrives and the incoming headers are forwarded
    minus hop-by-hop fields, ``Host``, ``Cookie`` (``forward_cookies``) and ``Authorization``
    (``forward_authorization``), plus ``X-Forwarded-For/-Proto/-Host`` (``forwarded_headers``).
    ``headers`` are set on top; ``content`` replaces the incoming body.

    The response has the upstream's status and end-to-end headers. A body is passed through
    compressed only in a coding our client accepts; otherwise the upstream is asked for
    ``identity``, and a gzip/deflate body it sends anyway is decoded. Cannot connect → 502,
    ``connect_timeout``/``read_timeout`` seconds passed before the headers → 504, both with a
    JSON body; a failure mid-body aborts the response, so it is visibly incomplete.
    ``send_timeout`` and ``idle_timeout`` are the core's (see :class:`StreamResponse`).
    """
    # Every argument now, before the upstream is opened: the caller's mistake is raised in
    # the route, and a bad one found after the upstream answered would leave it open.
    check_token("method", method)
    check_url("url", url)
    check_request("request", request)
    check_query("params", params)
    headers = _headers_mapping(headers)
    check_headers("headers", headers)
    if content is not None and not isinstance(content, bytes | bytearray | str):
        what = "bytes, str or an async iterable of bytes"
        stream_source("content", content, what=what, sync=False)
    check_bool("forward_cookies", forward_cookies)
    check_bool("forward_authorization", forward_authorization)
    check_bool("forwarded_headers", forwarded_headers)
    check_callable("header_filter", header_filter, arguments=3)
    optional_positive_seconds("connect_timeout", connect_timeout)
    optional_positive_seconds("read_timeout", read_timeout)
    optional_positive_seconds("send_timeout", send_timeout)
    optional_positive_seconds("idle_timeout", idle_timeout)
    kind = _CLIENT_KINDS
    check_client("client", client, (), kind)  # last: the first look at the client
    if (
        callable(getattr(client, "build_request", None))
        and not inspect.iscoroutinefunction(getattr(client, "send", None))
    ) or is_sync_pyreqwest_client(client):
        raise TypeError(f"client must be {kind}, got the sync {type(client).__name__}")
    open_with_client = _adapter_for(client)
    forward_body = content is None and request is not None and _has_body(request)
    outgoing = request_headers(
        request,
        headers,
        forward_cookies=forward_cookies,
        forward_authorization=forward_authorization,
        forwarded_headers=forwarded_headers,
        body_forwarded=forward_body,
    )
    # Ask only for codings our client can take: without this, httpx and aiohttp send their
    # own "gzip, deflate" and a client that never asked for gzip would get gzip.
    accept_encoding = _get(outgoing, "accept-encoding")
    if accept_encoding is None:
        accept_encoding = request.headers.get("accept-encoding") if request else None
        outgoing.append(("accept-encoding", accept_encoding or "identity"))
    outgoing = _apply_filter(header_filter, "request", outgoing)
    body: bytes | str | AsyncIterable[bytes] | None = content
    relay_request = None
    body_read: asyncio.Event | None = None
    if forward_body and request is not None:
        body_read = asyncio.Event()  # binds to the loop only when awaited: fine in a def route
        body = _signal_end(request.stream(), body_read)
        relay_request = request  # the rest of the body may still be flowing (aiohttp)

    async def open_upstream(scope: Scope) -> Response:
        try:
            upstream = await open_with_client(
                client,
                method,
                url,
                params=params,
                headers=outgoing,
                content=body,
                connect_timeout=connect_timeout,
                read_timeout=read_timeout,
            )
        except StreamError as exc:
            logger.warning(
                "upstream %s request failed: %s (%r)", method, exc.message, exc.__cause__
            )
            return error_response(exc)
        # No await from here to the return: a client leaving cancels the opener, and the
        # upstream must never be left open between two awaits.
        try:
            return _relay(
                upstream,
                outgoing,
                header_filter,
                forward_cookies,
                relay_request,
                send_timeout=send_timeout,
                idle_timeout=idle_timeout,
            )
        except Exception as exc:
            # An answer we cannot send on (a status outside 200-599, a header value no HTTP
            # message may carry, a filter that raised): the upstream is closed, never left open.
            with anyio.CancelScope(shield=True):
                await upstream.close(complete=False)
            logger.warning("upstream %s answer cannot be relayed: %r", method, exc)
            return error_response(
                library_error("upstream_error", "The upstream service sent an invalid answer.")
            )

    # Until the forwarded body has ended, receive() is the body's (and a client leaving ends
    # it with ClientDisconnect); after that, a client leaving cancels the upstream request.
    return DeferredResponse(
        open_upstream,
        helper="upstream_stream",
        cancel_on_disconnect=True,
        receive_free=body_read.wait if body_read is not None else None,
    )


def _headers_mapping(headers: Any) -> Any:
    """``headers`` as given, or a list of ``(name, value)`` pairs (0.1) as a ``dict``, warned
    about: a repeated request field is one field with its values joined by ``, `` (RFC 9110
    §5.3), which a ``Mapping`` says as well."""
    if headers is None or isinstance(headers, Mapping):
        return headers
    check_headers("headers", headers, pairs=True)
    warnings.warn(
        "upstream_stream(headers=...) takes a Mapping of str to str; (name, value) pairs are "
        "deprecated: pass a dict, joining a repeated field's values with ', '",
        DeprecationWarning,
        stacklevel=3,
    )
    joined: dict[str, str] = {}
    for name, value in headers:
        key = name.lower()
        joined[key] = f"{joined[key]}, {value}" if key in joined else value
    return joined


async def _signal_end(body: AsyncIterator[bytes], ended: asyncio.Event) -> AsyncIterator[bytes]:
    """``body`` as it is, then ``ended`` set: the request's ``receive()`` is free from then."""
    async for chunk in body:
        yield chunk
    ended.set()


def _relay(
    upstream: Upstream,
    outgoing: list[Header],
    header_filter: HeaderFilter | None,
    forward_cookies: bool,
    relay_request: Request | None,
    *,
    send_timeout: float | None,
    idle_timeout: float | None,
) -> StreamResponse:
    """Our response for ``upstream``'s answer, its body not read yet."""
    codings = _codings(_get(upstream.headers, "content-encoding"))
    qualities = coding_qualities(_get(outgoing, "accept-encoding"))
    decode = bool(codings) and not all(accepts(qualities, coding) for coding in codings)
    if decode and not _DECODABLE.issuperset(codings):
        logger.warning("upstream sent Content-Encoding %s, which we cannot decode", codings)
        decode = False  # pass it on labelled: the header stays honest about the bytes
    returned = response_headers(upstream.headers, decoded=decode, forward_cookies=forward_cookies)
    response = StreamResponse(
        UpstreamBody(upstream, codings if decode else []),
        status_code=upstream.status_code,
        headers=Headers(raw=_encode(_apply_filter(header_filter, "response", returned))),
        request=relay_request,
        send_timeout=send_timeout,
        idle_timeout=idle_timeout,
    )
    response.span_attributes = {"faststream_kit.upstream.status_code": upstream.status_code}
    return response


def request_headers(
    request: Request | None,
    extra: Mapping[str, str] | None,
    *,
    forward_cookies: bool,
    forward_authorization: bool,
    forwarded_headers: bool,
    body_forwarded: bool,
) -> list[Header]:
    """The header fields to send upstream, lowercase, before the caller's filter."""
    fields: list[Header] = []
    if request is not None:
        fields = without(end_to_end(request.headers.items()), *_REQUEST_HOP_ONLY)
        if not forward_cookies:
            fields = without(fields, "cookie")
        if not forward_authorization:
            fields = without(fields, "authorization")
        if not body_forwarded:
            fields = without(fields, "content-length")
        if forwarded_headers:
            fields = without(fields, "x-forwarded-for", "x-forwarded-proto", "x-forwarded-host")
            fields += _forwarded_for(request)
    if extra is not None:
        given = end_to_end(extra.items())
        fields = without(fields, *(name for name, _ in given)) + given
    return fields


def response_headers(
    upstream: Iterable[Header], *, decoded: bool, forward_cookies: bool
) -> list[Header]:
    """The upstream's header fields that go on to our client, lowercase, before the filter."""
    fields = without(end_to_end(upstream), *_SERVER_SET)
    if decoded:  # the length and coding described the compressed bytes
        fields = without(fields, "content-encoding", "content-length")
    if not forward_cookies:
        fields = without(fields, "set-cookie")
    return fields


class UpstreamBody:
    """The upstream body as our response's source; ``aclose()`` always closes the upstream.

    A plain async generator would not do: the core closes a source it never started (a
    ``HEAD`` request, a client gone before the first chunk), and closing an unstarted
    generator skips its ``finally``.
    """

    def __init__(self, upstream: Upstream, decode_codings: list[str]) -> None:
        self._upstream = upstream
        self._decode_codings = decode_codings
        self._chunks = self._read()
        self._complete = False
        self._closed = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks

    async def _read(self) -> AsyncGenerator[bytes, None]:
        raw = self._upstream.iter_raw()
        if not self._decode_codings:
            async for chunk in raw:
                yield chunk
        else:
            decoders = [_Decoder(coding) for coding in reversed(self._decode_codings)]
            async for chunk in raw:
                for piece in _decode_all(decoders, chunk):
                    yield piece
            for piece in _decode_all(decoders, None):
                yield piece
        self._complete = True

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            await self._chunks.aclose()
        finally:
            await self._upstream.close(complete=self._complete)


class _Decoder:
    """Incremental gzip/deflate decoding that never inflates one chunk all at once."""

    def __init__(self, coding: str) -> None:
        self._coding = coding
        # wbits: 16+ gzip wrapper; deflate is zlib-wrapped per RFC 9110, but some servers send
        # it raw, so the first failure switches to raw (what browsers and httpx do too).
        self._inflater = zlib.decompressobj(16 + zlib.MAX_WBITS if "gzip" in coding else 15)
        self._fresh = coding == "deflate"

    def feed(self, data: bytes) -> Iterator[bytes]:
        try:
            piece = self._inflater.decompress(data, _DECODED_PIECE_BYTES)
        except zlib.error as exc:
            if not self._fresh:
                raise library_error(
                    "upstream_error", f"The upstream sent an invalid {self._coding} body."
                ) from exc
            self._fresh = False
            self._inflater = zlib.decompressobj(-zlib.MAX_WBITS)
            piece = self._inflater.decompress(data, _DECODED_PIECE_BYTES)
        self._fresh = False
        yield piece
        while self._inflater.unconsumed_tail:
            yield self._inflater.decompress(self._inflater.unconsumed_tail, _DECODED_PIECE_BYTES)

    def finish(self) -> bytes:
        return self._inflater.flush()


def _decode_all(decoders: list[_Decoder], chunk: bytes | None) -> Iterator[bytes]:
    """Feed ``chunk`` (``None``: the end) through the decoders, outermost coding first."""
    pieces: list[bytes] = [] if chunk is None else [chunk]
    for decoder in decoders:
        next_pieces = [out for piece in pieces for out in decoder.feed(piece)]
        if chunk is None:
            next_pieces.append(decoder.finish())
        pieces = next_pieces
    yield from (piece for piece in pieces if piece)


def _adapter_for(client: Any) -> Callable[..., Awaitable[Upstream]]:
    """The ``open_*`` function of ``client``'s library; raises ``TypeError`` for any other."""
    if is_pyreqwest_client(client):  # first: it has a request() like aiohttp's session
        from .pyreqwest import open_pyreqwest

        return open_pyreqwest
    if callable(getattr(client, "build_request", None)) and callable(getattr(client, "send", None)):
        from .httpx import open_httpx

        return open_httpx
    if type(client).__module__.startswith("aiohttp") or callable(
        getattr(client, "ws_connect", None)
    ):
        from .aiohttp import open_aiohttp

        return open_aiohttp
    raise TypeError(f"client must be {_CLIENT_KINDS}, got {type(client).__name__}")


def _has_body(request: Request) -> bool:
    """Whether the incoming request carries a body to forward (RFC 9112 §6.3)."""
    if "transfer-encoding" in request.headers:
        return True
    length = request.headers.get("content-length")
    if length is not None:
        return length.strip() != "0"
    # HTTP/2 and /3 may send a body without announcing its length.
    return request.scope.get("http_version", "1.1") not in ("1.0", "1.1") and (
        request.method not in _BODILESS_METHODS
    )


def _forwarded_for(request: Request) -> list[Header]:
    chain = [v.strip() for v in request.headers.getlist("x-forwarded-for") if v.strip()]
    if request.client is not None:
        chain.append(request.client.host)
    fields = [("x-forwarded-proto", request.url.scheme)]
    host = request.headers.get("host") or request.url.netloc
    if host:
        fields.append(("x-forwarded-host", host))
    if chain:
        fields.append(("x-forwarded-for", ", ".join(chain)))
    return fields


def _apply_filter(
    header_filter: HeaderFilter | None, direction: Direction, fields: list[Header]
) -> list[Header]:
    if header_filter is None:
        return fields
    kept = []
    for name, value in fields:
        new_value = header_filter(direction, name, value)
        if new_value is not None:
            kept.append((name, new_value))
    return kept


def _get(fields: Iterable[Header], name: str) -> str | None:
    values = [value for key, value in fields if key.lower() == name]
    return ", ".join(values) if values else None


def _codings(content_encoding: str | None) -> list[str]:
    codings = (c.strip().lower() for c in (content_encoding or "").split(","))
    return [c for c in codings if c and c != "identity"]


def _encode(fields: list[Header]) -> list[tuple[bytes, bytes]]:
    return [(name.encode("latin-1"), value.encode("latin-1")) for name, value in fields]
