"""Argument checks for the public functions: one rule and one message per kind of argument.

Every public function checks all of its arguments at its top, before any I/O, with these.
Each check takes the parameter name the caller wrote (``ping``, not the core's
``keepalive``), so the message names it, states the rule and shows what was given: a wrong
type by its type name (a header mapping may hold a secret, so no value is echoed), a wrong
value by a shortened ``repr``. A bad argument is a bug in the calling code: it should raise
where the call is, not surface later as a generic 500 at request time.

The checks are cheap (type tests and comparisons): some run for every response.
"""

from __future__ import annotations

import inspect
import math
import re
import reprlib
from collections.abc import AsyncIterable, Callable, Collection, Iterable, Mapping
from types import FunctionType, MethodType
from typing import Any, TypeVar

__all__ = [
    "check_background",
    "check_bool",
    "check_bytes",
    "check_callable",
    "check_client",
    "check_column_names",
    "check_header_value",
    "check_headers",
    "check_instance",
    "check_limiter",
    "check_mapping",
    "check_media_type",
    "check_query",
    "check_request",
    "check_status_code",
    "check_str",
    "check_token",
    "check_url",
    "int_between",
    "non_empty_str",
    "non_negative_seconds",
    "one_of",
    "optional_non_negative_seconds",
    "optional_positive_int",
    "optional_positive_seconds",
    "positive_int",
    "positive_seconds",
    "returned_source",
    "source_factory",
    "stream_source",
]

T = TypeVar("T")

_repr = reprlib.Repr()
_repr.maxstring = 60
_repr.maxother = 60


def _shown(value: object) -> str:
    return _repr.repr(value)


def _type_of(value: object) -> str:
    return "None" if value is None else type(value).__name__


# --- numbers ---------------------------------------------------------------------------------


def _is_number(value: object) -> bool:
    # bool is an int subclass, but ping=True is a bug, not one second.
    return isinstance(value, int | float) and not isinstance(value, bool)


