"""``format="ag-ui"``: the answer as one run of the AG-UI protocol, events as SSE.

AG-UI (https://docs.ag-ui.com, schema 1.0 as ``@ag-ui/core`` 1.0.4 defines it) is what
CopilotKit and the ``@ag-ui/client`` ``HttpAgent`` read: the client POSTs a
``RunAgentInput`` (``threadId``, ``runId``, ``messages``, ...) and reads ``data: {json}``
events, each with a ``type``, until the run ends. One answer is one run:

``RUN_STARTED`` (``threadId``, ``runId``, ``protocolVersion``), then the answer as
``TEXT_MESSAGE_START`` / ``TEXT_MESSAGE_CONTENT`` / ``TEXT_MESSAGE_END`` (one assistant message;
text after a tool call reopens it), reasoning as a ``REASONING_START`` span holding one
``REASONING_MESSAGE_START`` / ``_CONTENT`` / ``_END`` message, tool calls as
``TOOL_CALL_START`` (``parentMessageId``: the assistant message) / ``TOOL_CALL_ARGS`` /
``TOOL_CALL_END`` (all at the end of the answer), and last ``RUN_FINISHED`` with the token
``usage`` and the finish reason in its ``metadata``, or ``RUN_ERROR`` (``message``, ``code``:
our error ``type``).

The client's verifier rejects a run that finishes with a message or a tool call still open, and
any event after ``RUN_FINISHED`` / ``RUN_ERROR``; its parser splits events on a blank line
written as ``\\n\\n`` and reads only ``data:`` lines, so a ``: ping`` comment is a keepalive.
"""

from __future__ import annotations

import uuid
from typing import Any

from ..._errors import report_error
from ..._sse import PING_FRAME, json_event
from .._events import Finish, LLMEvent, ReasoningDelta, TextDelta, ToolCallDelta
from ._base import Encoder, FormatSpec, json_text

__all__ = ["PROTOCOL_VERSION", "SPEC", "AGUIEncoder"]

PROTOCOL_VERSION = "1.0"
"""The AG-UI protocol version these events follow, declared in ``RUN_STARTED``."""


def _event(fields: dict[str, Any]) -> bytes:
    return json_event(json_text(fields))


