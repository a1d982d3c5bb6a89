"""Answering: the response's headers, and the statuses decided before any body (HEAD, 304,
412, 416, the S3 failures).
"""

from __future__ import annotations

import mimetypes
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from starlette.responses import Response

from .._errors import error_response, library_error
from .._http_fields import (
    content_disposition,
    format_http_date,
)
from .._response import DEFAULT_CACHE_CONTROL, StreamResponse
from ._asked import _Asked
from ._failures import (
    _NOT_MODIFIED,
    _PRECONDITION_FAILED,
    _RANGE_NOT_SATISFIABLE,
    _client_error,
    is_programming_error,
    object_failure,
)
from ._sdk import _S3Calls

_GENERIC_TYPES = frozenset({"", "binary/octet-stream", "application/octet-stream"})
"""What S3 stores when the uploader gave no type: worth replacing with a guess."""

_UNSATISFIED_RANGE = re.compile(r"bytes \*/([0-9]+)")


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
