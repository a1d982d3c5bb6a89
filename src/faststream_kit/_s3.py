"""``s3_stream``: an S3 object served with the HTTP semantics of a file server.

The SDK is only asked for what HTTP needs: a ``GetObject`` with the client's single range
and conditions (so S3 sends only those bytes, or nothing for a 304), a ``HeadObject`` for
``HEAD``. The body is read in ``chunk_bytes`` pieces (both SDKs iterate in 1 KiB by default),
a boto3 body in one worker thread of the core, and it is closed on completion, on error and
when the client leaves, so the SDK's connection pool never runs dry.

With ``http_client`` (a pyreqwest ``Client``) a ``GET`` takes the fast path: the SDK builds
and signs the ``GetObject`` request (Range, conditions, checksum mode, SSE-C keys) and still
answers every error, and the fast client sends it and reads the body on pyreqwest's own
threads, the object's checksum verified here as botocore would (``_FastObjectBody``).
"""

from __future__ import annotations

import base64
import hashlib
import inspect
import logging
import mimetypes
import re
import sys
from collections.abc import AsyncIterator, Callable, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

import anyio
import anyio.to_thread
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Scope

from ._crc import crc32
from ._deferred import DeferredResponse
from ._errors import StreamError, error_response, library_error
from ._http_fields import (
    ByteRange,
    EntityTag,
    content_disposition,
    format_http_date,
    parse_entity_tags,
    parse_http_date,
    parse_range,
)
from ._response import DEFAULT_CACHE_CONTROL, StreamResponse
from ._threads import (
    ThreadIterator,
    default_thread_limiter,
    iterate_in_thread,
)
from ._validate import (
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

if TYPE_CHECKING:
    from typing_extensions import Buffer  # collections.abc.Buffer from Python 3.12

__all__ = ["s3_stream"]

logger = logging.getLogger("faststream_kit")

DEFAULT_CHUNK_BYTES = 1024 * 1024
"""Bytes per body read. Measured on 100 MiB from SeaweedFS (``bench/s3.py``): 64 KiB reads
took ~1.8x a direct boto3 download with either SDK, 1 MiB reads 0.7-1.7x. aiobotocore's
``read(n)`` returns what has arrived (up to ``n``), so a large ``n`` adds no latency."""

BODY_READ_AHEAD_BYTES = 2 * 1024 * 1024
"""At most this much of a boto3 body is read ahead of a slow client (in whole chunks)."""

_GENERIC_TYPES = frozenset({"", "binary/octet-stream", "application/octet-stream"})
"""What S3 stores when the uploader gave no type: worth replacing with a guess."""

# botocore's ClientError codes, as S3 servers send them (a HEAD has no body, so its error
# code is the bare status).
_NOT_MODIFIED = frozenset({"304", "NotModified"})
_PRECONDITION_FAILED = frozenset({"412", "PreconditionFailed"})
_RANGE_NOT_SATISFIABLE = frozenset({"416", "InvalidRange"})
_NOT_FOUND = frozenset({"404", "NoSuchKey", "NoSuchBucket", "NoSuchVersion", "NotFound"})
_FORBIDDEN = frozenset({"403", "AccessDenied", "Forbidden", "AllAccessDisabled"})
_BAD_CREDENTIALS = frozenset(
    {"InvalidAccessKeyId", "SignatureDoesNotMatch", "ExpiredToken", "InvalidToken"}
)
"""The server's own credentials were refused: not the client's fault, so a 502."""
_OVERLOADED = frozenset({"SlowDown", "ServiceUnavailable"})

_PROGRAMMING_ERRORS = (TypeError, AttributeError, NameError)
_CLIENT = "an aiobotocore or boto3/botocore S3 client"
_UNSATISFIED_RANGE = re.compile(r"bytes \*/([0-9]+)")


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


# ---------------------------------------------------------------------------------------------
# What the client asked for


@dataclass(frozen=True)
class _Conditions:
    """The request's preconditions (RFC 9110 §13.1), and who evaluates each of them.

    A single entity tag goes to S3 as ``IfMatch``/``IfNoneMatch``, and the dates as
    ``IfModifiedSince``/``IfUnmodifiedSince`` (only when the matching tag field is absent,
    §13.2.2), so S3 answers 304 or 412 without sending a byte. What S3's API cannot say (tag
    lists, ``*``, a weak tag in ``If-Match``) is checked here against the object's ``ETag``.
    """

    if_match: Literal["*"] | list[EntityTag] | None = None
    if_none_match: Literal["*"] | list[EntityTag] | None = None
    if_modified_since: datetime | None = None
    if_unmodified_since: datetime | None = None

    def _s3_if_match(self) -> EntityTag | None:
        tags = self.if_match
        if isinstance(tags, list) and len(tags) == 1 and not tags[0].weak:
            return tags[0]
        return None

    def _s3_if_none_match(self) -> EntityTag | None:
        tags = self.if_none_match
        return tags[0] if isinstance(tags, list) and len(tags) == 1 else None

    def s3_params(self) -> dict[str, Any]:
        params: dict[str, Any] = {}
        if (tag := self._s3_if_match()) is not None:
            params["IfMatch"] = tag.opaque
        if (tag := self._s3_if_none_match()) is not None:
            params["IfNoneMatch"] = tag.opaque  # weak comparison: the opaque tag alone
        if self.if_none_match is None and self.if_modified_since is not None:
            params["IfModifiedSince"] = self.if_modified_since
        if self.if_match is None and self.if_unmodified_since is not None:
            params["IfUnmodifiedSince"] = self.if_unmodified_since
        return params

    def check_locally(self, etag: str | None) -> Literal[304, 412] | None:
        """The status for the conditions S3 did not evaluate, given the object's ETag."""
        current = EntityTag.parse(etag)
        if_match, if_none_match = self.if_match, self.if_none_match
        if (
            isinstance(if_match, list)
            and self._s3_if_match() is None
            and not any(tag.strong_match(current) for tag in if_match)
        ):
            return 412
        if if_none_match == "*":
            return 304  # GET/HEAD of an existing object
        if (
            isinstance(if_none_match, list)
            and self._s3_if_none_match() is None
            and any(tag.weak_match(current) for tag in if_none_match)
        ):
            return 304
        return None


@dataclass(frozen=True)
class _Asked:
    head: bool = False
    ranges: list[ByteRange] | None = None
    if_range: str | None = None
    conditions: _Conditions = field(default_factory=_Conditions)

    @classmethod
    def from_request(cls, request: Any) -> _Asked:
        if request is None:
            return cls()
        get = request.headers.get
        return cls(
            head=request.method == "HEAD",
            ranges=parse_range(get("range")),
            if_range=get("if-range"),
            conditions=_Conditions(
                if_match=parse_entity_tags(get("if-match")),
                if_none_match=parse_entity_tags(get("if-none-match")),
                if_modified_since=parse_http_date(get("if-modified-since")),
                if_unmodified_since=parse_http_date(get("if-unmodified-since")),
            ),
        )

    @property
    def single_range(self) -> ByteRange | None:
        """The range to serve; several ranges are answered with the whole object."""
        return self.ranges[0] if self.ranges is not None and len(self.ranges) == 1 else None

    def range_still_applies(self, found: Mapping[str, Any]) -> bool:
        """RFC 9110 §13.1.5 If-Range: serve the range only if the validator is current.

        An entity tag must match strongly, a date must equal ``Last-Modified`` exactly;
        anything else, including a value that does not parse, means "send it all".
        """
        if self.if_range is None:
            return True
        tag = EntityTag.parse(self.if_range)
        if tag is not None:
            return tag.strong_match(EntityTag.parse(found.get("ETag")))
        date = parse_http_date(self.if_range)
        modified = found.get("LastModified")
        return date is not None and isinstance(modified, datetime) and date == modified


# ---------------------------------------------------------------------------------------------
# Talking to S3


class _S3Calls:
    """Calls an aiobotocore client directly, and a botocore one in a worker thread."""

    def __init__(self, client: Any, limiter: anyio.CapacityLimiter | None) -> None:
        self.client = client
        self.limiter = limiter
        # aiobotocore's generated methods are plain functions that return coroutines; its
        # ``_make_api_call`` is what is declared ``async``.
        self.is_async = inspect.iscoroutinefunction(client.get_object) or (
            inspect.iscoroutinefunction(getattr(client, "_make_api_call", None))
        )

    async def __call__(self, operation: str, params: Mapping[str, Any]) -> dict[str, Any]:
        method = partial(getattr(self.client, operation), **params)
        if self.is_async:
            result: Any = await method()
        else:
            limiter = self.limiter or default_thread_limiter()
            result = await anyio.to_thread.run_sync(method, limiter=limiter)
            if inspect.isawaitable(result):
                result = await result
        return dict(result)


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


async def _close_body(body: Any) -> None:
    aclose = getattr(body, "aclose", None)
    if aclose is not None and inspect.iscoroutinefunction(aclose):
        await aclose()
        return
    result = body.close()
    if inspect.isawaitable(result):
        await result


# ---------------------------------------------------------------------------------------------
# The fast path: the SDK's own signed GetObject, sent by pyreqwest

_SIGNING_ONLY: ContextVar[bool] = ContextVar("faststream_kit_s3_signing_only", default=False)
_SIGNING_HOOK = "faststream-kit-s3-fast-path"


class _Signed(Exception):
    """Raised by our ``before-send`` hook: the SDK's request, signed, that it did not send."""

    def __init__(self, url: str, headers: list[tuple[str, str]]) -> None:
        super().__init__(url)
        self.url = url
        self.headers = headers


def _stop_after_signing(request: Any, event_name: str = "", **_: Any) -> None:
    """botocore's ``before-send`` hook: for our own calls only, take the request it built and
    signed (every header, ``x-amz-checksum-mode`` and SSE-C keys included) instead of letting
    it go out. botocore hands an exception from the hook back up as the call's error."""
    if _SIGNING_ONLY.get() and event_name.endswith(".GetObject"):
        headers = [
            (name, value.decode("latin-1") if isinstance(value, bytes) else str(value))
            for name, value in request.headers.items()
        ]
        raise _Signed(str(request.url), headers)


def _check_http_client(name: str, value: Any) -> None:
    """A pyreqwest async ``Client`` (or anything shaped like one), or ``None``."""
    if value is None:
        return
    if not callable(getattr(value, "request", None)) or not hasattr(value, "__aenter__"):
        raise TypeError(
            f"{name} must be a pyreqwest.client.Client (async) or None, got {type(value).__name__}"
        )


class _FastPrecondition(Exception):
    """S3 answered the fast GET with 304 or 412: no body, and no need to ask the SDK."""

    def __init__(self, status: Literal[304, 412], etag: str | None) -> None:
        super().__init__(status)
        self.status: Literal[304, 412] = status
        self.etag = etag


class _FastGet:
    """``GetObject`` built and signed by the SDK, sent and read by the fast client."""

    def __init__(self, http_client: Any, calls: _S3Calls, chunk_bytes: int) -> None:
        self.http_client = http_client
        self.calls = calls
        self.chunk_bytes = chunk_bytes

    async def get_object(self, params: dict[str, Any]) -> dict[str, Any]:
        signed = await self._sign(params)
        try:
            return await self._fetch(signed.url, signed.headers)
        except _FastPrecondition:
            raise
        except Exception as exc:
            # S3's error (a 404, a 403, a 416), or the fast client could not reach it: the SDK
            # sends the request itself and raises its own ClientError, so every error is
            # answered as without the fast path. An SDK that then succeeds means the fast
            # path is broken here: worth a warning.
            found = await self.calls("get_object", params)
            logger.warning("the fast path failed for %s, the SDK did not (%r)", params["Key"], exc)
            return found

    async def _sign(self, params: dict[str, Any]) -> _Signed:
        """The SDK's own ``GetObject`` request for ``params``, signed, not sent."""
        # Last, at the service level: a hook of the caller's on before-send.s3 (one that
        # records or changes requests) still sees the request first. unique_id: registered
        # once per client, whatever the number of calls.
        events = self.calls.client.meta.events
        events.register_last("before-send.s3", _stop_after_signing, unique_id=_SIGNING_HOOK)
        # Only this call is stopped: the flag is ours (a worker thread gets a copy of it).
        token = _SIGNING_ONLY.set(True)
        try:
            await self.calls("get_object", params)
        except _Signed as signed:
            # Without its traceback: the SDK's frames hold the exception they raised, a cycle
            # of ~50-75 objects per request left for the cyclic GC.
            return signed.with_traceback(None)
        finally:
            _SIGNING_ONLY.reset(token)
        raise RuntimeError("the SDK answered GetObject without sending it")  # another hook did

    async def _fetch(self, url: str, headers: list[tuple[str, str]]) -> dict[str, Any]:
        # pyreqwest reads streamed_read_buffer_limit bytes before it returns the headers and
        # then hands the body over in batches of that size: chunk_bytes, what s3_stream reads
        # at a time anyway (an S3 object is a known length, sent as fast as it can be).
        builder = self.http_client.request("GET", url).headers(headers)
        request = builder.streamed_read_buffer_limit(self.chunk_bytes).build_streamed()
        response = await request.__aenter__()
        try:
            status = response.status
            if status in (200, 206):
                return _found_from_headers(request, response)
            etag = response.get_header("etag")
        except BaseException:
            await request.__aexit__(None, None, None)
            raise
        await request.__aexit__(None, None, None)
        if status in (304, 412):
            raise _FastPrecondition(status, etag)
        raise RuntimeError(f"S3 answered the fast GET with {status}")


def _found_from_headers(request: Any, response: Any) -> dict[str, Any]:
    """What ``GetObject`` would have returned, from the response's own header fields."""
    get = response.get_header
    length = get("content-length")
    found: dict[str, Any] = {
        "ContentLength": int(length) if length is not None and length.isdigit() else None,
        "ETag": get("etag"),
        "LastModified": parse_http_date(get("last-modified")),
        "ContentRange": get("content-range"),
        "ContentType": get("content-type"),
        "ContentEncoding": get("content-encoding"),
        "CacheControl": get("cache-control"),
    }
    # A range has no checksum of its own (S3 sends the whole object's, if any).
    checksum = _ObjectChecksum.of(response) if response.status == 200 else None
    found["Body"] = _FastObjectBody(request, response, checksum)
    return {name: value for name, value in found.items() if value is not None}


class _ChecksumMismatch(Exception):
    """The body does not match the checksum S3 stored for the object."""


class _ObjectChecksum:
    """The object's checksum as botocore checks it: the first of its algorithms S3 sent, in
    botocore's order of preference; a composite (multipart) checksum is not checked.

    CRC32C and CRC64NVME need ``awscrt`` here as in botocore; without it they are not checked.
    """

    def __init__(self, algorithm: str, expected: str, update: Callable[[Buffer], None]) -> None:
        self.algorithm = algorithm
        self.expected = expected
        self.update = update
        self._digest: Callable[[], bytes] = lambda: b""

    @classmethod
    def of(cls, response: Any) -> _ObjectChecksum | None:
        if (response.get_header("x-amz-checksum-type") or "").upper() == "COMPOSITE":
            return None
        for algorithm in ("crc64nvme", "crc32c", "crc32", "sha1", "sha256"):
            expected = response.get_header(f"x-amz-checksum-{algorithm}")
            if not expected or "-" in expected:
                continue
            made = cls._make(algorithm, expected)
            if made is not None:
                return made
        return None

    @classmethod
    def _make(cls, algorithm: str, expected: str) -> _ObjectChecksum | None:
        if algorithm in ("sha1", "sha256"):
            hasher = hashlib.new(algorithm)
            checksum = cls(algorithm, expected, hasher.update)
            checksum._digest = hasher.digest
            return checksum
        crc = _crc_function(algorithm)
        if crc is None:
            return None
        width = 8 if algorithm == "crc64nvme" else 4
        state = [0]

        def update(data: Buffer) -> None:
            state[0] = crc(data, state[0])

        checksum = cls(algorithm, expected, update)
        checksum._digest = lambda: state[0].to_bytes(width, "big")
        return checksum

    def verify(self) -> None:
        got = base64.b64encode(self._digest()).decode()
        if got != self.expected:
            raise _ChecksumMismatch(
                f"{self.algorithm} of the body is {got}, S3 stored {self.expected}"
            )


def _crc_function(algorithm: str) -> Callable[[Buffer, int], int] | None:
    if algorithm == "crc32":
        return crc32()
    try:
        from awscrt import checksums  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None
    function: Callable[[Buffer, int], int] = getattr(checksums, algorithm)
    return function


class _FastObjectBody:
    """The fast client's response body with the SDK body's two methods: ``read(n)`` (which
    fills ``n`` unless the body ends, as botocore's does) and ``aclose()``."""

    def __init__(self, request: Any, response: Any, checksum: _ObjectChecksum | None) -> None:
        self._request = request
        self._reader = response.body_reader
        self._checksum = checksum
        self._rest: Any = None  # the part of a chunk beyond the last read
        self._ended = False
        self._closed = False

    async def read(self, amount: int) -> bytes:
        """``amount`` bytes (fewer at the end of the body), ``b""`` at the end.

        pyreqwest hands the body over as the chunks hyper read (~400 KiB each here), views of
        its own buffers; they are summed and joined straight into the ``bytes`` an ASGI body
        must be: the one copy this path makes. (pyreqwest's own ``read(n)`` would first copy
        them into a buffer of ``n`` bytes: a second copy, on the event loop thread.)
        """
        parts: list[Any] = []
        size = 0
        while size < amount:
            chunk = self._rest if self._rest is not None else await self._next_chunk()
            self._rest = None
            if chunk is None:
                break
            if size + len(chunk) > amount:
                cut = amount - size
                chunk, self._rest = chunk[:cut], chunk[cut:]  # views, not copies
            if self._checksum is not None:
                self._checksum.update(chunk)
            parts.append(chunk)
            size += len(chunk)
        if not parts:
            if self._checksum is not None:
                self._checksum.verify()  # the end: the whole body was summed
            return b""
        return b"".join(parts)

    async def _next_chunk(self) -> Any:
        if self._ended:
            return None
        chunk = await self._reader.read_chunk()
        self._ended = chunk is None
        return chunk

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            # A fully read connection goes back to pyreqwest's pool; any other is dropped.
            await self._request.__aexit__(None, None, None)


# ---------------------------------------------------------------------------------------------
# Reading the body


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


# Both readers hold the last piece of the body back until a read has returned the end. That
# read is where botocore checks the object's checksum: a mismatch then stops the response one
# piece short of its ``Content-Length``, which every client notices, instead of after the
# last byte, which none can.


class _ObjectPieces:
    """What both readers keep: the body, and how much of the promised length is still due."""

    def __init__(self, body: Any, chunk_bytes: int, length: int | None, key: str) -> None:
        self._body = body
        self._chunk_bytes = chunk_bytes
        self._unread = sys.maxsize if length is None else length
        self._key = key
        self._at_end = False  # a read returned the end (and the SDK checked the sum)
        self._closed = False

    def _is_last(self, chunk: bytes) -> bool:
        """Count ``chunk``; true when it completes the promised length."""
        self._unread -= len(chunk)
        return self._unread <= 0


class _AsyncObjectBody(_ObjectPieces):
    """An aiobotocore body as ``chunk_bytes`` pieces; ``aclose()`` closes it, read or not."""

    _filled = False  # the first piece has been read up to chunk_bytes

    def __aiter__(self) -> _AsyncObjectBody:
        return self

    async def __anext__(self) -> bytes:
        chunk = b"" if self._at_end else await self._read(self._chunk_bytes)
        if not chunk:
            await self.aclose()
            raise StopAsyncIteration
        if not self._filled:
            chunk = await self._fill(chunk)
        if self._is_last(chunk) and not self._at_end:
            rest = await self._read(self._chunk_bytes)
            self._at_end = not rest
            chunk += rest
        return chunk

    async def _fill(self, chunk: bytes) -> bytes:
        """The first piece, read up to ``chunk_bytes`` or the end of the body.

        aiohttp's ``read(n)`` returns what has arrived, often 64 KiB; botocore's fills ``n``.
        Filling the first piece means that an object of up to ``chunk_bytes`` is read whole,
        and its checksum checked, before any byte goes out: a mismatch is then a ``502``.
        """
        self._filled = True
        pieces = [chunk]
        size = len(chunk)
        while size < min(self._chunk_bytes, self._unread):
            more = await self._read(self._chunk_bytes - size)
            if not more:
                self._at_end = True
                break
            pieces.append(more)
            size += len(more)
        return b"".join(pieces) if len(pieces) > 1 else chunk

    async def _read(self, size: int) -> bytes:
        try:
            chunk: bytes = await self._body.read(size)
        except Exception as exc:
            raise _body_failure(exc, self._key) from exc
        return chunk

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await _close_body(self._body)


class _SyncObjectBody(_ObjectPieces):
    """A botocore body as ``chunk_bytes`` pieces, read (and closed) in the worker thread."""

    def __iter__(self) -> _SyncObjectBody:
        return self

    def __next__(self) -> bytes:
        chunk = b"" if self._at_end else self._read()
        if not chunk:
            self.close()
            raise StopIteration
        if self._is_last(chunk):
            rest = self._read()
            self._at_end = not rest
            chunk += rest
        return chunk

    def _read(self) -> bytes:
        try:
            chunk: bytes = self._body.read(self._chunk_bytes)
        except Exception as exc:
            raise _body_failure(exc, self._key) from exc
        return chunk

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._body.close()


def _body_failure(exc: Exception, key: str) -> StreamError:
    """What a failed body read tells the client: a JSON error before the first chunk, and
    after it an aborted connection. The cause (a checksum mismatch, a dropped connection)
    is logged, never sent."""
    if _is_timeout(exc):
        logger.warning("S3 stopped sending %s in time", key, exc_info=exc)
        return _timed_out()
    logger.warning("reading %s from S3 failed (%s)", key, type(exc).__name__, exc_info=exc)
    return _unreachable() if _is_connection_error(exc) else _failed()


def _is_timeout(exc: Exception) -> bool:
    return isinstance(exc, TimeoutError) or "Timeout" in type(exc).__name__


def _is_connection_error(exc: Exception) -> bool:
    # botocore's EndpointConnectionError / ConnectionClosedError, aiohttp's and urllib3's
    # connection errors, and the OSError underneath them all.
    names = {cls.__name__ for cls in type(exc).__mro__}
    return isinstance(exc, OSError) or bool(
        names & {"ConnectionError", "HTTPClientError", "ClientConnectionError"}
    )


def _timed_out() -> StreamError:
    return library_error("timeout", "The object store did not answer in time.")


def _unreachable() -> StreamError:
    return library_error("upstream_unavailable", "The object store could not be reached.")


def _failed() -> StreamError:
    return library_error("upstream_error", "The object store failed.")


# ---------------------------------------------------------------------------------------------
# Answering


@dataclass(frozen=True)
class _Shape:
    """What the caller chose about the response, beyond the object itself."""

    key: str
    media_type: str | None
    filename: str | None
    disposition: str
    cache_control: str | None
    extra: dict[str, str]

    def content_type(self, found: Mapping[str, Any]) -> str:
        if self.media_type:
            return self.media_type
        stored = str(found.get("ContentType") or "")
        if stored.lower() not in _GENERIC_TYPES:
            return stored
        guessed, _ = mimetypes.guess_type(self.filename or self.key, strict=False)
        return guessed or "application/octet-stream"

    def headers(self, found: Mapping[str, Any], length: int | None = None) -> dict[str, str]:
        headers = {
            "content-type": self.content_type(found),
            "content-length": str(found.get("ContentLength", 0) if length is None else length),
            "accept-ranges": "bytes",
        }
        if found.get("ETag"):
            headers["etag"] = str(found["ETag"])
        if isinstance(found.get("LastModified"), datetime):
            headers["last-modified"] = format_http_date(found["LastModified"])
        if found.get("ContentRange"):
            headers["content-range"] = str(found["ContentRange"])
        if found.get("ContentEncoding"):
            headers["content-encoding"] = str(found["ContentEncoding"])
        cache_control = self.cache_control or found.get("CacheControl")
        if cache_control:
            headers["cache-control"] = str(cache_control)
        if self.filename is not None or self.disposition != "inline":
            headers["content-disposition"] = content_disposition(self.disposition, self.filename)
        headers.update(self.extra)
        return headers


def _answer_head(asked: _Asked, shape: _Shape, found: dict[str, Any]) -> Response:
    """``HEAD``: the headers a ``GET`` would have had, from ``HeadObject``."""
    status = asked.conditions.check_locally(found.get("ETag"))
    if status is not None:
        return _answer_precondition(status, found.get("ETag"), shape)
    size = int(found.get("ContentLength", 0))
    wanted = asked.single_range
    if wanted is None or not asked.range_still_applies(found):
        return StreamResponse(_nothing(), headers=shape.headers(found))
    span = wanted.resolve(size)
    if span is None:
        return _answer_unsatisfiable(size)
    start, end = span
    found = {**found, "ContentRange": f"bytes {start}-{end}/{size}"}
    return StreamResponse(
        _nothing(), status_code=206, headers=shape.headers(found, length=end - start + 1)
    )


def _span_attributes(found: dict[str, Any]) -> dict[str, Any]:
    """What the stream's span says about the object (docs/observability.md)."""
    attributes: dict[str, Any] = {"faststream_kit.upstream.status_code": 200}
    content_range = found.get("ContentRange")
    if content_range:
        attributes["faststream_kit.upstream.status_code"] = 206
        attributes["faststream_kit.range"] = str(content_range)
        size = str(content_range).rpartition("/")[2]
        if size.isdigit():
            attributes["faststream_kit.object.size"] = int(size)
    elif found.get("ContentLength") is not None:
        attributes["faststream_kit.object.size"] = int(found["ContentLength"])
    return attributes


async def _nothing() -> AsyncIterator[bytes]:  # a HEAD response never reads its source
    return
    yield


def _answer_precondition(status: int, etag: str | None, shape: _Shape) -> Response:
    if status == 412:
        return error_response(
            library_error(
                "precondition_failed",
                "A precondition (If-Match or If-Unmodified-Since) does not hold.",
            )
        )
    # RFC 9110 §15.4.5: a 304 carries the ETag and Cache-Control a 200 would have had.
    headers = {"cache-control": shape.cache_control or DEFAULT_CACHE_CONTROL}
    if etag:
        headers["etag"] = etag
    return Response(status_code=304, headers=headers)


def _answer_unsatisfiable(size: int | None) -> Response:
    # RFC 9110 §15.5.17: a 416 to a byte range request says the current length.
    headers = {"content-range": f"bytes */{size}"} if size is not None else {}
    return error_response(
        library_error(
            "range_not_satisfiable", "The requested range is not satisfiable.", headers=headers
        )
    )


async def _answer_failure(
    exc: Exception, calls: _S3Calls, params: dict[str, Any], shape: _Shape
) -> Response:
    if is_programming_error(exc):
        raise exc  # a 500, logged
    code, status, wire_headers = _client_error(exc)
    if code in _NOT_MODIFIED or status == 304:
        return _answer_precondition(304, wire_headers.get("etag"), shape)
    if code in _PRECONDITION_FAILED or status == 412:
        return _answer_precondition(412, None, shape)
    if code in _RANGE_NOT_SATISFIABLE or status == 416:
        return _answer_unsatisfiable(await _object_size(calls, params, wire_headers))
    return error_response(object_failure(exc, params.get("Key")))


def is_programming_error(exc: Exception) -> bool:
    """A bug in the calling code (wrong client, bad extra_args): raised as it is, a 500."""
    return isinstance(exc, _PROGRAMMING_ERRORS) or type(exc).__name__ == "ParamValidationError"


def object_failure(exc: Exception, key: str | None) -> StreamError:
    """What a failed ``GetObject``/``HeadObject`` (no range, no condition) tells the client."""
    code, status, _ = _client_error(exc)
    if code in _NOT_FOUND or status == 404:
        return library_error("not_found", "No such object.")
    if code in _FORBIDDEN or (status == 403 and code not in _BAD_CREDENTIALS):
        return library_error("forbidden", "Access to the object is denied.")
    if _is_timeout(exc):
        logger.warning("S3 did not answer in time for %s", key, exc_info=exc)
        return _timed_out()
    if code in _BAD_CREDENTIALS:
        logger.warning("S3 refused this server's credentials for %s (%s)", key, code)
        refused = "The object store refused this server's credentials."
        return library_error("upstream_auth_error", refused)
    if code in _OVERLOADED or status == 503:
        return library_error("unavailable", "The object store is overloaded.")
    if _is_connection_error(exc):
        logger.warning("S3 unreachable for %s (%s)", key, type(exc).__name__)
        return _unreachable()
    # Log the cause for the operator; the client learns only that the upstream failed.
    logger.warning("S3 failed for %s (%s)", key, code or type(exc).__name__)
    return _failed()


def _client_error(exc: Exception) -> tuple[str, int | None, Mapping[str, str]]:
    """``(code, HTTP status, response headers)`` of a botocore ``ClientError``, else empty."""
    response = getattr(exc, "response", None)
    if not isinstance(response, Mapping):
        return "", None, {}
    error = response.get("Error") or {}
    metadata = response.get("ResponseMetadata") or {}
    status = metadata.get("HTTPStatusCode")
    return (
        str(error.get("Code", "")),
        status if isinstance(status, int) else None,
        metadata.get("HTTPHeaders") or {},
    )


async def _object_size(
    calls: _S3Calls, params: dict[str, Any], wire_headers: Mapping[str, str]
) -> int | None:
    """The object's length for a 416: from S3's own ``Content-Range``, else a ``HeadObject``."""
    match = _UNSATISFIED_RANGE.fullmatch(wire_headers.get("content-range", ""))
    if match:
        return int(match.group(1))
    try:
        found = await calls("head_object", params)
    except Exception:
        return None
    return int(found.get("ContentLength", 0))