class AGUIEncoder(Encoder):
    """One AG-UI run. ``thread_id`` and ``run_id`` are the client's, from its
    ``RunAgentInput``; without them the run gets ids of its own."""

    def __init__(
        self, model: str | None, thread_id: str | None = None, run_id: str | None = None
    ) -> None:
        self.model = model
        self.thread_id = thread_id or "thread-" + uuid.uuid4().hex
        self.run_id = run_id or "run-" + uuid.uuid4().hex
        self.message_id = "msg-" + uuid.uuid4().hex
        self.text_open = False
        self.reasoning_id: str | None = None
        self.reasonings = 0
        # Tool call index -> toolCallId. A call's arguments are complete only when the answer
        # is (a provider may send more pieces of it later), so every call ends at the finish.
        self.open_tools: dict[int, str] = {}
        # The per-token events differ only in their delta: their JSON text is a prefix (our
        # own ids, nothing to escape) and the delta's JSON string, not a dict to serialise.
        self._text_prefix = (
            '{"type":"TEXT_MESSAGE_CONTENT","messageId":"' + self.message_id + '","delta":'
        )

    def preamble(self) -> bytes:
        return _event(
            {
                "type": "RUN_STARTED",
                "threadId": self.thread_id,
                "runId": self.run_id,
                "protocolVersion": PROTOCOL_VERSION,
            }
        )

    def encode(self, event: LLMEvent) -> bytes:
        if type(event) is TextDelta:
            out = b"" if self.text_open else self._open_text()
            return out + json_event(self._text_prefix + json_text(event.text) + "}")
        if type(event) is ReasoningDelta:
            out = b"" if self.reasoning_id is not None else self._open_reasoning()
            return out + _event(
                {
                    "type": "REASONING_MESSAGE_CONTENT",
                    "messageId": self.reasoning_id,
                    "delta": event.text,
                }
            )
        if type(event) is ToolCallDelta:
            return self._tool_delta(event)
        assert type(event) is Finish
        return self._finish(event)

    def _open_text(self) -> bytes:
        out = self._close_reasoning()
        self.text_open = True
        return out + _event(
            {"type": "TEXT_MESSAGE_START", "messageId": self.message_id, "role": "assistant"}
        )

    def _close_text(self) -> bytes:
        if not self.text_open:
            return b""
        self.text_open = False
        return _event({"type": "TEXT_MESSAGE_END", "messageId": self.message_id})

    def _open_reasoning(self) -> bytes:
        out = self._close_text()
        self.reasonings += 1
        reasoning_id = self.reasoning_id = f"{self.message_id}-reasoning-{self.reasonings}"
        out += _event({"type": "REASONING_START", "messageId": reasoning_id})
        return out + _event(
            {"type": "REASONING_MESSAGE_START", "messageId": reasoning_id, "role": "reasoning"}
        )

    def _close_reasoning(self) -> bytes:
        reasoning_id = self.reasoning_id
        if reasoning_id is None:
            return b""
        self.reasoning_id = None
        return _event({"type": "REASONING_MESSAGE_END", "messageId": reasoning_id}) + _event(
            {"type": "REASONING_END", "messageId": reasoning_id}
        )

    def _tool_delta(self, event: ToolCallDelta) -> bytes:
        out = self._close_text() + self._close_reasoning()
        tool_call_id = self.open_tools.get(event.index)
        if tool_call_id is None:
            tool_call_id = event.id or f"{self.message_id}-call-{event.index}"
            self.open_tools[event.index] = tool_call_id
            out += _event(
                {
                    "type": "TOOL_CALL_START",
                    "toolCallId": tool_call_id,
                    "toolCallName": event.name or "unknown",
                    # The call belongs to the answer's assistant message (the client attaches
                    # it there, or creates that message when no text came first).
                    "parentMessageId": self.message_id,
                }
            )
        if event.arguments:
            out += _event(
                {"type": "TOOL_CALL_ARGS", "toolCallId": tool_call_id, "delta": event.arguments}
            )
        return out

    def _end_tools(self) -> bytes:
        out = b""
        for tool_call_id in self.open_tools.values():
            out += _event({"type": "TOOL_CALL_END", "toolCallId": tool_call_id})
        self.open_tools.clear()
        return out

    def _close_all(self) -> bytes:
        return self._close_text() + self._close_reasoning() + self._end_tools()

    def _finish(self, event: Finish) -> bytes:
        finished: dict[str, Any] = {
            "type": "RUN_FINISHED",
            "threadId": self.thread_id,
            "runId": self.run_id,
        }
        usage = event.usage
        if usage is not None:
            # AG-UI's TokenUsage: input and output totals, their sum; one entry per model.
            entry: dict[str, Any] = {
                "inputTokens": usage.get("prompt_tokens", 0),
                "outputTokens": usage.get("completion_tokens", 0),
                "totalTokens": usage.get("total_tokens", 0),
            }
            if self.model is not None:
                entry["model"] = self.model
            finished["usage"] = [entry]
        finished["metadata"] = {"finishReason": event.finish_reason}
        return self._close_all() + _event(finished)

    def error_frame(self, exc: BaseException) -> bytes:
        # The text so far stays a finished message; a tool call cut short stays open (its
        # arguments are incomplete), which RUN_ERROR allows and RUN_FINISHED would not.
        report = report_error(exc)
        failed = {"type": "RUN_ERROR", "message": report.message, "code": report.type}
        return self._close_text() + self._close_reasoning() + _event(failed)


SPEC = FormatSpec("text/event-stream", AGUIEncoder, PING_FRAME, run_ids=True)
