"""Provider failures in the library's one error vocabulary (``faststream_kit.ERRORS``).

Every provider's SDK raises its own exception types; the HTTP status they carry decides what
the client sees, the same way for every provider (docs/errors.md, docs/llm.md).
"""

from __future__ import annotations

from .._errors import StreamError, library_error

__all__ = ["in_band_error", "sdk_error", "upstream_error"]

_TIMEOUTS = {"APITimeoutError", "TimeoutException", "TimeoutError", "ReadTimeout"}
_CONNECTION_FAILURES = {"APIConnectionError", "ConnectError", "RemoteProtocolError"}


def sdk_error(exc: Exception) -> Exception:
    """Map an SDK/transport exception to a :class:`StreamError` with an honest status.

    Anything unrecognised is returned as is (the core reports it as an internal error).
    """
    if isinstance(exc, StreamError):
        return exc
    status = _status_of(exc)
    if status is not None:
        return _status_error(exc, status)
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & _TIMEOUTS:
        return library_error("timeout", "the model provider timed out")
    if names & _CONNECTION_FAILURES:
        return library_error("upstream_unavailable", "the connection to the model provider failed")
    if "APIError" in names:
        return upstream_error(getattr(exc, "message", None), getattr(exc, "code", None))
    return exc


def upstream_error(
    message: object, code: object, fallback: str = "the model reported an error"
) -> StreamError:
    """An error the model provider reported, as clients see it: a 502 ``upstream_error``
    with its message, and its own error code (if it gave one) as ``code``."""
    return library_error(
        "upstream_error",
        message if isinstance(message, str) and message else fallback,
        code=code if isinstance(code, str) and code else None,
    )


def _status_of(exc: Exception) -> int | None:
    """The HTTP status the provider answered, where its SDK keeps it."""
    status = getattr(exc, "status_code", None)  # openai, anthropic, httpx
    if isinstance(status, int):
        return status
    code = getattr(exc, "code", None)  # google-genai's APIError; openai's `code` is a str
    return code if isinstance(code, int) and 400 <= code <= 599 else None


def in_band_error(body: object) -> StreamError:
    """An ``error`` event of a stream that began with a 200, ``{"type": "error", "error":
    {"type", "message"}}`` (Anthropic's), as ours. The anthropic SDK raises it with that
    stream's status, and LangChain (``langchain-anthropic``) passes that on as it is."""
    error = body.get("error") if isinstance(body, dict) else None
    kind = error.get("type") if isinstance(error, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    if kind == "overloaded_error":  # what a 529 says once the stream has begun
        return library_error("unavailable", "the model provider is overloaded; retry later")
    if kind == "rate_limit_error":
        return library_error(
            "rate_limited", "the model provider is rate limiting requests; retry later"
        )
    return upstream_error(message, kind)


def _status_error(exc: Exception, status: int) -> StreamError:
    if status < 400:  # an error event inside a stream whose response was a 200
        return in_band_error(getattr(exc, "body", None))
    if status == 429:
        retry_after = _response_header(exc, "retry-after")
        return library_error(
            "rate_limited",
            "the model provider is rate limiting requests; retry later",
            headers={"Retry-After": retry_after} if retry_after else {},
        )
    if status in (401, 403):
        # The server's credentials were refused: not the client's fault, and the provider's
        # message may quote the key, so it is never passed on.
        return library_error(
            "upstream_auth_error", "the model provider refused this server's credentials"
        )
    if status in (408, 504):
        return library_error("timeout", "the model provider timed out")
    if status in (503, 529):  # 529: Anthropic's "overloaded"
        return library_error("unavailable", "the model provider is overloaded; retry later")
    return library_error("upstream_error", f"the model provider answered {status}")


def _response_header(exc: Exception, name: str) -> str | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    value = headers.get(name)
    return value if isinstance(value, str) else None
