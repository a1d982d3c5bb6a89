"""``llm_stream``: a model's streamed answer, from any provider, in any front-end format.

``_providers/`` turn each SDK's stream into neutral events (``_events.py``); ``_formats/``
encode those; ``_stream.py`` reads, times out, closes and reports.
"""

from ._events import Finish, LLMEvent, ReasoningDelta, TextDelta, ToolCallDelta
from ._formats import FORMATS, LLMFormat
from ._stream import (
    Completion,
    LLMSource,
    OnComplete,
    ToolCall,
    check_source,
    format_response,
    llm_events,
    llm_stream,
    run_ids_for,
)

__all__ = [
    "FORMATS",
    "Completion",
    "Finish",
    "LLMEvent",
    "LLMFormat",
    "LLMSource",
    "OnComplete",
    "ReasoningDelta",
    "TextDelta",
    "ToolCall",
    "ToolCallDelta",
    "check_source",
    "format_response",
    "llm_events",
    "llm_stream",
    "run_ids_for",
]
