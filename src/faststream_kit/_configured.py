"""``StreamResponse.with_options()``: a response class with other defaults, for ``response_class=``.

FastAPI builds the response of a ``yield`` path operation itself, from the class it is given
(``response_class(content=generator, status_code=..., background=...)``), so per-route
options can only travel in the class. :func:`configured_class` makes that class: a subclass
whose constructor fills in the options the caller did not give. It checks the options at
once, by building one response without a source (nothing is read, nothing is sent), so a bad
value fails where the route is declared, with the parameter's name, and not at the first
request.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, TypeVar

__all__ = ["configured_class"]

R = TypeVar("R")

_PER_RESPONSE = frozenset({"self", "content", "request"})
"""Constructor parameters that belong to one response, never to a class."""

_CACHE_LIMIT = 256
_Key = tuple[type[Any], tuple[tuple[str, Any], ...]]
_cache: dict[_Key, type[Any]] = {}
"""The classes made so far: the same options give the same class (routes compare equal)."""


def configured_class(cls: type[R], options: Mapping[str, Any]) -> type[R]:
    """``cls`` with ``options`` as the defaults of its constructor's keyword parameters."""
    key = _cache_key(cls, options)
    if key is not None and key in _cache:
        return _cache[key]
    base_init = cls.__init__
    signature = inspect.signature(base_init)
    parameters = signature.parameters
    allowed = [
        name
        for name, parameter in parameters.items()
        if name not in _PER_RESPONSE
        and parameter.kind in (parameter.POSITIONAL_OR_KEYWORD, parameter.KEYWORD_ONLY)
    ]
    for name in options:
        if name not in allowed:
            raise TypeError(
                f"{name} is not an option of {cls.__name__}; the options are: " + ", ".join(allowed)
            )
    # The constructor checks every value under its own name: build one response that is
    # never started (an empty source is not touched until the first item is asked for).
    cls((), **options)  # type: ignore[call-arg]

    chosen = dict(options)
    positional = [
        name
        for name, parameter in parameters.items()
        if parameter.kind == parameter.POSITIONAL_OR_KEYWORD and name != "self"
    ]

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        if len(args) > 1:  # arguments after content given by position: name them
            kwargs.update(zip(positional[1:], args[1:], strict=False))
            args = args[:1]
        for name, value in chosen.items():
            given = kwargs.get(name)
            if name not in kwargs:
                kwargs[name] = value
            elif name == "headers" and given is not None and value is not None:
                kwargs[name] = {**value, **given}  # the route's headers, then the call's
        base_init(self, *args, **kwargs)

    # inspect.signature() (FastAPI reads the default status_code from it) and help() show
    # the options as the defaults.
    __init__.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=[
            p.replace(default=chosen[name]) if name in chosen else p
            for name, p in parameters.items()
        ]
    )
    shown = ", ".join(f"{name}={value!r}" for name, value in chosen.items())
    namespace: dict[str, Any] = {
        "__init__": __init__,
        "__module__": cls.__module__,
        "__qualname__": f"{cls.__qualname__}.with_options({shown})",
        "__doc__": cls.__doc__,
    }
    if chosen.get("media_type") is not None:
        # FastAPI's OpenAPI reads the class attribute, not the constructor's default.
        namespace["media_type"] = chosen["media_type"]
    configured: type[R] = type(cls.__name__, (cls,), namespace)
    if key is not None and len(_cache) < _CACHE_LIMIT:
        _cache[key] = configured
    return configured


def _cache_key(cls: type[Any], options: Mapping[str, Any]) -> _Key | None:
    """A hashable key for ``options``, or None when a value cannot be one (then: no cache)."""
    items = []
    for name, value in sorted(options.items()):
        try:
            if isinstance(value, Mapping):
                value = tuple(sorted(value.items()))
            hash(value)
        except TypeError:
            return None
        # The type too: 1 == 1.0 == True, but keepalive=True is an error, not one second.
        items.append((name, (type(value), value)))
    return cls, tuple(items)
