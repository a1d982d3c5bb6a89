"""How a failed S3 call or body read is told to the client: botocore's error codes, and the
status and JSON error each one becomes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from .._errors import StreamError, library_error

logger = logging.getLogger("faststream_kit")

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
