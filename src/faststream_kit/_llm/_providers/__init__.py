"""The providers ``llm_stream`` reads: one module per SDK, each turning its items into
neutral events (``_events.py``) through a :class:`Reader`.

Sources are recognised by shape, never by importing an SDK: first the stream object itself
(``for_stream``), then, for a stream nobody recognised (a generator, a wrapper), its first
item (``for_item``). Adding a provider: a module with a ``Reader`` subclass, ``for_stream``,
``for_item`` and ``ITEMS`` (what its items are, for the error message), listed below.
"""

from __future__ import annotations

from typing import Any, Protocol

from . import gemini, langchain, openai, text
from ._base import Reader

__all__ = ["PROVIDERS", "Provider", "Reader", "reader_for_item", "reader_for_stream"]


class Provider(Protocol):
    """What a provider module defines (a module satisfies this protocol by its names)."""

    ITEMS: str

    def for_stream(self, stream: Any) -> Reader | None: ...

    def for_item(self, item: Any) -> Reader | None: ...


PROVIDERS: tuple[Provider, ...] = (openai, gemini, langchain, text)
"""Asked in this order; the first that answers reads the stream."""


def reader_for_stream(stream: Any) -> Reader | None:
    for provider in PROVIDERS:
        reader = provider.for_stream(stream)
        if reader is not None:
            return reader
    return None


def reader_for_item(item: Any) -> Reader:
    for provider in PROVIDERS:
        reader = provider.for_item(item)
        if reader is not None:
            return reader
    expected = ", ".join(provider.ITEMS for provider in PROVIDERS)
    raise TypeError(f"llm_stream cannot read a {type(item).__name__}: expected {expected}")
