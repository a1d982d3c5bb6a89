"""``format="openai"``: OpenAI-compatible ``chat.completion.chunk`` SSE ending in ``[DONE]``.

The openai SDK itself can read it (point its ``base_url`` at the route).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from ..._errors import report_error
from ..._sse import DONE_FRAME, PING_FRAME, json_event
from .._events import Finish, LLMEvent, ReasoningDelta, TextDelta, ToolCallDelta
from ._base import Encoder, FormatSpec, json_text

__all__ = ["SPEC", "OpenAIEncoder"]


_TEXT_END = '},"finish_reason":null}]}'


class OpenAIEncoder(Encoder):
    """An error mid-stream is sent the way the OpenAI API sends it, ``data: {"error": ...}``,
    which the openai SDK raises as ``APIError``."""

    def __init__(self, model: str | None) -> None:
        self.prefix = {
            "id": "chatcmpl-" + uuid.uuid4().hex,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model or "faststream-kit",
        }
        self.role_sent = False
        # A text chunk after the first is this, the text's JSON string and _TEXT_END: no
        # dict to serialise per token.
        self._text_start = (
            json_text(self.prefix)[:-1] + ',"choices":[{"index":0,"delta":{"content":'
        )

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        if not self.role_sent:
            delta = {"role": "assistant", **delta}
            self.role_sent = True
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        return json_event(json_text({**self.prefix, "choices": [choice]}))

    def encode(self, event: LLMEvent) -> bytes:
        if type(event) is TextDelta:
            if self.role_sent:
                return json_event(self._text_start + json_text(event.text) + _TEXT_END)
            return self._chunk({"content": event.text})
        if type(event) is ReasoningDelta:
            return self._chunk({"reasoning_content": event.text})
        if type(event) is ToolCallDelta:
            call: dict[str, Any] = {"index": event.index}
            if event.id is not None:
                call["id"] = event.id
                call["type"] = "function"
            function: dict[str, str] = {"arguments": event.arguments}
            if event.name is not None:
                function = {"name": event.name, **function}
            call["function"] = function
            return self._chunk({"tool_calls": [call]})
        assert type(event) is Finish
        frames = self._chunk({}, event.finish_reason)
        if event.usage is not None:
            frames += json_event(json_text({**self.prefix, "choices": [], "usage": event.usage}))
        return frames + DONE_FRAME

    def error_frame(self, exc: BaseException) -> bytes:
        return json_event(json_text({"error": report_error(exc).as_dict()}))


SPEC = FormatSpec("text/event-stream", OpenAIEncoder, PING_FRAME)
