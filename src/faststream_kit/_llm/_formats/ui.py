"""``format="ui"``: the Vercel AI SDK UI message stream (header
``x-vercel-ai-ui-message-stream: v1``), read by ``useChat`` and the ``ai`` package."""

from __future__ import annotations

import json
import uuid
from typing import Any

from ..._errors import report_error
from ..._sse import DONE_FRAME, PING_FRAME, json_event
from .._events import Finish, LLMEvent, ReasoningDelta, TextDelta, ToolCallDelta
from ._base import Encoder, FormatSpec, json_text

__all__ = ["SPEC", "UIEncoder"]


class UIEncoder(Encoder):
    """The Vercel AI SDK UI message stream, protocol v1.

    Parts (``data: {...}`` SSE lines): ``start``, ``start-step``, ``text-start`` /
    ``text-delta`` / ``text-end``, ``reasoning-start`` / ``-delta`` / ``-end``,
    ``tool-input-start`` / ``tool-input-delta`` / ``tool-input-available``, ``finish-step``,
    ``message-metadata`` (finish reason and usage), ``finish`` (with the AI SDK's
    ``finishReason``), then ``data: [DONE]``. A stream that fails ends with ``error`` instead
    of the finish; one that our side gave up on (a timeout) with ``error`` then ``abort``.
    The client validates parts strictly, so no part carries extra keys.
    """

    def __init__(self) -> None:
        self.message_id = "msg-" + uuid.uuid4().hex
        self.open_block: tuple[str, str] | None = None  # ("text" | "reasoning", id)
        self.blocks = 0
        self._delta_prefix = ""  # the JSON text of the open block's deltas, up to the delta
        self.tools: dict[int, dict[str, Any]] = {}

    def preamble(self) -> bytes:
        return json_event(json_text({"type": "start", "messageId": self.message_id})) + json_event(
            json_text({"type": "start-step"})
        )

    def _close_block(self) -> bytes:
        if self.open_block is None:
            return b""
        kind, block_id = self.open_block
        self.open_block = None
        return json_event(json_text({"type": kind + "-end", "id": block_id}))

    def _delta(self, kind: str, text: str) -> bytes:
        if self.open_block is not None and self.open_block[0] == kind:
            return json_event(self._delta_prefix + json_text(text) + "}")
        out = self._close_block()
        self.blocks += 1
        block_id = f"{kind}-{self.blocks}"
        self.open_block = (kind, block_id)
        # The block's deltas differ only in their text: their JSON is this prefix (our own
        # names, nothing to escape) and the text's JSON string, not a dict to serialise.
        self._delta_prefix = '{"type":"' + kind + '-delta","id":"' + block_id + '","delta":'
        out += json_event(json_text({"type": kind + "-start", "id": block_id}))
        return out + json_event(self._delta_prefix + json_text(text) + "}")

    def encode(self, event: LLMEvent) -> bytes:
        if type(event) is TextDelta:
            return self._delta("text", event.text)
        if type(event) is ReasoningDelta:
            return self._delta("reasoning", event.text)
        if type(event) is ToolCallDelta:
            return self._tool_delta(event)
        assert type(event) is Finish
        return self._finish(event)

    def _tool_delta(self, event: ToolCallDelta) -> bytes:
        out = self._close_block()
        tool = self.tools.get(event.index)
        if tool is None:
            tool = {
                "toolCallId": event.id or f"call-{event.index}",
                "toolName": event.name or "unknown",
                "input": "",
            }
            self.tools[event.index] = tool
            out += json_event(
                json_text(
                    {
                        "type": "tool-input-start",
                        "toolCallId": tool["toolCallId"],
                        "toolName": tool["toolName"],
                    }
                )
            )
        if event.arguments:
            tool["input"] += event.arguments
            out += json_event(
                json_text(
                    {
                        "type": "tool-input-delta",
                        "toolCallId": tool["toolCallId"],
                        "inputTextDelta": event.arguments,
                    }
                )
            )
        return out

    def _finish(self, event: Finish) -> bytes:
        out = self._close_block()
        for tool in self.tools.values():
            try:
                arguments: Any = json.loads(tool["input"]) if tool["input"] else {}
            except ValueError:
                arguments = tool["input"]
            out += json_event(
                json_text(
                    {
                        "type": "tool-input-available",
                        "toolCallId": tool["toolCallId"],
                        "toolName": tool["toolName"],
                        "input": arguments,
                    }
                )
            )
        metadata = {"finishReason": event.finish_reason, "usage": event.usage}
        out += json_event(json_text({"type": "finish-step"}))
        out += json_event(json_text({"type": "message-metadata", "messageMetadata": metadata}))
        finish = {"type": "finish", "finishReason": _finish_reason(event.finish_reason)}
        out += json_event(json_text(finish))
        return out + DONE_FRAME

    def error_frame(self, exc: BaseException) -> bytes:
        # Close an open text block first, so the client shows it as done, not streaming.
        report = report_error(exc)
        out = self._close_block()
        out += json_event(json_text({"type": "error", "errorText": report.message}))
        if report.type == "timeout":
            # Our side stopped waiting (the idle timeout, the SDK's read timeout): the AI SDK
            # says so with ``abort``, as streamText does when its own chunk timeout fires. The
            # error part before it is what useChat shows: it ignores ``abort``.
            out += json_event(json_text({"type": "abort", "reason": report.message}))
        return out + DONE_FRAME


_FINISH_REASONS = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool-calls",
    "function_call": "tool-calls",
    "content_filter": "content-filter",
}


def _finish_reason(reason: str) -> str:
    """OpenAI's finish reason in the AI SDK's words (``FinishReason`` of the ``ai`` package:
    stop, length, content-filter, tool-calls, error, interrupted, other)."""
    return _FINISH_REASONS.get(reason, "other")


SPEC = FormatSpec(
    "text/event-stream",
    lambda model: UIEncoder(),
    PING_FRAME,
    headers={"x-vercel-ai-ui-message-stream": "v1"},
)
