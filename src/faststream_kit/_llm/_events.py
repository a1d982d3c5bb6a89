"""The neutral events every provider produces and every format encodes.

A provider module (``_providers/``) turns its SDK's items into these; a format module
(``_formats/``) turns these into bytes. ``_resume.py`` stores exactly these in Redis, so a new
kind of event is a change to all three.
"""

from __future__ import annotations

__all__ = ["Finish", "LLMEvent", "ReasoningDelta", "TextDelta", "ToolCallDelta"]


class TextDelta:
    """A piece of the answer's text."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class ReasoningDelta:
    """A piece of the model's reasoning (thinking) text, shown apart from the answer."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class ToolCallDelta:
    """A piece of a tool call: ``id`` and ``name`` come with the first piece of each call."""

    __slots__ = ("arguments", "id", "index", "name")

    def __init__(self, index: int, id: str | None, name: str | None, arguments: str) -> None:
        self.index = index
        self.id = id
        self.name = name
        self.arguments = arguments


class Finish:
    """The last event: why the model stopped, in OpenAI's words, and the token usage.

    ``usage`` has the keys ``prompt_tokens``, ``completion_tokens`` and ``total_tokens``, or is
    None when the provider sent none.
    """

    __slots__ = ("finish_reason", "usage")

    def __init__(self, finish_reason: str, usage: dict[str, int] | None) -> None:
        self.finish_reason = finish_reason
        self.usage = usage


LLMEvent = TextDelta | ReasoningDelta | ToolCallDelta | Finish
