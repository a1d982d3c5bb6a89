"""``format="text"``: the answer's text as plain UTF-8, and nothing else."""

from __future__ import annotations

from .._events import LLMEvent, TextDelta
from ._base import Encoder, FormatSpec

__all__ = ["SPEC", "TextEncoder"]


class TextEncoder(Encoder):
    """Plain text has no error frame: an error aborts the connection (see docs/errors.md)."""

    def encode(self, event: LLMEvent) -> bytes:
        return event.text.encode() if type(event) is TextDelta else b""


SPEC = FormatSpec("text/plain", lambda model: TextEncoder(), has_error_frame=False)
