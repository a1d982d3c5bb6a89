"""The five wire formats of ``llm_stream``, each an encoder of neutral events.

An encoder lives for one response (some formats number their parts or must close an open
text block before a tool call), turns each event into bytes, and knows its error frame.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ._errors import report_error
from ._formats import NDJSON_KEEPALIVE, ndjson_error_frame, sse_error_frame
from ._sse import DONE_FRAME, PING_FRAME, compact_json, json_event

__all__ = [
    "FORMATS",
    "Finish",
    "LLMEvent",
    "ReasoningDelta",
    "TextDelta",
    "ToolCallDelta",
]

_json = compact_json  # per token: the encoder built once


class TextDelta:
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class ReasoningDelta:
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
    __slots__ = ("finish_reason", "usage")

    def __init__(self, finish_reason: str, usage: dict[str, int] | None) -> None:
        self.finish_reason = finish_reason
        self.usage = usage


LLMEvent = TextDelta | ReasoningDelta | ToolCallDelta | Finish


_sse = json_event


def _error_body(exc: BaseException) -> dict[str, str]:
    return report_error(exc).as_dict()


def _tool_fields(event: ToolCallDelta) -> dict[str, Any]:
    fields: dict[str, Any] = {"index": event.index}
    if event.id is not None:
        fields["id"] = event.id
    if event.name is not None:
        fields["name"] = event.name
    fields["arguments"] = event.arguments
    return fields


class Encoder:
    def preamble(self) -> bytes:
        return b""

    def encode(self, event: LLMEvent) -> bytes:
        raise NotImplementedError

    def error_frame(self, exc: BaseException) -> bytes:
        raise NotImplementedError


class TextEncoder(Encoder):
    """Plain text: the answer and nothing else. Errors abort the connection."""

    def encode(self, event: LLMEvent) -> bytes:
        return event.text.encode() if type(event) is TextDelta else b""


class SSEEncoder(Encoder):
    """``event: text|reasoning|tool_call|done|error`` with a JSON body each."""

    def encode(self, event: LLMEvent) -> bytes:
        if type(event) is TextDelta:
            return _sse(_json({"text": event.text}), "text")
        if type(event) is ReasoningDelta:
            return _sse(_json({"text": event.text}), "reasoning")
        if type(event) is ToolCallDelta:
            return _sse(_json(_tool_fields(event)), "tool_call")
        assert type(event) is Finish
        return _sse(_json({"finish_reason": event.finish_reason, "usage": event.usage}), "done")

    def error_frame(self, exc: BaseException) -> bytes:
        return sse_error_frame(exc)


class NDJSONEncoder(Encoder):
    """One JSON object per line, each with a ``type``: the SSE events as lines."""

    def encode(self, event: LLMEvent) -> bytes:
        if type(event) is TextDelta:
            line = _json({"type": "text", "text": event.text})
        elif type(event) is ReasoningDelta:
            line = _json({"type": "reasoning", "text": event.text})
        elif type(event) is ToolCallDelta:
            line = _json({"type": "tool_call", **_tool_fields(event)})
        else:
            assert type(event) is Finish
            line = _json(
                {"type": "done", "finish_reason": event.finish_reason, "usage": event.usage}
            )
        return (line + "\n").encode()

    def error_frame(self, exc: BaseException) -> bytes:
        return ndjson_error_frame(exc)


class OpenAIEncoder(Encoder):
    """OpenAI-compatible ``chat.completion.chunk`` SSE, ending in ``data: [DONE]``.

    An error mid-stream is sent the way the OpenAI API sends it, ``data: {"error": ...}``,
    which the openai SDK raises as ``APIError``.
    """

    def __init__(self, model: str | None) -> None:
        self.prefix = {
            "id": "chatcmpl-" + uuid.uuid4().hex,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model or "faststream-kit",
        }
        self.role_sent = False

    def _chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        if not self.role_sent:
            delta = {"role": "assistant", **delta}
            self.role_sent = True
        choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
        return _sse(_json({**self.prefix, "choices": [choice]}))

    def encode(self, event: LLMEvent) -> bytes:
        if type(event) is TextDelta:
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
            frames += _sse(_json({**self.prefix, "choices": [], "usage": event.usage}))
        return frames + DONE_FRAME

    def error_frame(self, exc: BaseException) -> bytes:
        return _sse(_json({"error": _error_body(exc)}))


class UIEncoder(Encoder):
    """The Vercel AI SDK UI message stream, protocol v1.

    Parts (``data: {...}`` SSE lines): ``start``, ``start-step``, ``text-start`` /
    ``text-delta`` / ``text-end``, ``reasoning-start`` / ``-delta`` / ``-end``,
    ``tool-input-start`` / ``tool-input-delta`` / ``tool-input-available``, ``finish-step``,
    ``message-metadata`` (finish reason and usage), ``finish``, ``error``, then
    ``data: [DONE]``. The client validates parts strictly, so no part carries extra keys.
    """

    def __init__(self) -> None:
        self.message_id = "msg-" + uuid.uuid4().hex
        self.open_block: tuple[str, str] | None = None  # ("text" | "reasoning", id)
        self.blocks = 0
        self.tools: dict[int, dict[str, Any]] = {}

    def preamble(self) -> bytes:
        return _sse(_json({"type": "start", "messageId": self.message_id})) + _sse(
            _json({"type": "start-step"})
        )

    def _close_block(self) -> bytes:
        if self.open_block is None:
            return b""
        kind, block_id = self.open_block
        self.open_block = None
        return _sse(_json({"type": kind + "-end", "id": block_id}))

    def _delta(self, kind: str, text: str) -> bytes:
        out = b""
        if self.open_block is None or self.open_block[0] != kind:
            out = self._close_block()
            self.blocks += 1
            self.open_block = (kind, f"{kind}-{self.blocks}")
            out += _sse(_json({"type": kind + "-start", "id": self.open_block[1]}))
        return out + _sse(_json({"type": kind + "-delta", "id": self.open_block[1], "delta": text}))

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
            out += _sse(
                _json(
                    {
                        "type": "tool-input-start",
                        "toolCallId": tool["toolCallId"],
                        "toolName": tool["toolName"],
                    }
                )
            )
        if event.arguments:
            tool["input"] += event.arguments
            out += _sse(
                _json(
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
            out += _sse(
                _json(
                    {
                        "type": "tool-input-available",
                        "toolCallId": tool["toolCallId"],
                        "toolName": tool["toolName"],
                        "input": arguments,
                    }
                )
            )
        metadata = {"finishReason": event.finish_reason, "usage": event.usage}
        out += _sse(_json({"type": "finish-step"}))
        out += _sse(_json({"type": "message-metadata", "messageMetadata": metadata}))
        out += _sse(_json({"type": "finish"}))
        return out + DONE_FRAME

    def error_frame(self, exc: BaseException) -> bytes:
        # Close an open text block first, so the client shows it as done, not streaming.
        part = {"type": "error", "errorText": report_error(exc).message}
        return self._close_block() + _sse(_json(part)) + DONE_FRAME


@dataclass(frozen=True)
class FormatSpec:
    media_type: str
    make_encoder: Callable[[str | None], Encoder]
    keepalive_frame: bytes | None = None
    has_error_frame: bool = True
    headers: Mapping[str, str] = field(default_factory=dict)


FORMATS: dict[str, FormatSpec] = {
    "text": FormatSpec("text/plain", lambda model: TextEncoder(), has_error_frame=False),
    "sse": FormatSpec("text/event-stream", lambda model: SSEEncoder(), PING_FRAME),
    "ndjson": FormatSpec("application/x-ndjson", lambda model: NDJSONEncoder(), NDJSON_KEEPALIVE),
    "openai": FormatSpec("text/event-stream", OpenAIEncoder, PING_FRAME),
    "ui": FormatSpec(
        "text/event-stream",
        lambda model: UIEncoder(),
        PING_FRAME,
        headers={"x-vercel-ai-ui-message-stream": "v1"},
    ),
}
