"""``format="ndjson"``: the ``sse`` format's objects, one per line, each with a ``type``."""

from __future__ import annotations

from ..._formats import NDJSON_KEEPALIVE, ndjson_error_frame
from .._events import Finish, LLMEvent, ReasoningDelta, TextDelta, ToolCallDelta
from ._base import Encoder, FormatSpec, json_text, tool_fields

__all__ = ["SPEC", "NDJSONEncoder"]


class NDJSONEncoder(Encoder):
    def encode(self, event: LLMEvent) -> bytes:
        if type(event) is TextDelta:  # per token: no dict to serialise, only the text
            line = '{"type":"text","text":' + json_text(event.text) + "}"
        elif type(event) is ReasoningDelta:
            line = json_text({"type": "reasoning", "text": event.text})
        elif type(event) is ToolCallDelta:
            line = json_text({"type": "tool_call", **tool_fields(event)})
        else:
            assert type(event) is Finish
            line = json_text(
                {"type": "done", "finish_reason": event.finish_reason, "usage": event.usage}
            )
        return (line + "\n").encode()

    def error_frame(self, exc: BaseException) -> bytes:
        return ndjson_error_frame(exc)


SPEC = FormatSpec("application/x-ndjson", lambda model: NDJSONEncoder(), NDJSON_KEEPALIVE)
