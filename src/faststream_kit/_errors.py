"""What a failed stream tells the client: a status, a type and a message safe to show.

Exception text can carry secrets (API keys in URLs, SQL, file paths), so only errors that
declare a public message are shown as they are: :class:`StreamError` and Starlette's (and so
FastAPI's) ``HTTPException``. Anything else is reported as a generic server error and logged
with its traceback on the server, never sent to the client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

from starlette.responses import Response

from ._sse import compact_json
from ._validate import check_headers, check_status_code, check_str, non_empty_str

__all__ = [
    "ERRORS",
    "ErrorReport",
    "ErrorType",
    "StreamError",
    "error_response",
    "library_error",
    "report_error",
]

ErrorType = Literal[
    "bad_request",
    "client_error",
    "forbidden",
    "not_found",
    "gone",
    "precondition_failed",
    "range_not_satisfiable",
    "rate_limited",
    "server_error",
    "upstream_error",
    "upstream_unavailable",
    "upstream_auth_error",
    "producer_lost",
    "cancelled",
    "unavailable",
    "timeout",
]

ERRORS: Final[Mapping[ErrorType, tuple[int, str]]] = {
    "bad_request": (400, "a request header or parameter the stream cannot use"),
    "client_error": (400, "any other 4xx a route raised (`HTTPException`), with its own status"),
    "forbidden": (403, "the object store refused access to the object"),
    "not_found": (404, "no such object, or no such resumable stream"),
    "gone": (410, "a resumable stream no longer keeps the events after `Last-Event-ID`"),
    "precondition_failed": (412, "`If-Match` / `If-Unmodified-Since` did not hold"),
    "range_not_satisfiable": (416, "no byte of the `Range` lies inside the object"),
    "rate_limited": (429, "the model provider is rate limiting (its `Retry-After` is kept)"),
    "server_error": (500, "a bug or an exception whose text is not public (logged, not sent)"),
    "upstream_error": (502, "the upstream answered with an error or something invalid"),
    "upstream_unavailable": (502, "the upstream could not be reached, or the connection broke"),
    "upstream_auth_error": (502, "the upstream refused this server's credentials"),
    "producer_lost": (502, "a resumable stream's producer stopped without finishing"),
    "cancelled": (409, "the application cancelled a resumable stream before it finished"),
    "unavailable": (503, "the upstream or the stream store is overloaded or down"),
    "timeout": (504, "the upstream, the source or the object store did not answer in time"),
}
"""Every error ``type`` faststream-kit itself produces, with its HTTP status and meaning.

One vocabulary for every helper and every format: the same failure has the same status,
``type`` and JSON shape wherever it happens. ``docs/errors.md`` shows this table and a test
holds the two together. ``client_error`` carries the status the route raised (any 4xx).
"""

_TYPE_FOR_STATUS: Final[Mapping[int, ErrorType]] = {
    400: "bad_request",
    403: "forbidden",
    404: "not_found",
    412: "precondition_failed",
    416: "range_not_satisfiable",
    429: "rate_limited",
    503: "unavailable",
    504: "timeout",
}


class StreamError(Exception):
    """An error whose message is safe to send to the client.

    Raise it from a stream source to choose what the client sees: before the first chunk it
    becomes an HTTP response with ``status_code`` (a 4xx or 5xx) and a JSON body
    ``{"error": {"type": ..., "message": ...}}``; after the first chunk it becomes the format's
    error frame (SSE ``event: error``, an NDJSON error line, ...). ``code`` is an optional
    detail (e.g. the model provider's own error code), sent beside ``type``.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int = 500,
        type: str = "server_error",
        headers: Mapping[str, str] | None = None,
        code: str | None = None,
    ) -> None:
        check_str("message", message)
        check_status_code("status_code", status_code, lowest=400)  # an error is a 4xx or 5xx
        non_empty_str("type", type)
        check_str("code", code, optional=True)
        check_headers("headers", headers)
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.type = type
        self.code = code
        self.headers = dict(headers or {})


def library_error(
    type: ErrorType,
    message: str,
    *,
    headers: Mapping[str, str] | None = None,
    code: str | None = None,
) -> StreamError:
    """A :class:`StreamError` of the library's own vocabulary: the status comes from
    :data:`ERRORS`, so a helper can never give the same failure another status."""
    return StreamError(message, status_code=ERRORS[type][0], type=type, headers=headers, code=code)


@dataclass(frozen=True)
class ErrorReport:
    """The client-facing description of an exception."""

    status_code: int
    type: str
    message: str
    headers: Mapping[str, str] = field(default_factory=dict)
    expected: bool = False
    """True when the error was raised on purpose (no traceback needs logging)."""

    code: str | None = None

    def as_dict(self) -> dict[str, str]:
        """The error object every format carries: ``{"type", "message"}`` (and ``code``)."""
        if self.code is None:
            return {"type": self.type, "message": self.message}
        return {"type": self.type, "message": self.message, "code": self.code}

    def json_body(self) -> bytes:
        return compact_json({"error": self.as_dict()}).encode()

    def raw_headers(self) -> list[tuple[bytes, bytes]]:
        """The headers of the JSON error response, ASGI-encoded."""
        body_length = str(len(self.json_body())).encode()
        raw = [
            (b"content-type", b"application/json"),
            (b"content-length", body_length),
            (b"cache-control", b"no-store"),
            (b"x-content-type-options", b"nosniff"),
        ]
        raw += [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in self.headers.items()]
        return raw


def error_response(exc: BaseException) -> Response:
    """The JSON error response a stream sends when it fails before its first chunk.

    For helpers that must answer an error before any stream exists (a missing S3 object, an
    unreachable upstream); a plain ``Response``, so ``HEAD`` gets the status too.
    """
    report = report_error(exc)
    response = Response(report.json_body(), status_code=report.status_code)
    response.raw_headers = report.raw_headers()
    return response


def report_error(exc: BaseException) -> ErrorReport:
    """Describe ``exc`` for the client without leaking its text unless it is public."""
    if isinstance(exc, StreamError):
        return ErrorReport(
            exc.status_code, exc.type, exc.message, exc.headers, expected=True, code=exc.code
        )
    status = getattr(exc, "status_code", None)
    detail = getattr(exc, "detail", None)
    if _is_http_exception(exc) and isinstance(status, int):
        headers = getattr(exc, "headers", None) or {}
        message = detail if isinstance(detail, str) else _reason(status)
        return ErrorReport(status, _type_for_status(status), message, dict(headers), expected=True)
    if isinstance(exc, TimeoutError):
        return ErrorReport(ERRORS["timeout"][0], "timeout", "The stream timed out.")
    return ErrorReport(500, "server_error", "Internal Server Error")


def _is_http_exception(exc: BaseException) -> bool:
    # Starlette's HTTPException (FastAPI's subclasses it) without importing the framework
    # here: the core stays importable from plain ASGI code.
    return any(
        cls.__name__ == "HTTPException" and cls.__module__.startswith(("starlette", "fastapi"))
        for cls in type(exc).__mro__
    )


def _type_for_status(status: int) -> ErrorType:
    if status in _TYPE_FOR_STATUS:
        return _TYPE_FOR_STATUS[status]
    return "client_error" if 400 <= status < 500 else "server_error"


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
