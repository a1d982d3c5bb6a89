"""Any sync or async iterable of ``str``: each string is a piece of the answer."""

from __future__ import annotations

from typing import Any

from .._events import LLMEvent, TextDelta
from ._base import Reader

__all__ = ["ITEMS", "TextReader", "for_item", "for_stream"]

ITEMS = "str"


class TextReader(Reader):
    def events_for(self, item: Any) -> list[LLMEvent]:
        if isinstance(item, str):
            return [TextDelta(str(item))] if item else []
        raise TypeError(
            f"llm_stream cannot read a {type(item).__name__} in a stream of str: every item "
            "must be a str"
        )


def for_stream(stream: Any) -> Reader | None:
    return None  # a plain iterable says nothing about its items


def for_item(item: Any) -> Reader | None:
    return TextReader() if isinstance(item, str) else None
