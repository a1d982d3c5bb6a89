"""What a failed stream tells the client: a status, a type and a message safe to show.

Exception text can carry secrets (API keys in URLs, SQL, file paths), so only errors that
declare a public message are shown as they are: :class:`StreamError` and Starlette's (and so
FastAPI's) ``HTTPException``. Anything else is reported as a generic server error and logged
with its traceback on the server, never sent to the client.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from starlette.responses import Response

from ._sse import compact_json

__all__ = ["ErrorReport", "StreamError", "error_response", "report_error"]


class StreamError(Exception):
    """An error whose message is safe to send to the client.

    Raise it from a stream source to choose what the client sees: before the first chunk it
    becomes an HTTP response with ``status_code`` and a JSON body; after the first chunk it
    becomes the format's error frame (SSE ``event: error``, an NDJSON error line, ...).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int = 500,
        type: str = "server_error",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.type = type
        self.headers = dict(headers or {})


@dataclass(frozen=True)
class ErrorReport:
    """The client-facing description of an exception."""

    status_code: int
    type: str
    message: str
    headers: Mapping[str, str] = field(default_factory=dict)
    expected: bool = False
    """True when the error was raised on purpose (no traceback needs logging)."""

    def as_dict(self) -> dict[str, str]:
        return {"type": self.type, "message": self.message}

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
        return ErrorReport(exc.status_code, exc.type, exc.message, exc.headers, expected=True)
    status = getattr(exc, "status_code", None)
    detail = getattr(exc, "detail", None)
    if _is_http_exception(exc) and isinstance(status, int):
        headers = getattr(exc, "headers", None) or {}
        message = detail if isinstance(detail, str) else _reason(status)
        return ErrorReport(status, _type_for_status(status), message, dict(headers), expected=True)
    if isinstance(exc, TimeoutError):
        return ErrorReport(504, "timeout", "The stream timed out.")
    return ErrorReport(500, "server_error", "Internal Server Error")


def _is_http_exception(exc: BaseException) -> bool:
    # Starlette's HTTPException (FastAPI's subclasses it) without importing the framework
    # here: the core stays importable from plain ASGI code.
    return any(
        cls.__name__ == "HTTPException" and cls.__module__.startswith(("starlette", "fastapi"))
        for cls in type(exc).__mro__
    )


def _type_for_status(status: int) -> str:
    if status == 429:
        return "rate_limited"
    if status == 504:
        return "timeout"
    if 400 <= status < 500:
        return "client_error"
    return "server_error"


def _reason(status: int) -> str:
    from http import HTTPStatus

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"
