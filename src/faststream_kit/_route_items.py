"""The item type a FastAPI ``yield`` path operation declares, and holding its items to it.

FastAPI validates and serializes the items of a generator path operation against its return
annotation (``-> AsyncIterator[Tick]``) only for its own response classes; to any other
``response_class`` it hands the generator over as it is. So our classes do it themselves, the
way FastAPI does: the ASGI scope names the route that matched (``scope["route"]``, set by
Starlette's router), whose ``endpoint`` is the path operation function; its annotation gives
the item type, a pydantic ``TypeAdapter`` of it validates each item (``from_attributes``, as
FastAPI) and writes it as compact JSON with the route's ``response_model_*`` options.

pydantic comes with FastAPI and is imported only here, only for such a route; the adapter is
built once per path operation function.
"""

from __future__ import annotations

import collections.abc
import inspect
import threading
import weakref
from collections.abc import Callable
from typing import Annotated, Any, get_args, get_origin

__all__ = [
    "Serializer",
    "declared_item_type",
    "is_event_type",
    "is_generator_function",
    "item_serializer",
]

Serializer = Callable[[Any], bytes]
"""Validates one item against the declared type and returns it as compact JSON."""

_STREAM_ORIGINS = frozenset(
    {
        collections.abc.AsyncIterator,
        collections.abc.AsyncIterable,
        collections.abc.AsyncGenerator,
        collections.abc.Iterator,
        collections.abc.Iterable,
        collections.abc.Generator,
    }
)
"""The annotations FastAPI reads an item type from (``typing``'s aliases have these origins)."""

_EVENT_CLASSES = frozenset(
    {
        ("faststream_kit._sse", "ServerSentEvent"),
        ("fastapi.sse", "ServerSentEvent"),
        ("sse_starlette.event", "ServerSentEvent"),
        ("sse_starlette.event", "JSONServerSentEvent"),
        ("sse_starlette.sse", "ServerSentEvent"),
    }
)
"""Event classes: items the route builds as events itself, which nothing validates."""


def is_event_type(annotation: Any) -> bool:
    """Whether ``annotation`` is an SSE event class (ours, FastAPI's, sse-starlette's)."""
    return isinstance(annotation, type) and any(
        (base.__module__, base.__qualname__) in _EVENT_CLASSES for base in annotation.__mro__
    )


def declared_item_type(endpoint: Callable[..., Any]) -> Any | None:
    """The ``X`` of a generator function annotated ``-> AsyncIterator[X]`` (or ``Iterator``,
    ``AsyncGenerator``, ``Generator``, ``AsyncIterable``, ``Iterable``), else ``None``.

    ``None`` too when there is nothing to hold items to: no annotation, a bare iterator type,
    ``Any``, ``object``, or an event class (the route writes events; FastAPI does not
    validate those either).
    """
    if not is_generator_function(endpoint):
        return None
    try:
        # eval_str resolves string annotations in the function's own module, after
        # unwrapping decorators, as FastAPI does.
        annotation = inspect.signature(endpoint, eval_str=True).return_annotation
    except Exception:  # an annotation that cannot be resolved: nothing to hold items to
        return None
    if get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) not in _STREAM_ORIGINS:
        return None
    arguments = get_args(annotation)
    item = arguments[0] if arguments else Any
    if item is Any or item is object or is_event_type(item):
        return None
    return item


def is_generator_function(endpoint: Any) -> bool:
    """Whether calling ``endpoint`` gives a generator: FastAPI streams what it yields."""
    return any(
        inspect.isasyncgenfunction(candidate) or inspect.isgeneratorfunction(candidate)
        for candidate in (endpoint, getattr(endpoint, "__call__", None))  # noqa: B004
    )


class _ItemCheck:
    """One path operation function's item type and the pydantic adapter for it."""

    __slots__ = ("adapter", "item_type")

    def __init__(self, item_type: Any) -> None:
        from pydantic import TypeAdapter

        self.item_type = item_type
        self.adapter: Any = TypeAdapter(item_type)


_NOT_DECLARED = object()
_checks: weakref.WeakKeyDictionary[Any, Any] = weakref.WeakKeyDictionary()
_checks_lock = threading.Lock()


def _item_check(endpoint: Any) -> _ItemCheck | None:
    try:
        found = _checks.get(endpoint)
    except TypeError:  # an endpoint that cannot be weakly referenced: not cached
        item_type = declared_item_type(endpoint)
        return _ItemCheck(item_type) if item_type is not None else None
    if found is None:
        item_type = declared_item_type(endpoint)
        found = _ItemCheck(item_type) if item_type is not None else _NOT_DECLARED
        with _checks_lock:
            _checks[endpoint] = found
    return found if isinstance(found, _ItemCheck) else None


def item_serializer(route: Any) -> Serializer | None:
    """For the route that matched (``scope["route"]``): validate-and-serialize, or ``None``
    when its endpoint declares no item type (then the response class's own encoding applies).
    """
    endpoint = getattr(route, "endpoint", None)
    if endpoint is None:
        return None
    check = _item_check(endpoint)
    if check is None:
        return None
    from pydantic import ValidationError

    validate = check.adapter.validate_python
    dump_json = check.adapter.dump_json
    # FastAPI's own response_model_* options of the route, with FastAPI's defaults.
    options = {
        "include": getattr(route, "response_model_include", None),
        "exclude": getattr(route, "response_model_exclude", None),
        "by_alias": getattr(route, "response_model_by_alias", True),
        "exclude_unset": getattr(route, "response_model_exclude_unset", False),
        "exclude_defaults": getattr(route, "response_model_exclude_defaults", False),
        "exclude_none": getattr(route, "response_model_exclude_none", False),
    }

    def serialize(item: Any) -> bytes:
        try:
            value = validate(item, from_attributes=True)
        except ValidationError as exc:
            raise _invalid_item(exc, item) from None
        data: bytes = dump_json(value, **options)
        return data

    return serialize


def _invalid_item(exc: Any, item: Any) -> Exception:
    """FastAPI's ``ResponseValidationError`` for an item, as FastAPI raises it for its classes.

    Not an error the client may read (the item may hold anything): it becomes a
    ``server_error`` and the details go to the server log.
    """
    errors = [
        {**error, "loc": ("response", *error["loc"])} for error in exc.errors(include_url=False)
    ]
    try:
        from fastapi.exceptions import ResponseValidationError
    except ImportError:  # pragma: no cover - a route with an endpoint but no FastAPI
        return exc  # type: ignore[no-any-return]
    return ResponseValidationError(errors, body=item)
