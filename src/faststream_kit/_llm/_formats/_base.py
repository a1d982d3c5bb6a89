"""What every format module shares: the encoder base class and the format's description.

An encoder lives for one response (some formats number their parts or must close an open
text block before a tool call), turns each neutral event into bytes, and knows its error frame.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..._sse import compact_json
from .._events import LLMEvent, ToolCallDelta

__all__ = ["Encoder", "FormatSpec", "json_text", "tool_fields"]

json_text = compact_json  # per token: the encoder built once


class Encoder:
    def preamble(self) -> bytes:
        """Bytes sent before the first event (with the headers)."""
        return b""

    def encode(self, event: LLMEvent) -> bytes:
        raise NotImplementedError

    def error_frame(self, exc: BaseException) -> bytes:
        raise NotImplementedError


@dataclass(frozen=True)
class FormatSpec:
    media_type: str
    make_encoder: Callable[..., Encoder]
    """Called once per response with the ``model`` argument of ``llm_stream``, and with
    ``thread_id=`` and ``run_id=`` when the format takes them (:attr:`run_ids`)."""
    keepalive_frame: bytes | None = None
    has_error_frame: bool = True
    headers: Mapping[str, str] = field(default_factory=dict)
    run_ids: bool = False
    """Whether the format names the client's thread and run (AG-UI's ``threadId``/``runId``)."""


def tool_fields(event: ToolCallDelta) -> dict[str, Any]:
    """A tool call piece as the ``sse`` and ``ndjson`` formats write it."""
    fields: dict[str, Any] = {"index": event.index}
    if event.id is not None:
        fields["id"] = event.id
    if event.name is not None:
        fields["name"] = event.name
    fields["arguments"] = event.arguments
    return fields
