"""``format="sse"``: events ``text``, ``reasoning``, ``tool_call``, ``done``, ``error``."""

from __future__ import annotations

from ..._formats import sse_error_frame
from ..._sse import PING_FRAME, json_event
from .._events import Finish, LLMEvent, ReasoningDelta, TextDelta, ToolCallDelta
from ._base import Encoder, FormatSpec, json_text, tool_fields

__all__ = ["SPEC", "SSEEncoder"]


class SSEEncoder(Encoder):
    """One named SSE event per neutral event, each with a JSON body."""

    def encode(self, event: LLMEvent) -> bytes:
        if type(event) is TextDelta:  # per token: no dict to serialise, only the text
            return json_event('{"text":' + json_text(event.text) + "}", "text")
        if type(event) is ReasoningDelta:
            return json_event(json_text({"text": event.text}), "reasoning")
        if type(event) is ToolCallDelta:
            return json_event(json_text(tool_fields(event)), "tool_call")
        assert type(event) is Finish
        done = {"finish_reason": event.finish_reason, "usage": event.usage}
        return json_event(json_text(done), "done")

    def error_frame(self, exc: BaseException) -> bytes:
        return sse_error_frame(exc)


SPEC = FormatSpec("text/event-stream", lambda model: SSEEncoder(), PING_FRAME)