def _seconds(name: str, value: Any, *, optional: bool, zero: bool) -> Any:
    # The usual case first, in as few steps as possible: some of these run per response.
    if (type(value) is float or type(value) is int) and 0 < value < math.inf:
        return value
    if value is None and optional:
        return None
    rule = ("a non-negative" if zero else "a positive") + " number of seconds"
    if optional:
        rule += " or None (0 or None: off)" if zero else " or None"
    if not _is_number(value):
        raise TypeError(f"{name} must be {rule}, got {_type_of(value)}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        raise ValueError(f"{name} must be {rule}, got {_shown(value)}")
    return value


def positive_seconds(name: str, value: float) -> float:
    """A finite number of seconds above zero (a timeout, an interval)."""
    result: float = _seconds(name, value, optional=False, zero=False)
    return result


def optional_positive_seconds(name: str, value: float | None) -> float | None:
    """A finite number of seconds above zero, or ``None`` (no limit)."""
    result: float | None = _seconds(name, value, optional=True, zero=False)
    return result


def optional_non_negative_seconds(name: str, value: float | None) -> float | None:
    """Seconds where ``0`` and ``None`` both mean "off" (``ping``)."""
    result: float | None = _seconds(name, value, optional=True, zero=True)
    return result


def non_negative_seconds(name: str, value: float) -> float:
    """Seconds where ``0`` means "at once" (a grace period)."""
    result: float = _seconds(name, value, optional=False, zero=True)
    return result


def positive_int(name: str, value: int) -> int:
    """An ``int`` of at least 1 (a count, a size in bytes)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int of at least 1, got {_type_of(value)}")
    if value < 1:
        raise ValueError(f"{name} must be an int of at least 1, got {value!r}")
    return value


def int_between(name: str, value: int, lowest: int, highest: int) -> int:
    """An ``int`` from ``lowest`` to ``highest``, both included (a compression level)."""
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int from {lowest} to {highest}, got {_type_of(value)}")
    if not lowest <= value <= highest:
        raise ValueError(f"{name} must be an int from {lowest} to {highest}, got {value}")
    return value


def optional_positive_int(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be an int of at least 1 or None, got {_type_of(value)}")
    if value < 1:
        raise ValueError(f"{name} must be an int of at least 1 or None, got {value!r}")
    return value


def check_status_code(name: str, value: int, *, lowest: int = 200) -> int:
    """An HTTP status code (RFC 9110 §15); a streamed body needs a final one, 200 or more."""
    if type(value) is int and lowest <= value <= 599:
        return value
    rule = f"an int from {lowest} to 599"
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{name} must be {rule}, got {_type_of(value)}")
    if not lowest <= value <= 599:
        raise ValueError(f"{name} must be {rule}, got {value!r}")
    return value


# --- plain values ----------------------------------------------------------------------------


def check_bool(name: str, value: bool) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, got {_type_of(value)}")
    return value


def check_instance(
    name: str, value: Any, kind: type, *, optional: bool = True, rule: str | None = None
) -> Any:
    """An instance of ``kind`` (or ``None`` when ``optional``)."""
    if value is None and optional:
        return None
    if not isinstance(value, kind):
        rule = (rule or f"a {kind.__name__}") + (" or None" if optional else "")
        raise TypeError(f"{name} must be {rule}, got {_type_of(value)}")
    return value


def check_str(name: str, value: str | None, *, optional: bool = False) -> str | None:
    """A ``str`` (empty allowed), or ``None`` when ``optional``."""
    result: str | None = check_instance(name, value, str, optional=optional)
    return result


def non_empty_str(name: str, value: str | None, *, optional: bool = False) -> str | None:
    """A ``str`` with at least one character, or ``None`` when ``optional``."""
    if value is None and optional:
        return None
    rule = "a non-empty str" + (" or None" if optional else "")
    if not isinstance(value, str):
        raise TypeError(f"{name} must be {rule}, got {_type_of(value)}")
    if not value:
        raise ValueError(f"{name} must be {rule}, got ''")
    return value


def check_bytes(name: str, value: bytes | None, *, optional: bool = False) -> bytes | None:
    result: bytes | None = check_instance(name, value, bytes, optional=optional, rule="bytes")
    return result


def one_of(name: str, value: T, choices: Collection[T]) -> T:
    """One of a few fixed values (a format name, a disposition)."""
    try:
        known = value in choices
    except TypeError:  # unhashable
        known = False
    if not known:
        listed = [repr(choice) for choice in choices]
        rule = " or ".join(listed) if len(listed) <= 2 else "one of " + ", ".join(listed)
        raise ValueError(f"{name} must be {rule}, got {_shown(value)}")
    return value


def check_column_names(name: str, value: Any) -> list[str] | None:
    """Column names: an iterable of distinct ``str`` (not one ``str``), at least one; or
    ``None``. Returns them as a list."""
    if value is None:
        return None
    if isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise TypeError(
            f"{name} must be a sequence of column names (str) or None, got {_type_of(value)}"
        )
    names = list(value)
    for item in names:
        if not isinstance(item, str):
            raise TypeError(f"{name} must hold str names, got {_type_of(item)}")
    if not names:
        raise ValueError(f"{name} must name at least one column, got none")
    if len(set(names)) != len(names):
        twice = sorted({item for item in names if names.count(item) > 1})
        raise ValueError(f"{name} must be unique, got {_shown(twice)} more than once")
    return names


def check_mapping(name: str, value: Any) -> Mapping[str, Any] | None:
    """A ``Mapping`` with ``str`` keys, or ``None`` (options handed on to a library)."""
    if value is None:
        return None
    if not isinstance(value, Mapping):
        raise TypeError(f"{name} must be a mapping with str keys or None, got {_type_of(value)}")
    for key in value:
        if not isinstance(key, str):
            raise TypeError(f"{name} keys must be str, got {_type_of(key)}")
    return value


# --- HTTP fields -----------------------------------------------------------------------------

# RFC 9110 §5.6.2: token = 1*tchar; field names (§5.1) and methods (§9.1) are tokens.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")


def check_token(name: str, value: str) -> str:
    """An RFC 9110 token (§5.6.2), such as a method (§9.1)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {_type_of(value)}")
    if not _TOKEN.fullmatch(value):
        raise ValueError(
            f"{name} must be an HTTP token (letters, digits and !#$%&'*+-.^_`|~; "
            f"RFC 9110 §5.6.2), got {_shown(value)}"
        )
    return value


def _field_value_problem(value: str) -> str | None:
    # RFC 9110 §5.5: CR, LF and NUL are never allowed in a field value; a CR or LF would end
    # the header line and start another one (header injection). ASGI servers send values
    # as Latin-1 bytes, so anything outside it cannot be sent at all.
    if "\r" in value or "\n" in value or "\0" in value:
        return "must not contain CR, LF or NUL (RFC 9110 §5.5)"
    if not value.isascii():
        try:
            value.encode("latin-1")
        except UnicodeEncodeError:
            return "must be Latin-1 text (percent-encode or RFC 8187-encode the rest)"
    return None


def check_url(name: str, value: Any) -> Any:
    """A URL: a non-empty ``str`` (absolute, or relative to the client's base URL) or the
    client library's own URL object (``httpx.URL``, ``yarl.URL``)."""
    if type(value).__name__ == "URL" and type(value).__module__.startswith(("httpx", "yarl")):
        return value
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str (or httpx.URL / yarl.URL), got {_type_of(value)}")
    if not value or "\r" in value or "\n" in value or "\0" in value:
        raise ValueError(
            f"{name} must be a non-empty URL without CR, LF or NUL, got {_shown(value)}"
        )
    return value


def check_query(name: str, value: Any) -> Any:
    """Query parameters: ``None``, a ``str``, a mapping or ``(name, value)`` pairs."""
    if value is None or isinstance(value, str | Mapping):
        return value
    if isinstance(value, Iterable) and not isinstance(value, bytes | bytearray):
        return value
    raise TypeError(
        f"{name} must be a mapping, (name, value) pairs, a query str or None, got {_type_of(value)}"
    )


def check_header_value(name: str, value: str | None, *, optional: bool = False) -> str | None:
    """A ``str`` that can be sent as one header field value (``media_type``, ...)."""
    if value is None and optional:
        return None
    if not isinstance(value, str):
        rule = "a str or None" if optional else "a str"
        raise TypeError(f"{name} must be {rule}, got {_type_of(value)}")
    problem = _field_value_problem(value)
    if problem is not None:
        raise ValueError(f"{name} {problem}, got {_shown(value)}")
    return value


def check_media_type(name: str, value: str | None, *, optional: bool = True) -> str | None:
    """A media type such as ``text/plain`` (a non-empty header value), or ``None``."""
    if value is None and optional:
        return None
    check_header_value(name, value)
    if not value:
        raise ValueError(f"{name} must be a media type such as 'text/plain', got ''")
    return value


def check_headers(name: str, value: Any, *, pairs: bool = False) -> Any:
    """Header fields: a ``Mapping`` of ``str`` to ``str`` (or, with ``pairs``, an iterable of
    ``(name, value)`` tuples), or ``None``. Names must be tokens, values sendable as is.

    Values are never echoed in a message: they may be credentials.
    """
    if value is None:
        return None
    if isinstance(value, Mapping):
        items: Iterable[Any] = value.items()
    elif pairs and isinstance(value, Iterable) and not isinstance(value, str | bytes):
        items = value
    else:
        rule = "a mapping of str to str" + (" or (name, value) pairs" if pairs else "")
        raise TypeError(f"{name} must be {rule} or None, got {_type_of(value)}")
    for item in items:
        if not (isinstance(item, tuple) and len(item) == 2):
            raise TypeError(f"{name} must hold (name, value) pairs, got {_type_of(item)}")
        field, text = item
        if not isinstance(field, str):
            raise TypeError(f"{name} names must be str, got {_type_of(field)}")
        if not _TOKEN.fullmatch(field):
            raise ValueError(
                f"{name} name {_shown(field)} is not a valid field name (an HTTP token, "
                "RFC 9110 §5.1)"
            )
        if not isinstance(text, str):
            raise TypeError(f"{name}[{field!r}] must be a str, got {_type_of(text)}")
        problem = _field_value_problem(text)
        if problem is not None:
            raise ValueError(f"{name}[{field!r}] {problem}")
    return value


# --- objects ---------------------------------------------------------------------------------


def _accepts_positional(function: Callable[..., Any], count: int) -> bool | None:
    """Whether ``function`` can be called with ``count`` positional arguments; ``None`` when
    that cannot be told cheaply (a builtin without a signature)."""
    bound = 0
    target: Any = function
    if isinstance(target, MethodType):
        target, bound = target.__func__, 1
    if isinstance(target, FunctionType):  # the common case: read the code object, no Signature
        code = target.__code__
        positional = code.co_argcount - bound
        required = positional - len(target.__defaults__ or ())
        keyword_only = code.co_kwonlyargcount - len(target.__kwdefaults__ or {})
        takes_rest = bool(code.co_flags & inspect.CO_VARARGS)
        return keyword_only == 0 and required <= count and (count <= positional or takes_rest)
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return None
    try:
        signature.bind(*range(count))
    except TypeError:
        return False
    return True


def check_callable(
    name: str, value: Any, *, optional: bool = True, arguments: int | None = None
) -> Any:
    """A callable (or ``None``); with ``arguments``, one that takes that many positionally."""
    if value is None and optional:
        return None
    if not callable(value):
        rule = "a callable" + (" or None" if optional else "")
        raise TypeError(f"{name} must be {rule}, got {_type_of(value)}")
    if arguments is not None and _accepts_positional(value, arguments) is False:
        plural = "argument" if arguments == 1 else "arguments"
        raise TypeError(
            f"{name} must take {arguments} positional {plural}, but "
            f"{_name_of(value)}{_signature_text(value)} does not"
        )
    return value


def check_background(name: str, value: Any) -> Any:
    """A Starlette ``BackgroundTask``/``BackgroundTasks`` (anything awaitable when called)."""
    if value is not None and not callable(value):
        raise TypeError(
            f"{name} must be a starlette.background.BackgroundTask or None, got {_type_of(value)}"
        )
    return value


def check_limiter(name: str, value: Any) -> Any:
    """An ``anyio.CapacityLimiter`` or ``None``."""
    if value is None:
        return None
    import anyio

    if not isinstance(value, anyio.CapacityLimiter):
        raise TypeError(f"{name} must be an anyio.CapacityLimiter or None, got {_type_of(value)}")
    return value


def check_request(name: str, value: Any) -> Any:
    """The incoming Starlette/FastAPI ``Request``, or ``None``."""
    if value is None:
        return None
    from starlette.requests import Request

    if not isinstance(value, Request):
        raise TypeError(
            f"{name} must be the starlette.requests.Request (FastAPI's Request) of this "
            f"route, or None, got {_type_of(value)}"
        )
    return value


def check_client(name: str, value: Any, methods: Iterable[str], kind: str) -> Any:
    """An SDK client object: it has each of ``methods``. Checked last, after every other
    argument, because looking at a client's attributes is the first thing that touches it."""
    if value is None or isinstance(value, str | bytes | int | float | Mapping):
        raise TypeError(f"{name} must be {kind}, got {_type_of(value)}")
    for method in methods:
        if not callable(getattr(value, method, None)):
            raise TypeError(f"{name} must be {kind}, got {_type_of(value)} (no {method}())")
    return value


# --- stream sources --------------------------------------------------------------------------


def _name_of(function: Any) -> str:
    return str(getattr(function, "__name__", None) or type(function).__name__)


def _signature_text(function: Any) -> str:
    try:
        return str(inspect.signature(function))
    except (TypeError, ValueError):
        return "(...)"


def _function_kind(value: Any) -> str | None:
    if inspect.isasyncgenfunction(value):
        return "an async generator function"
    if inspect.isgeneratorfunction(value):
        return "a generator function"
    if inspect.iscoroutinefunction(value):
        return "a coroutine function"
    return None


def _not_called(name: str, value: Any, kind: str, *, iterable: bool) -> str:
    function = _name_of(value)
    message = f"{name} is {kind}; call it: pass {function}() not {function}"
    if iterable and kind == "a coroutine function":
        # async def without yield: even called, it returns a coroutine, which is no stream.
        message += " (and make it yield its items: a coroutine is not iterable)"
    return message


def stream_source(
    name: str,
    value: Any,
    *,
    what: str = "a sync or async iterable of bytes or str",
    sync: bool = True,
    asynchronous: bool = True,
    awaitable: bool = False,
) -> Any:
    """A source of items: an iterable (``sync``), an async iterable (``asynchronous``), or an
    awaitable returning one (``awaitable``). Not a single ``str``/``bytes``, and not a
    generator or coroutine function whose call was forgotten."""
    if isinstance(value, str | bytes | bytearray | memoryview):
        raise TypeError(
            f"{name} must be {what}, not a single {type(value).__name__} value "
            "(wrap one item in a list: [value])"
        )
    if asynchronous and isinstance(value, AsyncIterable):
        return value
    if sync and isinstance(value, Iterable):
        return value
    if awaitable and inspect.isawaitable(value):
        return value
    kind = _function_kind(value)
    if kind is not None:
        raise TypeError(_not_called(name, value, kind, iterable=not awaitable))
    if inspect.iscoroutine(value):
        value.close()  # never awaited: no "never awaited" warning on top of this error
        raise TypeError(
            f"{name} must be {what}, got a coroutine: make {value.__qualname__} an async "
            "generator (yield each item) and pass its call"
        )
    if not sync and isinstance(value, Iterable):
        raise TypeError(
            f"{name} must be {what}, got the sync iterable {_type_of(value)}"
            + ("; use iterate_in_thread() for a blocking one" if asynchronous else "")
        )
    if not asynchronous and isinstance(value, AsyncIterable):
        raise TypeError(
            f"{name} must be {what}, got the async iterable {_type_of(value)}: iterate it "
            "directly with async for"
        )
    called = "; call it" if callable(value) else ""
    raise TypeError(f"{name} must be {what}, got {_type_of(value)}{called}")


def source_factory(name: str, value: Any, argument: str) -> Any:
    """A function called once per response with ``argument`` that returns the source.

    Returns the function. A generator function that takes no argument is a source whose
    call was forgotten; a coroutine function returns a coroutine, not a source.
    """
    kind = _function_kind(value)
    if kind == "a coroutine function":
        raise TypeError(
            f"{name} is a coroutine function; it must return the items instead: make "
            f"{_name_of(value)} an async generator (yield each item)"
        )
    if _accepts_positional(value, 1) is False:
        if kind is not None:
            raise TypeError(
                _not_called(name, value, kind, iterable=True)
                + f", or let it take {argument} as its one argument"
            )
        raise TypeError(
            f"{name} must take {argument} as its one positional argument, but "
            f"{_name_of(value)}{_signature_text(value)} does not"
        )
    return value


def returned_source(name: str, value: Any, *, what: str = "a sync or async iterable") -> Any:
    """What a source factory returned, checked at request time: its error names ``name``."""
    if isinstance(value, AsyncIterable | Iterable) and not isinstance(
        value, str | bytes | bytearray | memoryview
    ):
        return value
    if inspect.iscoroutine(value):
        value.close()  # never awaited: no "never awaited" warning on top of this error
    raise TypeError(f"{name} must return {what}, but it returned {_type_of(value)}")
