"""The wire formats of ``llm_stream``: one module per format, each an encoder of neutral events.

Adding a format: a module with an :class:`Encoder` subclass and its ``SPEC``, listed below and in
:data:`LLMFormat`.
"""

from __future__ import annotations

from typing import Literal

from . import ag_ui, ndjson, openai, sse, text, ui
from ._base import Encoder, FormatSpec

__all__ = ["FORMATS", "Encoder", "FormatSpec", "LLMFormat"]

LLMFormat = Literal["text", "sse", "ndjson", "openai", "ui", "ag-ui"]
"""The wire formats of :func:`llm_stream`."""

FORMATS: dict[str, FormatSpec] = {
    "text": text.SPEC,
    "sse": sse.SPEC,
    "ndjson": ndjson.SPEC,
    "openai": openai.SPEC,
    "ui": ui.SPEC,
    "ag-ui": ag_ui.SPEC,
}
