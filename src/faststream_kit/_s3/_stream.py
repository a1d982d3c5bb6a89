"""``s3_stream``: checks its arguments, and when the response starts asks S3 and answers."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import anyio
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from .._deferred import DeferredResponse
from .._errors import error_response
from .._response import StreamResponse
from .._threads import (
    ThreadIterator,
    iterate_in_thread,
)
from .._validate import (
    check_client,
    check_header_value,
    check_headers,
    check_limiter,
    check_mapping,
    check_media_type,
    check_request,
    check_str,
    non_empty_str,
    one_of,
    optional_positive_seconds,
    positive_int,
)
from ._answers import (
    _answer_failure,
    _answer_head,
    _answer_precondition,
    _Shape,
    _span_attributes,
)
from ._asked import _Asked
from ._failures import _failed
from ._sdk import (
    BODY_READ_AHEAD_BYTES,
    DEFAULT_CHUNK_BYTES,
    _AsyncObjectBody,
    _close_body,
    _S3Calls,
    _SyncObjectBody,
)
from .pyreqwest import _check_http_client, _FastGet, _FastObjectBody, _FastPrecondition

logger = logging.getLogger("faststream_kit")

__all__ = ["s3_stream"]

_CLIENT = "an aiobotocore or boto3/botocore S3 client"


def s3_stream(
    client: Any,
    bucket: str,
    key: str,
    *,
    request: Request | None = None,
    chunk_bytes: int = DEFAULT_CHUNK_BYTES,
    media_type: str | None = None,
    filename: str | None = None,
    disposition: Literal["inline", "attachment"] = "inline",
    cache_control: str | None = None,
    extra_args: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    send_timeout: float | None = 30.0,
    idle_timeout: float | None = None,
    thread_limiter: anyio.CapacityLimiter | None = None,
    http_client: Any = None,
) -> Response:
    """Stream ``s3://bucket/key`` to the client like a file server would.

    ```python notest
    @app.api_route("/media/{key:path}", methods=["GET", "HEAD"])
    async def media(key: str, request: Request):
        return s3_stream(s3, "media", key, request=request)
    ```

    Returns at once, having checked every argument; S3 is asked when the response starts,
    and each status below is decided before a header is sent.

    ``client`` is an aiobotocore S3 client or a boto3/botocore one; a boto3 client's calls
    and body reads run in a worker thread of ``thread_limiter`` (faststream-kit's own by
    default). Pass the ``request`` to honour ``Range`` (one range → ``206`` fetched from S3
    with that range; several → the full object, ``200``), ``If-Range``, ``If-None-Match`` /
    ``If-Modified-Since`` (→ ``304``), ``If-Match`` / ``If-Unmodified-Since`` (→ ``412``) and
    ``HEAD`` (a ``HeadObject``, no body).

    The response carries ``Content-Length``, ``Content-Type`` (``media_type``, else the
    object's, else guessed from ``filename`` or ``key``), ``ETag``, ``Last-Modified``,
    ``Accept-Ranges: bytes``, ``Content-Disposition`` when ``filename`` is given or
    ``disposition="attachment"`` (RFC 6266, ``filename*`` for non-ASCII names),
    ``Cache-Control`` (``cache_control``, else the object's) and ``headers``. ``extra_args``
    go to ``GetObject``/``HeadObject`` as they are (``VersionId``, ``SSECustomerKey``, ...).

    A missing bucket or key is a ``404``, a refusal a ``403``, any other S3 failure a ``502``
    (``504`` for a timeout), each with a JSON body that names no credentials. The body is
    read ``chunk_bytes`` at a time (a boto3 body at most ``BODY_READ_AHEAD_BYTES`` ahead of the
    client) and closed on completion, failure and disconnect. ``send_timeout`` and
    ``idle_timeout`` are the core's (see :class:`StreamResponse`).

    ``http_client`` (a ``pyreqwest.client.Client``, yours to own) turns on the fast path for
    ``GET``: the SDK builds and signs the ``GetObject`` request as always, and pyreqwest sends
    it and reads the body on its own threads. Statuses, headers, errors (the SDK asks again
    and answers them) and checksum verification are the same as without it.
    """
    # Every argument now, before any I/O: the caller's mistake is raised in the route, and a
    # bad one found after GetObject would leave its body open.
    non_empty_str("bucket", bucket)
    non_empty_str("key", key)
    check_request("request", request)
    positive_int("chunk_bytes", chunk_bytes)
    check_media_type("media_type", media_type)
    check_str("filename", filename, optional=True)
    one_of("disposition", disposition, ("inline", "attachment"))
    check_header_value("cache_control", cache_control, optional=True)
    check_mapping("extra_args", extra_args)
    if extra_args and not extra_args.keys().isdisjoint(("Bucket", "Key")):
        raise ValueError("extra_args must not set Bucket or Key: pass them as bucket and key")
    check_headers("headers", headers)
    optional_positive_seconds("send_timeout", send_timeout)
    optional_positive_seconds("idle_timeout", idle_timeout)
    check_limiter("thread_limiter", thread_limiter)
    _check_http_client("http_client", http_client)
    check_client("client", client, ("get_object", "head_object"), _CLIENT)  # last: touches it
    asked = _Asked.from_request(request)
    calls = _S3Calls(client, thread_limiter)
    params: dict[str, Any] = {"Bucket": bucket, "Key": key, **(extra_args or {})}
    params.update(asked.conditions.s3_params())
    shape = _Shape(
        key=key,
        media_type=media_type,
        filename=filename,
        disposition=disposition,
        cache_control=cache_control,
        extra=dict(headers or {}),
    )
    body = _BodyOptions(chunk_bytes, send_timeout, idle_timeout, thread_limiter)
    fast = _FastGet(http_client, calls, chunk_bytes) if http_client is not None else None

    async def open_object(scope: Scope) -> Response:
        return await _answer(calls, params, asked, shape, body, fast)

    # Not cancelled when the client leaves: a boto3 call in a worker thread cannot be
    # stopped, and S3 answers within the SDK's timeouts; the opened response then sees
    # the client gone at once and closes the body.
    return DeferredResponse(open_object, helper="s3_stream")


@dataclass(frozen=True)
class _BodyOptions:
    chunk_bytes: int
    send_timeout: float | None
    idle_timeout: float | None
    thread_limiter: anyio.CapacityLimiter | None


async def _answer(
    calls: _S3Calls,
    params: dict[str, Any],
    asked: _Asked,
    shape: _Shape,
    body: _BodyOptions,
    fast: _FastGet | None = None,
) -> Response:
    """Ask S3 (``HeadObject`` for a ``HEAD``, else ``GetObject``) and answer with what it says."""
    try:
        if asked.head:
            return _answer_head(asked, shape, await calls("head_object", params))
        found = await _open_object(calls, params, asked, fast=fast)
    except _FastPrecondition as failed:
        return _answer_precondition(failed.status, failed.etag, shape)
    except Exception as exc:
        return await _answer_failure(exc, calls, params, shape)

    status = asked.conditions.check_locally(found.get("ETag"))
    if status is not None:
        await _close_body(found["Body"])
        return _answer_precondition(status, found.get("ETag"), shape)
    source = _open_source(
        calls,
        found["Body"],
        body.chunk_bytes,
        body.thread_limiter,
        length=found.get("ContentLength"),
        key=shape.key,
    )
    try:
        response = StreamResponse(
            source,
            status_code=206 if found.get("ContentRange") else 200,
            headers=shape.headers(found),
            send_timeout=body.send_timeout,
            idle_timeout=body.idle_timeout,
            thread_limiter=body.thread_limiter,
        )
        response.span_attributes = _span_attributes(found)
        return response
    except Exception:
        # A header the store sent that no HTTP message may carry: the body is closed, not
        # left holding a pooled connection, and the client gets a 502.
        await source.aclose()
        logger.warning("S3 sent headers for %s that cannot be relayed", shape.key, exc_info=True)
        return error_response(_failed())


async def _open_object(
    calls: _S3Calls, params: dict[str, Any], asked: _Asked, *, fast: _FastGet | None = None
) -> dict[str, Any]:
    """``GetObject`` with the client's single range; ``fast``: through the fast client."""
    get: Callable[[dict[str, Any]], Any] = fast.get_object if fast is not None else _sdk_get(calls)
    wanted = asked.single_range
    if wanted is None:
        found: dict[str, Any] = await get(params)
        return found
    found = await get({**params, "Range": wanted.header_value()})
    if asked.range_still_applies(found):
        return found
    # If-Range did not match: the range is of a representation the client no longer has.
    # Rare (a changed object), so the ranged response is dropped and the whole one fetched.
    await _close_body(found["Body"])
    found = await get(params)
    return found


def _sdk_get(calls: _S3Calls) -> Callable[[dict[str, Any]], Any]:
    return partial(calls, "get_object")


def _open_source(
    calls: _S3Calls,
    body: Any,
    chunk_bytes: int,
    limiter: anyio.CapacityLimiter | None,
    *,
    length: int | None,
    key: str,
) -> _AsyncObjectBody | ThreadIterator[bytes]:
    if calls.is_async or isinstance(body, _FastObjectBody):
        return _AsyncObjectBody(body, chunk_bytes, length, key)
    return iterate_in_thread(
        _SyncObjectBody(body, chunk_bytes, length, key),
        thread_limiter=limiter,
        read_ahead_bytes=BODY_READ_AHEAD_BYTES,
    )
